"""Owner binding (绑定): prove that a WeChat user is the owner registered with a phone number.

A 6-digit code goes to the phone by SMS through the notifier (``actions.notify``: the configured
provider's ``verification_code`` template, sent after the turn commits); only its hash is stored, it
expires, and the attempts are limited. Until an identity is bound, nothing personal (certificate status, tickets, the
house) is revealed to it (DOMAIN.md: certificate status is personal data).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.events import EventBatch
from bot.store.models import Identity, Owner, OwnerHouse, VerificationCode, utcnow

log = logging.getLogger("yezhu.binding")

CODE_TTL = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 5
"""Wrong codes allowed per code."""
RESEND_INTERVAL = dt.timedelta(seconds=60)
"""Between two codes for one identity."""
CAP_WINDOW = dt.timedelta(hours=24)
MAX_CODES_PER_PHONE = 5
"""Codes a phone may be sent in 24 hours, whoever asks (each one is an SMS to that phone)."""
MAX_CODES_PER_IDENTITY = 5
"""Codes one WeChat user may ask for in 24 hours, whatever the phones."""
MAX_PHONE_ATTEMPTS = 10
"""Wrong codes tried against one phone in 24 hours, across all its codes and all identities."""


def _hash(code: str, identity_id: int) -> str:
    return hashlib.sha256(f"{identity_id}:{code}".encode()).hexdigest()


UNREGISTERED = "unregistered:"
"""Prefix of the stored hash of a code "sent" to a phone nobody registered: it can never match."""


@dataclass(frozen=True, slots=True)
class CodeSent:
    sent: bool
    """False when the phone is not registered (the owner is told the same thing either way)."""
    throttled: bool = False
    capped: bool = False
    """The phone or the identity reached its codes for the day (the same for registered or not)."""


async def _count_codes(s: AsyncSession, condition: sa.ColumnElement[bool], since: dt.datetime) -> int:
    return int(await s.scalar(
        sa.select(sa.func.count()).select_from(VerificationCode)
        .where(condition, VerificationCode.created_at >= since)
    ) or 0)


async def send_code(
    s: AsyncSession, notifier: Any, batch: EventBatch, identity: Identity, phone: str, *,
    now: dt.datetime | None = None,
) -> CodeSent:
    """Send a code to ``phone`` for ``identity``; every limit and every answer is the same for a phone
    that no owner registered (a code row is kept for it too, no SMS goes out), so that nobody can learn
    from the bot whether a number belongs to an owner (issue 9)."""
    now = now or utcnow()
    day = now - CAP_WINDOW
    # The interval is per identity: a code another WeChat user asked for cannot be used here (its hash is
    # bound to that identity), so it must not hold this owner back; the phone's daily cap protects it.
    last = await s.scalar(
        sa.select(sa.func.max(VerificationCode.created_at)).where(VerificationCode.identity_id == identity.id)
    )
    if last is not None and _aware(now) - _aware(last) < RESEND_INTERVAL:
        return CodeSent(True, throttled=True)
    if (await _count_codes(s, VerificationCode.phone == phone, day) >= MAX_CODES_PER_PHONE
            or await _count_codes(s, VerificationCode.identity_id == identity.id, day) >= MAX_CODES_PER_IDENTITY):
        return CodeSent(False, capped=True)
    owner = (await s.execute(sa.select(Owner).where(Owner.phone == phone))).scalar_one_or_none()
    code = f"{secrets.randbelow(1_000_000):06d}"
    code_hash = _hash(code, identity.id) if owner is not None else UNREGISTERED + secrets.token_hex(16)
    row = VerificationCode(identity_id=identity.id, phone=phone, code_hash=code_hash,
                           expires_at=now + CODE_TTL, created_at=now)
    s.add(row)
    await s.flush()
    if owner is None:
        return CodeSent(False)
    await notifier.sms(s, batch, phone=phone, kind="verification_code", params={"code": code}, owner_id=owner.id,
                       idempotency_key=f"verification:{row.id}", now=now)
    return CodeSent(True)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands naive datetimes back; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    reason: str = ""  # "wrong" | "expired" | "locked" | "none"
    owner: Owner | None = None
    attempts_left: int = 0


async def check_code(
    s: AsyncSession, identity: Identity, code: str, *, now: dt.datetime | None = None
) -> CheckResult:
    now = now or utcnow()
    row = (
        await s.execute(
            sa.select(VerificationCode)
            .where(VerificationCode.identity_id == identity.id, VerificationCode.used_at.is_(None))
            .order_by(VerificationCode.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if row is None:
        return CheckResult(False, "none")
    tried = int(await s.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(VerificationCode.attempts), 0)).where(
            VerificationCode.phone == row.phone, VerificationCode.created_at >= now - CAP_WINDOW)
    ) or 0)
    if row.attempts >= MAX_ATTEMPTS or tried >= MAX_PHONE_ATTEMPTS:
        return CheckResult(False, "locked")
    if _aware(row.expires_at) <= _aware(now):
        return CheckResult(False, "expired")
    row.attempts += 1
    if not hmac.compare_digest(row.code_hash, _hash(code, identity.id)):
        left = min(MAX_ATTEMPTS - row.attempts, MAX_PHONE_ATTEMPTS - tried - 1)
        return CheckResult(False, "locked" if left <= 0 else "wrong", attempts_left=left)
    row.used_at = now
    owner = (
        await s.execute(
            sa.select(Owner).where(Owner.phone == row.phone)
            .options(selectinload(Owner.houses).selectinload(OwnerHouse.house))
        )
    ).scalar_one()
    identity.owner_id = owner.id
    identity.bound_at = now
    return CheckResult(True, owner=owner)
