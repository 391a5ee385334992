"""Every trigger of a callback survey, the delays, the channels (chat, WeChat template message, SMS with
reply-by-digit) and the sending window."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from actions import surveys
from actions.tickets import open_ticket
from bot.events import EventBatch
from bot.store.models import (
    Building,
    Campaign,
    House,
    Identity,
    Message,
    Owner,
    OwnerHouse,
    Project,
    SmsMessage,
    SurveyResponse,
    SurveyTemplate,
    utcnow,
)
from tests.conftest import YezhuFactory
from tests.sms.conftest import provider_settings, settle
from tests.sms.test_channel import push, uplink
from tests.surveys.conftest import CHINA, Desk, daytime, file_repair, invited


async def test_a_closed_complaint_gets_its_callback_and_a_reopened_ticket_loses_an_unsent_one(
        chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    reply = await zhang("我要投诉 楼下天天半夜装修 吵得睡不着")
    if "联系" in reply and "电话" in reply and "TS" not in reply:
        reply = await zhang("13800000001")
    [ticket] = [t for t in await zhang.tickets(owner_phone="13800000001") if t["kind"] == "complaint"]
    ticket_id = await desk.close(ticket["number"])
    [row] = await desk.responses()
    assert row.kind == "complaint" and row.status == "scheduled"
    opening = await invited(zhang, desk)
    assert ticket["number"] in opening and "投诉处理的总体满意度" in opening
    # A repair closed, then reopened by staff before its invitation went out: the callback is cancelled.
    number = await file_repair(zhang, "客厅灯不亮了")
    repair_id = await desk.close(number)
    assert (await desk.post(f"/tickets/{repair_id}/reopen", reason="业主电话反映仍不亮")).status == 200
    rows = await desk.responses(kind="repair")
    assert [r.status for r in rows] == ["cancelled"]
    assert ticket_id != repair_id


async def test_the_owner_accepting_the_work_closes_it_and_schedules_the_callback(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    number = await file_repair(zhang)
    await desk.close(number, verbs=("dispatch", "complete"))  # complete asks the owner to accept
    assert (await desk.ticket(number)).status == "awaiting_acceptance"
    reply = await zhang("验收通过 谢谢")
    assert number in reply and "办结" in reply and "评价" in reply
    ticket = await desk.ticket(number)
    assert ticket.status == "closed" and ticket.closed_at is not None
    [row] = await desk.responses()
    assert row.kind == "repair" and row.status == "scheduled" and row.ticket_id == ticket.id
    assert "1/6" in await invited(zhang, desk)


async def test_delay_per_project_and_kind_and_the_sending_window(yezhu: YezhuFactory, tmp_path: Any) -> None:
    config = tmp_path / "yezhu.yml"
    config.write_text("surveys:\n  delay: {repair: 600}\n  window: '09:00-20:00'\n"
                      "  projects:\n    demo: {delay: {repair: 3600}}\n", encoding="utf-8")
    client = await yezhu(config=str(config))
    desk = Desk(client)
    rt = desk.rt
    night = dt.datetime(2026, 12, 2, 22, 0, tzinfo=CHINA).astimezone(dt.UTC)
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        project = (await s.execute(sa.select(Project).where(Project.code == "demo"))).scalar_one()
        house = (await s.execute(sa.select(House).join(Building).where(Building.project_id == project.id)
                                 .order_by(House.id).limit(1))).scalar_one()
        owner_id = await s.scalar(sa.select(OwnerHouse.owner_id).where(OwnerHouse.house_id == house.id))
        ticket = await open_ticket(s, kind="repair", project=project, house=house, owner_id=owner_id,
                                   description="水龙头滴水", category="plumbing", now=night)
        row = await surveys.schedule(rt, s, batch, kind="repair", owner_id=owner_id, project_id=project.id,
                                     house_id=house.id, ticket=ticket, now=night)
        assert row is not None and row.due_at == night + dt.timedelta(hours=1)  # the project's own delay
        assert surveys.config(rt.settings)["delay"]["repair"] == 600
        survey_id = row.id
    # Due at 23:00: outside the window, the invitation waits for 09:00.
    assert await surveys.invite(rt, survey_id, now=night + dt.timedelta(hours=1)) == "deferred"
    async with rt.db.session() as s:
        row = await s.get(SurveyResponse, survey_id)
        assert row is not None and row.status == "scheduled"
        assert row.due_at is not None and row.due_at.astimezone(CHINA).hour == 9
    # YEZHU_SURVEY_DELAY overrides every project's delay.
    client2 = await yezhu(config=str(config), survey_delay=5)
    assert surveys.delay(Desk(client2).rt.settings, surveys.config(rt.settings), "repair") == dt.timedelta(seconds=5)


async def test_a_house_handed_over_gets_its_handover_survey_once(desk: Desk) -> None:
    rt = desk.rt
    now = daytime()
    today = now.astimezone(CHINA).date()
    async with rt.db.session() as s, s.begin():
        # 王五's house is handed over today (the roster import or staff set the date).
        owner_id = await desk.owner_id("13800000003")
        house_id = await s.scalar(sa.select(OwnerHouse.house_id).where(OwnerHouse.owner_id == owner_id))
        await s.execute(sa.update(House).where(House.id == house_id).values(handover_date=today))
    assert await surveys.schedule_handovers(rt, now) == 1
    assert await surveys.schedule_handovers(rt, now) == 0
    [row] = await desk.responses(kind="handover")
    assert row.house_id == house_id and row.owner_id == owner_id and row.status == "scheduled"
    async with rt.db.session() as s:
        template = await s.get(SurveyTemplate, row.template_id)
        assert template is not None and [i["code"] for i in template.items[:3]] == ["overall", "rebuy", "recommend"]


async def test_an_owner_outside_the_chat_window_gets_the_wechat_template_message(chat: Any, desk: Desk) -> None:
    li = chat("oDEMO0002")
    await li("厨房水管漏水")
    number = await file_repair(li, "1", visit="明天下午")  # 李四 has two homes: the first
    await desk.close(number)
    async with desk.rt.db.session() as s, s.begin():  # 李四 last wrote three days ago
        await s.execute(sa.update(Identity).where(Identity.external_id == "oDEMO0002")
                        .values(last_inbound_at=utcnow() - dt.timedelta(days=3)))
    assert (await desk.invite())["invited"] == 1
    async with desk.rt.db.session() as s:
        message = (await s.execute(sa.select(Message).where(Message.direction == "out")
                                   .order_by(Message.id.desc()).limit(1))).scalar_one()
    assert message.kind == "template" and message.media["wechat_template"]["template_id"] == "DEMO-TPL-survey"
    [row] = await desk.responses()
    assert row.status == "invited" and row.channel == "wechat"
    reply = await li("5")  # the owner answers in the chat: the survey goes on there
    assert "2/6" in reply


async def test_sms_reply_by_digit(yezhu: YezhuFactory, fake: Any) -> None:
    provider, endpoint = fake
    client = await yezhu(survey_delay=0, **provider_settings("aliyun", endpoint, provider))
    desk = Desk(client)
    rt = desk.rt
    async with rt.db.session() as s, s.begin():  # 王五: not on WeChat; his repair was opened by phone
        owner_id = await desk.owner_id("13800000003")
        house = (await s.execute(sa.select(House).join(OwnerHouse).where(OwnerHouse.owner_id == owner_id))).scalar_one()
        project = await s.get(Project, (await s.get(Building, house.building_id)).project_id)  # type: ignore[union-attr]
        ticket = await open_ticket(s, kind="repair", project=project, house=house, owner_id=owner_id,
                                   description="入户门锁坏了", category="door_window", contact_phone="13800000003")
        number = ticket.number
    await desk.close(number)
    assert (await desk.invite())["invited"] == 1
    await settle(rt)
    invitation = [m for m in provider.sent if m.phone == "13800000003"][-1]
    assert invitation.template == "SMS_460001011" and invitation.params["number"] == number
    [row] = await desk.responses()
    assert row.channel == "sms" and row.status == "invited"
    assert (await push(client, "aliyun", "inbound", uplink("aliyun", "13800000003", "2"))).status == 200
    await settle(rt)
    async with rt.db.session() as s:
        texts = [t for t in (await s.execute(sa.select(SmsMessage.text).where(
            SmsMessage.phone == "13800000003", SmsMessage.direction == "out").order_by(SmsMessage.id))).scalars()]
    assert "哪里做得不好" in texts[-1]
    await push(client, "aliyun", "inbound", uplink("aliyun", "13800000003", "师傅修完锁还是卡，换了个便宜货"))
    await settle(rt)
    [row] = await desk.responses()
    assert row.status == "complete" and row.scores == {"overall": 2} and "便宜货" in row.answers["overall"]
    assert row.recovery_ticket_id is not None and row.stage == "磨合期"


async def test_an_invitation_a_campaign_sent_is_answered_in_chat(chat: Any, desk: Desk) -> None:
    zhang = chat("oDEMO0001")
    await zhang("你好")
    rt = desk.rt
    async with rt.db.session() as s, s.begin():
        template = await surveys.template_for(s, "periodic", None)
        assert template is not None
        owner_id = await desk.owner_id("13800000001")
        campaign = Campaign(name="2026年居住体验调查", kind="survey", text="诚邀您参加居住体验调查，回复1-5分即可",
                            params={"template": template.code}, status="done")
        s.add(campaign)
        await s.flush()
        s.add(SurveyResponse(template_id=template.id, owner_id=owner_id, kind="periodic", campaign_id=campaign.id,
                             status="invited", channel="wechat", invited_at=utcnow()))
    reply = await zhang("4分吧")
    assert "2/8" in reply and "再次购房" in reply
    await zhang("5")
    [row] = await desk.responses(kind="periodic")
    assert row.status == "in_progress" and row.scores == {"overall": 4, "rebuy": 5}


async def test_an_owner_no_channel_reaches_is_left_to_the_desk_to_phone(desk: Desk) -> None:
    rt = desk.rt
    async with rt.db.session() as s, s.begin():  # 王五: not on WeChat, and opted out of SMS notices
        owner_id = await desk.owner_id("13800000003")
        await s.execute(sa.update(Owner).where(Owner.id == owner_id).values(sms_opt_out=True))
        house = (await s.execute(sa.select(House).join(OwnerHouse).where(OwnerHouse.owner_id == owner_id))).scalar_one()
        project = await s.get(Project, (await s.get(Building, house.building_id)).project_id)  # type: ignore[union-attr]
        number = (await open_ticket(s, kind="complaint", project=project, house=house, owner_id=owner_id,
                                    description="保安态度差", category="staff_attitude")).number
    await desk.close(number)
    assert (await desk.invite())["invited"] == 0
    [row] = await desk.responses()
    assert row.status == "expired" and row.invited_at is None and "退订" in (row.comment or "")
    page = await (await desk.client.get("/console/callbacks")).text()
    due = page[page.index('id="due-callbacks"'):page.index('id="recovery-tickets"')]
    assert number in due and "请电话回访" in due
