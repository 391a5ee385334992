"""The desk's flows end to end over WeChat (issue 4): repair, binding, certificates, complaints,
knowledge answers, interruptions, emergencies, hand-over."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa

from bot.store.models import Conversation, UnansweredQuestion, VerificationCode
from tests.conversations.conftest import Chat


def code_in(sms: str) -> str:
    m = re.search(r"(\d{6})", sms)
    assert m, sms
    return m.group(1)


async def test_repair_for_a_bound_owner_asks_only_for_what_is_missing(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    reply = await zhang("3栋2单元501卫生间漏水了，麻烦派人来看看")
    assert "上门" in reply and "房号" not in reply  # house and phone are known: only the visit time is missing
    reply = await zhang("明天上午")
    assert "请确认报修信息" in reply and "3栋2单元501" in reply and "138****0001" in reply
    assert "5年" in reply and "免费维修" in reply  # wet-room leak: 5-year waterproofing warranty from 2025-06-01
    reply = await zhang("确认")
    number = re.search(r"BX\d{8}-\d{4}", reply)
    assert number, reply
    tickets = await zhang.tickets(owner_phone="13800000001")
    assert [t["number"] for t in tickets] == [number.group()]
    t = tickets[0]
    assert t["kind"] == "repair" and t["house"] == "demo:3栋2单元501" and t["status"] == "new"
    assert t["warranty"]["covered"] is True and t["warranty"]["item"] == "waterproofing"
    assert t["visit_time"].startswith("明天上午（") and t["contact_phone"] == "13800000001"
    assert t["timeline"][0]["kind"] == "created"


async def test_several_slots_in_one_message_go_straight_to_confirmation(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    reply = await zhang("我家入户门锁坏了打不开，周六上午来修，电话13912345678")
    assert "请确认报修信息" in reply and "139****5678" in reply and "周六上午" in reply


async def test_public_area_repair_needs_no_house_or_warranty(chat: Any) -> None:
    stranger: Chat = chat("oPUBLIC001")
    reply = await stranger("5栋电梯坏了一直不动")
    assert "手机号" in reply or "上门" in reply
    if "手机号" in reply:
        reply = await stranger("13700001111")
    if "上门" in reply:
        reply = await stranger("随时")
    assert "请确认报修信息" in reply and "公共区域" in reply and "物业公司负责" in reply
    reply = await stranger("确认")
    assert re.search(r"BX\d{8}-\d{4}", reply)


async def test_unbound_owner_binds_with_sms_code_wrong_then_right(chat: Any) -> None:
    wang: Chat = chat("oWANGWU01")
    reply = await wang("12栋3单元1804的窗户关不上")
    assert "手机号" in reply and "验证" in reply
    reply = await wang("13800000003")
    assert "验证码" in reply
    code = code_in(await wang.last_sms("13800000003"))
    wrong = "000000" if code != "000000" else "111111"
    reply = await wang(wrong)
    assert "不正确" in reply
    reply = await wang(code)
    assert "验证成功" in reply and "王五" in reply
    assert "上门" in reply  # the repair resumes where it stopped
    reply = await wang("下午都在家")
    assert "请确认报修信息" in reply and "12栋3单元1804" in reply
    assert "1年" in reply  # doors and windows: 1 year from handover 2026-10-01, still covered


async def test_expired_code_is_refused(chat: Any) -> None:
    wang: Chat = chat("oWANGWU02")
    await wang("我的房产证办好了吗")
    await wang("13800000003")
    code = code_in(await wang.last_sms("13800000003"))
    async with wang.rt.db.session() as s, s.begin():
        await s.execute(sa.update(VerificationCode).values(
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    reply = await wang(code)
    assert "过期" in reply
    conv = await wang.conversation()
    assert conv["owner_id"] is None


async def test_certificate_status_is_told_only_to_the_verified_owner(chat: Any) -> None:
    stranger: Chat = chat("oSTRANGER1")
    reply = await stranger("3栋2单元501的房产证办好了吗")
    assert "可以领取" not in reply and "验证" in reply
    reply = await stranger("13800000002")  # someone else's registered phone: the code goes to that phone only
    assert "验证码" in reply
    reply = await stranger("123456")
    assert "可以领取" not in reply and "办理中" not in reply

    zhang: Chat = chat("oDEMO0001")
    reply = await zhang("我的房产证办好了吗")
    assert "张三" in reply and "可以领取" in reply and "客服中心" in reply and "身份证" in reply


async def test_owner_with_two_houses_sees_both_certificates_and_chooses_for_a_repair(chat: Any) -> None:
    li: Chat = chat("oDEMO0002")
    reply = await li("我家房产证什么时候能拿到")
    assert "8栋1单元1203" in reply and "办理中" in reply and "8栋2单元601" in reply
    reply = await li("厨房水管漏水了")
    assert "哪一套" in reply and "1. 8栋1单元1203" in reply
    reply = await li("2")
    assert "8栋2单元601" in reply


async def test_general_certificate_question_comes_from_the_knowledge_base(chat: Any) -> None:
    stranger: Chat = chat("oKB000001")
    reply = await stranger("办房产证需要带什么材料")
    assert "身份证" in reply and "验证" not in reply


async def test_question_in_the_middle_of_a_form_is_answered_and_the_form_resumes(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    await zhang("卫生间地漏堵了")
    reply = await zhang("对了物业费怎么交")
    assert "微信" in reply and "继续刚才的报修" in reply
    reply = await zhang("后天下午")
    assert "请确认报修信息" in reply and "地漏" in reply


async def test_cancel_leaves_no_ticket(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    await zhang("客厅的灯不亮了")
    reply = await zhang("算了")
    assert "取消" in reply
    assert await zhang.tickets(owner_phone="13800000001") == []


async def test_another_repair_opens_a_second_ticket(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    await zhang("主卧空调不制冷")
    await zhang("还有，楼道灯也坏了")
    reply = await zhang("明天下午")
    assert "请确认报修信息" in reply
    reply = await zhang("确认")
    assert "另一个问题" in reply
    for _ in range(4):
        if re.search(r"BX\d{8}-\d{4}.*\n?.*BX", reply) or "请确认报修信息" in reply:
            break
        reply = await zhang("随时")
    if "请确认报修信息" in reply:
        reply = await zhang("确认")
    tickets = await zhang.tickets(owner_phone="13800000001", kind="repair")
    assert len(tickets) == 2


async def test_emergency_gets_safety_advice_duty_phone_and_an_urgent_ticket(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    reply = await zhang("家里厨房燃气味很重怎么办")
    assert "燃气总阀" in reply and "0571-88889999" in reply and "紧急" in reply
    tickets = await zhang.tickets(owner_phone="13800000001")
    assert tickets[0]["priority"] == "urgent"
    assert (await zhang.conversation())["mode"] == "waiting"


async def test_serious_complaint_goes_to_a_person(chat: Any) -> None:
    li: Chat = chat("oDEMO0002")
    reply = await li("报修三次了都没人来处理，再不解决我就打12345投诉你们")
    assert "抱歉" in reply and "主管" in reply
    tickets = await li.tickets(owner_phone="13800000002", kind="complaint")
    assert tickets[0]["priority"] == "serious"
    assert (await li.conversation())["mode"] == "waiting"


async def test_three_owners_on_one_matter_become_a_group_incident(chat: Any) -> None:
    replies = []
    for n in range(3):
        owner: Chat = chat(f"oGROUP000{n}")
        replies.append(await owner("小区地下车库停车费乱收费，太不合理了"))
    assert "专项" in replies[-1] and "统一负责" in replies[-1]
    group = [t for t in await owner.tickets(kind="complaint") if t["priority"] == "group" and t["group_id"] is None]
    assert len(group) == 1 and group[0]["assignee"] == "客服主管王经理"
    members = [t for t in await owner.tickets(kind="complaint") if t["group_id"] == group[0]["id"]]
    assert len(members) == 3


async def test_unanswered_question_is_recorded_for_the_staff(chat: Any) -> None:
    stranger: Chat = chat("oUNKNOWN1")
    reply = await stranger("小区附近哪家幼儿园比较好，学费大概多少")
    assert "客服" in reply
    async with stranger.rt.db.session() as s:
        rows = (await s.execute(sa.select(UnansweredQuestion.text))).scalars().all()
        mode = (await s.execute(sa.select(Conversation.mode))).scalars().all()
    assert rows == ["小区附近哪家幼儿园比较好，学费大概多少"]
    assert "waiting" in mode


async def test_asking_for_a_person_hands_over_honestly(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    reply = await zhang("我要找人工客服")
    assert ("人工客服" in reply) and ("稍候" in reply or "非工作时间" in reply)
    assert (await zhang.conversation())["mode"] == "waiting"


async def test_two_misunderstandings_offer_a_person(chat: Any) -> None:
    stranger: Chat = chat("oMISS0001")
    await stranger("啊啊啊啊")
    reply = await stranger("嗯嗯哦哦")
    assert "人工" in reply


async def test_my_tickets_lists_open_tickets_with_next_step(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    await zhang("阳台推拉门关不上")
    await zhang("明天上午")
    await zhang("确认")
    reply = await zhang("我报修的怎么样了")
    assert "未完结" in reply and "待派工" in reply and "阳台推拉门" in reply


async def test_idle_form_expires_politely(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    await zhang("卧室墙面有裂缝")
    async with zhang.rt.db.session() as s, s.begin():
        conv = (await s.execute(sa.select(Conversation))).scalars().first()
        state = dict(conv.state)
        state["form"] = dict(state["form"], updated=(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat())
        conv.state = state
    reply = await zhang("你好")
    assert "超时" in reply


async def test_emergency_texts_the_on_duty_staff(chat: Any) -> None:
    stranger: Chat = chat("oEMERG001")
    reply = await stranger("3栋电梯困人了，有人被关在里面")
    assert "紧急呼叫按钮" in reply
    sms = await stranger.last_sms("13900000013")  # 工程师老陈 is on duty in the demo
    assert "值班提醒" in sms and "电梯" in sms and re.search(r"BX\d{8}-\d{4}", sms)


async def test_photos_sent_during_a_repair_are_attached_to_the_ticket(chat: Any) -> None:
    zhang: Chat = chat("oDEMO0001")
    await zhang("次卧墙面瓷砖裂了")
    reply = await zhang.wechat.send_image(pic_url="http://mmbiz.qpic.cn/crack.jpg", media_id="MEDIA123")
    assert reply and "照片已收到" in reply
    await zhang("明天上午")
    reply = await zhang("确认")
    assert "BX" in reply
    ticket = (await zhang.tickets(owner_phone="13800000001"))[0]
    assert ticket["media"][0]["media_id"] == "MEDIA123"
