"""Passive replies inside the budget, ``success`` + ``defer()`` outside it, and what WeChat gets when the
engine says Duplicate or fails."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest

from channels.base import Accepted, InboundMessage, OutboundMessage
from channels.wechat import cdata_safe, text_reply_xml
from tests.fakes.wechat_client import WeChatOwner
from tests.wechat.conftest import OPENID, ChannelFactory, FakeSink, FrozenClock, owner_for


async def test_passive_reply_within_the_budget(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.replies = [OutboundMessage("已为您登记报修，工单号 R-0001")]
    response = await owner.post(owner.text_xml("卫生间漏水"))

    assert response.status == 200
    assert response.content_type == "application/xml"
    fields = owner.reply_fields(response)
    assert fields is not None
    assert fields["MsgType"] == "text"
    assert fields["Content"] == "已为您登记报修，工单号 R-0001"
    assert fields["ToUserName"] == OPENID  # back to the owner
    assert fields["FromUserName"] == owner.oa_id  # from the account
    assert fields["CreateTime"] == "1700000000"
    assert sink.deferred == 0
    if owner.mode != "plain":
        assert "<Encrypt>" in response.body and "卫生间" not in response.body


async def test_send_text_returns_the_reply(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.replies = [OutboundMessage("您好，请问有什么可以帮您？")]
    assert await owner.send_text("你好") == "您好，请问有什么可以帮您？"
    assert sink.last.text == "你好"


TRICKY = [
    "a]]>b",
    "]]>",
    "]]]]><![CDATA[>",
    "<script>alert(1)</script> & &amp; &lt;",
    "<![CDATA[x]]>",
    "多行\n回复\n\n  缩进",
    "emoji \U0001f3e0\U0001f527 and 中文，标点。",
    "</Content></xml><xml><Content>injected",
]


@pytest.mark.parametrize("text", TRICKY)
async def test_reply_text_round_trips_exactly(owner: WeChatOwner, sink: FakeSink, text: str) -> None:
    sink.replies = [OutboundMessage(text)]
    response = await owner.post(owner.text_xml("?"))
    fields = owner.reply_fields(response)  # parsed with defusedxml, decrypted in safe mode
    assert fields is not None
    assert fields["Content"] == text


def test_cdata_safe_splits_the_terminator() -> None:
    assert cdata_safe("a]]>b") == "a]]]]><![CDATA[>b"
    root = SafeET.fromstring(f"<x><![CDATA[{cdata_safe('a]]>b]]>')}]]></x>")
    assert root.text == "a]]>b]]>"


@pytest.mark.parametrize(
    ("source", "target", "content"),
    [("gh_0123456789ab", OPENID, "物业费可以在公众号缴纳。\n还有什么可以帮您？"), ("", "", "x"),
     ("gh_x", "o<&>'\"", cdata_safe("a]]>b\r\nc {} {0} %s"))],
)
def test_text_reply_xml_is_what_wechatpy_renders(source: str, target: str, content: str) -> None:
    from wechatpy.replies import TextReply

    expected = TextReply(source=source, target=target, content=content, time=1796160841).render()
    assert text_reply_xml(source=source, target=target, content=content, create_time=1796160841) == expected


def test_cdata_safe_drops_what_xml_cannot_carry() -> None:
    assert cdata_safe("bell\x07 null\x00 ok\ttab\r\nline") == "bell null ok\ttab\nline"


async def test_reply_with_control_characters_is_still_valid_xml(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.replies = [OutboundMessage("第一行\r\n第二行\x0b")]
    fields = owner.reply_fields(await owner.post(owner.text_xml("?")))
    assert fields is not None
    assert fields["Content"] == "第一行\n第二行"


async def test_a_hostile_sender_id_cannot_break_the_reply(owner: WeChatOwner, sink: FakeSink) -> None:
    owner.openid = "o]]></ToUserName><Evil>1</Evil><x><![CDATA["
    fields = owner.reply_fields(await owner.post(owner.text_xml("hi")))
    assert fields is not None
    assert fields["ToUserName"] == owner.openid
    assert "Evil" not in fields


async def test_slow_engine_gets_success_and_defer(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    client = await make_client(reply_budget=0.05)
    owner = owner_for(client, "safe", clock)
    sink.delay = 0.3

    response = await owner.post(owner.text_xml("物业费怎么交"))

    assert response.status == 200
    assert response.body == "success"
    assert sink.deferred == 1
    # the engine's work was not cancelled: it finishes and its replies are there to be sent
    replies = await asyncio.wait_for(sink.tasks[0], 2)
    assert [r.text for r in replies] == ["收到"]


async def test_budget_counts_from_the_request_not_from_accept(
    make_client: ChannelFactory, clock: FrozenClock
) -> None:
    class SlowAcceptSink(FakeSink):
        async def accept(self, message: InboundMessage) -> Any:
            await asyncio.sleep(0.15)  # e.g. a slow commit
            return await super().accept(message)

    sink = SlowAcceptSink(delay=0.1)
    client = await make_client(sink=sink, reply_budget=0.2)
    owner = owner_for(client, "plain", clock)
    assert (await owner.post(owner.text_xml("hi"))).body == "success"
    assert sink.deferred == 1
    await asyncio.gather(*sink.tasks)


async def test_several_replies_are_all_deferred(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.replies = [OutboundMessage("第一条"), OutboundMessage("第二条")]
    response = await owner.post(owner.text_xml("?"))
    assert response.body == "success"
    assert sink.deferred == 1


@pytest.mark.parametrize("replies", [[], [OutboundMessage("   ")]])
async def test_no_reply_is_success_without_defer(
    owner: WeChatOwner, sink: FakeSink, replies: list[OutboundMessage]
) -> None:
    sink.replies = replies
    response = await owner.post(owner.text_xml("谢谢"))
    assert (response.status, response.body) == (200, "success")
    assert sink.deferred == 0


async def test_rich_reply_falls_back_to_its_text(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.replies = [OutboundMessage("办证须知", kind="news", data={"url": "https://example.com"})]
    assert await owner.send_text("办证需要什么") == "办证须知"


async def test_duplicate_is_acknowledged_with_success(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.behaviour = "duplicate"
    response = await owner.post(owner.text_xml("重复"))
    assert (response.status, response.body) == (200, "success")
    assert len(sink.messages) == 1


async def test_engine_failure_is_503_so_wechat_retries(
    owner: WeChatOwner, sink: FakeSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.behaviour = "raise"
    with caplog.at_level(logging.WARNING, logger="yezhu.wechat"):
        response = await owner.post(owner.text_xml("hi"))
    assert response.status == 503
    assert any("503" in r.getMessage() for r in caplog.records)
    assert OPENID not in caplog.text


async def test_failing_replies_answer_success_and_defer(owner: WeChatOwner, sink: FakeSink) -> None:
    sink.behaviour = "fail_replies"
    response = await owner.post(owner.text_xml("hi"))
    assert (response.status, response.body) == (200, "success")
    assert sink.deferred == 1


async def test_replies_as_a_bare_coroutine(make_client: ChannelFactory, clock: FrozenClock) -> None:
    done = asyncio.Event()

    class CoroutineSink(FakeSink):
        async def accept(self, message: InboundMessage) -> Any:
            self.messages.append(message)

            async def replies() -> list[OutboundMessage]:
                await asyncio.sleep(self.delay)
                done.set()
                return [OutboundMessage("好的")]

            return Accepted(replies=replies(), defer=self._defer)

    fast = CoroutineSink()
    client = await make_client(sink=fast)
    assert await owner_for(client, "plain", clock).send_text("hi") == "好的"

    slow = CoroutineSink(delay=0.2)
    client = await make_client(sink=slow, reply_budget=0.02)
    assert await owner_for(client, "plain", clock).send_text("hi") is None
    assert slow.deferred == 1
    await asyncio.wait_for(done.wait(), 2)  # kept alive after the request ended


async def test_on_rejected_is_told_about_engine_failures(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    seen: list[tuple[str, str]] = []
    client = await make_client(on_rejected=lambda a, r: seen.append((a, r)))
    sink.behaviour = "raise"
    await owner_for(client, "plain", clock).post(owner_for(client, "plain", clock).text_xml("x"))
    assert seen == [("default", "sink_error")]


async def test_a_failing_metrics_hook_does_not_change_the_answer(
    make_client: ChannelFactory, sink: FakeSink, clock: FrozenClock
) -> None:
    def broken(account: str, reason: str) -> None:
        raise RuntimeError("metrics down")

    client = await make_client(on_rejected=broken)
    owner = owner_for(client, "plain", clock)
    assert (await owner.post(owner.text_xml("x"), query={"signature": "0" * 40})).status == 403


async def test_a_reply_that_cannot_be_rendered_is_deferred(
    owner: WeChatOwner, sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.wechat import WeChatChannel

    def boom(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(WeChatChannel, "_render_reply", boom)
    response = await owner.post(owner.text_xml("hi"))
    assert (response.status, response.body) == (200, "success")
    assert sink.deferred == 1
