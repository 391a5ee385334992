"""The conversation engine: DESIGN.md's hot path for one inbound message.

1. ``accept``: de-duplicate on ``(channel, account, msg_id)`` (the shared de-dup set first, the unique
   constraint on ``message`` as the backstop) and commit the inbound message **before** the channel
   answers its webhook, so nothing a channel acknowledged is ever lost.
2. ``_process`` (a task, serialised per sender by a lock): if a person owns the conversation the bot
   stays silent; otherwise NLU parses the text, the policy decides, the replies are stored in the same
   transaction, and domain events are published after the commit.
3. Replies go back through the channel inline when they are ready in time; otherwise the channel calls
   ``defer()`` and the engine queues a delivery job per reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot import events
from bot.conversation import CLOSED, STAFF, log_event
from bot.events import EventBatch
from bot.policy import Policy, Turn
from bot.store.db import Database
from bot.store.models import Conversation, Identity, Message, Owner, utcnow
from channels.base import Accepted, Duplicate, InboundMessage, OutboundMessage

log = logging.getLogger("yezhu.engine")

Enqueue = Callable[..., Awaitable[None]]


def dedup_key(msg: InboundMessage) -> str:
    return f"msg:{msg.channel}:{msg.account}:{msg.msg_id}"


def sender_key(channel: str, account: str, sender: str) -> str:
    return f"{channel}:{account}:{sender}"


class Engine:
    def __init__(self, runtime: Any, policy: Policy) -> None:
        self.rt = runtime
        self.db: Database = runtime.db
        self.policy = policy
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- step 1: accept ------------------------------------------------------------------------

    async def accept(self, msg: InboundMessage) -> Accepted | Duplicate:
        services, metrics = self.rt.services, self.rt.metrics
        started = time.perf_counter()
        key = dedup_key(msg)
        if not await services.dedup.first_seen(key, self.rt.settings.dedup_ttl):
            metrics.dedup_hits.labels(msg.channel).inc()
            return Duplicate()
        try:
            async with services.locks.lock("accept:" + sender_key(msg.channel, msg.account, msg.sender)):
                stored = await self._store_inbound(msg)
        except IntegrityError:
            # The database saw this msg_id already (e.g. the de-dup key expired, or Redis was flushed).
            metrics.dedup_hits.labels(msg.channel).inc()
            return Duplicate()
        except BaseException:
            await services.dedup.forget(key)  # not stored: let the channel's retry get through
            raise
        metrics.messages_in.labels(msg.channel).inc()
        conversation_id, message_id = stored
        pending = _Pending(self, msg.channel)
        task = self._spawn(self._process(msg, conversation_id, message_id, started, pending))
        return Accepted(replies=asyncio.shield(task), defer=pending.defer)

    async def _store_inbound(self, msg: InboundMessage) -> tuple[int, int]:
        async with self.db.session() as s, s.begin():
            identity = await self._identity(s, msg.channel, msg.account, msg.sender)
            identity.last_inbound_at = utcnow()
            if msg.kind == "event" and msg.event in ("subscribe", "unsubscribe"):
                identity.subscribed = msg.event == "subscribe"
            conv = await self.current_conversation(s, identity)
            conv.last_message_at = utcnow()
            message = Message(
                conversation_id=conv.id,
                direction="in",
                channel=msg.channel,
                account=msg.account,
                channel_msg_id=msg.msg_id,
                kind=msg.kind,
                text=msg.text,
                media=dict(msg.media, **({"event": msg.event} if msg.event else {})),
                at=msg.received_at,
            )
            s.add(message)
            await s.flush()
            return conv.id, message.id

    async def _identity(self, s: AsyncSession, channel: str, account: str, external_id: str) -> Identity:
        q = sa.select(Identity).where(
            Identity.channel == channel, Identity.account == account, Identity.external_id == external_id
        )
        identity = (await s.execute(q)).scalar_one_or_none()
        if identity is None:
            identity = Identity(channel=channel, account=account, external_id=external_id)
            if channel == "sms":  # an SMS sender is identified by the phone the owner registered
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
        self, msg: InboundMessage, conversation_id: int, message_id: int, started: float, pending: _Pending
    ) -> list[OutboundMessage]:
        rt = self.rt
        try:
            async with rt.services.locks.lock("turn:" + sender_key(msg.channel, msg.account, msg.sender)):
                replies, out_ids, batch = await self._turn(msg, conversation_id, message_id)
            await batch.publish(rt.services.pubsub)
        except Exception:
            log.exception("processing failed", extra={"conversation_id": conversation_id})
            raise
        rt.metrics.latency.labels(msg.channel).observe(time.perf_counter() - started)
        pending.processed(out_ids)
        return replies

    async def deliver_later(self, out_ids: list[int]) -> None:
        """The channel could not reply inline: mark the replies queued and hand them to the job queue."""
        async with self.db.session() as s, s.begin():
            await s.execute(sa.update(Message).where(Message.id.in_(out_ids)).values(delivery="queued"))
        for mid in out_ids:
            await self.rt.jobs.enqueue_delivery(mid)

    async def _turn(
        self, msg: InboundMessage, conversation_id: int, message_id: int
    ) -> tuple[list[OutboundMessage], list[int], EventBatch]:
        rt = self.rt
        batch = EventBatch()
        async with self.db.session() as s, s.begin():
            conv = (
                await s.execute(
                    sa.select(Conversation)
                    .where(Conversation.id == conversation_id)
                    # The identity and owner only: a policy that needs the houses loads them itself.
                    .options(selectinload(Conversation.identity).selectinload(Identity.owner))
                )
            ).scalar_one()
            message = await s.get_one(Message, message_id)
            parse = None
            if msg.text.strip() and msg.kind in ("text", "voice", "link", "location") and rt.nlu is not None:
                parse = await rt.nlu.aparse(msg.text)
                message.nlu = parse.to_dict()
                rt.metrics.nlu_intents.labels(parse.intent).inc()
            batch.emit(
                events.MESSAGE_CREATED,
                conversation_id=conv.id,
                message_id=message.id,
                direction="in",
                mode=conv.mode,
                text=msg.text,
            )
            if conv.mode == STAFF:
                return [], [], batch  # a person owns the conversation: the bot stays silent
            turn = Turn(
                inbound=msg,
                message=message,
                conversation=conv,
                identity=conv.identity,
                owner=conv.identity.owner,
                parse=parse,
                session=s,
                events=batch,
                now=utcnow(),
                runtime=rt,
            )
            replies = await self.policy.respond(turn)
            out_ids = []
            for reply in replies:
                out = self._outbound(conv, msg.channel, msg.account, reply, author="bot", delivery="reply")
                s.add(out)
                await s.flush()
                out_ids.append(out.id)
                batch.emit(
                    events.MESSAGE_CREATED, conversation_id=conv.id, message_id=out.id, direction="out",
                    mode=conv.mode, text=reply.text,
                )
        return replies, out_ids, batch

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
        await batch.publish(self.rt.services.pubsub)
        for mid in message_ids:
            await self.rt.jobs.enqueue_delivery(mid)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for in-flight turns and deliveries (graceful shutdown, tests)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))


class _Pending:
    """Joins the two halves of a deferred reply: whichever of "processed" and "defer" comes second
    queues the delivery, so a reply is sent inline or through the API, exactly once."""

    __slots__ = ("channel", "deferred", "engine", "out_ids")

    def __init__(self, engine: Engine, channel: str) -> None:
        self.engine, self.channel = engine, channel
        self.out_ids: list[int] | None = None
        self.deferred = False

    def processed(self, out_ids: list[int]) -> None:
        self.out_ids = out_ids
        self.engine.rt.metrics.messages_out.labels(self.channel, "bot").inc(len(out_ids))
        if self.deferred:
            self._deliver()

    def defer(self) -> None:
        if self.deferred:
            return
        self.deferred = True
        if self.out_ids is not None:
            self._deliver()

    def _deliver(self) -> None:
        if self.out_ids:
            self.engine._spawn(self.engine.deliver_later(self.out_ids))
