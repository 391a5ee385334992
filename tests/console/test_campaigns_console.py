"""The console's campaign pages (群发通知): the list, a campaign's progress and its per-recipient table
with status filters, read from ``campaign``/``delivery`` rows made here directly."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from bot.runtime import RUNTIME
from bot.store.models import Campaign, Delivery, House, Owner, Project
from tests.console.conftest import js, login, visible_text


async def outage_campaign(client: Any) -> int:
    """An outage notice to four owners: two delivered (one acknowledged), one failed (blocked), one skipped."""
    async with client.app[RUNTIME].db.session() as s, s.begin():
        project = (await s.execute(sa.select(Project).where(Project.code == "demo"))).scalar_one()
        owners = (await s.execute(sa.select(Owner).order_by(Owner.id).limit(4))).scalars().all()
        house = (await s.execute(sa.select(House).order_by(House.id).limit(1))).scalar_one()
        c = Campaign(name="3栋停水通知", kind="outage", text="12月3日9:00-17:00 3栋停水", status="sending",
                     project_id=project.id, params={"utility": "water"}, channels=["wechat", "sms"],
                     created_by="kefu")
        s.add(c)
        await s.flush()
        now = dt.datetime.now(dt.UTC)
        rows = [("wechat", "delivered", None, None), ("wechat", "acknowledged", None, now),
                ("wechat", "failed", "failed:user block", None), ("sms", "skipped", "opted_out", None)]
        for owner, (channel, status, error, ack) in zip(owners, rows, strict=True):
            s.add(Delivery(campaign_id=c.id, owner_id=owner.id, house_id=house.id, channel=channel,
                           recipient=owner.phone if channel == "sms" else "oABCDEFG", idempotency_key=f"t:{owner.id}",
                           status=status, error=error, sent_at=now if status != "skipped" else None,
                           acknowledged_at=ack))
        return c.id


async def test_campaign_list_progress_and_recipients(yezhu: Any) -> None:
    client = await yezhu()
    cid = await outage_campaign(client)
    csrf = await login(client, "kefu")

    listing = visible_text(await (await client.get("/console/campaigns")).text())
    assert "3栋停水通知" in listing and "停水停电通知" in listing and "发送中" in listing

    page = visible_text(await (await client.get(f"/console/campaigns/{cid}")).text())
    for words in ("4\n收件人", "2\n已发送", "1\n业主已确认", "1\n失败", "业主拒收公众号消息", "业主已退订短信通知"):
        assert words in page, words
    failed = visible_text(await (await client.get(f"/console/campaigns/{cid}", params={"status": "failed"})).text())
    assert "业主拒收公众号消息" in failed and "业主已退订短信通知" not in failed
    sms = visible_text(await (await client.get(f"/console/campaigns/{cid}", params={"channel": "sms"})).text())
    assert "业主已退订短信通知" in sms and "业主拒收公众号消息" not in sms

    progress = await (await client.get(f"/console/campaigns/{cid}/progress", headers=js(csrf))).json()
    assert progress["status"] == "sending" and progress["live"] is True
    counts = progress["counts"]
    assert (counts["total"], counts["reached"], counts["acknowledged"], counts["failed"], counts["skipped"]) == \
        (4, 2, 1, 1, 1)
    assert (await client.get(f"/console/campaigns/{cid}", params={"status": "nonsense"})).status == 400
    assert (await client.get("/console/campaigns/999999")).status == 404

    await login(client, "gongcheng")
    assert (await client.get("/console/campaigns")).status == 403


async def test_the_wizard_keeps_bad_input_and_approval_belongs_to_a_supervisor(yezhu: Any) -> None:
    client = await yezhu()
    async with client.app[RUNTIME].db.session() as s, s.begin():  # the project's own approval size
        project = (await s.execute(sa.select(Project).where(Project.code == "demo"))).scalar_one()
        project.settings = {**(project.settings or {}), "campaign_approval_threshold": 10}
    csrf = await login(client, "kefu")
    form = visible_text(await (await client.get("/console/campaigns/new")).text())
    assert "新建群发通知" in form and "领取地点" in form and "预计恢复时间" in form

    fields = {"_csrf": csrf, "kind": "outage", "project": "demo", "buildings": "3", "units": "2", "ch_wechat": "1",
              "ch_sms": "1", "p_outage_utility": "water", "p_outage_area": "3栋2单元", "p_outage_reason": "水箱清洗",
              "p_outage_end": "2026-12-20T17:00"}
    refused = await client.post("/console/campaigns", data=fields)  # no start time
    assert refused.status == 400
    html = await refused.text()
    assert "start" in visible_text(html) or "开始" in visible_text(html)
    assert 'value="水箱清洗"' in html and 'value="3栋2单元"' in html  # nothing typed is lost

    created = await client.post("/console/campaigns", data={**fields, "p_outage_start": "2026-12-20T09:00"},
                                allow_redirects=False)
    assert created.status == 303, await created.text()
    page_url = created.headers["Location"]
    cid = int(page_url.rsplit("/", 1)[1])
    page = visible_text(await (await client.get(page_url)).text())
    assert "待审批" in page and "须主管审批后才能发送" in page and "样例 · 短信" in page
    assert "审批通过" not in page and "取消通知" in page
    refused = await client.post(f"/console/campaigns/{cid}/approve", headers=js(csrf))
    assert refused.status == 403
    refused = await client.post(f"/console/campaigns/{cid}/send", headers=js(csrf))
    assert refused.status == 400 and "待主管审批" in (await refused.json())["detail"]

    boss = await login(client, "zhuguan")
    assert "审批通过" in visible_text(await (await client.get(page_url)).text())
    ok = await client.post(f"/console/campaigns/{cid}/approve", headers=js(boss))
    assert ok.status == 200, await ok.text()
    async with client.app[RUNTIME].db.session() as s:
        campaign = await s.get_one(Campaign, cid)
        assert (campaign.status, campaign.approved_by) == ("approved", "zhuguan")


def _xlsx(rows: list[tuple[Any, ...]]) -> bytes:
    import io

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["楼栋", "单元", "房号"])
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def test_the_wizard_takes_an_uploaded_list(yezhu: Any) -> None:
    from aiohttp import FormData

    client = await yezhu()
    csrf = await login(client, "kefu")

    def form_with(rows: list[tuple[Any, ...]]) -> FormData:
        data = FormData()
        for k, v in {"_csrf": csrf, "kind": "notice", "project": "demo", "ch_wechat": "1", "ch_sms": "1",
                     "p_notice_content": "本周六上午消防演练"}.items():
            data.add_field(k, v)
        data.add_field("list", _xlsx(rows), filename="名单.xlsx",
                       content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        return data

    bad = await client.post("/console/campaigns", data=form_with([(3, 2, 501), (99, 1, 101)]))
    assert bad.status == 400
    html = await bad.text()
    assert "名单第 3 行" in visible_text(html) and "本周六上午消防演练" in html
    good = await client.post("/console/campaigns", data=form_with([(3, 2, 501), (3, 2, 502)]), allow_redirects=False)
    assert good.status == 303, await good.text()
    page = visible_text(await (await client.get(good.headers["Location"])).text())
    assert "2\n受众业主" in page and "消防演练" in page


async def test_a_list_over_the_apps_64_kb_is_taken_by_the_wizard_only(yezhu: Any) -> None:
    import io
    import secrets

    import openpyxl
    from aiohttp import FormData

    client = await yezhu()
    csrf = await login(client, "kefu")
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    for row in (("楼栋", "单元", "房号"), (3, 2, 501), (3, 2, 502)):
        ws.append(list(row))
    notes = wb.create_sheet("备注")  # what a real export carries besides: well over 64 KB once zipped
    for _ in range(2000):
        notes.append([secrets.token_hex(48)])
    out = io.BytesIO()
    wb.save(out)
    body = out.getvalue()
    assert 100 * 1024 < len(body) < 5 * 1024 * 1024

    def form_with(fields: dict[str, str]) -> FormData:
        data = FormData()
        for k, v in {"_csrf": csrf, **fields}.items():
            data.add_field(k, v)
        data.add_field("list", body, filename="名单.xlsx",
                       content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        return data

    good = await client.post("/console/campaigns", allow_redirects=False, data=form_with(
        {"kind": "notice", "project": "demo", "ch_wechat": "1", "ch_sms": "1", "p_notice_content": "本周六上午消防演练"}))
    assert good.status == 303, await good.text()
    page = visible_text(await (await client.get(good.headers["Location"])).text())
    assert "2\n受众业主" in page
    cid = good.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    other = await client.post(f"/console/campaigns/{cid}/test", data=form_with({"phone": "13800000009"}))
    assert other.status == 413  # every other route keeps the app's small limit
