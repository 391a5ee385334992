"""The accept step's fast path (bot/engine.py) through the real webhook, on SQLite and PostgreSQL.

A sender this process already knows has its message written by one statement (PostgreSQL) or one short
transaction (SQLite) that only lands in the conversation while it is still open; these tests pin what
that path must keep doing: the NLU parse stored with the message, the 48-hour window stamp, a closed
conversation never receiving new messages, an owner bound in the meantime, and exactly-once storage.
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from bot import conversation as verbs
from bot.events import EventBatch
from bot.runtime import Runtime
from bot.store.models import Conversation, Identity, Owner, StaffUser
from channels.base import OutboundMessage
from tests.test_wechat_app import EchoPolicy, FakeWeChatAPI, api, messages, owner, start

__all__ = ["api"]


async def post_and_die(rt: Runtime, o: Any, xml: str) -> Any:
    """Post ``xml`` while the process "dies" right after committing it: the turn never runs."""

    async def died(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError

    rt.engine._process = died  # type: ignore[method-assign]
    try:
        return await o.post(xml)
    finally:
        del rt.engine._process


async def conversations(rt: Runtime) -> list[Conversation]:
    async with rt.db.session() as s:
        return list((await s.execute(sa.select(Conversation).order_by(Conversation.id))).scalars())


async def identity(rt: Runtime, openid: str) -> Identity:
    async with rt.db.session() as s:
        return (await s.execute(sa.select(Identity).where(Identity.external_id == openid))).scalar_one()


async def test_a_known_sender_writes_into_the_open_conversation_with_the_parse(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    from bot.runtime import load_nlu
    from bot.settings import Settings

    client, rt = await start(aiohttp_client, db_url, api)
    rt.nlu = load_nlu(Settings(_env_file=None))  # type: ignore[call-arg]
    o = owner(client, openid="oFAST0001")
    assert await o.send_text("你好") == "收到[0]：你好"
    first_seen = (await identity(rt, "oFAST0001")).last_inbound_at
    assert rt.engine._open, "the first message should have taught the engine the sender's conversation"
    assert await o.send_text("物业费怎么交") == "收到[0]：物业费怎么交"
    assert await o.send_text("卫生间漏水了") == "收到[0]：卫生间漏水了"

    stored = await messages(rt)
    assert [(m.direction, m.text) for m in stored] == [
        ("in", "你好"), ("out", "收到[0]：你好"),
        ("in", "物业费怎么交"), ("out", "收到[0]：物业费怎么交"),
        ("in", "卫生间漏水了"), ("out", "收到[0]：卫生间漏水了"),
    ]
    inbound = [m for m in stored if m.direction == "in"]
    assert [m.nlu["intent"] for m in inbound] == ["greet", "inquiry", "repair"]  # type: ignore[index]
    assert {m.conversation_id for m in stored} == {stored[0].conversation_id}
    assert all(m.channel_msg_id and m.kind == "text" and m.attempts == 0 for m in inbound)
    # the customer-service window and the queue order move with every message
    ident = await identity(rt, "oFAST0001")
    assert first_seen is not None and ident.last_inbound_at is not None and ident.last_inbound_at > first_seen
    (conv,) = await conversations(rt)
    assert conv.last_message_at is not None and conv.last_message_at >= ident.last_inbound_at


async def test_a_closed_conversation_takes_no_more_messages(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api)
    o = owner(client, openid="oFAST0002")
    assert await o.send_text("电梯坏了") == "收到[0]：电梯坏了"
    async with rt.db.session() as s, s.begin():  # staff close it from the console (another process, say)
        conv = (await s.execute(sa.select(Conversation))).scalar_one()
        verbs.close(s, EventBatch(), conv, actor="staff:kefu")
    assert await o.send_text("还在吗") == "收到[0]：还在吗"

    old, new = await conversations(rt)
    assert old.mode == "closed" and new.mode == "bot" and new.identity_id == old.identity_id
    by_conv = {m.text: m.conversation_id for m in await messages(rt) if m.direction == "in"}
    assert by_conv == {"电梯坏了": old.id, "还在吗": new.id}
    assert await o.send_text("好的") == "收到[0]：好的"  # and the new one is the known one from now on
    assert len(await conversations(rt)) == 2


async def test_an_owner_bound_meanwhile_is_set_on_the_conversation(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api)
    o = owner(client, openid="oFAST0003")
    await o.send_text("我要绑定房屋")
    async with rt.db.session() as s, s.begin():
        person = Owner(name="赵六", phone="13900000003")
        s.add(person)
        await s.flush()
        (await s.execute(sa.select(Identity))).scalar_one().owner_id = person.id
        owner_id = person.id
    (conv,) = await conversations(rt)
    assert conv.owner_id is None
    await o.send_text("你好")
    (conv,) = await conversations(rt)
    assert conv.owner_id == owner_id


async def test_a_redelivery_is_stored_once_and_not_answered_twice(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api)
    o = owner(client, openid="oFAST0004")
    await o.send_text("你好")
    xml = o.text_xml("停水了吗", msg_id=7054768590064713001)
    first = await o.post(xml)
    assert o.reply_fields(first)["Content"] == "收到[0]：停水了吗"
    again = await o.post(xml)  # the database recognises it: there is no other de-dup set to consult
    assert again.status == 200 and not o.reply_fields(again)  # acknowledged, nothing done twice
    stored = [m.text for m in await messages(rt)]
    assert stored == ["你好", "收到[0]：你好", "停水了吗", "收到[0]：停水了吗"]
    text = await (await client.get("/metrics")).text()
    assert 'yezhu_dedup_hits_total{channel="wechat"} 1.0' in text


async def test_a_retry_after_the_answer_was_lost_gets_the_stored_reply(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    """The process answered the turn but died before the webhook answer left: WeChat's retry (5 s
    later) gets the stored reply inline; the turn does not run twice."""
    client, rt = await start(aiohttp_client, db_url, api, reply_budget=0.6)
    o = owner(client, openid="oLOST0001")
    xml = o.text_xml("门禁卡坏了", msg_id=7054768590064713101)
    assert o.reply_fields(await o.post(xml))["Content"] == "收到[0]：门禁卡坏了"  # (the answer that got lost)
    early = await o.post(xml)  # within the budget the first request may still be answering
    assert early.status == 200 and o.reply_fields(early) is None
    await asyncio.sleep(0.7)
    retry = await o.post(xml)
    assert o.reply_fields(retry)["Content"] == "收到[0]：门禁卡坏了"
    stored = [(m.direction, m.text) for m in await messages(rt)]
    assert stored == [("in", "门禁卡坏了"), ("out", "收到[0]：门禁卡坏了")]  # one turn, one reply
    assert not api.messages


async def test_a_retry_of_a_message_answered_through_the_api_gets_nothing_more(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api, policy=EchoPolicy(delay=0.3), reply_budget=0.1)
    o = owner(client, openid="oLATE0002")
    xml = o.text_xml("水管爆了", msg_id=7054768590064713102)
    assert o.reply_fields(await o.post(xml)) is None  # too slow for the webhook: success, then the API
    (sent,) = await api.wait_for_messages(1, timeout=10)
    assert sent.touser == "oLATE0002" and sent.content == "收到[0]：水管爆了"
    await asyncio.sleep(0.2)
    retry = await o.post(xml)
    assert retry.status == 200 and o.reply_fields(retry) is None
    await rt.engine.drain()
    await asyncio.sleep(0.2)
    assert len(api.messages) == 1
    out = [m for m in await messages(rt) if m.direction == "out"]
    assert [(m.delivery, m.text) for m in out] == [("sent", "收到[0]：水管爆了")]


async def test_a_turn_with_more_replies_than_wechat_takes_inline_is_queued_with_the_turn(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api, policy=EchoPolicy(replies=2))
    o = owner(client, openid="oMULTI001")
    assert await o.send_text("物业费多少") is None  # one passive reply cannot carry two: both go by API
    sent = await api.wait_for_messages(2, timeout=10)
    assert [m.content for m in sent] == ["收到[0]：物业费多少", "收到[1]：物业费多少"]
    await rt.engine.drain()
    await asyncio.sleep(0.2)
    stored = await messages(rt)
    (inbound,) = [m for m in stored if m.direction == "in"]
    out = [m for m in stored if m.direction == "out"]
    assert [m.delivery for m in out] == ["sent", "sent"] and {m.reply_to for m in out} == {inbound.id}


class GatedPolicy:
    """Answers once released; records how many turns ran at the same time."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = self.most = 0

    async def respond(self, turn: Any) -> list[OutboundMessage]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return [OutboundMessage(f"收到：{turn.inbound.text}")]


async def test_turns_beyond_the_limit_wait_while_messages_are_still_stored_and_answered(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    policy = GatedPolicy()
    client, rt = await start(aiohttp_client, db_url, api, policy=policy, turn_concurrency=2, reply_budget=5.0)
    owners = [owner(client, openid=f"oBURST{n:04d}") for n in range(5)]
    sends = [asyncio.ensure_future(o.send_text(f"第{n}条")) for n, o in enumerate(owners)]
    for _ in range(200):  # every message is committed while the turns are held
        if len([m for m in await messages(rt) if m.direction == "in"]) == 5:
            break
        await asyncio.sleep(0.02)
    assert len([m for m in await messages(rt) if m.direction == "in"]) == 5
    assert policy.running == 2  # two turns run, three wait for a slot
    policy.release.set()
    assert sorted(await asyncio.gather(*sends)) == sorted(f"收到：第{n}条" for n in range(5))
    assert policy.most == 2


async def test_an_overloaded_webhook_answers_503_before_storing_anything(
    aiohttp_client: Any, sqlite_url: str, api: FakeWeChatAPI
) -> None:
    policy = GatedPolicy()
    client, rt = await start(aiohttp_client, sqlite_url, api, policy=policy, webhook_max_inflight=2)
    busy = [asyncio.ensure_future(owner(client, openid=f"oBUSY{n:04d}").send_text("在吗")) for n in range(2)]
    for _ in range(500):  # both requests are in progress, waiting for their answers
        if policy.running == 2:
            break
        await asyncio.sleep(0.01)
    assert policy.running == 2
    late = owner(client, openid="oLATE0001")
    refused = await late.post(late.text_xml("电梯困人了", msg_id=7054768590064719999))
    assert refused.status == 503
    assert "电梯困人了" not in [m.text for m in await messages(rt)]  # WeChat will retry it
    policy.release.set()
    assert await asyncio.gather(*busy) == ["收到：在吗", "收到：在吗"]
    # the retry, once there is room, is stored and answered like any message
    retried = await late.post(late.text_xml("电梯困人了", msg_id=7054768590064719999))
    assert late.reply_fields(retried)["Content"] == "收到：电梯困人了"
    text = await (await client.get("/metrics")).text()
    assert 'reason="overloaded"' in text


async def test_a_turn_lost_with_its_process_is_run_by_the_recovery_sweep(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api)
    o = owner(client, openid="oCRASH001")
    assert await o.send_text("你好") == "收到[0]：你好"
    response = await post_and_die(rt, o, o.text_xml("楼道灯坏了", msg_id=7054768590064715001))
    assert response.status == 200 and o.reply_fields(response) is None  # acknowledged: stored, no answer
    assert [m.text for m in await messages(rt)][-1] == "楼道灯坏了"

    assert await rt.engine.recover(older_than=60) == 0  # too recent: its own process may still answer
    assert await rt.engine.recover(older_than=0) == 1
    sent = await api.wait_for_messages(1, timeout=10)
    assert sent[0].touser == "oCRASH001" and sent[0].content == "收到[0]：楼道灯坏了"
    await rt.engine.drain()
    stored = await messages(rt)
    assert [(m.direction, m.text) for m in stored][-2:] == [("in", "楼道灯坏了"), ("out", "收到[0]：楼道灯坏了")]
    assert stored[-2].handled_at is not None and stored[-2].attempts == 1
    # handled now, and every other message was handled by its own turn: nothing to run twice
    assert await rt.engine.recover(older_than=0) == 0
    assert all(m.handled_at is not None for m in stored if m.direction == "in")
    text = await (await client.get("/metrics")).text()
    assert 'yezhu_turns_recovered_total{channel="wechat"} 1.0' in text


class BrokenPolicy:
    async def respond(self, turn: Any) -> list[OutboundMessage]:
        raise RuntimeError("a bug in the policy")


async def test_a_turn_that_keeps_failing_is_tried_three_times_and_left_to_staff(
    aiohttp_client: Any, sqlite_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, sqlite_url, api, policy=BrokenPolicy())
    o = owner(client, openid="oBROKEN01")
    assert await o.send_text("物业费怎么交") is None  # the turn failed; the message is stored all the same
    for expected in (1, 1, 1, 0):
        assert await rt.engine.recover(older_than=0) == expected
    (inbound,) = [m for m in await messages(rt) if m.direction == "in"]
    assert inbound.text == "物业费怎么交" and inbound.handled_at is None and inbound.attempts == 3


async def test_a_message_for_a_conversation_staff_took_over_gets_no_bot_answer_on_recovery(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api)
    o = owner(client, openid="oCRASH002")
    await o.send_text("你好")
    await post_and_die(rt, o, o.text_xml("我要找人工", msg_id=7054768590064715002))
    async with rt.db.session() as s, s.begin():
        conv = (await s.execute(sa.select(Conversation))).scalar_one()
        agent = StaffUser(username="kefu", display_name="客服小王", role="agent", password_hash="-")
        s.add(agent)
        await s.flush()
        verbs.hand_over(s, EventBatch(), conv, actor="owner", reason="owner_asked")
        verbs.claim(s, EventBatch(), conv, staff_id=agent.id, actor="staff:kefu")
    assert await rt.engine.recover(older_than=0) == 1
    await rt.engine.drain()
    stored = await messages(rt)
    assert [m.text for m in stored][-1] == "我要找人工"  # no bot reply: the agent answers
    assert stored[-1].handled_at is not None


async def test_wechats_retry_after_a_restart_runs_the_lost_turn_and_answers_inline(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api, reply_budget=0.5)
    o = owner(client, openid="oCRASH003")
    xml = o.text_xml("热水器不出热水", msg_id=7054768590064715003)
    assert o.reply_fields(await post_and_die(rt, o, xml)) is None  # stored; no answer
    at_once = await o.post(xml)  # the same delivery at once: the first request is still on it
    assert at_once.status == 200 and o.reply_fields(at_once) is None
    await asyncio.sleep(0.6)
    retry = await o.post(xml)  # WeChat retries after 5 s (to this process or a restarted one)
    assert o.reply_fields(retry)["Content"] == "收到[0]：热水器不出热水"
    again = await o.post(xml)  # and a further retry is a plain duplicate
    assert again.status == 200 and o.reply_fields(again) is None
    await rt.engine.drain()
    stored = await messages(rt)
    assert [(m.direction, m.text) for m in stored] == [("in", "热水器不出热水"), ("out", "收到[0]：热水器不出热水")]
    assert stored[0].handled_at is not None
    assert await rt.engine.recover(older_than=0) == 0


async def test_postgresql_connections_killed_under_the_hot_path_cost_at_most_a_retry_never_a_message(
    aiohttp_client: Any, pg_url: str, api: FakeWeChatAPI
) -> None:
    """The hot path's own asyncpg pool (bot/store/hot_path.py ``PgHotPath``): when PostgreSQL drops its
    connections (a restart, a failover, an idle-session kill) a message that could not be stored gets a
    503, so WeChat retries; the retry is stored once and answered, and the pool reconnects on its own."""
    client, rt = await start(aiohttp_client, pg_url, api)
    o = owner(client, openid="oFAST0100")
    assert await o.send_text("你好") == "收到[0]：你好"
    assert rt.db.pg is not None and rt.db.pg._pool is not None, "the hot path should use its own pool"
    async with rt.db.autocommit() as c:  # the hot path's connections, named in pg_stat_activity
        killed = (
            await c.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'yezhu-hot-path'"
                )
            )
        ).scalar_one()
    assert killed >= 1
    xml = o.text_xml("电梯停了", msg_id=7054768590064713100)
    statuses = []
    for _ in range(3):  # WeChat's retries
        response = await o.post(xml)
        statuses.append(response.status)
        if response.status == 200:
            assert o.reply_fields(response)["Content"] == "收到[0]：电梯停了"
            break
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}
    assert await o.send_text("谢谢") == "收到[0]：谢谢"
    stored = [m.text for m in await messages(rt)]
    assert stored == ["你好", "收到[0]：你好", "电梯停了", "收到[0]：电梯停了", "谢谢", "收到[0]：谢谢"]


class LookingPolicy:
    """A flow that looks something up (the owner's houses, their last notice) and answers, keeping a
    counter in the dialogue state; with ``write``, it also changes a row through its session."""

    def __init__(self, write: bool = False) -> None:
        self.write = write

    async def respond(self, turn: Any) -> list[OutboundMessage]:
        s = turn.session
        count = (await s.execute(sa.select(sa.func.count()).select_from(Owner))).scalar_one()
        await s.get(Identity, turn.identity.id)  # a lookup by key, as flows do
        turn.conversation.state = {**turn.conversation.state, "seen": turn.conversation.state.get("seen", 0) + 1}
        if self.write:
            await s.execute(sa.update(Identity).where(Identity.id == turn.identity.id).values(subscribed=False))
        return [OutboundMessage(f"业主{count}位，第{turn.conversation.state['seen']}条")]


async def test_a_turn_that_only_reads_takes_the_one_statement_write(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    """Queries alone (a bound owner's houses, their last notice) do not send the turn down the general
    path: its state and reply are written by the hot path, nothing through the session's transaction."""
    client, rt = await start(aiohttp_client, db_url, api, policy=LookingPolicy())
    o = owner(client, openid="oREAD0001")
    assert await o.send_text("你好") == "业主0位，第1条"
    writes: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith("SELECT"):
            writes.append(statement.split()[0])

    sa.event.listen(rt.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await o.send_text("物业电话多少") == "业主0位，第2条"
        assert await o.send_text("几点上班") == "业主0位，第3条"
    finally:
        sa.event.remove(rt.db.engine.sync_engine, "before_cursor_execute", count)
    assert writes == [] or set(writes) <= {"BEGIN", "ROLLBACK"}, writes  # the writes went the hot way
    (conv,) = await conversations(rt)
    assert conv.state == {"seen": 3}
    assert [m.text for m in await messages(rt)][-2:] == ["几点上班", "业主0位，第3条"]


async def test_a_turn_that_writes_through_its_session_commits_it_with_its_reply(
    aiohttp_client: Any, db_url: str, api: FakeWeChatAPI
) -> None:
    client, rt = await start(aiohttp_client, db_url, api, policy=LookingPolicy(write=True))
    o = owner(client, openid="oREAD0002")
    assert await o.send_text("你好") == "业主0位，第1条"
    assert await o.send_text("再问一下") == "业主0位，第2条"
    assert (await identity(rt, "oREAD0002")).subscribed is False  # the UPDATE was committed
    (conv,) = await conversations(rt)
    assert conv.state == {"seen": 2}
    stored = await messages(rt)
    assert [m.text for m in stored] == ["你好", "业主0位，第1条", "再问一下", "业主0位，第2条"]
    assert all(m.handled_at is not None for m in stored if m.direction == "in")
