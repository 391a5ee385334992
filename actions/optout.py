"""SMS opt-out and opt-in (退订 / 订阅): recognising the words, recording them, acknowledging once.

通信短信息服务管理规定 (2015): an owner who replies an opt-out word must get no more commercial or
notice SMS, at once. The words are the ones providers print in templates (回T退订, 拒收请回复R) and
what owners actually write: ``T``, ``TD``, ``N``, ``R``, ``退订``, ``拒收`` in any case, with or without
punctuation or spaces; ``订阅`` / ``恢复`` opt back in. Only a message that *is* one of these words counts
(``T栋漏水`` or ``R是什么意思`` are not opt-outs).

Each change appends an ``sms_consent`` row (time, source, the words) and flips ``Owner.sms_opt_out``; the
acknowledgement SMS goes once per change (saying it again to an owner who already opted out would itself
be an unwanted message). Verification codes and emergency safety messages still go (notify.py).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bot import events
from bot.events import EventBatch
from bot.store.models import Owner, SmsConsent, utcnow

Action = Literal["opt_out", "opt_in"]

OPT_OUT_WORDS = frozenset({"t", "td", "n", "r", "退订", "拒收", "退订短信", "取消订阅", "退订通知", "拒收短信", "不要再发了",
                           "别再发了", "不要发短信", "qxdy", "unsubscribe", "stop"})
OPT_IN_WORDS = frozenset({"订阅", "恢复", "恢复订阅", "重新订阅", "恢复短信", "恢复接收", "订阅短信", "subscribe"})
NOISE = re.compile(r"[\s\W_]+", re.UNICODE)
POLITE = re.compile(r"^(请|麻烦|我要|我想|帮我)+|(吧|了|啦|呀|谢谢|谢啦)+$")


def normalise(text: str) -> str:
    """Lower case, full-width folded, punctuation and spaces removed: ``Ｔ。`` → ``t``."""
    folded = unicodedata.normalize("NFKC", text or "").lower()
    return NOISE.sub("", folded)


def classify(text: str) -> Action | None:
    """``opt_out``, ``opt_in`` or None for anything else."""
    word = normalise(text)
    if not word or len(word) > 12:
        return None
    for candidate in (word, POLITE.sub("", word)):
        if candidate in OPT_OUT_WORDS:
            return "opt_out"
        if candidate in OPT_IN_WORDS:
            return "opt_in"
    return None


async def record(
    s: AsyncSession, batch: EventBatch, notifier: Any, *, phone: str, action: Action, source: str,
    text: str | None = None, owner: Owner | None = None, now: dt.datetime | None = None, acknowledge: bool = True,
) -> bool:
    """Record ``action`` for ``phone`` (and its owner); acknowledge by SMS when it changed something.

    Returns True when the owner's setting changed (False: they had already said so, nothing to say)."""
    now = now or utcnow()
    if owner is None and phone:
        owner = (await s.execute(sa.select(Owner).where(Owner.phone == phone))).scalar_one_or_none()
    if owner is not None:
        phone = phone or owner.phone
    opted_out = action == "opt_out"
    if owner is not None:
        changed = owner.sms_opt_out != opted_out
    else:  # a number we do not know: its own history decides
        last = (await s.execute(
            sa.select(SmsConsent.action).where(SmsConsent.phone == phone).order_by(SmsConsent.id.desc()).limit(1)
        )).scalar_one_or_none()
        changed = (last or "opt_in") != action
    s.add(SmsConsent(phone=phone, owner_id=owner.id if owner else None, action=action, source=source[:40],
                     text=(text or "")[:200] or None, at=now))
    if not changed:
        return False
    if owner is not None:
        owner.sms_opt_out = opted_out
    batch.emit(events.SMS_OPT_OUT_CHANGED, phone=phone, owner_id=owner.id if owner else None, opted_out=opted_out,
               source=source)
    if acknowledge and phone:
        await notifier.sms(s, batch, phone=phone, kind="opt_out_ack" if opted_out else "opt_in_ack", params={},
                           owner_id=owner.id if owner else None,
                           idempotency_key=f"consent-ack:{phone}:{action}:{now.isoformat()}")
    return True


async def history(s: AsyncSession, *, phone: str | None = None, owner_id: int | None = None) -> list[SmsConsent]:
    cond = []
    if phone:
        cond.append(SmsConsent.phone == phone)
    if owner_id is not None:
        cond.append(SmsConsent.owner_id == owner_id)
    if not cond:
        return []
    return list((await s.execute(
        sa.select(SmsConsent).where(sa.or_(*cond)).order_by(SmsConsent.id)
    )).scalars())
