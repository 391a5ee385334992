"""The notifier's channel choice with WeChat template messages, on both databases: WeChat inside its
48-hour window, else the kind's template message to a follower, else SMS — through the real notifier,
the delivery job and WeChatSender against the fake WeChat API speaking the documented protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from actions.notify import Notice
from bot.events import EventBatch
from bot.runtime import RUNTIME, Runtime
from bot.store.models import Identity, Message, Owner, SmsMessage, utcnow
from channels.base import OutboundMessage
from tests.conftest import YezhuFactory
from tests.fakes.wechat_server import FakeWeChatAPI

OPENID, PHONE = "oDEMO0001", "13800000001"  # 张三 follows the demo account and registered this phone
PARAMS = {"kind": "报修", "number": "BX20261201-4321", "assignee": "王师傅",
          "visit_time": "12月2日上午9点到11点之间，请家中留人并提前清理卫生间"}
TEXT = "您的报修（单号BX20261201-4321）已派单，由王师傅负责。"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    return {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}


@pytest.fixture
async def api() -> AsyncIterator[FakeWeChatAPI]:
    async with FakeWeChatAPI() as fake:
        fake.template_ids = {"DEMO-TPL-ticket-dispatched", "DEMO-TPL-visit-time", "DEMO-TPL-ticket-done"}
        yield fake


async def app(yezhu: YezhuFactory, database: dict[str, str], api: FakeWeChatAPI) -> Runtime:
    client = await yezhu(wechat_app_id=api.app_id, wechat_app_secret=api.app_secret, wechat_api_base=api.base_url,
                         **database)
    return client.app[RUNTIME]  # type: ignore[no-any-return]


async def last_wrote(rt: Runtime, hours: float, *, subscribed: bool = True) -> int:
    """The owner last wrote on WeChat ``hours`` ago; returns the owner's id."""
    async with rt.db.session() as s, s.begin():
        identity = (await s.execute(sa.select(Identity).where(Identity.external_id == OPENID))).scalar_one()
        identity.last_inbound_at = utcnow() - dt.timedelta(hours=hours)
        identity.subscribed = subscribed
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == PHONE))).scalar_one()
        assert identity.owner_id == owner.id
        return owner.id


async def notify(rt: Runtime, owner_id: int, kind: str = "ticket_dispatched") -> Notice:
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        notice = await rt.notifier.owner(s, batch, text=TEXT, kind=kind, params=PARAMS, phone=PHONE,
                                         owner_id=owner_id, idempotency_key=f"test:{kind}:{utcnow().isoformat()}")
    await rt.engine.after_commit(batch, notice.message_ids)
    return notice


async def delivered(rt: Runtime, message_id: int) -> Message:
    for _ in range(100):
        async with rt.db.session() as s:
            message = await s.get_one(Message, message_id)
        if message.delivery not in ("queued", "sending"):
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {message_id} still {message.delivery}")


async def sms_rows(rt: Runtime) -> list[SmsMessage]:
    async with rt.db.session() as s:
        return list((await s.execute(sa.select(SmsMessage).where(SmsMessage.direction == "out"))).scalars())


async def test_closed_window_sends_the_template_message_not_sms(
    yezhu: YezhuFactory, database: dict[str, str], api: FakeWeChatAPI
) -> None:
    rt = await app(yezhu, database, api)
    owner_id = await last_wrote(rt, hours=50)
    notice = await notify(rt, owner_id)
    assert notice.channel == "wechat" and notice.sms is None and len(notice.message_ids) == 1
    message = await delivered(rt, notice.message_ids[0])
    assert message.delivery == "sent" and message.kind == "template" and message.text == TEXT
    [sent] = api.template_messages
    assert sent.touser == OPENID and sent.template_id == "DEMO-TPL-ticket-dispatched"
    assert sent.values["character_string1"] == "BX20261201-4321" and sent.values["thing3"] == "王师傅"
    assert sent.values["thing4"].endswith("…") and len(sent.values["thing4"]) == 20  # WeChat's thing limit
    assert sent.client_msg_id == f"yezhu-{message.id}" and message.media["provider_id"] == str(sent.msgid)
    assert message.media["wechat_template"]["template_id"] == sent.template_id
    assert api.messages == [] and await sms_rows(rt) == []  # no customer-service message, no SMS

    # A kind without a template message goes by SMS.
    notice = await notify(rt, owner_id, kind="ticket_reassigned")
    assert notice.channel == "sms" and notice.sms is not None and notice.sms.status in ("queued", "deferred")
    assert len(api.template_messages) == 1


async def test_inside_the_window_chat_wins_and_a_non_follower_gets_sms(
    yezhu: YezhuFactory, database: dict[str, str], api: FakeWeChatAPI
) -> None:
    rt = await app(yezhu, database, api)
    owner_id = await last_wrote(rt, hours=2)
    notice = await notify(rt, owner_id)
    assert notice.channel == "wechat"
    message = await delivered(rt, notice.message_ids[0])
    assert message.kind == "text" and message.delivery == "sent"
    assert [m.content for m in api.messages] == [TEXT] and api.template_messages == []

    await last_wrote(rt, hours=50, subscribed=False)  # unfollowed: template messages cannot reach them
    notice = await notify(rt, owner_id)
    assert notice.channel == "sms" and notice.sms is not None
    assert api.template_messages == [] and [r.kind for r in await sms_rows(rt)] == ["ticket_dispatched"]


async def test_wechat_refusals_are_final_and_a_repeat_is_sent_once(
    yezhu: YezhuFactory, database: dict[str, str], api: FakeWeChatAPI
) -> None:
    rt = await app(yezhu, database, api)
    owner_id = await last_wrote(rt, hours=50)
    api.unsubscribed.add(OPENID)  # they unfollowed and we were not told yet
    message = await delivered(rt, (await notify(rt, owner_id)).message_ids[0])
    assert message.delivery == "failed" and "43004" in (message.delivery_error or "")
    assert api.template_messages == []

    api.unsubscribed.clear()
    sender = rt.channels.sender("wechat")
    assert sender is not None
    spec: dict[str, Any] = {"template_id": "DEMO-TPL-ticket-done", "client_msg_id": "yezhu-repeat",
                            "fields": {"character_string1": "BX1", "thing2": "报修", "thing3": "已办结"}}
    first = await sender.send("default", OPENID, OutboundMessage("已办结", kind="template", data=spec))
    again = await sender.send("default", OPENID, OutboundMessage("已办结", kind="template", data=spec))
    assert first.ok and again.ok and first.provider_id == again.provider_id
    assert len(api.template_messages) == 1  # WeChat de-duplicates on client_msg_id
    unknown = await sender.send("default", OPENID, OutboundMessage("x", kind="template",
                                                                   data={**spec, "template_id": "NOPE"}))
    assert not unknown.ok and unknown.error_code == 40037 and not unknown.retryable
