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
RESEND_INTERVAL = dt.timedelta(seconds=60)


def _hash(code: str, identity_id: int) -> str:
    return hashlib.sha256(f"{identity_id}:{code}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CodeSent:
    sent: bool
    """False when the phone is not registered (the owner is told the same thing either way)."""
    throttled: bool = False


async def send_code(
    s: AsyncSession, notifier: Any, batch: EventBatch, identity: Identity, phone: str
) -> CodeSent:
    now = utcnow()
    owner = (await s.execute(sa.select(Owner).where(Owner.phone == phone))).scalar_one_or_none()
    if owner is None:
        return CodeSent(False)
    last = await s.scalar(
        sa.select(sa.func.max(VerificationCode.created_at)).where(VerificationCode.identity_id == identity.id)
    )
    if last is not None and now - last < RESEND_INTERVAL:
        return CodeSent(True, throttled=True)
    code = f"{secrets.randbelow(1_000_000):06d}"
    row = VerificationCode(identity_id=identity.id, phone=phone, code_hash=_hash(code, identity.id),
                           expires_at=now + CODE_TTL, created_at=now)
    s.add(row)
    await s.flush()
    await notifier.sms(s, batch, phone=phone, kind="verification_code", params={"code": code}, owner_id=owner.id,
                       idempotency_key=f"verification:{row.id}", now=now)
    return CodeSent(True)


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    reason: str = ""  # "wrong" | "expired" | "locked" | "none"
    owner: Owner | None = None
    attempts_left: int = 0


async def check_code(s: AsyncSession, identity: Identity, code: str) -> CheckResult:
    now = utcnow()
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
    if row.attempts >= MAX_ATTEMPTS:
        return CheckResult(False, "locked")
    if row.expires_at <= now:
        return CheckResult(False, "expired")
    row.attempts += 1
    if not hmac.compare_digest(row.code_hash, _hash(code, identity.id)):
        left = MAX_ATTEMPTS - row.attempts
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
