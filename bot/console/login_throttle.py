"""Throttling console log-ins without handing anyone a way to lock the desk out.

A lock per *account* lets anyone who knows a username keep that staff member out (five wrong passwords
from anywhere); a lock per *address* lets one office's NAT, or an unconfigured proxy, lock out everyone
behind it. So the unit is the pair (account, client address) -- the address as bot/proxies.py finds it
behind trusted proxies -- and its locking escalates:

* the first :data:`FREE_FAILURES` wrong passwords cost nothing; after that the pair waits
  :data:`BASE_DELAY` seconds, doubling with each further wrong password up to :data:`MAX_DELAY`; a right
  password clears the pair; a day without a wrong one forgets it;
* an attempt counts as a failure *before* the password is checked (and is cleared if it was right),
  under a per-pair lock in the shared cache, so parallel guesses from many web processes cannot
  overtake the count;
* two wider guards catch what pairs cannot: an address trying wrong passwords on many accounts
  (:data:`ADDRESS_LIMIT` per :data:`~bot.console.core.LOGIN_WINDOW`: password spraying) and an
  account attacked from many addresses (:data:`ACCOUNT_LIMIT` per :data:`ACCOUNT_WINDOW`: a botnet).
  Neither applies to an address where the account has logged in successfully in the last
  :data:`KNOWN_FOR` seconds, so the real user, at their usual desk, is never locked out by others.

Everything lives in the shared cache and rate limiter (Redis in production), so every web process
counts together.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.console.core import LOGIN_LIMIT
from bot.services.base import Cache, LockTimeout, RateLimiter

FREE_FAILURES = LOGIN_LIMIT
BASE_DELAY = 60
MAX_DELAY = 3600
FORGET_AFTER = 24 * 3600
KNOWN_FOR = 30 * 24 * 3600
ADDRESS_LIMIT = 30
ACCOUNT_LIMIT = 50
ACCOUNT_WINDOW = 3600
ACCOUNT_GUARD = 3600


def delay_after(failures: int) -> int:
    """Seconds an (account, address) pair waits after its ``failures``-th wrong password in a row."""
    if failures < FREE_FAILURES:
        return 0
    return min(MAX_DELAY, BASE_DELAY * 2 ** min(failures - FREE_FAILURES, 16))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    reason: str = ""
    """Why not: ``pair`` (this address on this account), ``address`` (spraying), ``account`` (attacked
    from many addresses), ``busy`` (the pair's lock could not be had)."""


class LoginThrottle:
    """See the module docstring. ``clock`` gives Unix time (tests move it)."""

    def __init__(self, cache: Cache, rate: RateLimiter, *, window: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.cache, self.rate, self.window, self.clock = cache, rate, window, clock

    @staticmethod
    def _id(username: str) -> str:
        return hashlib.sha256(username.lower().encode()).hexdigest()[:24]

    def _pair(self, username: str, address: str) -> str:
        return f"console-login:pair:{self._id(username)}:{address}"

    def _known(self, username: str, address: str) -> str:
        return f"console-login:known:{self._id(username)}:{address}"

    async def _blocked_until(self, key: str) -> float:
        value = await self.cache.get(key)
        try:
            return float(value) if value else 0.0
        except ValueError:
            return 0.0

    async def begin(self, username: str, address: str) -> Verdict:
        """Before the password is checked: may ``address`` try ``username`` now? If so, the attempt is
        already counted as a wrong password; call :meth:`succeeded` if it was right."""
        now = self.clock()
        if await self.cache.get(self._known(username, address)) is None:
            for key, reason in ((f"console-login:block:address:{address}", "address"),
                                (f"console-login:block:account:{self._id(username)}", "account")):
                until = await self._blocked_until(key)
                if until > now:
                    return Verdict(False, until - now, reason)
        pair = self._pair(username, address)
        try:
            async with self.cache.lock(pair, timeout=5):
                now = self.clock()  # read after waiting for the lock, not before (a holder wrote `until`)
                raw = await self.cache.get(pair)
                state = json.loads(raw) if raw else {"failures": 0, "until": 0.0}
                if state["until"] > now:
                    return Verdict(False, state["until"] - now, "pair")
                failures = int(state["failures"]) + 1
                state = {"failures": failures, "until": now + delay_after(failures)}
                await self.cache.set(pair, json.dumps(state), FORGET_AFTER)
        except LockTimeout:
            return Verdict(False, 1.0, "busy")
        return Verdict(True)

    async def succeeded(self, username: str, address: str) -> None:
        """The password was right: clear the pair and remember the address as one this account uses."""
        await self.cache.delete(self._pair(username, address))
        await self.cache.set(self._known(username, address), "1", KNOWN_FOR)

    async def failed(self, username: str, address: str) -> None:
        """The password was wrong (the pair already counted it): feed the two wider guards."""
        now = self.clock()
        by_address = await self.rate.hit(f"console-login:address:{address}", limit=ADDRESS_LIMIT,
                                         window=self.window)
        if not by_address.allowed:
            wait = max(1.0, by_address.retry_after)
            await self.cache.set(f"console-login:block:address:{address}", str(now + wait), math.ceil(wait))
        by_account = await self.rate.hit(f"console-login:account:{self._id(username)}", limit=ACCOUNT_LIMIT,
                                         window=ACCOUNT_WINDOW)
        if not by_account.allowed:
            await self.cache.set(f"console-login:block:account:{self._id(username)}", str(now + ACCOUNT_GUARD),
                                 ACCOUNT_GUARD)
