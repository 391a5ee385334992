"""The WeChat webhook through the real app, engine and database (DESIGN.md hot path).

A test policy echoes the text so these platform tests do not depend on the dialogue policy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.policy import Turn
from bot.runtime import Runtime
from bot.store.models import Message
from channels.base import OutboundMessage
from tests.conftest import AES_KEY, WECHAT, make_settings
from tests.fakes.wechat_client import WeChatOwner
from tests.fakes.wechat_server import FakeWeChatAPI


class EchoPolicy:
    def __init__(self, delay: float = 0.0, replies: int = 1) -> None:
        self.delay, self.replies = delay, replies

    async def respond(self, turn: Turn) -> list[OutboundMessage]:
        if self.delay:
            await asyncio.sleep(self.delay)
        if turn.inbound.kind == "event":
            return [OutboundMessage(f"事件:{turn.inbound.event}")] if turn.inbound.event != "unsubscribe" else []
        return [OutboundMessage(f"收到[{n}]：{turn.inbound.text}") for n in range(self.replies)]


@pytest.fixture
async def api() -> Any:
    fake = FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]})
    await fake.start()
    yield fake
    await fake.close()


async def start(aiohttp_client: Any, db_url: str, api: FakeWeChatAPI, *, policy: Any = None, **overrides: Any
                ) -> tuple[TestClient[Any, Any], Runtime]:
    settings = make_settings(database_url=db_url, wechat_api_base=api.base_url, **overrides)
    rt = Runtime(settings, policy=policy or EchoPolicy(), nlu=None)
    client = await aiohttp_client(create_app(settings, runtime=rt))
    return client, rt


def owner(client: Any, mode: str = "plain", openid: str = "oOWNER0001") -> WeChatOwner:
    aes = AES_KEY if mode != "plain" else None
    return WeChatOwner(client, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"], aes_key=aes,
                       openid=openid, mode=mode)  # type: ignore[arg-type]


async def messages(rt: Runtime) -> list[Message]:
    async with rt.db.session() as s:
        return list((await s.execute(sa.select(Message).order_by(Message.id))).scalars())


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_text_is_stored_and_answered_in_every_mode(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI, mode: str
) -> None:
    client, rt = await start(aiohttp_client, db_url, api, wechat_aes_key=AES_KEY if mode != "plain" else None)
    reply = await owner(client, mode).send_text("卫生间漏水了 <急> & ]]> 请处理")
    assert reply == "收到[0]：卫生间漏水了 <急> & ]]> 请处理"
    stored = await messages(rt)
    assert [(m.direction, m.channel, m.kind) for m in stored] == [("in", "wechat", "text"), ("out", "wechat", "text")]
    assert stored[0].text == "卫生间漏水了 <急> & ]]> 请处理" and stored[1].delivery == "reply"


async def test_every_message_type_reaches_the_engine(aiohttp_client: Any, sqlite_url: str, api: FakeWeChatAPI) -> None:
    client, rt = await start(aiohttp_client, sqlite_url, api, wechat_aes_key=AES_KEY)
    o = owner(client, "safe")
    assert await o.subscribe() == "事件:subscribe"
    assert await o.send_voice("楼道灯不亮") == "收到[0]：楼道灯不亮"
    await o.send_image()
    await o.send_location(30.27, 120.15, "示范花园3栋")
    await o.send_link("物业通知", "停水通知", "https://example.com/n")
    assert await o.click("REPAIR") == "事件:click"
    await o.unsubscribe()
    kinds = [(m.kind, m.media.get("event")) for m in await messages(rt) if m.direction == "in"]
    assert kinds == [("event", "subscribe"), ("voice", None), ("image", None), ("location", None), ("link", None),
                     ("event", "click"), ("event", "unsubscribe")]


async def test_three_concurrent_retries_store_one_message_and_reply_once(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api, policy=EchoPolicy(delay=0.05))
    o = owner(client)
    xml = o.text_xml("电梯停了", msg_id=6054768590064713728)
    responses = await asyncio.gather(*(o.post(xml) for _ in range(3)))
    replies = [o.reply_fields(r) for r in responses]
    assert sum(1 for r in replies if r) == 1, replies
    assert all(r.status == 200 for r in responses)
    stored = await messages(rt)
    assert [m.direction for m in stored] == ["in", "out"]
    text = await (await client.get("/metrics")).text()
    assert 'yezhu_dedup_hits_total{channel="wechat"} 2.0' in text


async def test_slow_answer_goes_out_through_the_customer_service_api(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api, policy=EchoPolicy(delay=0.4), reply_budget=0.1)
    o = owner(client, openid="oSLOW0001")
    assert await o.send_text("燃气味很重") is None  # `success` inside the budget
    sent = await api.wait_for_messages(1, timeout=10)
    assert sent[0].touser == "oSLOW0001" and sent[0].content == "收到[0]：燃气味很重"
    await rt.engine.drain()
    for _ in range(50):
        out = [m for m in await messages(rt) if m.direction == "out"]
        if out and out[0].delivery == "sent":
            break
        await asyncio.sleep(0.05)
    assert out[0].delivery == "sent" and out[0].attempts == 1


async def test_several_replies_are_all_sent_through_the_api(aiohttp_client: Any, sqlite_url: str, api: FakeWeChatAPI) -> None:
    client, _rt = await start(aiohttp_client, sqlite_url, api, policy=EchoPolicy(replies=2))
    assert await owner(client, openid="oTWO0001").send_text("你好") is None
    sent = await api.wait_for_messages(2, timeout=10)
    assert [m.content for m in sent] == ["收到[0]：你好", "收到[1]：你好"]


async def test_outside_the_48_hour_window_is_recorded(aiohttp_client: Any, sqlite_url: str, api: FakeWeChatAPI) -> None:
    client, rt = await start(aiohttp_client, sqlite_url, api, policy=EchoPolicy(delay=0.3), reply_budget=0.05)
    api.set_out_of_window("oLATE0001")
    await owner(client, openid="oLATE0001").send_text("在吗")
    for _ in range(100):
        out = [m for m in await messages(rt) if m.direction == "out"]
        if out and out[0].delivery == "failed":
            break
        await asyncio.sleep(0.05)
    assert out[0].delivery == "failed" and "45015" in (out[0].delivery_error or "")
    assert api.messages == []


async def test_token_expiry_and_transient_errors_are_retried(aiohttp_client: Any, sqlite_url: str, api: FakeWeChatAPI) -> None:
    client, _rt = await start(aiohttp_client, sqlite_url, api, policy=EchoPolicy(delay=0.2), reply_budget=0.05)
    o = owner(client, openid="oRETRY001")
    await o.send_text("第一条")
    await api.wait_for_messages(1, timeout=10)
    api.expire_token()
    api.fail_next_sends(2, errcode=-1)
    await o.send_text("第二条")
    sent = await api.wait_for_messages(2, timeout=15)
    assert [m.content for m in sent] == ["收到[0]：第一条", "收到[0]：第二条"]
    assert api.tokens_issued == 2


@pytest.mark.parametrize(
    "case",
    ["forged_signature", "stale_timestamp", "other_appid", "malformed", "bomb", "oversized"],
)
async def test_bad_requests_are_refused_and_store_nothing(
    aiohttp_client: Any, sqlite_url: str, api: FakeWeChatAPI, case: str
) -> None:
    client, rt = await start(aiohttp_client, sqlite_url, api, wechat_aes_key=AES_KEY)
    o = owner(client, "safe")
    xml = o.text_xml("你好")
    if case == "forged_signature":
        response = await o.post(xml, query={"msg_signature": "0" * 40})
    elif case == "stale_timestamp":
        response = await o.post(xml, timestamp="1500000000")
    elif case == "other_appid":
        response = await o.post(xml, encrypt_app_id="wxANOTHERAPP00000")
    elif case == "malformed":
        response = await o.post(xml, mode="plain", body=b"<xml><ToUserName>", query={"encrypt_type": None})
    elif case == "bomb":
        bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
                "<xml><Content>&lol2;</Content></xml>")
        response = await owner(client, "plain").post(bomb, mode="plain")
    else:
        response = await o.post(xml, body=b"<xml>" + b"x" * 70_000 + b"</xml>")
    assert 400 <= response.status < 500, (case, response.status)
    assert await messages(rt) == []
