"""The conversation engine: DESIGN.md's hot path for one inbound message.

1. ``accept``: commit the inbound message **before** the channel answers its webhook. The database's
   unique constraint on ``(channel, account, msg_id)`` is the only de-duplication authority: a verdict
   "duplicate" is given only after the insert found the message stored (``_resume``), so no process
   death can turn a channel's retry of an unstored message into a duplicate. Accepting needs no Redis.
2. ``_process`` (a task, serialised per sender by a lock): if a person owns the conversation the bot
   stays silent; otherwise the policy decides, the replies are stored in the same write that marks the
   message handled, and domain events are published after the commit.
3. Replies go back through the channel inline when they are ready in time; otherwise they are stored
   ``queued`` and handed to the job queue, and a sweep hands over again whatever the queue did not take.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import events
from bot.conversation import CLOSED, STAFF, log_event
from bot.events import EventBatch
from bot.policy import Policy, Turn
from bot.services.base import LockTimeout, ServiceUnavailable
from bot.services.memory import MemoryLocks
from bot.store.db import Database
from bot.store.hot_path import APPEND, REPLY, TURN, UNCHANGED, Unchanged, table
from bot.store.models import Conversation, Identity, Message, Owner, utcnow
from channels.base import Accepted, Duplicate, InboundMessage, OutboundMessage

log = logging.getLogger("yezhu.engine")

Enqueue = Callable[..., Awaitable[None]]


PARSED_KINDS = frozenset({"text", "voice", "link", "location"})
SUBSCRIPTION_EVENTS = frozenset({"subscribe", "unsubscribe"})
TEMPLATE_RESULT = "templatesendjobfinish"
"""WeChat's result of a template message: applied to its campaign delivery, never a conversation turn."""
OPEN_CACHE_SIZE = 100_000
RECOVERY_ATTEMPTS = 3
RECOVERY_HORIZON = dt.timedelta(hours=24)
"""Older unfinished turns are not run any more (WeChat's reply window is 48 hours; staff see them)."""
INLINE_LIMIT = {"wechat": 1}
"""Replies a channel's webhook answer can carry (WeChat: one passive reply, within ``reply_budget``).
A turn with more stores them ``queued`` at once, so no process death between the answer and a hand-off
can strand them."""
INLINE_MARGIN = 0.5
"""Seconds before the channel stops waiting (``reply_budget``) after which a turn no longer offers its
replies inline but stores them ``queued``: the channel answers ``success`` right after giving up, and
replies stored ``reply`` while it gives up would be owed by nobody if the process died at that moment."""
TURN_LOCK_TIMEOUT = 15.0
"""Seconds a turn may hold its sender's lock: a process killed mid-turn blocks that sender this long."""
TURN_LOCK_WAIT = 2 * TURN_LOCK_TIMEOUT
"""Seconds a turn waits for its sender's lock: longer than a dead holder can keep it."""
REANSWER_WITHIN = dt.timedelta(minutes=5)
"""A retried webhook is answered again with its message's stored replies only this soon after the turn
(WeChat retries within about 15 seconds; an old capture replayed later gets nothing)."""


def sender_key(channel: str, account: str, sender: str) -> str:
    return f"{channel}:{account}:{sender}"


class Engine:
    def __init__(self, runtime: Any, policy: Policy) -> None:
        self.rt = runtime
        self.db: Database = runtime.db
        self.policy = policy
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turn_slots = asyncio.Semaphore(max(1, runtime.settings.turn_concurrency))
        self._sweeper: asyncio.Future[None] | None = None
        self._stopping = asyncio.Event()
        self._local_locks = MemoryLocks()
        """Per-sender locks of this process, used while Redis is unavailable."""
        self._open: dict[str, tuple[int, int]] = {}
        """sender key -> (identity id, its open conversation id), as last seen by this process. A hint
        only: the fast path checks in the database that the conversation is still open."""
        self.clock: Callable[[], dt.datetime] = utcnow
        """A turn's "now" (``Turn.now``, and the NLU's reference for 明天上午). Only the conversation
        stories (tests, ``yezhu chat --replay``) set another: a fixed time such as 22:31 on a weekday."""

    # --- step 1: accept ------------------------------------------------------------------------

    async def accept(self, msg: InboundMessage) -> Accepted | Duplicate:
        """Store ``msg`` durably, then start its turn; ``Duplicate`` only for a message already stored.

        Raises (and the channel answers 503, so its sender retries) when the message could not be
        stored. No Redis call here: de-duplication is the insert itself."""
        if msg.kind == "event" and msg.event == TEMPLATE_RESULT:
            return await self._template_result(msg)
        started = time.perf_counter()
        parse = await self._parse(msg)
        try:
            stored = await self._store_inbound(msg, parse)
        except IntegrityError:
            # Stored already (a channel's retry, or the same delivery in two requests at once): the
            # database decides what is left to do.
            return await self._resume(msg, parse, started)
        return self._start_turn(msg, stored, parse, started)

    async def _template_result(self, msg: InboundMessage) -> Accepted:
        """``TEMPLATESENDJOBFINISH``: the result of a campaign's template message goes to its delivery, not
        into a conversation (nothing to answer). A database error raises: the webhook answers 503 and WeChat
        pushes the event again. An event that overtakes the dispatcher's write of the msgid is applied
        again a few times in the background (``actions.campaigns.results.template_finished``)."""
        from actions.campaigns.results import template_finished

        msgid, status = str(msg.media.get("msg_id") or ""), str(msg.media.get("status") or "")
        done: asyncio.Future[list[OutboundMessage]] = asyncio.get_running_loop().create_future()
        done.set_result([])
        if msgid and status and not await template_finished(self.rt, msg.sender, msgid, status):

            async def later() -> None:
                for wait in (1, 2, 4, 8, 16, 30):
                    await asyncio.sleep(wait)
                    if await template_finished(self.rt, msg.sender, msgid, status):
                        return
                log.info("TEMPLATESENDJOBFINISH for msgid %s matches no campaign delivery", msgid)

            self._spawn(later())
        return Accepted(replies=done, defer=lambda: None)

    def _start_turn(
        self, msg: InboundMessage, stored: tuple[int, int], parse: Any | None, started: float
    ) -> Accepted:
        self.rt.metrics.messages_in.labels(msg.channel).inc()
        conversation_id, message_id = stored
        pending = _Pending(self, msg.channel)
        task = self._spawn(self._process(msg, conversation_id, message_id, parse, started, pending))
        return Accepted(replies=asyncio.shield(task), defer=pending.defer)

    async def _resume(
        self, msg: InboundMessage, parse: Any | None, started: float, *, again: bool = False
    ) -> Accepted | Duplicate:
        """The insert of ``msg`` hit a unique constraint. If the message is stored, this is a retry:
        run its turn if it never finished (its process died), answer again with its stored replies if
        its request died before answering, else it is a duplicate. If it is not stored, the constraint
        was another one (a new sender's identity created by another process at the same moment): store
        it again, once."""
        stored, conv = table(Message), table(Conversation)
        async with self.db.autocommit() as c:
            row = (
                await c.execute(
                    sa.select(stored.c.id, stored.c.conversation_id, stored.c.handled_at, conv.c.last_message_at)
                    .join(conv, conv.c.id == stored.c.conversation_id)
                    .where(
                        stored.c.channel == msg.channel,
                        stored.c.account == msg.account,
                        stored.c.channel_msg_id == msg.msg_id,
                        stored.c.direction == "in",
                    )
                )
            ).first()
        if row is None:
            if again:
                raise RuntimeError(f"message {msg.msg_id!r} conflicts with stored data but is not stored")
            try:
                return self._start_turn(msg, await self._store_inbound(msg, parse), parse, started)
            except IntegrityError:
                return await self._resume(msg, parse, started, again=True)
        self.rt.metrics.dedup_hits.labels(msg.channel).inc()
        if row.handled_at is not None:
            return await self._answer_again(msg, row.id, row.conversation_id, row.handled_at)
        budget = dt.timedelta(seconds=self.rt.settings.reply_budget)
        if row.last_message_at is not None and utcnow() - row.last_message_at < budget:
            # Stored a moment ago (the same delivery in two requests at once): the request that stored
            # it is running its turn. WeChat's own retries come 5 s apart; the sweep covers the rest.
            return Duplicate()
        log.warning("message %s was stored but not answered; its channel's retry runs the turn", row.id)
        self.rt.metrics.turns_recovered.labels(msg.channel).inc()
        pending = _Pending(self, msg.channel)
        # The turn does nothing if the message turns out handled by the time it holds the sender's lock.
        task = self._spawn(self._process(msg, row.conversation_id, row.id, parse, started, pending))
        return Accepted(replies=asyncio.shield(task), defer=pending.defer)

    async def _answer_again(
        self, msg: InboundMessage, message_id: int, conversation_id: int, handled_at: dt.datetime
    ) -> Accepted | Duplicate:
        """A retry of a handled message. Its replies still ``reply`` were meant for the webhook answer;
        a retry means the channel never got that answer (its process died in between), so this request
        answers with them. Within ``reply_budget`` of the turn the first request may still be answering:
        then it is a plain duplicate."""
        age = utcnow() - handled_at
        if age < dt.timedelta(seconds=self.rt.settings.reply_budget) or age > REANSWER_WITHIN:
            return Duplicate()
        async with self.db.autocommit() as c:
            rows = (await c.execute(TURN.unanswered, {"p_cid": conversation_id, "p_mid": message_id})).all()
        if not rows:
            return Duplicate()  # answered inline, or queued for the customer-service API
        log.warning("message %s was answered but its webhook was not: answering its retry", message_id)
        replies = [OutboundMessage(r.text, kind=r.kind, data=dict(r.media or {})) for r in rows]
        pending = _Pending(self, msg.channel)
        pending.processed([r.id for r in rows], queued=False)
        done: asyncio.Future[list[OutboundMessage]] = asyncio.get_running_loop().create_future()
        done.set_result(replies)
        return Accepted(replies=done, defer=pending.defer)

    async def _parse(self, msg: InboundMessage) -> Any | None:
        """The NLU result, stored with the message itself (one write instead of an insert and an update).

        A failing NLU backend must not refuse the message: it is stored unparsed and the bot answers
        as it would to text it does not understand."""
        nlu = self.rt.nlu
        if nlu is None or msg.kind not in PARSED_KINDS or not msg.text.strip():
            return None
        try:
            parse = await nlu.aparse(msg.text, self.clock())
        except Exception:
            log.exception("NLU failed; the message is stored without a parse")
            return None
        self.rt.metrics.nlu_intents.labels(parse.intent).inc()
        return parse

    async def _store_inbound(self, msg: InboundMessage, parse: Any | None) -> tuple[int, int]:
        """Commit the inbound message; returns ``(conversation_id, message_id)``.

        Fast path: the sender's open conversation is known to this process, and one statement (on
        PostgreSQL; on a SQLite file one unit of the hot-path writer's group commit) touches the
        conversation only if it is still open,
        stamps the identity and inserts the message. Otherwise (a new sender, a closed conversation,
        (un)subscribe events) the ORM path runs under the sender's accept lock, so two first messages
        cannot open two conversations.
        """
        sender = sender_key(msg.channel, msg.account, msg.sender)
        nlu = parse.to_dict() if parse is not None else None
        if not (msg.kind == "event" and msg.event in SUBSCRIPTION_EVENTS):
            known = self._open.get(sender)
            if known is not None:
                message_id = await self._append(known[0], known[1], msg, nlu)
                if message_id is not None:
                    return known[1], message_id
                self._open.pop(sender, None)  # closed meanwhile: find or open the current one
        if self.db.is_sqlite:
            async with self._sender_lock("accept:" + sender):
                identity_id, conversation_id, message_id = await self._store_inbound_orm(msg, nlu)
        else:  # PostgreSQL: an advisory lock in the transaction itself, whatever Redis does
            identity_id, conversation_id, message_id = await self._store_inbound_orm(msg, nlu, lock=sender)
        if len(self._open) >= OPEN_CACHE_SIZE:
            self._open.clear()
        self._open[sender] = (identity_id, conversation_id)
        return conversation_id, message_id

    def _inbound_values(self, msg: InboundMessage, nlu: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "direction": "in",
            "channel": msg.channel,
            "account": msg.account,
            "channel_msg_id": msg.msg_id,
            "kind": msg.kind,
            "text": msg.text,
            "media": dict(msg.media, **({"event": msg.event} if msg.event else {})),
            "nlu": nlu,
            "attempts": 0,
            "at": msg.received_at,
        }

    async def _append(
        self, identity_id: int, conversation_id: int, msg: InboundMessage, nlu: dict[str, Any] | None
    ) -> int | None:
        """Insert the message into a conversation that is still open; None if it was closed."""
        params = {
            "p_cid": conversation_id,
            "p_iid": identity_id,
            "p_now": utcnow(),
            **{"p_" + k: v for k, v in self._inbound_values(msg, nlu).items()},
        }
        writer = self.db.writer
        if writer is not None:  # a SQLite file: one unit of the writer's group commit
            hot = self.db.hot
            return await writer.run(lambda conn: hot.append(conn, params))
        if self.db.pg is not None:  # PostgreSQL: one statement on the hot path's own asyncpg pool
            return await self.db.pg.append(params)
        async with self.db.engine.begin() as c:  # in-memory SQLite (tests)
            if (await c.execute(APPEND.touch, params)).rowcount == 0:
                return None
            await c.execute(APPEND.stamp, params)
            return (await c.execute(APPEND.insert, params)).scalar_one()

    async def _store_inbound_orm(
        self, msg: InboundMessage, nlu: dict[str, Any] | None, *, lock: str | None = None
    ) -> tuple[int, int, int]:
        async with self.db.session() as s, s.begin():
            if lock is not None:
                # Two first messages of one sender in two processes must not open two conversations.
                await s.execute(sa.select(sa.func.pg_advisory_xact_lock(advisory_key("accept:" + lock))))
            identity = await self._identity(s, msg.channel, msg.account, msg.sender)
            identity.last_inbound_at = utcnow()
            if msg.kind == "event" and msg.event in SUBSCRIPTION_EVENTS:
                identity.subscribed = msg.event == "subscribe"
            conv = await self.current_conversation(s, identity)
            conv.last_message_at = utcnow()
            message = Message(conversation_id=conv.id, **self._inbound_values(msg, nlu))
            s.add(message)
            await s.flush()
            return identity.id, conv.id, message.id

    async def _identity(self, s: AsyncSession, channel: str, account: str, external_id: str) -> Identity:
        q = sa.select(Identity).where(
            Identity.channel == channel, Identity.account == account, Identity.external_id == external_id
        )
        identity = (await s.execute(q)).scalar_one_or_none()
        if identity is None:
            identity = Identity(channel=channel, account=account, external_id=external_id)
            caps = self.rt.channels.capabilities(channel)
            if caps is not None and caps.sender_is_phone:  # the carrier verified it: the registered owner
                owner = (await s.execute(sa.select(Owner).where(Owner.phone == external_id))).scalar_one_or_none()
                if owner is not None:
                    identity.owner_id, identity.bound_at = owner.id, utcnow()
            s.add(identity)
            await s.flush()
        return identity

    async def current_conversation(self, s: AsyncSession, identity: Identity) -> Conversation:
        """The identity's open conversation, or a new one (a closed conversation stays closed)."""
        q = (
            sa.select(Conversation)
            .where(Conversation.identity_id == identity.id, Conversation.mode != CLOSED)
            .order_by(Conversation.id.desc())
            .limit(1)
        )
        conv = (await s.execute(q)).scalar_one_or_none()
        if conv is None:
            conv = Conversation(identity_id=identity.id, owner_id=identity.owner_id, mode="bot", state={})
            s.add(conv)
            await s.flush()
            log_event(s, conv, "created", "owner", channel=identity.channel)
        elif conv.owner_id is None and identity.owner_id is not None:
            conv.owner_id = identity.owner_id
        return conv

    # --- step 2: process -----------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._tasks.discard)
        return task

    async def _process(
        self,
        msg: InboundMessage,
        conversation_id: int,
        message_id: int,
        parse: Any | None,
        started: float,
        pending: _Pending,
    ) -> list[OutboundMessage]:
        rt = self.rt
        try:
            async with (
                self._turn_slots,
                self._sender_lock(
                    "turn:" + sender_key(msg.channel, msg.account, msg.sender),
                    timeout=TURN_LOCK_TIMEOUT, wait=TURN_LOCK_WAIT,
                ) as held,
            ):
                replies, out_ids, batch, queued = await self._turn(
                    msg, conversation_id, message_id, parse, pending, started
                )
                if held is not None and batch.events and not batch.after:
                    # Redis: the turn's events go out with the lock's release, in its round trip.
                    held.publish_on_release(events.CHANNEL, batch.take_events())
            await batch.publish(rt.services.pubsub)
        except LockTimeout:
            # Another turn of this sender kept its lock too long: the message stays stored and
            # unhandled, and the recovery sweep runs its turn later.
            log.warning("message %s: its sender stayed busy for %.0f s; the recovery sweep answers it",
                        message_id, TURN_LOCK_WAIT)
            raise
        except Exception:
            log.exception("processing failed", extra={"conversation_id": conversation_id})
            raise
        rt.metrics.latency.labels(msg.channel).observe(time.perf_counter() - started)
        pending.processed(out_ids, queued=queued)
        return [] if queued else replies

    @asynccontextmanager
    async def _sender_lock(self, key: str, *, timeout: float = 30.0, wait: float = 30.0) -> AsyncIterator[Any]:
        """The shared per-sender lock; while Redis is unavailable, this process's own lock (senders stay
        serialised within a process; across processes only for as long as Redis answers). Yields what
        the lock yields: Redis's ``Held`` (events can go out with the release), else None."""
        async with AsyncExitStack() as stack:
            try:
                held = await stack.enter_async_context(self.rt.services.locks.lock(key, timeout=timeout, wait=wait))
            except ServiceUnavailable:
                self.rt.metrics.degraded.labels("lock").inc()
                held = await stack.enter_async_context(self._local_locks.lock(key, timeout=timeout, wait=wait))
            yield held

    async def deliver_later(self, out_ids: list[int]) -> None:
        """The channel did not reply inline: the replies it did not take become ``queued`` (atomically:
        a retried webhook may have taken them meanwhile) and go to the job queue."""
        async with self.db.autocommit() as c:
            taken = (
                await c.execute(
                    sa.update(Message)
                    .where(Message.id.in_(out_ids), Message.delivery == "reply")
                    .values(delivery="queued", handoff_at=utcnow())
                    .returning(Message.id)
                )
            ).scalars().all()
        await self.hand_off(sorted(taken))

    async def hand_off(self, out_ids: list[int]) -> None:
        """Give committed ``queued`` messages to the job queue. Never raises: a failed hand-off is
        logged and counted by the job queue, and the delivery sweep hands them over again."""
        if out_ids:
            await self.rt.jobs.enqueue_deliveries(out_ids)

    async def _turn(
        self,
        msg: InboundMessage,
        conversation_id: int,
        message_id: int,
        parse: Any | None,
        pending: _Pending,
        started: float,
    ) -> tuple[list[OutboundMessage], list[int], EventBatch, bool]:
        """One bot turn. Most turns (a knowledge-base answer, a greeting, a form step) change nothing
        but the dialogue state and add a reply; they cost two statements and no transaction round trips:

        1. the conversation, its identity and owner in one Core statement, outside a transaction (the
           per-sender ``turn:`` lock already keeps other turns of this sender out), attached to a fresh
           session as if the ORM had loaded them;
        2. the policy runs with that session; if it queries, adds or changes anything else the session
           opens a transaction as usual, and the replies join that transaction (``_commit_turn``);
        3. otherwise the new dialogue state and the replies are written by one statement
           (``_write_turn``).
        """
        rt = self.rt
        batch = EventBatch()
        load = {"p_cid": conversation_id, "p_mid": message_id}
        writer = self.db.writer
        if writer is not None:
            hot = self.db.hot
            row = writer.read(lambda conn: hot.load(conn, load))
        elif self.db.pg is not None:
            row = await self.db.pg.load(load)
        else:
            async with self.db.autocommit() as c:
                row = (await c.execute(TURN.load, load)).one()
        if row.m_handled_at is not None:
            return [], [], batch, False  # its turn already ran (the recovery sweep met a live turn)
        conv, identity, owner = TURN.entities(row)
        batch.emit(
            events.MESSAGE_CREATED,
            conversation_id=conv.id,
            message_id=message_id,
            direction="in",
            mode=conv.mode,
            text=msg.text,
        )
        if conv.mode in (STAFF, CLOSED):
            # A person owns the conversation (or closed it since the message came): the bot stays silent.
            await self._write_turn(conv, message_id, UNCHANGED, [])
            return [], [], batch, False
        async with self.db.session() as s:
            TURN.attach(s, conv, identity, owner)
            turn = Turn(
                inbound=msg,
                message_id=message_id,
                conversation=conv,
                identity=identity,
                owner=owner,
                parse=parse,
                session=s,
                events=batch,
                now=self.clock(),
                runtime=rt,
            )
            replies = await self.policy.respond(turn)
            # Replies the webhook answer cannot carry (the channel gave up waiting, or more than it
            # takes) are written ``queued`` with the turn, so they are owed durably from the start.
            queued = pending.deferred or self._too_late_inline(msg.channel, len(replies), started)
            now = utcnow()
            rows = [
                {
                    "conversation_id": conv.id,
                    "direction": "out",
                    "channel": msg.channel,
                    "account": msg.account,
                    "kind": reply.kind,
                    "text": reply.text,
                    "media": dict(reply.data),
                    "author": "bot",
                    "delivery": "queued" if queued else "reply",
                    "attempts": 0,
                    "at": now,
                    "reply_to": message_id,
                    "handoff_at": now if queued else None,
                }
                for reply in replies
            ]
            state = TURN.only_state_changed(s, conv)
            if state is not None:
                out_ids = await self._write_turn(conv, message_id, state, rows)
            else:
                out_ids = await self._commit_turn(s, message_id, rows)
        for reply, out_id in zip(replies, out_ids, strict=True):
            batch.emit(
                events.MESSAGE_CREATED, conversation_id=conv.id, message_id=out_id, direction="out",
                mode=conv.mode, text=reply.text,
            )
        return replies, out_ids, batch, queued

    def _too_late_inline(self, channel: str, count: int, started: float) -> bool:
        limit = INLINE_LIMIT.get(channel)
        if limit is None:
            return False  # the channel waits for every reply (the JSON API)
        budget = self.rt.settings.reply_budget
        return count > limit or time.perf_counter() - started > budget - min(INLINE_MARGIN, budget / 4)

    async def _commit_turn(self, s: AsyncSession, message_id: int, rows: list[dict[str, Any]]) -> list[int]:
        """The general case: what the policy changed, then the replies, in one transaction."""
        await s.flush()  # the policy's changes go first, as the unit of work would order them
        conn = await s.connection()
        out_ids = [(await conn.execute(REPLY, row)).scalar_one() for row in rows]
        await conn.execute(TURN.mark_handled, {"p_mid": message_id, "p_now": utcnow()})
        await s.commit()
        return out_ids

    async def _write_turn(
        self,
        conv: Conversation,
        message_id: int,
        state: dict[str, Any] | Unchanged,
        rows: list[dict[str, Any]],
    ) -> list[int]:
        """Only the dialogue state (maybe) and the replies changed: write them, and mark the inbound
        message handled, atomically."""
        params: dict[str, Any] = {"p_cid": conv.id, "p_mid": message_id, "p_now": utcnow()}
        if not isinstance(state, Unchanged):
            params["p_state"] = state
        writer = self.db.writer
        if writer is not None:
            hot = self.db.hot
            return await writer.run(lambda conn: hot.write_turn(conn, params, state, rows))
        if self.db.pg is not None and len(rows) == 1:  # PostgreSQL, one reply (the usual case): one statement
            return [await self.db.pg.write_turn(params, state, rows[0])]
        async with self.db.engine.begin() as c:
            if not isinstance(state, Unchanged):
                await c.execute(TURN.save_state, params)
            out_ids = [(await c.execute(REPLY, row)).scalar_one() for row in rows]
            await c.execute(TURN.mark_handled, params)
            return out_ids

    @staticmethod
    def _outbound(
        conv: Conversation, channel: str, account: str, reply: OutboundMessage, *, author: str, delivery: str
    ) -> Message:
        return Message(
            conversation_id=conv.id,
            direction="out",
            channel=channel,
            account=account,
            kind=reply.kind,
            text=reply.text,
            media=dict(reply.data),
            author=author,
            delivery=delivery,
            at=utcnow(),
            handoff_at=utcnow() if delivery == "queued" else None,
        )

    # --- proactive sends (staff replies, ticket notices) ---------------------------------------

    async def send(
        self, s: AsyncSession, conv: Conversation, reply: OutboundMessage, *, author: str, batch: EventBatch
    ) -> Message:
        """Store an outbound message in the caller's transaction; deliver it after the commit.

        The caller must call ``await engine.after_commit(batch, [message.id])`` once it committed.
        """
        identity = conv.identity if "identity" in conv.__dict__ else await s.get_one(Identity, conv.identity_id)
        out = self._outbound(conv, identity.channel, identity.account, reply, author=author, delivery="queued")
        s.add(out)
        await s.flush()
        batch.emit(
            events.MESSAGE_CREATED, conversation_id=conv.id, message_id=out.id, direction="out",
            mode=conv.mode, text=reply.text, author=author,
        )
        return out

    async def after_commit(self, batch: EventBatch, message_ids: list[int]) -> None:
        """Publish the unit of work's events and hand its ``queued`` messages to the job queue. Never
        raises for Redis: both are retried or recovered (the sweep; the console reloads)."""
        await batch.publish(self.rt.services.pubsub)
        await self.hand_off(message_ids)

    # --- recovery: turns whose process stopped before they finished ------------------------------

    def start_recovery(self) -> None:
        """Sweep for unfinished turns now and every ``turn_recovery_interval`` seconds."""
        settings = self.rt.settings
        if settings.turn_recovery_after > 0 and self._sweeper is None:
            self._sweeper = asyncio.ensure_future(
                self._sweep_forever(settings.turn_recovery_after, settings.turn_recovery_interval)
            )

    async def stop_recovery(self) -> None:
        """Stop the sweeps: a sweep under way may finish its statements (cancelling one mid-statement
        would strand its database connection); one still running after two seconds is cancelled."""
        if self._sweeper is not None:
            self._stopping.set()
            done, _ = await asyncio.wait({self._sweeper}, timeout=2.0)
            if not done:
                self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
            self._stopping.clear()

    async def _sweep_forever(self, after: float, interval: float) -> None:
        while not self._stopping.is_set():
            try:
                await self.recover(older_than=after)
            except Exception:
                log.exception("the turn-recovery sweep failed; trying again in %.0f s", interval)
            try:
                await self.rt.jobs.sweep_deliveries(older_than=self.rt.settings.delivery_sweep_after)
            except Exception:
                log.exception("the delivery sweep failed; trying again in %.0f s", interval)
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
            except TimeoutError:
                pass

    async def recover(self, *, older_than: float, limit: int = 100) -> int:
        """Run the turns of inbound messages committed at least ``older_than`` seconds ago whose turn
        never finished: the process that accepted them died (crash, kill, a backlog at shutdown) or the
        turn failed. Each is tried at most ``RECOVERY_ATTEMPTS`` times, for messages of the last
        ``RECOVERY_HORIZON``; the replies go out through the channel's API (the webhook is long gone).
        Safe beside live turns and other processes' sweeps: a turn runs under the sender's lock and does
        nothing if the message is already handled. Returns how many turns it started."""
        now = utcnow()
        query = (
            sa.select(
                Message.id, Message.conversation_id, Message.channel, Message.account, Message.channel_msg_id,
                Message.kind, Message.text, Message.media, Message.at, Identity.external_id,
            )
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Identity, Identity.id == Conversation.identity_id)
            .where(
                Message.direction == "in",
                Message.handled_at.is_(None),
                Message.at < now - dt.timedelta(seconds=older_than),
                Message.at > now - RECOVERY_HORIZON,
                Message.attempts < RECOVERY_ATTEMPTS,
            )
            .order_by(Message.id)
            .limit(limit)
        )
        async with self.db.autocommit() as c:
            rows = (await c.execute(query)).all()
        for row in rows:
            async with self.db.autocommit() as c:
                await c.execute(
                    sa.update(Message).where(Message.id == row.id).values(attempts=Message.attempts + 1)
                )
            media = dict(row.media or {})
            msg = InboundMessage(
                channel=row.channel,
                account=row.account,
                sender=row.external_id,
                msg_id=row.channel_msg_id or f"recovered-{row.id}",
                kind=row.kind,
                text=row.text,
                media=media,
                event=media.pop("event", None),
                received_at=row.at,
            )
            log.warning(
                "message %s (%s) was stored but its turn never finished: running it now", row.id, row.channel
            )
            self.rt.metrics.turns_recovered.labels(row.channel).inc()
            pending = _Pending(self, msg.channel)
            pending.defer()  # nobody waits for a passive reply any more
            try:
                await self._process(msg, row.conversation_id, row.id, await self._parse(msg), time.perf_counter(),
                                    pending)
            except LockTimeout:  # the sender was busy (e.g. a dead process's lock): not a failed try
                async with self.db.autocommit() as c:
                    await c.execute(
                        sa.update(Message).where(Message.id == row.id).values(attempts=Message.attempts - 1)
                    )
            except Exception:
                pass  # logged by _process; the next sweep tries again (up to RECOVERY_ATTEMPTS)
        return len(rows)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for in-flight turns and deliveries (graceful shutdown, tests)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))


def advisory_key(name: str) -> int:
    """A PostgreSQL advisory-lock key (a signed 64-bit integer) for ``name``, the same in every process."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class _Pending:
    """Joins the two halves of a deferred reply: whichever of "processed" and "defer" comes second
    queues the delivery, so a reply is sent inline or through the API, exactly once. Replies the turn
    already wrote ``queued`` go to the job queue at once."""

    __slots__ = ("channel", "deferred", "engine", "out_ids", "queued")

    def __init__(self, engine: Engine, channel: str) -> None:
        self.engine, self.channel = engine, channel
        self.out_ids: list[int] | None = None
        self.deferred = False
        self.queued = False

    def processed(self, out_ids: list[int], *, queued: bool) -> None:
        self.out_ids, self.queued = out_ids, queued
        self.engine.rt.metrics.messages_out.labels(self.channel, "bot").inc(len(out_ids))
        if queued:
            if out_ids:
                self.engine._spawn(self.engine.hand_off(out_ids))
        elif self.deferred:
            self._deliver()

    def defer(self) -> None:
        if self.deferred:
            return
        self.deferred = True
        if self.out_ids is not None and not self.queued:
            self._deliver()

    def _deliver(self) -> None:
        if self.out_ids:
            self.engine._spawn(self.engine.deliver_later(self.out_ids))
