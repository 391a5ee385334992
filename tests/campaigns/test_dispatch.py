"""Sending: the channel choice as the fake WeChat API and the fake SMS provider see it, results from
TEMPLATESENDJOBFINISH and SMS receipts, quiet hours, approval, scheduling, pause/cancel, the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from actions import campaigns
from bot.store.models import AuditLog, Delivery, Project, SmsMessage, SurveyResponse
from tests.campaigns.conftest import runtime, seed, settle, wired
from tests.conftest import WECHAT, auth
from tests.fakes.wechat_client import WeChatOwner
from tests.sms.conftest import KEY


async def by_owner(rt: Any, campaign_id: int) -> dict[tuple[int, str], Delivery]:
    async with rt.db.session() as s:
        rows = (await s.execute(sa.select(Delivery).where(Delivery.campaign_id == campaign_id))).scalars().all()
    return {(d.owner_id, d.channel): d for d in rows}


async def template_result(client: Any, openid: str, msgid: int, status: str) -> None:
    owner = WeChatOwner(client, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"], openid=openid)
    xml = owner.event_xml("TEMPLATESENDJOBFINISH", extra={"MsgID": str(msgid), "Status": status})
    response = await owner.post(xml)
    assert response.status == 200 and response.body == "success"


async def test_send_record_and_results_end_to_end(yezhu: Any, db_url: str, fakes: Any) -> None:
    wechat, sms, endpoint = fakes
    client = await yezhu(demo=False, database_url=db_url, **wired(wechat, sms, endpoint))
    rt = runtime(client)
    seeded = await seed(rt)
    o = seeded.owners

    created = await campaigns.create(rt, kind="certificate_collection", project="camp", actor="kefu")
    cid = created.campaign.id
    assert created.campaign.status == "draft"
    assert await campaigns.send(rt, cid, "kefu", local=True) == "done"

    # One template message to the follower, one SMS to the other owner, nothing to anyone else.
    [tpl] = wechat.template_messages
    assert tpl.touser == "oCAMP_A" and tpl.client_msg_id == f"c{cid}:o{o['甲']}:wechat"
    assert tpl.values["thing1"] == "1栋1单元101" and tpl.values["thing2"] == "客服中心"
    [text] = sms.sent
    assert text.phone == "13900000002" and text.template == "SMS_460001012"
    d = await by_owner(rt, cid)
    assert text.out_id == f"d{d[(o['乙'], 'sms')].id}"
    assert {k: (v.status, v.error) for k, v in d.items()} == {
        (o["甲"], "wechat"): ("sent", None), (o["乙"], "sms"): ("sent", None),
        (o["丁"], "sms"): ("skipped", "opted_out"), (o["己"], "sms"): ("skipped", "duplicate_house")}
    async with rt.db.session() as s:  # the SMS is in the phone's history like any other
        assert (await s.execute(sa.select(SmsMessage.status).where(SmsMessage.phone == "13900000002"))).scalar() == "sent"

    # WeChat reports the template message delivered; the provider pushes the SMS receipt.
    await template_result(client, "oCAMP_A", tpl.msgid, "success")
    resp = await client.post(f"/sms/aliyun/{KEY}/receipt", json=sms.receipts_aliyun())
    assert resp.status == 200
    await settle(rt)
    d = await by_owner(rt, cid)
    assert d[(o["甲"], "wechat")].status == "delivered" and d[(o["乙"], "sms")].status == "delivered"

    # The API: counts by status (acknowledged included) and the per-recipient table.
    body = await (await client.get(f"/api/v1/campaigns/{cid}", headers=auth())).json()
    assert body["status"] == "done" and body["counts"]["delivered"] == 2 and body["counts"]["skipped"] == 2
    assert body["counts"]["acknowledged"] == 0
    skipped = await (await client.get(f"/api/v1/campaigns/{cid}/deliveries?status=skipped", headers=auth())).json()
    assert {x["reason"] for x in skipped["deliveries"]} == {"业主已退订短信通知", "同一房屋已有收件人"}
    assert (await client.get(f"/api/v1/campaigns/{cid}/deliveries?status=bogus", headers=auth())).status == 400
    assert (await client.get("/api/v1/campaigns/99999", headers=auth())).status == 404
    for path in ("/api/v1/campaigns/%EF%BC%91", "/api/v1/campaigns/99999999999999999999999",
                 "/api/v1/campaigns/-1/deliveries"):
        assert (await client.get(path, headers=auth())).status == 404, path
    for query in ("limit=-1", "offset=%C2%B2", "channel=fax", "limit=100000"):
        assert (await client.get(f"/api/v1/campaigns/{cid}/deliveries?{query}", headers=auth())).status == 400, query
    assert (await client.get(f"/api/v1/campaigns/{cid}")).status == 401

    # A survey campaign: a follower blocks the account's messages -> SMS instead, exactly once; each
    # sent invitation is an "invited" survey response (the survey flow's contract).
    survey = (await campaigns.create(rt, kind="survey", project="camp", params={"template": "periodic-2026"})).campaign
    wechat.template_messages.clear()
    sms.sent.clear()
    assert await campaigns.send(rt, survey.id, "admin", local=True) == "done"
    by_user = {m.touser: m for m in wechat.template_messages}
    assert set(by_user) == {"oCAMP_A", "oCAMP_C", "oCAMP_G"} and [x.phone for x in sms.sent] == ["13900000002"]
    for _ in range(2):  # WeChat may push the same event twice
        await template_result(client, "oCAMP_C", by_user["oCAMP_C"].msgid, "failed:user block")
        await settle(rt)
    assert sorted(x.phone for x in sms.sent) == ["13900000002", "13900000003"]
    d = await by_owner(rt, survey.id)
    assert d[(o["丙"], "wechat")].error == "failed:user block" and d[(o["丙"], "sms")].status == "sent"
    assert (await campaigns.status(rt, survey.id))["status"] == "done"
    async with rt.db.session() as s:
        invited = (await s.execute(sa.select(SurveyResponse.owner_id, SurveyResponse.channel).where(
            SurveyResponse.campaign_id == survey.id, SurveyResponse.status == "invited"))).all()
    # 丙's WeChat invitation never arrived: the SMS one is the open invitation.
    assert sorted(invited) == sorted([(o["甲"], "wechat"), (o["庚"], "wechat"), (o["乙"], "sms"), (o["丙"], "sms")])


async def test_quiet_hours_hold_sms_but_not_an_emergency(yezhu: Any, fakes: Any) -> None:
    wechat, sms, endpoint = fakes
    client = await yezhu(demo=False, **wired(wechat, sms, endpoint, sms_window="08:00-08:00"))  # never open
    rt = runtime(client)
    o = (await seed(rt)).owners
    notice = (await campaigns.create(rt, kind="notice", project="camp", params={"content": "电梯年检"})).campaign
    assert await campaigns.send(rt, notice.id, "admin", local=True) == "waiting"
    d = await by_owner(rt, notice.id)
    assert d[(o["乙"], "sms")].status == "queued" and d[(o["乙"], "sms")].error == "quiet_hours"
    assert d[(o["乙"], "sms")].not_before is not None and not sms.sent
    assert len(wechat.template_messages) == 3  # WeChat template messages are not held
    assert (await campaigns.status(rt, notice.id))["status"] == "sending"

    urgent = (await campaigns.create(rt, kind="outage", project="camp", urgent=True, buildings="2", params={
        "utility": "power", "start": "2026-12-01T20:00", "end": "2026-12-01T23:00", "area": "2栋"})).campaign
    assert await campaigns.send(rt, urgent.id, "admin", local=True) == "done"
    assert sorted(x.phone for x in sms.sent) == ["13900000004", "13900000007"]  # opted-out 丁 too: safety


async def test_approval_schedule_pause_cancel_and_the_audit_log(yezhu: Any, fakes: Any) -> None:
    wechat, sms, endpoint = fakes
    client = await yezhu(demo=False, **wired(wechat, sms, endpoint))
    rt = runtime(client)
    seeded = await seed(rt)
    async with rt.db.session() as s, s.begin():
        project = await s.get(Project, seeded.project_id)
        assert project is not None
        project.settings = {**project.settings, "campaign_approval_threshold": 2}

    big = (await campaigns.create(rt, kind="notice", project="camp", actor="kefu", params={"content": "停车场施工"}))
    assert big.campaign.status == "pending_approval" and big.preview.needs_approval
    with pytest.raises(campaigns.CampaignError, match="待主管审批"):
        await campaigns.send(rt, big.campaign.id, "kefu", local=True)
    with pytest.raises(campaigns.CampaignError, match="不是主管"):
        await campaigns.approve(rt, big.campaign.id, "kefu")
    assert (await campaigns.approve(rt, big.campaign.id, "zhuguan")).status == "approved"
    assert await campaigns.send(rt, big.campaign.id, "kefu", local=True) == "done"
    assert len(wechat.template_messages) == 3

    # Scheduled: nothing goes until the scheduler's tick at that time.
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    later = (await campaigns.create(rt, kind="notice", project="camp", buildings="2", at=at,
                                    params={"content": "明日停车场施工"})).campaign
    assert later.status == "scheduled"
    assert await campaigns.tick(rt) == {"started": 0, "resumed": 0}
    assert (await campaigns.tick(rt, now=at + dt.timedelta(minutes=1)))["started"] == 1
    await settle(rt)
    assert (await campaigns.status(rt, later.id))["status"] == "done"
    assert "oCAMP_G" in [m.touser for m in wechat.template_messages[3:]]

    # Pause and resume a scheduled one; cancel a draft: nothing is sent for it.
    paused = (await campaigns.create(rt, kind="notice", project="camp", buildings="2", at=at,
                                     params={"content": "x"})).campaign
    assert (await campaigns.pause(rt, paused.id, "kefu")).status == "paused"
    assert await campaigns.resume(rt, paused.id, "kefu") == "scheduled"  # its time is still to come
    draft = (await campaigns.create(rt, kind="notice", project="camp", buildings="1", params={"content": "y"})).campaign
    assert (await campaigns.cancel(rt, draft.id, "kefu")).status == "cancelled"
    with pytest.raises(campaigns.CampaignError, match="已取消"):
        await campaigns.send(rt, draft.id, "kefu", local=True)

    # Test-send to the sender's own phone and WeChat: no delivery recorded.
    sent_before = len(sms.sent)
    assert await campaigns.test_send(rt, draft.id, "kefu", openid="oSTAFF") == {"wechat": "sent", "sms": "sent"}
    assert sms.sent[sent_before].phone == "13700000001" and wechat.template_messages[-1].touser == "oSTAFF"

    async with rt.db.session() as s:
        log = (await s.execute(sa.select(AuditLog.actor, AuditLog.action).where(
            AuditLog.target == f"campaign:{big.campaign.id}").order_by(AuditLog.id))).all()
    assert log == [("kefu", "campaign.create"), ("zhuguan", "campaign.approve"), ("kefu", "campaign.send")]
