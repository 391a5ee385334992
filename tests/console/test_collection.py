"""The signed collection record (签收): the counter in the console, the reminders job, the register as
xlsx from the console and the CLI (issue 14, Deliver item 7). Demo: 张三's 3栋2单元501 (batch 2026-第3批)
is ready to collect; the certificate-collection notice is a Campaign + Delivery made here directly."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from typer.testing import CliRunner

from actions.collection import remind_uncollected
from bot.cli import app as cli
from bot.runtime import RUNTIME
from bot.store.models import AuditLog, Campaign, CertificateRecord, Delivery, Owner, SmsMessage
from tests.console.conftest import login, visible_text

BATCH = "2026-第3批"
CHINA = dt.timezone(dt.timedelta(hours=8))


async def zhangsan_record(client: Any) -> tuple[CertificateRecord, Owner]:
    async with client.app[RUNTIME].db.session() as s:
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == "13800000001"))).scalar_one()
        record = (await s.execute(sa.select(CertificateRecord).where(CertificateRecord.batch == BATCH))).scalar_one()
        return record, owner


async def notify(client: Any, record: CertificateRecord, owner: Owner, at: dt.datetime,
                 status: str = "delivered", acknowledged: dt.datetime | None = None) -> None:
    """The certificate notice went out: a campaign and its delivery (as the campaigns module records them)."""
    async with client.app[RUNTIME].db.session() as s, s.begin():
        c = Campaign(name="第3批领证通知", kind="certificate_collection", text="您的不动产权证书已可领取", status="done",
                     params={"place": "客服中心", "hours": "工作日 9:00–17:00"}, channels=["wechat"], created_by="kefu")
        s.add(c)
        await s.flush()
        s.add(Delivery(campaign_id=c.id, owner_id=owner.id, house_id=record.house_id, channel="wechat",
                       recipient="oDEMO0001", idempotency_key=f"t:{c.id}", status=status, sent_at=at,
                       acknowledged_at=acknowledged))


async def post_collect(client: Any, csrf: str, record_id: int, **fields: str) -> Any:
    data = {"_csrf": csrf, "back": f"/console/certificates?batch={BATCH}", **fields}
    return await client.post(f"/console/certificates/{record_id}/collect", data=data)


async def test_the_counter_records_who_collected_and_exports_the_register(yezhu: Any) -> None:
    client = await yezhu()
    record, owner = await zhangsan_record(client)
    sent = dt.datetime(2026, 11, 20, 10, 5, tzinfo=CHINA)
    await notify(client, record, owner, sent, status="acknowledged", acknowledged=sent + dt.timedelta(hours=1))
    csrf = await login(client, "kefu")

    page = visible_text(await (await client.get("/console/certificates", params={"batch": BATCH})).text())
    assert "3栋2单元501" in page and "张三" in page and "微信 2026-11-20 10:05（已确认）" in page
    assert "登记领取" in page

    # A proxy without the owner's 委托书 is refused with the reason, and nothing changes.
    refused = visible_text(await (await post_collect(client, csrf, record.id, relation="proxy",
                                                     collector_name="李梅", id_checked="1")).text())
    assert "代领须业主签字的委托书" in refused
    refused = visible_text(await (await post_collect(client, csrf, record.id, relation="proxy",
                                                     collector_name="李梅", proxy_letter="1")).text())
    assert "核验业主和代领人双方的身份证" in refused
    async with client.app[RUNTIME].db.session() as s:
        assert (await s.get_one(CertificateRecord, record.id)).status == "ready"

    future = visible_text(await (await post_collect(client, csrf, record.id, relation="proxy", collector_name="李梅",
                                                    proxy_letter="1", id_checked="1",
                                                    collected_at="2099-01-01T10:00")).text())
    assert "领取时间不能晚于现在" in future
    # Recorded the next morning from the signed paper: the collection time is the afternoon before.
    done = visible_text(await (await post_collect(client, csrf, record.id, relation="proxy", collector_name="李梅",
                                                  proxy_letter="1", id_checked="1",
                                                  collected_at="2026-11-30T15:20")).text())
    assert "已登记：3栋2单元501 的证书由李梅（代领）领取，经办人客服小李" in done
    assert "李梅（代领）" in done and "委托书：有" in done and "经办人：客服小李" in done
    async with client.app[RUNTIME].db.session() as s:
        row = await s.get_one(CertificateRecord, record.id)
        assert (row.status, row.collector_relation, row.collector_name, row.collected_by) == \
            ("collected", "proxy", "李梅", "李梅")
        assert row.proxy_letter and row.id_checked and row.handed_over_by == "kefu" and row.collected_at
        audits = (await s.execute(sa.select(AuditLog).where(AuditLog.action == "certificate.collect"))).scalars().all()
        assert [(a.actor, a.target, a.data["relation"]) for a in audits] == [("kefu", f"certificate:{record.id}", "proxy")]

    again = visible_text(await (await post_collect(client, csrf, record.id, relation="owner", id_checked="1")).text())
    assert "已于" in again and "由李梅领取，不能重复登记" in again

    found = visible_text(await (await client.get("/console/certificates", params={"q": "3-2-501"})).text())
    assert "李梅（代领）" in found
    profile = visible_text(await (await client.get(f"/console/owners/{owner.id}")).text())
    assert "由 李梅（代领，有委托书） 领取，经办 客服小李" in profile

    resp = await client.get("/console/certificates/register.xlsx", params={"batch": BATCH})
    assert resp.status == 200 and "spreadsheetml" in resp.headers["Content-Type"]
    sheet = load_workbook(io.BytesIO(await resp.read())).active
    rows = [[c.value for c in r] for r in sheet.iter_rows(min_row=2)]
    header, first = rows[0], dict(zip(rows[0], rows[1], strict=True))
    assert header[:4] == ["房屋", "业主", "手机", "通知方式及时间"]
    assert first["房屋"] == "3栋2单元501" and first["业主"] == "张三" and first["手机"] == "138****0001"
    assert first["通知方式及时间"] == "微信 2026-11-20 10:05（已确认）" and first["业主确认"] == "2026-11-20 11:05"
    assert (first["领取人"], first["关系"], first["委托书"], first["核验身份证"], first["领取时间"], first["经办人"]) == \
        ("李梅", "代领", "有", "是", "2026-11-30 15:20", "客服小李")
    assert (await client.get("/console/certificates/register.xlsx", params={"batch": "没有"})).status == 404

    # An engineer has no counter.
    await login(client, "gongcheng")
    assert (await client.get("/console/certificates")).status == 403


async def test_owners_who_do_not_collect_are_reminded_once_per_period(yezhu: Any) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    record, owner = await zhangsan_record(client)
    notified = dt.datetime(2026, 11, 1, 10, 0, tzinfo=CHINA)
    await notify(client, record, owner, notified)
    ten_am = dt.datetime(2026, 11, 10, 10, 0, tzinfo=CHINA)
    assert await remind_uncollected(rt, ten_am) == 0  # 9 days after the notice: not yet (default 14)

    due = dt.datetime(2026, 11, 16, 10, 0, tzinfo=CHINA)
    assert await remind_uncollected(rt, due) == 1
    assert await remind_uncollected(rt, due + dt.timedelta(hours=1)) == 0  # the job ran twice: one reminder
    async with rt.db.session() as s:
        row = await s.get_one(CertificateRecord, record.id)
        assert row.reminder_count == 1 and row.reminded_at is not None
        sms = (await s.execute(sa.select(SmsMessage).where(SmsMessage.kind == "certificate_reminder"))).scalars().all()
    assert [(m.phone, m.idempotency_key) for m in sms] == [("13800000001", f"cert-reminder:{record.id}:1:{owner.id}")]
    assert sms[0].status in ("queued", "sending", "sent")  # the in-process job may already have sent it
    assert "3栋2单元501" in sms[0].text and "客服中心（1栋大堂）" in sms[0].text

    # Quiet hours: the next reminder, due at night, waits for the sending window.
    night = dt.datetime(2026, 12, 1, 23, 0, tzinfo=CHINA)
    assert await remind_uncollected(rt, night) == 1
    async with rt.db.session() as s:
        second = (await s.execute(sa.select(SmsMessage).where(
            SmsMessage.idempotency_key == f"cert-reminder:{record.id}:2:{owner.id}"))).scalar_one()
    assert second.status == "deferred"

    # An owner who opted out gets no reminder SMS; a collected certificate none at all.
    async with rt.db.session() as s, s.begin():
        (await s.get_one(Owner, owner.id)).sms_opt_out = True
    assert await remind_uncollected(rt, night + dt.timedelta(days=15)) == 1
    async with rt.db.session() as s:
        third = (await s.execute(sa.select(SmsMessage).where(
            SmsMessage.idempotency_key == f"cert-reminder:{record.id}:3:{owner.id}"))).scalar_one()
        assert (third.status, third.error_code) == ("skipped", "opted_out")
    assert await remind_uncollected(rt, night + dt.timedelta(days=60)) == 0  # at most 3 (YEZHU_CERTIFICATE_REMINDER_MAX)


async def test_a_project_sets_its_own_reminder_period(yezhu: Any) -> None:
    client = await yezhu(certificate_reminder_days=3)
    rt = client.app[RUNTIME]
    record, _owner = await zhangsan_record(client)
    async with rt.db.session() as s, s.begin():
        row = await s.get_one(CertificateRecord, record.id)
        row.ready_at = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)  # never notified: counted from ready
    assert await remind_uncollected(rt, dt.datetime(2026, 11, 3, 10, 0, tzinfo=CHINA)) == 0
    assert await remind_uncollected(rt, dt.datetime(2026, 11, 5, 10, 0, tzinfo=CHINA)) == 1


def test_the_register_from_the_command_line(sqlite_demo_template: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "cli.db"
    shutil.copy(sqlite_demo_template, db)
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = tmp_path / "register.xlsx"
    result = runner.invoke(cli, ["certificates", "register", "--batch", BATCH, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"签收登记表 {BATCH}: 1 户" in result.output
    sheet = load_workbook(out).active
    assert [c.value for c in sheet[3]][:3] == ["3栋2单元501", "张三", "138****0001"]

    missing = runner.invoke(cli, ["certificates", "register", "--batch", "2020-第1批", "--out", str(out)])
    assert missing.exit_code == 1
    assert missing.output.count("\n") == 1 and "no certificate batch '2020-第1批'" in missing.output
    wrong = runner.invoke(cli, ["certificates", "register", "--batch", BATCH, "--out", str(tmp_path / "r.csv")])
    assert wrong.exit_code == 2 and "must end in .xlsx" in wrong.output
