"""Sending a campaign exactly once: deliveries, the dispatcher's lease, claims in batches, results.

**Deliveries.** ``materialise`` inserts the audience (``audience.classified``) as ``delivery`` rows with one
``INSERT … SELECT … ON CONFLICT DO NOTHING``: one row per (campaign, owner, channel), its
``idempotency_key`` ``c{campaign}:o{owner}:{channel}`` unique, so doing it again adds only owners who
joined the audience meanwhile. Owners who get nothing are rows too, ``skipped`` with the reason.

**One dispatcher per campaign** holds its lease (``campaign.lease_owner``/``lease_until``, renewed every
batch, ``YEZHU_CAMPAIGN_LEASE`` seconds). Any process may try to dispatch (``yezhu campaign send``, a
worker's job, the minute's tick); only the lease holder sends. Because only one dispatcher ever holds a
campaign, every row still ``sending`` when a new holder takes over was left by a dead one (killed
mid-batch). The rule for those rows (:func:`resolve_interrupted`):

* **WeChat**: sent again with the same ``client_msg_id`` (its idempotency key) if it was claimed less than
  9 minutes ago: WeChat sends a repeated ``client_msg_id`` to the same openid once within 10 minutes, so
  the owner gets one message whether or not the dead process's request got through. Older than that:
  ``failed`` with ``interrupted`` (not sent twice; staff may send it again by hand).
* **SMS**: the providers have no idempotency, so the row is never blindly sent again: the provider is
  asked (Aliyun ``QuerySendDetails`` / Tencent ``PullSmsSendStatusByPhoneNumber``) for our ``OutId`` /
  ``SessionContext`` (``d{delivery id}``, the same for every try). A record found settles the row
  (``sent``/``delivered``/``failed``); no record means the request never reached the provider (the lease
  has run out long after any request in flight), and the row is sent.

**Claims.** The lease holder moves up to ``YEZHU_CAMPAIGN_BATCH`` rows ``queued`` → ``sending`` in one
statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), sends them with ``YEZHU_CAMPAIGN_CONCURRENCY``
requests in flight (outside any transaction), and writes every outcome in one transaction per batch:
``sent`` (WeChat ``msgid`` / SMS ``BizId``/``SerialNo`` in ``provider_id``), ``failed`` with the reason,
``skipped`` with the reason (opted out since the preview), or back to ``queued`` with ``not_before`` (SMS
outside the sending window, over the daily cap or the provider's rate; a retryable WeChat error).

**Results.** ``TEMPLATESENDJOBFINISH`` (``template_finished``, from the WeChat webhook) turns ``sent`` into
``delivered`` or ``failed`` (``failed:user block`` → an SMS to that owner instead); SMS receipts
(``apply_sms_receipts``, from the receipts job) do the same by ``OutId``. A WeChat send refused with
43004 (no longer follows) also falls back to SMS. A fallback SMS is its own delivery row (channel
``sms``), so it too is sent once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from actions.campaigns.audience import classified, owner_details, t
from actions.campaigns.context import Ctx, context
from bot.store.models import Campaign, Delivery, Owner, SmsMessage, SurveyResponse, SurveyTemplate, utcnow
from channels.base import OutboundMessage, SendResult
from channels.sms.base import SmsRequest, SmsResult, segments

log = logging.getLogger("yezhu.campaigns")

WECHAT_DEDUP_WINDOW = dt.timedelta(minutes=9)
"""WeChat de-duplicates ``client_msg_id`` for 10 minutes; a minute's margin."""
WECHAT_RETRIES = 5
SMS_RETRY_DELAYS = (30, 120, 600, 1800, 3600)
FALLBACK_ERRORS = frozenset({"43004"})
CAPPED = frozenset({"notice", "marketing"})
Progress = Callable[[dict[str, int]], None]


def insert_for(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def key_expr(campaign_id: int, owner_id: Any, channel: str) -> Any:
    return sa.literal(f"c{campaign_id}:o") + sa.cast(owner_id, sa.String) + sa.literal(f":{channel}")


async def materialise(s: Any, campaign: Campaign, ctx: Ctx) -> int:
    """Insert the campaign's deliveries from its audience in the caller's transaction (idempotent);
    returns the rows added."""
    aud = classified(ctx, campaign.audience or {})
    d = t(Delivery)
    now = utcnow()
    cols = ["campaign_id", "owner_id", "house_id", "channel", "recipient", "idempotency_key", "status", "error",
            "attempts", "created_at", "updated_at"]
    dialect = s.bind.dialect.name
    cid = campaign.id

    def part(channel: str, cond: Any, recipient: Any, status: str, error: Any) -> sa.Select[Any]:
        return sa.select(sa.literal(cid), aud.c.owner_id, aud.c.house_id, sa.literal(channel), recipient,
                         key_expr(cid, aud.c.owner_id, channel), sa.literal(status), error, sa.literal(0),
                         sa.literal(now, d.c.created_at.type), sa.literal(now, d.c.updated_at.type)).where(cond)

    parts = [
        part("wechat", aud.c.wechat == 1, aud.c.openid, "queued", sa.null()),
        part("sms", aud.c.sms == 1, aud.c.phone, "queued", sa.null()),
        part("sms", sa.and_(aud.c.reason.is_not(None), aud.c.reason != "not_bound"), aud.c.phone, "skipped",
             aud.c.reason),
        part("wechat", aud.c.reason == "not_bound", aud.c.openid, "skipped", aud.c.reason),
    ]
    added = 0
    for select in parts:
        stmt = insert_for(dialect)(d).from_select(cols, select).on_conflict_do_nothing(
            index_elements=["idempotency_key"])
        added += (await s.execute(stmt)).rowcount or 0
    return added


# --- the lease ---------------------------------------------------------------------------------------


class Lease:
    """The one dispatcher's hold on a campaign."""

    def __init__(self, rt: Any, campaign_id: int) -> None:
        self.rt = rt
        self.campaign_id = campaign_id
        self.token = uuid.uuid4().hex

    def _until(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self.rt.settings.campaign_lease)

    async def take(self) -> bool:
        c = t(Campaign)
        now = utcnow()
        async with self.rt.db.autocommit() as conn:
            return bool((await conn.execute(
                sa.update(c).where(c.c.id == self.campaign_id, c.c.status == "sending",
                                   sa.or_(c.c.lease_owner.is_(None), c.c.lease_until < now,
                                          c.c.lease_owner == self.token))
                .values(lease_owner=self.token, lease_until=self._until())
            )).rowcount)

    async def renew(self) -> str | None:
        """The campaign's status while the lease is still ours (None: lost it)."""
        c = t(Campaign)
        async with self.rt.db.autocommit() as conn:
            return cast(str | None, (await conn.execute(
                sa.update(c).where(c.c.id == self.campaign_id, c.c.lease_owner == self.token)
                .values(lease_until=self._until()).returning(c.c.status)
            )).scalar_one_or_none())

    async def release(self) -> None:
        c = t(Campaign)
        async with self.rt.db.autocommit() as conn:
            await conn.execute(sa.update(c).where(c.c.id == self.campaign_id, c.c.lease_owner == self.token)
                               .values(lease_owner=None, lease_until=None))


async def counts(rt: Any, campaign_id: int) -> dict[str, int]:
    """Deliveries of the campaign by status (every status present, zeros included)."""
    d = t(Delivery)
    async with rt.db.autocommit() as conn:
        rows = (await conn.execute(sa.select(d.c.status, sa.func.count()).where(d.c.campaign_id == campaign_id)
                                   .group_by(d.c.status))).all()
    out = dict.fromkeys(("queued", "sending", "sent", "delivered", "acknowledged", "failed", "skipped"), 0)
    out.update({str(k): int(v) for k, v in rows})
    return out


# --- the dispatcher ----------------------------------------------------------------------------------


async def dispatch(rt: Any, campaign_id: int, progress: Progress | None = None) -> str:
    """Send the campaign's queued deliveries while it is ``sending`` and this process holds its lease.

    Returns ``done`` (nothing left), ``waiting`` (SMS deferred to a later time: the minute's tick resumes),
    ``paused`` / ``cancelled`` (stopped by staff), ``busy`` (another live dispatcher holds it) or
    ``lost`` (the lease ran out under us: another dispatcher took over)."""
    lease = Lease(rt, campaign_id)
    # A lease held by a dispatcher that died runs out within ``campaign_lease``: wait that long (plus a
    # second) for it; a live one renews it every batch, and this dispatcher leaves it alone.
    deadline = asyncio.get_running_loop().time() + rt.settings.campaign_lease + 1.0
    while not await lease.take():
        async with rt.db.session() as s:
            status = (await s.execute(sa.select(Campaign.status).where(Campaign.id == campaign_id))).scalar()
        if status != "sending":
            return str(status)
        if asyncio.get_running_loop().time() > deadline:
            return "busy"
        await asyncio.sleep(min(1.0, max(0.1, rt.settings.campaign_lease / 4)))
    try:
        async with rt.db.session() as s:
            campaign = await s.get(Campaign, campaign_id)
            assert campaign is not None
            ctx = await context(s, rt.settings, campaign)
        await resolve_interrupted(rt, ctx)
        shown = 0.0
        while True:
            status = await lease.renew()
            if status is None:
                return "lost"
            if status != "sending":
                return status
            batch = await claim(rt, campaign_id, rt.settings.campaign_batch)
            if not batch:
                return await finish(rt, campaign_id)
            await send_batch(rt, ctx, batch)
            if progress is not None and asyncio.get_running_loop().time() >= shown + 0.5:
                progress(await counts(rt, campaign_id))  # a GROUP BY: twice a second is plenty
                shown = asyncio.get_running_loop().time()
    finally:
        await lease.release()


async def claim(rt: Any, campaign_id: int, n: int) -> list[Any]:
    d = t(Delivery)
    now = utcnow()
    sub = (sa.select(d.c.id).where(d.c.campaign_id == campaign_id, d.c.status == "queued",
                                   sa.or_(d.c.not_before.is_(None), d.c.not_before <= now))
           .order_by(d.c.id).limit(n))
    if not rt.db.is_sqlite:
        sub = sub.with_for_update(skip_locked=True)
    async with rt.db.autocommit() as conn:
        rows = (await conn.execute(
            sa.update(d).where(d.c.id.in_(sub.scalar_subquery()))
            .values(status="sending", claimed_at=now, attempts=d.c.attempts + 1, updated_at=now)
            .returning(d.c.id, d.c.owner_id, d.c.house_id, d.c.channel, d.c.recipient, d.c.idempotency_key,
                       d.c.attempts, d.c.claimed_at)
        )).all()
    return sorted(rows, key=lambda r: r.id)


async def finish(rt: Any, campaign_id: int) -> str:
    d, c = t(Delivery), t(Campaign)
    now = utcnow()
    async with rt.db.session() as s, s.begin():
        left = (await s.execute(sa.select(sa.func.count()).select_from(d).where(
            d.c.campaign_id == campaign_id, d.c.status.in_(("queued", "sending"))))).scalar_one()
        if left:
            return "waiting"
        await s.execute(sa.update(c).where(c.c.id == campaign_id, c.c.status == "sending")
                        .values(status="done", finished_at=now, updated_at=now))
    log.info("campaign %s: done", campaign_id)
    return "done"


async def resolve_interrupted(rt: Any, ctx: Ctx) -> dict[str, int]:
    """Settle the rows a dead dispatcher left ``sending`` (the rule in the module docstring)."""
    d = t(Delivery)
    now = utcnow()
    out = {"resend": 0, "interrupted": 0, "settled": 0}
    async with rt.db.autocommit() as conn:
        rows = (await conn.execute(sa.select(d.c.id, d.c.channel, d.c.recipient, d.c.claimed_at).where(
            d.c.campaign_id == ctx.campaign_id, d.c.status == "sending"))).all()
    if not rows:
        return out
    requeue: list[int] = []
    interrupted: list[int] = []
    settled: list[dict[str, Any]] = []
    for r in rows:
        if r.channel == "wechat":
            if r.claimed_at is not None and r.claimed_at > now - WECHAT_DEDUP_WINDOW:
                requeue.append(r.id)
            else:
                interrupted.append(r.id)
            continue
        try:
            receipt = await rt.sms_provider.query(r.recipient or "", None, f"d{r.id}", r.claimed_at or now)
        except Exception:
            log.warning("campaign %s: could not ask the provider about delivery %s; asking again later",
                        ctx.campaign_id, r.id)
            continue
        if receipt is None:
            requeue.append(r.id)
        else:
            settled.append({"i": r.id, "st": "delivered" if receipt.delivered else "failed",
                            "pid": receipt.provider_id, "er": None if receipt.delivered else
                            f"{receipt.error_code or ''} {receipt.error or ''}".strip()[:200]})
    async with rt.db.session() as s, s.begin():
        if requeue:
            await s.execute(sa.update(d).where(d.c.id.in_(requeue), d.c.status == "sending")
                            .values(status="queued", not_before=None, updated_at=now))
        if interrupted:
            await s.execute(sa.update(d).where(d.c.id.in_(interrupted), d.c.status == "sending")
                            .values(status="failed", error="interrupted", updated_at=now))
        if settled:
            await s.execute(d.update().where(d.c.id == sa.bindparam("i"), d.c.status == "sending").values(
                status=sa.bindparam("st"), provider_id=sa.bindparam("pid"), error=sa.bindparam("er"),
                sent_at=now, updated_at=now), settled)
    out.update(resend=len(requeue), interrupted=len(interrupted), settled=len(settled))
    log.warning("campaign %s: rows left sending by a dead dispatcher: %s", ctx.campaign_id, out)
    return out


async def send_batch(rt: Any, ctx: Ctx, batch: Sequence[Any]) -> dict[str, int]:
    """Send one claimed batch and write every outcome (one transaction)."""
    from actions.notify import window_opens
    from bot.jobs.sms import _take_rate_slot

    now = utcnow()
    async with rt.db.session() as s:
        details = {x["owner_id"]: x for x in await owner_details(s, [(r.owner_id, r.house_id, None) for r in batch])}
        opted = set((await s.execute(sa.select(Owner.id).where(
            Owner.id.in_([r.owner_id for r in batch if r.channel == "sms"]), Owner.sms_opt_out.is_(True)))).scalars())
    sms_wait = window_opens(now, ctx.sms_window) if ctx.quiet_hours_apply else None
    sender = rt.senders.get("wechat")
    gate = asyncio.Semaphore(max(1, rt.settings.campaign_concurrency))
    limits = asyncio.Semaphore(8)
    results: list[dict[str, Any]] = []
    sms_rows: list[dict[str, Any]] = []
    fallback: list[int] = []

    def outcome(r: Any, status: str, **values: Any) -> None:
        results.append({"i": r.id, "st": status, "pid": values.get("provider_id"), "er": values.get("error"),
                        "tx": values.get("text"), "nb": values.get("not_before"),
                        "sat": now if status == "sent" else None})

    async def wechat(r: Any) -> None:
        owner = details.get(r.owner_id)
        text = ctx.text(owner)
        message = OutboundMessage(text, kind="template", data=ctx.wechat_data(owner, r.idempotency_key))
        async with gate:
            try:
                result = await sender.send(ctx.account, r.recipient, message, retry=False) if sender is not None else \
                    SendResult(ok=False, error_code="no_sender", error="WeChat is not configured")
            except Exception as exc:  # a bug in the sender: the request may have gone out; retried by key
                log.exception("campaign %s: WeChat send raised", ctx.campaign_id)
                result = SendResult(ok=False, error_code="exception", error=str(exc)[:100], retryable=True)
        if result.ok:
            outcome(r, "sent", provider_id=result.provider_id, text=text)
        elif result.retryable and r.attempts < WECHAT_RETRIES:
            outcome(r, "queued", not_before=now + dt.timedelta(seconds=10 * r.attempts),
                    error=f"{result.error_code} {result.error or ''}".strip()[:200], text=text)
        else:
            outcome(r, "failed", error=f"{result.error_code} {result.error or ''}".strip()[:200], text=text)
            if str(result.error_code) in FALLBACK_ERRORS:
                fallback.append(r.owner_id)

    async def sms(r: Any) -> None:
        owner = details.get(r.owner_id)
        if ctx.sms is None or ctx.sms_code is None:
            outcome(r, "skipped", error="no_template")
            return
        if ctx.opt_out_applies and r.owner_id in opted:
            outcome(r, "skipped", error="opted_out")
            return
        text = ctx.sms_text(owner)
        if sms_wait is not None:
            outcome(r, "queued", not_before=sms_wait, error="quiet_hours", text=text)
            return
        try:  # the shared limits (Redis in production): a few calls at a time, not one per send in flight
            async with limits:
                if ctx.sms_category in CAPPED:
                    cap = await rt.services.rate.hit(f"sms:cap:{r.recipient}", limit=rt.settings.sms_daily_cap,
                                                     window=86400)
                    if not cap.allowed:
                        outcome(r, "queued", not_before=now + dt.timedelta(seconds=max(60.0, cap.retry_after)),
                                error="daily_cap", text=text)
                        return
                if not await _take_rate_slot(rt):
                    outcome(r, "queued", not_before=now + dt.timedelta(seconds=5), error="rate_limit", text=text)
                    return
        except Exception as exc:  # Redis unavailable: nothing went out; try again shortly
            log.warning("campaign %s: SMS limits unavailable (%s); deferred", ctx.campaign_id, type(exc).__name__)
            outcome(r, "queued", not_before=now + dt.timedelta(seconds=10), error="limits_unavailable", text=text)
            return
        async with gate:
            request = SmsRequest(phone=r.recipient or "", sign_name=ctx.sms_sign, template_code=ctx.sms_code or "",
                                 params=ctx.sms_params(owner), param_order=tuple(ctx.sms.params), out_id=f"d{r.id}")
            try:
                result = await rt.sms_provider.send(request)
            except Exception as exc:
                log.exception("campaign %s: the SMS provider adapter raised", ctx.campaign_id)
                result = SmsResult("unknown", error_code="exception", error=str(exc)[:100])
        if result.status == "sent":
            outcome(r, "sent", provider_id=result.provider_id, text=text)
        elif result.status == "unknown":  # may have gone out: never sent again; the receipt settles it
            outcome(r, "sent", provider_id=result.provider_id, text=text, error="unconfirmed")
        elif result.status == "retry" and r.attempts <= len(SMS_RETRY_DELAYS):
            outcome(r, "queued", not_before=now + dt.timedelta(seconds=SMS_RETRY_DELAYS[r.attempts - 1]),
                    error=f"{result.error_code or ''} {result.error or ''}".strip()[:200], text=text)
        else:
            outcome(r, "failed", error=f"{result.error_code or ''} {result.error or ''}".strip()[:200], text=text)
        if result.status in ("sent", "unknown"):
            sms_rows.append({"direction": "out", "phone": r.recipient or "", "kind": ctx.spec.template_kind("sms"),
                             "provider": rt.settings.sms_provider, "template_code": ctx.sms_code,
                             "params": ctx.sms_params(owner), "text": text, "segments": segments(text),
                             "status": "sent" if result.status == "sent" else "unknown", "urgent": ctx.urgent,
                             "idempotency_key": r.idempotency_key, "out_id": f"d{r.id}",
                             "provider_id": result.provider_id, "attempts": 1, "owner_id": r.owner_id,
                             "project_id": ctx.project_id, "sent_at": now, "created_at": now, "updated_at": now})

    await asyncio.gather(*[wechat(r) if r.channel == "wechat" else sms(r) for r in batch])
    await record(rt, ctx, results, sms_rows, batch, now)
    if fallback:
        await sms_fallback(rt, ctx.campaign_id, fallback, reason="43004")
    tally: dict[str, int] = {}
    for x in results:
        tally[x["st"]] = tally.get(x["st"], 0) + 1
    rt.metrics.job_runs.labels("campaign_batch", "ok").inc()
    return tally


async def record(rt: Any, ctx: Ctx, results: list[dict[str, Any]], sms_rows: list[dict[str, Any]],
                 batch: Sequence[Any], now: dt.datetime) -> None:
    d = t(Delivery)
    dialect = "sqlite" if rt.db.is_sqlite else "postgresql"
    async with rt.db.session() as s, s.begin():
        if results:
            await s.execute(d.update().where(d.c.id == sa.bindparam("i"), d.c.status == "sending").values(
                status=sa.bindparam("st"), provider_id=sa.bindparam("pid"), error=sa.bindparam("er"),
                text=sa.bindparam("tx"), not_before=sa.bindparam("nb"), sent_at=sa.bindparam("sat"),
                updated_at=now), results)
        if sms_rows:
            await s.execute(insert_for(dialect)(t(SmsMessage)).on_conflict_do_nothing(index_elements=["out_id"]),
                            sms_rows)
        if ctx.spec.kind == "survey":
            sent = {x["i"] for x in results if x["st"] == "sent"}
            await invite(s, ctx, [r for r in batch if r.id in sent], now)


async def invite(s: Any, ctx: Ctx, rows: Sequence[Any], now: dt.datetime) -> None:
    """A ``survey`` delivery sent: the owner's SurveyResponse, ``invited`` (shared contract, issue 15)."""
    if not rows:
        return
    template = (await s.execute(sa.select(SurveyTemplate).where(SurveyTemplate.code == str(ctx.params.get("template")))
                                )).scalar_one_or_none()
    if template is None:
        log.warning("campaign %s: survey template %r is gone; no responses recorded", ctx.campaign_id,
                    ctx.params.get("template"))
        return
    kind = template.kind if template.kind in ("handover", "periodic") else "periodic"
    sr = t(SurveyResponse)
    await s.execute(sa.insert(sr), [
        {"template_id": template.id, "owner_id": r.owner_id, "kind": kind, "project_id": ctx.project_id,
         "house_id": r.house_id, "campaign_id": ctx.campaign_id, "status": "invited", "channel": r.channel,
         "source": "bot", "invited_at": now, "created_at": now, "scores": {}, "answers": {}} for r in rows])


async def sms_fallback(rt: Any, campaign_id: int, owner_ids: Sequence[int], *, reason: str) -> int:
    """SMS deliveries for owners WeChat could not reach (user block, unfollowed): queued, once each."""
    async with rt.db.session() as s:
        campaign = await s.get(Campaign, campaign_id)
        if campaign is None or campaign.status == "cancelled":
            return 0
        ctx = await context(s, rt.settings, campaign)
    if not ctx.can_sms and not (ctx.sms_code is not None):
        return 0
    o, d, c = t(Owner), t(Delivery), t(Campaign)
    now = utcnow()
    cond = [o.c.id.in_(list(owner_ids)), o.c.phone != ""]
    if ctx.opt_out_applies:
        cond.append(o.c.sms_opt_out.is_(False))
    if ctx.needs_consent:
        cond.append(o.c.consent_marketing.is_(True))
    first = (sa.select(d.c.owner_id, sa.func.min(d.c.house_id).label("house_id"))
             .where(d.c.campaign_id == campaign_id, d.c.owner_id.in_(list(owner_ids))).group_by(d.c.owner_id)
             .subquery("fh"))
    select = (sa.select(sa.literal(campaign_id), o.c.id, first.c.house_id, sa.literal("sms"), o.c.phone,
                        key_expr(campaign_id, o.c.id, "sms"), sa.literal("queued"), sa.literal(f"fallback:{reason}"),
                        sa.literal(0), sa.literal(now, d.c.created_at.type), sa.literal(now, d.c.updated_at.type))
              .select_from(o.outerjoin(first, first.c.owner_id == o.c.id)).where(*cond))
    cols = ["campaign_id", "owner_id", "house_id", "channel", "recipient", "idempotency_key", "status", "error",
            "attempts", "created_at", "updated_at"]
    dialect = "sqlite" if rt.db.is_sqlite else "postgresql"
    async with rt.db.session() as s, s.begin():
        added = (await s.execute(insert_for(dialect)(d).from_select(cols, select).on_conflict_do_nothing(
            index_elements=["idempotency_key"]))).rowcount or 0
        if added:
            await s.execute(sa.update(c).where(c.c.id == campaign_id, c.c.status == "done")
                            .values(status="sending", finished_at=None, updated_at=now))
    if added:
        log.info("campaign %s: %d owner(s) get an SMS instead (%s)", campaign_id, added, reason)
        try:
            await rt.jobs.enqueue_campaign(campaign_id)
        except Exception:
            log.warning("campaign %s: could not queue its dispatch; the minute's tick will", campaign_id)
    return int(added)


# --- results pushed by the providers -----------------------------------------------------------------


async def template_finished(rt: Any, openid: str, msgid: str, status: str) -> bool:
    """WeChat's ``TEMPLATESENDJOBFINISH`` for one template message: ``success`` → delivered; ``failed:user
    block`` → failed, and the owner gets an SMS instead; ``failed: system failed`` → failed. False when no
    delivery has that msgid yet (the event overtook the dispatcher's write: the caller tries again)."""
    d = t(Delivery)
    now = utcnow()
    ok = status.strip().lower() == "success"
    values: dict[str, Any] = {"status": "delivered", "delivered_at": now, "error": None} if ok else \
        {"status": "failed", "error": status.strip()[:200]}
    async with rt.db.autocommit() as conn:
        rows = (await conn.execute(
            sa.update(d).where(d.c.channel == "wechat", d.c.provider_id == msgid, d.c.recipient == openid,
                               d.c.status.in_(("sending", "sent")))
            .values(updated_at=now, **values).returning(d.c.campaign_id, d.c.owner_id)
        )).all()
        if not rows:
            known = (await conn.execute(sa.select(d.c.id).where(d.c.channel == "wechat", d.c.provider_id == msgid,
                                                                 d.c.recipient == openid))).first()
            if known is None:
                return False
    if not ok and "block" in status.lower():
        for campaign_id, owner_id in rows:
            if owner_id is not None:
                await sms_fallback(rt, campaign_id, [owner_id], reason="user block")
    return True


async def apply_sms_receipts(s: Any, receipts: Sequence[Any], now: dt.datetime) -> int:
    """Receipts whose ``OutId``/``SessionContext`` names a campaign delivery (``d{id}``): delivered or
    failed with the reason. Called in the receipts job's transaction; a repeated receipt changes nothing."""
    d = t(Delivery)
    from channels.sms.base import cn_mobile

    updates = []
    for r in receipts:
        out = r.out_id or ""
        if out.startswith("d") and out[1:].isdigit():
            updates.append({"i": int(out[1:]), "ph": cn_mobile(r.phone),
                            "st": "delivered" if r.delivered else "failed",
                            "dat": (r.at or now) if r.delivered else None,
                            "er": None if r.delivered else f"{r.error_code or ''} {r.error or ''}".strip()[:200]})
    if not updates:
        return 0
    await s.execute(d.update().where(d.c.id == sa.bindparam("i"), d.c.channel == "sms",
                                     d.c.recipient == sa.bindparam("ph"),
                                     d.c.status.in_(("sending", "sent"))).values(
        status=sa.bindparam("st"), delivered_at=sa.bindparam("dat"), error=sa.bindparam("er"), updated_at=now), updates)
    return len(updates)


def by_status(rows: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in rows.items() if v)
