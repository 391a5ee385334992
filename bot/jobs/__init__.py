"""Background jobs on taskiq: in-process in the embedded mode, a Redis stream in production.

The package is the job registry: ``Jobs`` registers every task (``deliver_message`` here, the SMS jobs of
``bot/jobs/sms.py``) and their cron schedules (``bot/jobs/schedule.py``).

Why taskiq + taskiq-redis (docs/ARCHITECTURE.md): asyncio-native (our whole stack is), maintained,
with a Redis Streams broker whose messages are acknowledged only after the task ran. A worker that dies
mid-job leaves its message pending in the consumer group; another worker claims it (XAUTOCLAIM) once it
has been idle for ``job_redelivery_seconds`` and runs it again. Jobs are therefore written to be
idempotent (a delivery already ``sent`` is not sent twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker
from taskiq_redis import RedisStreamBroker

from bot import events
from bot.conversation import BOT, hand_over
from bot.events import EventBatch
from bot.jobs import sms as sms_jobs
from bot.jobs.schedule import ALERT_ESCALATION, SMS_SWEEP, Scheduler, schedule_labels
from bot.store.models import Conversation, Identity, Message, utcnow
from channels.base import OutboundMessage, SendResult

log = logging.getLogger("yezhu.jobs")

DELIVER = "yezhu.deliver_message"
SEND_SMS = "yezhu.send_sms"
SMS_CALLBACKS = "yezhu.sms_callbacks"


class ReclaimingStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, but pending messages of dead workers are reclaimed even when the
    stream is idle (upstream only runs XAUTOCLAIM after a read returned new messages)."""

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        async with Redis(connection_pool=self.connection_pool) as conn:
            while True:
                fetched = await conn.xreadgroup(
                    self.consumer_group_name, self.consumer_name, {self.queue_name: ">"},
                    block=self.block, noack=False, count=self.count,
                )
                for stream, items in fetched or []:
                    for msg_id, msg in items:
                        yield AckableMessage(data=msg[b"data"], ack=self._ack_generator(id=msg_id, queue_name=stream))
                # XAUTOCLAIM is atomic: concurrent workers each get a disjoint set of stale messages.
                _cursor, claimed, *_ = await conn.xautoclaim(
                    name=self.queue_name, groupname=self.consumer_group_name, consumername=self.consumer_name,
                    min_idle_time=self.idle_timeout, count=self.unacknowledged_batch_size,
                )
                for msg_id, msg in claimed:
                    if msg:  # a message trimmed from the stream comes back as None
                        log.warning("re-running a job left unacknowledged by a dead worker: %s", msg_id)
                        yield AckableMessage(data=msg[b"data"], ack=self._ack_generator(id=msg_id, queue_name=self.queue_name))


def make_broker(settings: Any) -> AsyncBroker:
    if settings.redis_url:
        return ReclaimingStreamBroker(
            settings.redis_url,
            queue_name=settings.job_queue,
            idle_timeout=int(settings.job_redelivery_seconds * 1000),
            xread_block=1000,
        )
    return InMemoryBroker()


class Jobs:
    """The job queue as the rest of Yezhu sees it: typed ``enqueue_*`` methods, one per job."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.broker = make_broker(runtime.settings)

        async def deliver_message(message_id: int | list[int]) -> str:  # taskiq renames it: no bound method
            if isinstance(message_id, list):  # one turn's replies: one job, so they arrive in order
                return ",".join([await self.deliver_message(mid) for mid in message_id])
            return await self.deliver_message(message_id)

        self._deliver = self.broker.register_task(deliver_message, task_name=DELIVER)

        async def send_sms(sms_id: int) -> str:
            return await sms_jobs.send_sms(self.rt, sms_id)

        async def sms_callbacks(ids: list[int]) -> int:  # ids: the push's rows; the drain takes every pending one
            return await sms_jobs.process_callbacks(self.rt)

        async def sms_sweep() -> dict[str, int]:
            return await sms_jobs.sweep(self.rt)

        async def alert_escalation() -> int:
            from actions.alerts import escalate, overdue

            return await escalate(self.rt) + await overdue(self.rt)

        self._send_sms = self.broker.register_task(send_sms, task_name=SEND_SMS)
        self._sms_callbacks = self.broker.register_task(sms_callbacks, task_name=SMS_CALLBACKS)
        self.broker.register_task(sms_sweep, task_name=SMS_SWEEP, **schedule_labels(SMS_SWEEP))
        self.broker.register_task(alert_escalation, task_name=ALERT_ESCALATION, **schedule_labels(ALERT_ESCALATION))
        self.scheduler = Scheduler(self.broker, runtime.services.dedup)
        self.callbacks_lock = asyncio.Lock()
        """One drain of stored SMS pushes per process at a time (``bot/jobs/sms.py``)."""
        self.sqlite_gate = asyncio.Lock()
        """SQLite only: the SMS pushes' inserts and their drain's writes take turns (``write_gate``)."""

    @property
    def in_process(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    async def startup(self) -> None:
        await self.broker.startup()
        if self.rt.settings.scheduler:
            await self.scheduler.start()

    async def shutdown(self, timeout: float = 10.0) -> None:
        await self.scheduler.stop()
        if isinstance(self.broker, InMemoryBroker):
            # Let in-process jobs finish (a send being cancelled half-way would leave its database
            # connection behind); what is still running after ``timeout`` is cancelled by the broker.
            try:
                await asyncio.wait_for(self.broker.wait_all(), timeout)
            except TimeoutError:
                log.warning("in-process jobs still running at shutdown were cancelled")
        await self.broker.shutdown()

    async def enqueue_delivery(self, message_id: int) -> None:
        await self._deliver.kiq(message_id)

    async def enqueue_deliveries(self, message_ids: list[int]) -> None:
        """Several messages to one owner, delivered in this order by one job (a redelivered job skips
        the ones already sent)."""
        if len(message_ids) == 1:
            await self.enqueue_delivery(message_ids[0])
        elif message_ids:
            await self._deliver.kiq(list(message_ids))

    async def enqueue_sms(self, sms_id: int) -> None:
        await self._send_sms.kiq(sms_id)

    async def enqueue_sms_callbacks(self, ids: list[int]) -> None:
        await self._sms_callbacks.kiq(ids)

    # --- jobs ----------------------------------------------------------------------------------

    async def deliver_message(self, message_id: int) -> str:
        """Send one stored outbound message through its channel's API, with retries; record the outcome."""
        rt = self.rt
        async with rt.db.session() as s:
            row = (
                await s.execute(
                    sa.select(Message, Identity)
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .join(Identity, Identity.id == Conversation.identity_id)
                    .where(Message.id == message_id)
                )
            ).one_or_none()
        if row is None:
            log.warning("deliver: message %s does not exist", message_id)
            return "missing"
        message, identity = row
        if message.delivery == "sent":
            return "sent"  # already delivered by an earlier run (a redelivered job)
        caps = rt.channels.capabilities(message.channel)
        if caps is not None and caps.templates_only:  # SMS: the reply goes through the notifier's outbox
            return await self._deliver_templated(message, identity)
        sender = rt.senders.get(message.channel)
        if sender is None:  # api / terminal: the owner's client reads replies from the conversation
            await self._record(message_id, "stored", None, 0)
            return "stored"
        result = SendResult(ok=False, error="not attempted")
        attempts = message.attempts
        for attempt in range(rt.settings.job_max_retries):
            attempts += 1
            try:
                result = await sender.send(identity.account, identity.external_id, OutboundMessage(message.text))
            except Exception as exc:  # a bug or an unexpected transport error: retry like a 5xx
                log.exception("deliver: send raised")
                result = SendResult(ok=False, error=str(exc)[:200], retryable=True)
            if result.ok or not result.retryable:
                break
            await asyncio.sleep(rt.settings.job_retry_base * (2**attempt))
        status = "sent" if result.ok else "failed"
        error = None if result.ok else f"{result.error_code or ''} {result.error or ''}".strip()[:200]
        await self._record(message_id, status, error, attempts, provider_id=result.provider_id)
        rt.metrics.messages_out.labels(message.channel, status).inc()
        rt.metrics.job_runs.labels("deliver_message", status).inc()
        if not result.ok:
            rt.metrics.job_failures.labels("deliver_message").inc()
            batch = EventBatch()
            batch.emit(
                events.DELIVERY_FAILED, message_id=message_id, conversation_id=message.conversation_id,
                error_code=result.error_code, error=error,
            )
            await batch.publish(rt.services.pubsub)
        return status

    async def _deliver_templated(self, message: Message, identity: Identity) -> str:
        """A reply on a templates-only channel (SMS): recorded as an SMS of kind ``reply`` (one per
        message: the idempotency key), sent by ``send_sms``, which also settles ``message.delivery``."""
        rt = self.rt
        batch = EventBatch()
        async with rt.db.session() as s, s.begin():
            sms = await rt.notifier.sms(
                s, batch, phone=identity.external_id, kind="reply", params={"content": message.text},
                owner_id=identity.owner_id, conversation_id=message.conversation_id, message_id=message.id,
                idempotency_key=f"reply:{message.id}",
            )
            delivery = {"skipped": "failed", "queued": "queued", "deferred": "queued"}.get(sms.status, "sent")
            await s.execute(sa.update(Message).where(Message.id == message.id).values(
                delivery=delivery, delivery_error=sms.error, media={**(message.media or {}), "sms_id": sms.id}))
            if sms.error_code == "no_template":
                # No approved reply template (Tencent approves only codes for real estate): the bot cannot
                # answer by SMS, so staff take the conversation (they phone, or reply once a template is
                # approved); the bot's unsent answer stays in the conversation for them to read.
                conv = await s.get(Conversation, message.conversation_id)
                if conv is not None and conv.mode == BOT:
                    hand_over(s, batch, conv, reason="sms_no_reply_template", now=utcnow())
        await batch.publish(rt.services.pubsub)
        return delivery

    async def _record(
        self, message_id: int, status: str, error: str | None, attempts: int, provider_id: str | None = None
    ) -> None:
        async with self.rt.db.session() as s, s.begin():
            values: dict[str, Any] = {"delivery": status, "delivery_error": error, "attempts": attempts}
            if provider_id:
                values["media"] = {"provider_id": provider_id}
            await s.execute(sa.update(Message).where(Message.id == message_id).values(**values))
        log.info("deliver: message %s %s", message_id, status, extra={"at": utcnow().isoformat()})
