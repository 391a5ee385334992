"""Background jobs on taskiq: in-process in the embedded mode, a Redis stream in production.

The package is the job registry: ``Jobs`` registers every task (``deliver_message`` here, the SMS jobs of
``bot/jobs/sms.py``, the callback-survey sweep and handover scan of ``actions/surveys.py``) and their cron schedules (``bot/jobs/schedule.py``).

Why taskiq + taskiq-redis (docs/ARCHITECTURE.md): asyncio-native (our whole stack is), maintained,
with a Redis Streams broker whose messages are acknowledged only after the task ran. A worker that dies
mid-job leaves its message pending in the consumer group; another worker claims it (XAUTOCLAIM) once it
has been idle for ``job_redelivery_seconds`` and runs it again.

The database, not the queue, is the record of what is owed: an outbound message is ``queued`` (with
``handoff_at``) before it is handed to the queue. A hand-off that fails (Redis down or restarting) is
logged at once and counted (``yezhu_job_enqueue_failures_total``); the delivery sweep (``sweep_deliveries``,
run by every process's recovery loop) hands over again every message still ``queued`` or ``sending``
after ``YEZHU_DELIVERY_SWEEP_AFTER``, which also covers a queue that lost its jobs (a Redis restart
without persistence). So a job may run twice; a conditional claim (``queued`` -> ``sending``) lets only
one of them send, and a job that finds the message claimed by a live job leaves it alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker
from taskiq.exceptions import SendTaskError
from taskiq_redis import RedisStreamBroker

from bot import events
from bot.conversation import BOT, hand_over
from bot.events import EventBatch
from bot.jobs import sms as sms_jobs
from bot.jobs.schedule import (
    ALERT_ESCALATION,
    CAMPAIGN_TICK,
    CERTIFICATE_REMINDERS,
    SMS_SWEEP,
    SURVEY_HANDOVERS,
    SURVEY_SWEEP,
    WARRANTY_REMINDERS,
    Scheduler,
    schedule_labels,
)
from bot.store.hot_path import table
from bot.store.models import Conversation, Identity, Message, utcnow
from channels.base import OutboundMessage, SendResult

log = logging.getLogger("yezhu.jobs")

DELIVER = "yezhu.deliver_message"
DELIVERY_HORIZON = dt.timedelta(hours=24)
"""A message the sweep could not get delivered for this long is marked failed (WeChat's customer-service
window is 48 hours from the owner's last message; staff see the failure in the console)."""
SEND_SMS = "yezhu.send_sms"
SMS_CALLBACKS = "yezhu.sms_callbacks"
CAMPAIGN_DISPATCH = "yezhu.campaign_dispatch"


class ReclaimingStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, but pending messages of dead workers are reclaimed even when the
    stream is idle (upstream only runs XAUTOCLAIM after a read returned new messages)."""

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        failing_since: float | None = None
        while True:
            try:
                async for message in self._listen_once():
                    yield message
            except (RedisError, OSError) as exc:
                # Redis is down or restarting: keep the worker alive and try again. A restarted Redis
                # without persistence lost the stream and its consumer group: declare them again.
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.warning("job queue unavailable (%s: %s); retrying", type(exc).__name__, exc)
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    log.warning("job queue's consumer group is gone (Redis restarted?): declaring it again")
                    try:
                        await self._declare_consumer_group()
                    except (RedisError, OSError):
                        pass
                await asyncio.sleep(0.5)
            else:
                return

    async def _listen_once(self) -> AsyncGenerator[AckableMessage, None]:
        async with Redis(connection_pool=self.connection_pool) as conn:
            while True:
                fetched: Any = await conn.xreadgroup(  # redis-py types stream replies loosely
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


def _cause(exc: BaseException) -> str:
    """``Type: message`` of the error at the bottom of ``exc``'s chain (taskiq wraps the broker's)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return f"{type(exc).__name__}: {exc}"[:200]


def make_broker(settings: Any) -> AsyncBroker:
    if settings.redis_url:
        return ReclaimingStreamBroker(
            settings.redis_url,
            queue_name=settings.job_queue,
            idle_timeout=int(settings.job_redelivery_seconds * 1000),
            xread_block=1000,
            # A group created after the stream (Redis restarted and a web process queued a job before a
            # worker declared the group again) must read what is already there, not only newer entries.
            consumer_id="0",
            socket_connect_timeout=max(1.0, settings.redis_timeout),
        )
    return InMemoryBroker()


def _outbound(message: Message) -> OutboundMessage:
    """What a stored outbound message asks its channel to send: text, or a template message (its
    catalogue entry as recorded, and the message id as the de-duplication id the channel passes on)."""
    spec = (message.media or {}).get("wechat_template") if message.kind == "template" else None
    if isinstance(spec, dict):
        return OutboundMessage(message.text, kind="template", data={**spec, "client_msg_id": f"yezhu-{message.id}"})
    return OutboundMessage(message.text)


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

        async def survey_sweep() -> dict[str, int]:
            from actions import surveys

            return await surveys.sweep(self.rt)

        async def survey_handovers() -> int:
            from actions import surveys

            return await surveys.schedule_handovers(self.rt)

        self.broker.register_task(survey_sweep, task_name=SURVEY_SWEEP, **schedule_labels(SURVEY_SWEEP))
        self.broker.register_task(survey_handovers, task_name=SURVEY_HANDOVERS, **schedule_labels(SURVEY_HANDOVERS))

        async def campaign_dispatch(campaign_id: int) -> str:
            from actions.campaigns.dispatch import dispatch

            return await dispatch(self.rt, campaign_id)

        async def campaign_tick() -> dict[str, int]:
            from actions.campaigns import tick

            return await tick(self.rt)

        async def warranty_reminders() -> list[int]:
            from actions.campaigns import warranty_reminders as reminders

            return await reminders(self.rt)

        self._campaign = self.broker.register_task(campaign_dispatch, task_name=CAMPAIGN_DISPATCH)
        self.broker.register_task(campaign_tick, task_name=CAMPAIGN_TICK, **schedule_labels(CAMPAIGN_TICK))
        self.broker.register_task(warranty_reminders, task_name=WARRANTY_REMINDERS,
                                  **schedule_labels(WARRANTY_REMINDERS))

        async def certificate_reminders() -> int:
            from actions.collection import remind_uncollected

            return await remind_uncollected(self.rt)

        self._send_sms = self.broker.register_task(send_sms, task_name=SEND_SMS)
        self._sms_callbacks = self.broker.register_task(sms_callbacks, task_name=SMS_CALLBACKS)
        self.broker.register_task(sms_sweep, task_name=SMS_SWEEP, **schedule_labels(SMS_SWEEP))
        self.broker.register_task(alert_escalation, task_name=ALERT_ESCALATION, **schedule_labels(ALERT_ESCALATION))
        self.broker.register_task(certificate_reminders, task_name=CERTIFICATE_REMINDERS,
                                  **schedule_labels(CERTIFICATE_REMINDERS))
        self.scheduler = Scheduler(self.broker, runtime.services.dedup)
        self.callbacks_lock = asyncio.Lock()
        """One drain of stored SMS pushes per process at a time (``bot/jobs/sms.py``)."""
        self.sqlite_gate = asyncio.Lock()
        """SQLite only: the SMS pushes' inserts and their drain's writes take turns (``write_gate``)."""

    @property
    def in_process(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    async def startup(self) -> None:
        try:
            await self.broker.startup()
        except (RedisError, OSError) as exc:
            # A web process starts without Redis: jobs are handed over by the sweep once it is back.
            log.warning("job queue unavailable at start-up (%s: %s); continuing degraded", type(exc).__name__, exc)
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

    async def enqueue_delivery(self, message_id: int) -> bool:
        return await self.enqueue_deliveries([message_id])

    async def enqueue_deliveries(self, message_ids: list[int]) -> bool:
        """Hand committed ``queued`` messages to one job that delivers them in this order (a redelivered
        job skips the ones already sent). Returns False, having logged and counted it, when the queue
        did not take the job within ``YEZHU_REDIS_TIMEOUT``; the messages stay ``queued`` and the
        delivery sweep hands them over again. Never raises for a queue failure."""
        if not message_ids:
            return True
        payload: int | list[int] = message_ids[0] if len(message_ids) == 1 else list(message_ids)
        try:
            async with asyncio.timeout(max(1.0, self.rt.settings.redis_timeout * 2)):
                await self._deliver.kiq(payload)
        except (SendTaskError, RedisError, OSError, TimeoutError) as exc:  # taskiq wraps the broker's error
            self.rt.metrics.enqueue_failures.labels("deliver_message").inc()
            log.warning(
                "deliver: could not queue message(s) %s (%s); they stay queued and the delivery sweep "
                "hands them over again within %.0f s",
                ",".join(map(str, message_ids)), _cause(exc), self.rt.settings.delivery_sweep_after,
            )
            return False
        return True

    async def sweep_deliveries(self, *, older_than: float, limit: int = 200) -> int:
        """Hand over again the outbound messages still ``queued`` or ``sending`` ``older_than`` seconds
        after their last hand-off: the hand-off failed, the queue lost the job, or its worker died and
        the job was not redelivered. Several processes may sweep at once: each message is taken by one
        (a conditional update of ``handoff_at``). Messages owed longer than ``DELIVERY_HORIZON`` are
        marked failed with the reason. Returns how many were handed over."""
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=older_than)
        # A ``sending`` message is taken over only once its job has shown no life for longer than a
        # job's lease (a live job renews ``handoff_at`` before every attempt).
        lease = now - dt.timedelta(seconds=max(older_than, self.rt.settings.job_redelivery_seconds))
        m = table(Message)
        undelivered = m.c.delivery.in_(("queued", "sending"))
        async with self.rt.db.autocommit() as c:
            expired = (
                await c.execute(
                    sa.update(m)
                    .where(undelivered, m.c.at < now - DELIVERY_HORIZON)
                    .values(delivery="failed", delivery_error="not delivered within 24 hours (job queue unavailable)")
                    .returning(m.c.id)
                )
            ).scalars().all()
            rows = (
                await c.execute(
                    sa.select(m.c.id, m.c.handoff_at, m.c.conversation_id)
                    .where(
                        undelivered,
                        sa.or_(
                            sa.and_(m.c.handoff_at.is_(None), m.c.at < cutoff),  # queued by older code
                            sa.and_(m.c.delivery == "queued", m.c.handoff_at < cutoff),
                            sa.and_(m.c.delivery == "sending", m.c.handoff_at < lease),
                        ),
                    )
                    .order_by(m.c.id)
                    .limit(limit)
                )
            ).all()
            taken: list[tuple[int, int]] = []
            for row in rows:
                same = m.c.handoff_at.is_(None) if row.handoff_at is None else m.c.handoff_at == row.handoff_at
                # back to ``queued``: the new job's claim must be able to take it
                claim = sa.update(m).where(m.c.id == row.id, undelivered, same).values(delivery="queued", handoff_at=now)
                if (await c.execute(claim)).rowcount == 1:
                    taken.append((row.conversation_id, row.id))
        for message_id in expired:
            log.error("deliver: message %s was not delivered within 24 hours; marked failed", message_id)
            self.rt.metrics.deliveries_swept.labels("expired").inc()
        if not taken:
            return 0
        log.warning("deliver: %d message(s) were not delivered in time; handing them over again", len(taken))
        by_conversation: dict[int, list[int]] = {}
        for conversation_id, message_id in sorted(taken):
            by_conversation.setdefault(conversation_id, []).append(message_id)
        for ids in by_conversation.values():  # one job per conversation keeps its messages in order
            outcome = "requeued" if await self.enqueue_deliveries(ids) else "enqueue_failed"
            self.rt.metrics.deliveries_swept.labels(outcome).inc(len(ids))
        return len(taken)

    async def enqueue_sms(self, sms_id: int) -> None:
        await self._send_sms.kiq(sms_id)

    async def enqueue_campaign(self, campaign_id: int) -> None:
        """Hand a ``sending`` campaign to a dispatcher (a worker, or this process in the embedded mode);
        a second dispatcher for the same campaign finds its lease held and leaves it."""
        await self._campaign.kiq(campaign_id)

    async def enqueue_sms_callbacks(self, ids: list[int]) -> None:
        await self._sms_callbacks.kiq(ids)

    # --- jobs ----------------------------------------------------------------------------------

    async def deliver_message(self, message_id: int) -> str:
        """Send one stored outbound message through its channel's API, with retries; record the outcome.

        The message is claimed first (``queued`` -> ``sending``, or a ``sending`` whose job has not
        shown life for ``job_redelivery_seconds``: its worker died), and the claim is renewed while the
        job runs, so of two jobs for one message (the sweep's and the original) only one sends."""
        rt = self.rt
        claimed = await self._claim(message_id)
        if claimed is not None:
            return claimed
        async with rt.db.session() as s:
            row = (
                await s.execute(
                    sa.select(Message, Identity)
                    .join(Conversation, Conversation.id == Message.conversation_id)
                    .join(Identity, Identity.id == Conversation.identity_id)
                    .where(Message.id == message_id)
                )
            ).one()
        message, identity = row
        caps = rt.channels.capabilities(message.channel)
        if caps is not None and caps.templates_only:  # SMS: the reply goes through the notifier's outbox
            return await self._deliver_templated(message, identity)
        sender = rt.senders.get(message.channel)
        if sender is None:  # api / terminal: the owner's client reads replies from the conversation
            await self._record(message_id, "stored", None, 0)
            return "stored"
        result = SendResult(ok=False, error="not attempted")
        attempts = message.attempts
        heartbeat = asyncio.ensure_future(self._keep_claim(message_id))
        try:
            for attempt in range(rt.settings.job_max_retries):
                attempts += 1
                try:
                    result = await sender.send(identity.account, identity.external_id, _outbound(message))
                except Exception as exc:  # a bug or an unexpected transport error: retry like a 5xx
                    log.exception("deliver: send raised")
                    result = SendResult(ok=False, error=str(exc)[:200], retryable=True)
                if result.ok or not result.retryable:
                    break
                await asyncio.sleep(rt.settings.job_retry_base * (2**attempt))
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        status = "sent" if result.ok else "failed"
        error = None if result.ok else f"{result.error_code or ''} {result.error or ''}".strip()[:200]
        await self._record(message_id, status, error, attempts, provider_id=result.provider_id, media=message.media)
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

    async def _claim(self, message_id: int) -> str | None:
        """Take ``message_id`` for this job: None when taken, else why not (the job's result)."""
        now = utcnow()
        lease = now - dt.timedelta(seconds=self.rt.settings.job_redelivery_seconds)
        m = table(Message)
        async with self.rt.db.autocommit() as c:
            taken = await c.execute(
                sa.update(m)
                .where(
                    m.c.id == message_id,
                    sa.or_(
                        m.c.delivery == "queued",
                        sa.and_(m.c.delivery == "sending", sa.or_(m.c.handoff_at < lease, m.c.handoff_at.is_(None))),
                    ),
                )
                .values(delivery="sending", handoff_at=now)
            )
            if taken.rowcount == 1:
                return None
            state = (await c.execute(sa.select(m.c.delivery).where(m.c.id == message_id))).scalar_one_or_none()
        if state is None:
            log.warning("deliver: message %s does not exist", message_id)
            return "missing"
        if state == "sending":
            log.info("deliver: message %s is being sent by another job", message_id)
        return state or "skipped"  # sent, failed, stored: done already (a redelivered or swept job)

    async def _keep_claim(self, message_id: int) -> None:
        """While this job works on a message, renew its claim every third of the lease, so a slow send
        (a hanging API, long back-off) is never taken over by another job while this one is alive."""
        interval = max(0.1, self.rt.settings.job_redelivery_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.rt.db.autocommit() as c:
                    await c.execute(
                        sa.update(Message)
                        .where(Message.id == message_id, Message.delivery == "sending")
                        .values(handoff_at=utcnow())
                    )
            except Exception:
                log.warning("deliver: could not renew the claim on message %s", message_id, exc_info=True)

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
        self, message_id: int, status: str, error: str | None, attempts: int, provider_id: str | None = None,
        media: dict[str, Any] | None = None,
    ) -> None:
        async with self.rt.db.session() as s, s.begin():
            values: dict[str, Any] = {"delivery": status, "delivery_error": error, "attempts": attempts}
            if provider_id:  # kept beside what the message carried (a notice's ticket, a template)
                values["media"] = {**(media or {}), "provider_id": provider_id}
            await s.execute(sa.update(Message).where(Message.id == message_id).values(**values))
        log.info("deliver: message %s %s", message_id, status, extra={"at": utcnow().isoformat()})
