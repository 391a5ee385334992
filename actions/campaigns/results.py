"""The providers' word on each campaign delivery, after the send.

* ``template_finished``: WeChat's ``TEMPLATESENDJOBFINISH`` push (routed here by ``bot/engine.py`` instead of
  a conversation turn): ``success`` → ``delivered``; ``failed:user block`` → ``failed`` and an SMS to that
  owner instead (its own delivery, so once); ``failed: system failed`` → ``failed``. A failed survey
  invitation's ``invited`` response is cancelled (the SMS one, if any, is the open invitation).
* ``apply_sms_receipts``: SMS receipts whose ``OutId``/``SessionContext`` is ``d{delivery id}``, in the
  receipts job's transaction (``bot/jobs/sms.py``).

Both only move a delivery forward (``sending``/``sent`` → ``delivered``/``failed``): a repeated push changes
nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from actions.campaigns.audience import t
from actions.campaigns.dispatch import sms_fallback
from bot.store.models import Delivery, SurveyResponse, utcnow


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
    if not ok:  # a survey invitation that never arrived is not an open invitation
        sr = t(SurveyResponse)
        async with rt.db.autocommit() as conn:
            for campaign_id, owner_id in rows:
                await conn.execute(sa.update(sr).where(
                    sr.c.campaign_id == campaign_id, sr.c.owner_id == owner_id, sr.c.channel == "wechat",
                    sr.c.status == "invited").values(status="cancelled"))
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
