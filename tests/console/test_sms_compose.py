"""Staff replying to an SMS conversation from the console: the compose box's live count (characters as the
owner's phone shows them, billed parts, cost), what the reply template makes of the text, and the refusals
(too long for an SMS, too long for the template) — through the real app, and typed in Chromium."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from bot.runtime import RUNTIME, Runtime
from bot.store.models import Conversation, Identity, Message, Project, SmsMessage
from channels.base import InboundMessage
from channels.sms.base import measure, segments
from tests.conftest import YezhuFactory
from tests.console.conftest import PASSWORD, js, login, set_password
from tests.console.live import Live, hand_over, new_page, screenshot

PHONE = "13800000001"  # 张三 in the demo data
SEQ = itertools.count(1)


def test_the_billing_rule_and_its_cost() -> None:
    assert [segments("字" * n) for n in (1, 70, 71, 134, 135, 500)] == [1, 1, 2, 2, 3, 8]
    assert measure("字" * 71, Decimal("0.045")).label() == "共71字 · 计2条 · 约0.09元"
    assert measure("字" * 500, Decimal("0.045")).label() == "共500字 · 计8条 · 约0.36元"
    assert measure("字" * 10, Decimal("0.05")).label() == "共10字 · 计1条 · 约0.05元"
    assert not measure("字" * 500, Decimal(0)).too_long and measure("字" * 501, Decimal(0)).too_long


async def sms_conversation(rt: Runtime, text: str = "我家楼道的灯坏了，麻烦找人来修一下") -> int:
    """The owner texts us (the engine's entry point, as the SMS webhook hands uplinks over); the
    conversation is then handed to staff. Returns its id."""
    accepted = await rt.engine.accept(InboundMessage(
        channel="sms", account=rt.settings.sms_provider, sender=PHONE, msg_id=f"up-{next(SEQ)}", kind="text",
        text=text))
    await accepted.replies  # type: ignore[union-attr]
    async with rt.db.session() as s:
        conv = (await s.execute(
            sa.select(Conversation).join(Identity, Identity.id == Conversation.identity_id)
            .where(Identity.channel == "sms", Identity.external_id == PHONE).order_by(Conversation.id.desc())
        )).scalars().first()
        assert conv is not None
        identity = await s.get_one(Identity, conv.identity_id)
    assert identity.owner_id is not None, "the carrier-verified phone identifies the registered owner"
    if conv.mode != "waiting":
        await hand_over(rt, conv.id)
    return conv.id


async def test_staff_see_what_an_sms_reply_costs_and_long_ones_are_refused(yezhu: YezhuFactory) -> None:
    client = await yezhu()
    rt = client.app[RUNTIME]
    conv_id = await sms_conversation(rt)
    csrf = await login(client, "kefu")
    assert (await client.post(f"/console/conversations/{conv_id}/claim", headers=js(csrf))).status == 200
    page = await (await client.get(f"/console/conversations/{conv_id}")).text()
    assert "该业主通过短信联系" in page and 'id="sms-meter"' in page

    async def preview(text: str) -> dict[str, Any]:
        resp = await client.post(f"/console/api/conversations/{conv_id}/sms_preview", headers=js(csrf),
                                 json={"text": text})
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]

    short = await preview("好的，明天上午师傅上门")
    assert short["text"] == "【物业客服】好的，明天上午师傅上门"  # the reply template as the phone shows it
    assert (short["chars"], short["segments"], short["cost"], short["ok"]) == (17, 1, "0.045", True)
    long = await preview("您好，" + "维修师傅明天上午九点到十一点之间上门检查楼道照明线路，" * 4)
    assert long["segments"] == segments(long["text"]) == 2 and long["cost"] == "0.09" and long["ok"]
    assert "计2条" in long["label"] and "0.09元" in long["label"]
    over_template = await preview("请" * 301)  # the demo reply template carries 300 characters
    assert not over_template["ok"] and "300字" in over_template["detail"]

    resp = await client.post(f"/console/conversations/{conv_id}/sms", headers=js(csrf), json={"text": "修" * 501})
    body = await resp.json()
    assert resp.status == 400 and "500字" in body["detail"] and "过长" in body["detail"]
    resp = await client.post(f"/console/conversations/{conv_id}/sms", headers=js(csrf), json={"text": "修" * 301})
    assert resp.status == 400 and "300字" in (await resp.json())["detail"]

    async with rt.db.session() as s, s.begin():  # a project's own price wins
        project = (await s.execute(sa.select(Project).order_by(Project.id))).scalars().first()
        assert project is not None
        project.settings = {**(project.settings or {}), "sms_price": "0.05"}
    assert (await preview("好的，明天上午师傅上门"))["cost"] == "0.05"

    text = "您好，" + "维修师傅明天上午九点到十一点之间上门检查楼道照明线路，" * 4
    expected = await preview(text)
    resp = await client.post(f"/console/conversations/{conv_id}/sms", headers=js(csrf), json={"text": text})
    assert resp.status == 200
    async with rt.db.session() as s:
        sms = (await s.execute(sa.select(SmsMessage).where(SmsMessage.kind == "reply",
                                                           SmsMessage.conversation_id == conv_id))).scalar_one()
        out = await s.get_one(Message, sms.message_id)
    assert sms.phone == PHONE and sms.text == expected["text"] and sms.segments == expected["segments"]
    assert out.media["segments"] == 2 and out.text == expected["text"]  # staff see what the owner received


async def test_the_compose_box_counts_as_staff_type(live: Live, browser: Any) -> None:
    conv_id = await sms_conversation(live.rt)
    await set_password(live.client, "kefu")
    agent = await new_page(browser, live, "kefu", PASSWORD)
    await agent.goto(f"{live.base}/console/conversations/{conv_id}")
    await agent.click("#claim")
    await agent.wait_for_selector("#sms-meter")
    from playwright.async_api import expect

    count, owner_text, send = agent.locator("#sms-count"), agent.locator("#sms-owner-text"), agent.locator("#send-reply")
    await agent.locator("#reply-text").press_sequentially("您好，师傅明天上午到", delay=20)
    await expect(owner_text).to_have_text("【物业客服】您好，师傅明天上午到")
    await expect(count).to_have_text("共16字 · 计1条 · 约0.045元")
    await agent.locator("#reply-text").press_sequentially("九点到十一点之间上门检查楼道照明线路，" * 4, delay=0)
    await expect(count).to_have_text("共92字 · 计2条 · 约0.09元")
    await screenshot(agent, "sms_compose")
    await agent.fill("#reply-text", "长" * 301)
    await expect(count).to_contain_text("300字")
    await expect(send).to_be_disabled()
    await agent.fill("#reply-text", "好的，已为您登记，师傅明天上午上门。")
    await expect(send).to_be_enabled()
    await send.click()
    await expect(agent.locator("#timeline")).to_contain_text("【物业客服】好的，已为您登记")
    await expect(agent.locator("#reply-text")).to_have_value("")
    await expect(count).to_have_text("共6字 · 计1条 · 约0.045元")
