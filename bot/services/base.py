"""The service contracts (what the engine, jobs and console rely on), independent of the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class LockTimeout(Exception):
    """A lock could not be acquired within its wait time."""


class ServiceUnavailable(Exception):
    """The shared services' backend (Redis) did not answer within ``YEZHU_REDIS_TIMEOUT``, refused the
    connection, or failed recently (the circuit is open). Raised fast: callers on the request path
    decide what is safe without it (docs/ARCHITECTURE.md, "When something fails")."""


class Deduper(Protocol):
    async def first_seen(self, key: str, ttl: int) -> bool:
        """True exactly once per ``key`` within ``ttl`` seconds, across every process."""
        ...

    async def forget(self, key: str) -> None:
        """Drop ``key`` so a retry is processed (used when storing the message failed)."""
        ...


class Locks(Protocol):
    def lock(self, key: str, *, timeout: float = 30.0, wait: float = 30.0) -> AbstractAsyncContextManager[Any]:
        """Mutual exclusion on ``key``; held at most ``timeout`` s (a crashed holder frees it). Yields
        None, or (Redis) a ``Held`` whose ``publish_on_release`` sends events with the release.

        Entering raises :class:`LockTimeout` after ``wait`` s, or :class:`ServiceUnavailable` at once
        when the backend is down (before the body runs: nothing was done under a lock not held)."""
        ...


class PubSub(Protocol):
    """Live notifications (the console's updates): best effort, never a system of record."""

    async def publish(self, channel: str, message: dict[str, Any]) -> None: ...

    async def publish_many(self, channel: str, messages: list[dict[str, Any]]) -> None:
        """Publish several messages in order (with Redis: in one round trip)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        """``async with pubsub.subscribe(ch) as messages: async for m in messages: ...``"""
        ...


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after: float


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        """Count one event for ``key``; at most ``limit`` events are allowed per sliding ``window`` s."""
        ...

    async def reset(self, key: str) -> None: ...


class Cache(Protocol):
    """A small shared key-value cache (satisfies ``channels.base.TokenCache``)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: int) -> None: ...

    async def delete(self, key: str, only_if: str | None = None) -> None: ...

    def lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]: ...

    async def set_if_absent(self, key: str, value: str, ttl: int) -> str | None:
        """Store ``value`` for ``ttl`` s unless ``key`` holds a value; return that value (``None``: ours
        was stored). Atomic across processes (satisfies ``channels.base.NonceStore``)."""
        ...


@dataclass(slots=True)
class Services:
    backend: str
    dedup: Deduper
    locks: Locks
    pubsub: PubSub
    rate: RateLimiter
    cache: Cache
    redis: Any = None
    timeout: float = 0.5
    """Seconds one call to the backend may take (``YEZHU_REDIS_TIMEOUT``)."""
    breaker: Any = None
    """The Redis backend's time limit and circuit breaker (``bot.services.redis.Breaker``)."""

    async def ping(self) -> None:
        """Raises :class:`ServiceUnavailable` (within ``timeout``) when the backend does not answer."""
        if self.redis is not None:
            await self.breaker.call("ping", self.redis.ping)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
