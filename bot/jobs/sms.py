"""The SMS jobs: send a recorded SMS, work on the providers' pushes, and the outbox sweep.

The exactly-once rule for sends: a row is *claimed* by one statement that moves it from ``queued`` /
``deferred`` to ``sending`` (only one worker can win it); the provider is called outside any transaction;
the outcome is written after. A send whose outcome is not known (a timeout) becomes ``unknown`` and is
never sent again: the providers have no idempotency. Its receipt, or the sweep's query to the provider,
resolves it. A worker that died holding a ``sending`` row leaves the same doubt, and the sweep marks it
``unknown`` too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bot import events
from bot.events import EventBatch
from bot.store.models import Message, Owner, SmsCallback, SmsMessage, utcnow
from channels.base import InboundMessage
from channels.sms import PUSHES
from channels.sms.base import Receipt, SmsRequest, SmsResult

log = logging.getLogger("yezhu.jobs.sms")

RETRY_DELAYS = (30, 120, 600, 1800, 3600)
"""Seconds before trying a ``retry`` outcome again (flow control, no connection); then it failed."""
SENDING_STALE = dt.timedelta(minutes=10)
QUEUED_STALE = dt.timedelta(seconds=30)
UNKNOWN_QUERY_AFTER = dt.timedelta(minutes=5)
UNKNOWN_HORIZON = dt.timedelta(days=3)
RATE_WAIT_MAX = 10.0
PUSH_GIVE_UP = dt.timedelta(days=1)
CAPPED = frozenset({"notice", "marketing"})
"""Categories counted against the per-number daily cap (replies and urgent messages are not)."""


async def send_sms(rt: Any, sms_id: int) -> str:
    """Send one recorded SMS (idempotent: anything but a due ``queued``/``deferred`` row is left alone)."""
    now = utcnow()
    settings = rt.settings
    async with rt.db.session() as s, s.begin():
        row = await s.get(SmsMessage, sms_id)
        if row is None:
            return "missing"
        if row.status not in ("queued", "deferred") or (row.not_before is not None and row.not_before > now):
            return row.status
        if not row.urgent and row.owner_id is not None:
            owner = await s.get(Owner, row.owner_id)
            template = rt.notifier.template(row.kind)
            if owner is not None and owner.sms_opt_out and template is not None and template.category in (
                    "notice", "marketing"):
                # Opted out after it was recorded: honoured at once (通信短信息服务管理规定).
                row.status, row.error_code, row.error = "skipped", "opted_out", "业主已退订短信通知"
                return "skipped"
    async with rt.db.autocommit() as c:
        claimed = (await c.execute(
            sa.update(SmsMessage)
            .where(SmsMessage.id == sms_id, SmsMessage.status.in_(("queued", "deferred")))
            .values(status="sending", attempts=SmsMessage.attempts + 1, updated_at=now)
        )).rowcount
    if claimed != 1:
        return "taken"  # another worker won it
    template = rt.notifier.template(row.kind)
    if template is not None and template.category in CAPPED:
        cap = await rt.services.rate.hit(f"sms:cap:{row.phone}", limit=settings.sms_daily_cap, window=86400)
        if not cap.allowed:  # deferred, not dropped (DOMAIN.md)
            await _defer(rt, sms_id, now + dt.timedelta(seconds=max(60.0, cap.retry_after)), "daily_cap",
                         "已达当日发送上限，顺延发送")
            return "deferred"
    if not await _take_rate_slot(rt):
        await _defer(rt, sms_id, now + dt.timedelta(seconds=5), "rate_limit", "发送速率受限，稍后发送")
        return "deferred"
    request = SmsRequest(
        phone=row.phone, sign_name=_sign(row.text), template_code=row.template_code or row.kind,
        params=dict(row.params or {}), param_order=tuple(template.params) if template else tuple(row.params or {}),
        out_id=row.out_id or str(row.id),
    )
    try:
        result = await rt.sms_provider.send(request)
    except Exception as exc:  # a bug in a provider adapter: the request may have gone out
        log.exception("SMS %s: the provider adapter raised", sms_id)
        result = SmsResult("unknown", error_code="exception", error=str(exc)[:200])
    return await _record(rt, row, result)


def _sign(text: str) -> str:
    return text[1:text.index("】")] if text.startswith("【") and "】" in text else ""


async def _take_rate_slot(rt: Any) -> bool:
    """Wait (briefly) for a slot under the provider's requests-per-second limit, shared by all processes."""
    limit = max(1, int(rt.settings.sms_rate_limit))
    waited = 0.0
    while True:
        decision = await rt.services.rate.hit(f"sms:rate:{rt.settings.sms_provider}", limit=limit, window=1.0)
        if decision.allowed:
            return True
        if waited >= RATE_WAIT_MAX:
            return False
        pause = min(max(decision.retry_after, 0.05), 1.0)
        await asyncio.sleep(pause)
        waited += pause


async def _defer(rt: Any, sms_id: int, until: dt.datetime, code: str, reason: str) -> None:
    """Give a claimed row back, to be sent at ``until`` (nothing went to the provider)."""
    async with rt.db.autocommit() as c:
        await c.execute(
            sa.update(SmsMessage).where(SmsMessage.id == sms_id, SmsMessage.status == "sending")
            .values(status="deferred", not_before=until, error_code=code, error=reason,
                    attempts=SmsMessage.attempts - 1, updated_at=utcnow())
        )


async def _record(rt: Any, row: SmsMessage, result: SmsResult) -> str:
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now, "error_code": result.error_code, "error": result.error}
    if result.status == "sent":
        values.update(status="sent", provider_id=result.provider_id, sent_at=now, error_code=None, error=None)
    elif result.status == "retry" and row.attempts < len(RETRY_DELAYS):
        values.update(status="deferred", not_before=now + dt.timedelta(seconds=RETRY_DELAYS[row.attempts]))
    elif result.status == "unknown":
        values.update(status="unknown", sent_at=now)
    else:
        values.update(status="failed")
    async with rt.db.session() as s, s.begin():
        await s.execute(sa.update(SmsMessage).where(SmsMessage.id == row.id).values(**values))
        if row.message_id is not None:
            delivery = {"sent": "sent", "failed": "failed", "unknown": "sent", "deferred": "queued"}[values["status"]]
            await s.execute(sa.update(Message).where(Message.id == row.message_id).values(
                delivery=delivery, delivery_error=None if delivery == "sent" else (result.error or "")[:200]))
    status = str(values["status"])
    rt.metrics.job_runs.labels("send_sms", status).inc()
    batch = EventBatch()
    batch.emit(events.SMS_STATUS_CHANGED, sms_id=row.id, status=status, error_code=result.error_code,
               conversation_id=row.conversation_id)
    await batch.publish(rt.services.pubsub)
    log.info("SMS %s (%s) %s%s", row.id, row.kind, status, f" [{result.error_code}]" if result.error_code else "")
    return status


# --- provider pushes --------------------------------------------------------------------------------


def insert_ignoring_duplicates(dialect: str) -> Any:
    """``INSERT … ON CONFLICT (dedup_key) DO NOTHING RETURNING id`` on either database."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(SmsCallback).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(SmsCallback.id)


def write_gate(rt: Any) -> AbstractAsyncContextManager[Any]:
    """On SQLite (one writer at a time), the pushes' inserts and the drain's writes take turns on an
    asyncio lock instead of meeting in SQLite's busy handler, whose back-off sleeps (up to 100 ms a
    round) would delay the answers to the providers; PostgreSQL needs no gate."""
    return rt.jobs.sqlite_gate if rt.db.is_sqlite else nullcontext()


class CallbackStore:
    """The SMS webhook's sink: one ``INSERT … ON CONFLICT DO NOTHING`` per push, then a job works on it."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt

    async def store(self, provider: str, kind: str, items: Any) -> list[int]:
        now = utcnow()
        rows = [{"provider": provider, "kind": kind, "dedup_key": f"{provider}:{key}"[:120], "body": item,
                 "received_at": now} for key, item in items]
        dialect = "postgresql" if not self.rt.db.is_sqlite else "sqlite"
        async with write_gate(self.rt), self.rt.db.engine.begin() as c:
            return list((await c.execute(insert_ignoring_duplicates(dialect), rows)).scalars())

    async def work(self, ids: list[int]) -> None:
        try:
            await self.rt.jobs.enqueue_sms_callbacks(ids)
        except Exception:  # stored: the sweep works on it within a minute
            log.exception("could not enqueue SMS pushes %s; the sweep will", ids[:5])


async def process_callbacks(rt: Any, limit: int = 100) -> int:
    """Work on every stored push not yet worked on, in batches: receipts update their SMS, uplinks become
    inbound messages of the owner's SMS conversation; each is marked processed once done.

    One drain per process at a time: a push that arrives while one runs is picked up by it (it loops until
    nothing is pending), so a burst of 100 pushes costs a few transactions, not 100 competing ones (which
    on SQLite's single writer would delay the answers to the pushes themselves). Working on a push twice
    (two processes) changes nothing: receipts only move a status forward, uplinks are de-duplicated.

    A push whose work fails (the database is away, a bug) stays pending and is tried again by the next
    drain or the sweep: it was acknowledged to the provider, so it must not be lost. One that still fails
    after ``PUSH_GIVE_UP`` is marked ``error`` (and logged each time before that)."""
    lock: asyncio.Lock = rt.jobs.callbacks_lock
    if lock.locked():
        return 0
    total = 0
    async with lock:
        while True:
            n = await _process_batch(rt, limit)
            total += n
            if n == 0:  # nothing pending, or only pushes that failed just now: the sweep retries those
                return total


async def _process_batch(rt: Any, limit: int) -> int:
    async with rt.db.session() as s:
        q = sa.select(SmsCallback).where(SmsCallback.processed_at.is_(None)).order_by(SmsCallback.id).limit(limit)
        rows = (await s.execute(q)).scalars().all()
    receipts: list[tuple[int, Receipt]] = []
    done: dict[int, str] = {}
    for row in rows:
        fmt = PUSHES.get(row.provider)
        try:
            if fmt is None:
                raise ValueError(f"unknown provider {row.provider}")
            if row.kind == "receipt":
                receipts.append((row.id, fmt.receipt(row.body)))
                continue
            done[row.id] = await _uplink(rt, row.provider, fmt.uplink(row.body))
        except Exception:
            log.exception("SMS push %s could not be worked on; it stays pending", row.id)
            if row.received_at < utcnow() - PUSH_GIVE_UP:
                done[row.id] = "error"
    if receipts:
        try:
            done.update(await _apply_receipts(rt, receipts))
        except Exception:
            log.exception("SMS receipts %s… could not be applied; they stay pending", receipts[0][0])
    if done:
        now = utcnow()
        async with write_gate(rt), rt.db.session() as s, s.begin():
            for result in set(done.values()):
                await s.execute(sa.update(SmsCallback).where(
                    SmsCallback.id.in_([i for i, r in done.items() if r == result])
                ).values(processed_at=now, result=result))
    return sum(1 for r in done.values() if r != "error")


async def _apply_receipts(rt: Any, receipts: list[tuple[int, Receipt]]) -> dict[int, str]:
    """Receipts of one batch in one transaction: one look-up, then an update per changed SMS."""
    out: dict[int, str] = {}
    now = utcnow()
    updates: list[dict[str, Any]] = []
    failed_messages: list[dict[str, Any]] = []
    by_pid = {r.provider_id for _, r in receipts}
    by_out = {r.out_id for _, r in receipts if r.out_id}
    async with write_gate(rt), rt.db.session() as s, s.begin():
        cond: sa.ColumnElement[bool] = SmsMessage.provider_id.in_(by_pid)
        if by_out:
            cond = sa.or_(cond, SmsMessage.out_id.in_(by_out))
        found = (await s.execute(
            sa.select(SmsMessage.id, SmsMessage.provider_id, SmsMessage.out_id, SmsMessage.phone, SmsMessage.status,
                      SmsMessage.message_id)
            .where(SmsMessage.direction == "out", cond)
        )).all()
        index: dict[tuple[str, str], Any] = {}
        for f in found:
            if f.provider_id:
                index[(f.provider_id, f.phone)] = f
            if f.out_id:
                index.setdefault((f"out:{f.out_id}", f.phone), f)
        for cb_id, r in receipts:
            target = index.get((r.provider_id, r.phone)) or (
                index.get((f"out:{r.out_id}", r.phone)) if r.out_id else None)
            if target is None:
                out[cb_id] = "no_match"
                continue
            if target.status not in ("sent", "unknown", "sending"):
                out[cb_id] = "unchanged"  # already settled (a duplicate push, or a receipt after the query)
                continue
            status = "delivered" if r.delivered else "failed"
            updates.append({"sid": target.id, "st": status, "pid": r.provider_id,
                            "dat": (r.at or now) if r.delivered else None,
                            "ec": None if r.delivered else r.error_code, "er": None if r.delivered else r.error})
            if target.message_id is not None and not r.delivered:
                failed_messages.append({"mid": target.message_id,
                                        "err": f"{r.error_code or ''} {r.error or ''}".strip()[:200]})
            out[cb_id] = status
        if updates:  # one executemany for the whole batch
            table = cast(sa.Table, SmsMessage.__table__)
            await s.execute(
                table.update().where(table.c.id == sa.bindparam("sid")).values(
                    status=sa.bindparam("st"), provider_id=sa.bindparam("pid"), delivered_at=sa.bindparam("dat"),
                    error_code=sa.bindparam("ec"), error=sa.bindparam("er"), updated_at=now),
                updates,
            )
        # Campaign SMS carry their delivery in the OutId (``d{id}``): the delivery learns the verdict too.
        from actions.campaigns.dispatch import apply_sms_receipts

        await apply_sms_receipts(s, [r for _, r in receipts], now)
        if failed_messages:
            mt = cast(sa.Table, Message.__table__)
            await s.execute(mt.update().where(mt.c.id == sa.bindparam("mid")).values(
                delivery="failed", delivery_error=sa.bindparam("err")), failed_messages)
    return out


async def _uplink(rt: Any, provider: str, up: Any) -> str:
    """An owner's SMS: opt-out words are honoured at once; anything else is a message to the engine."""
    from actions import optout

    now = utcnow()
    word = optout.classify(up.text)
    batch = EventBatch()
    if word is not None:
        async with rt.db.session() as s, s.begin():
            s.add(SmsMessage(direction="in", phone=up.phone, kind=f"keyword_{word}", provider=provider,
                             text=up.text, segments=1, status="received", provider_id=up.msg_id[:64],
                             idempotency_key=f"in:{provider}:{up.msg_id}"[:120], created_at=up.at or now))
            await optout.record(s, batch, rt.notifier, phone=up.phone, action=word, source="sms", text=up.text,
                                now=now)
        await batch.publish(rt.services.pubsub)
        return word
    msg = InboundMessage(channel="sms", account=provider, sender=up.phone, msg_id=up.msg_id, kind="text",
                         text=up.text, received_at=up.at or now, raw={"extend_code": up.extend_code})
    result = await rt.engine.accept(msg)
    defer = getattr(result, "defer", None)
    if defer is None:
        return "duplicate"
    defer()  # SMS has no passive reply: the replies go out through the outbox
    async with rt.db.session() as s, s.begin():
        message_id = await s.scalar(sa.select(Message.id).where(
            Message.channel == "sms", Message.account == provider, Message.channel_msg_id == msg.msg_id))
        conv_id = await s.scalar(sa.select(Message.conversation_id).where(Message.id == message_id))
        owner_id = await s.scalar(sa.select(Owner.id).where(Owner.phone == up.phone))
        s.add(SmsMessage(direction="in", phone=up.phone, kind="inbound", provider=provider, text=up.text,
                         segments=1, status="received", provider_id=up.msg_id[:64], message_id=message_id,
                         conversation_id=conv_id, owner_id=owner_id,
                         idempotency_key=f"in:{provider}:{up.msg_id}"[:120], created_at=up.at or now))
    return "accepted"


# --- the sweep ----------------------------------------------------------------------------------------


async def sweep(rt: Any) -> dict[str, int]:
    """Every minute: send what is due, settle what is stale, ask the provider about ``unknown`` sends."""
    now = utcnow()
    counts = {"due": 0, "stale_sending": 0, "resolved": 0, "callbacks": 0}
    async with rt.db.autocommit() as c:
        due = (await c.execute(sa.select(SmsMessage.id).where(sa.or_(
            sa.and_(SmsMessage.status == "queued", SmsMessage.created_at < now - QUEUED_STALE),
            sa.and_(SmsMessage.status == "deferred", SmsMessage.not_before <= now),
        )).order_by(SmsMessage.id).limit(1000))).scalars().all()
        counts["stale_sending"] = (await c.execute(
            sa.update(SmsMessage).where(SmsMessage.status == "sending", SmsMessage.updated_at < now - SENDING_STALE)
            .values(status="unknown", error_code="worker_lost", error="发送过程中断，结果待回执确认", updated_at=now)
        )).rowcount
        unknown = (await c.execute(sa.select(
            SmsMessage.id, SmsMessage.phone, SmsMessage.provider_id, SmsMessage.out_id, SmsMessage.sent_at,
            SmsMessage.created_at,
        ).where(
            SmsMessage.status == "unknown", SmsMessage.direction == "out",
            SmsMessage.updated_at < now - UNKNOWN_QUERY_AFTER, SmsMessage.created_at > now - UNKNOWN_HORIZON,
        ).limit(50))).all()
    for sms_id in due:
        await rt.jobs.enqueue_sms(sms_id)
    counts["due"] = len(due)
    for row in unknown:
        try:
            receipt = await rt.sms_provider.query(row.phone, row.provider_id, row.out_id, row.sent_at or row.created_at)
        except Exception:
            log.warning("SMS %s: the provider's query failed; asking again later", row.id)
            continue
        if receipt is not None:
            async with rt.db.autocommit() as c:
                await c.execute(sa.update(SmsMessage).where(SmsMessage.id == row.id, SmsMessage.status == "unknown")
                                .values(status="delivered" if receipt.delivered else "failed",
                                        provider_id=receipt.provider_id or row.provider_id,
                                        error_code=None if receipt.delivered else receipt.error_code, updated_at=now))
            counts["resolved"] += 1
    counts["callbacks"] = await process_callbacks(rt)
    return counts
