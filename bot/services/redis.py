"""Redis implementations (``redis.asyncio``), shared by every web and worker process.

Every call goes through one :class:`Breaker` per client: it is bounded by ``YEZHU_REDIS_TIMEOUT``
(socket timeouts alone do not bound a lock acquisition or a half-dead connection), and after a failure
the next calls fail fast with :class:`ServiceUnavailable` for ``COOLDOWN`` seconds, then one call
probes. So a Redis that is down, restarting or hung (SIGSTOP) costs a request at most one timeout, and
usually nothing: the callers on the request path have a fallback for each call (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.services.base import LockTimeout, RateDecision, Services, ServiceUnavailable

PREFIX = "yezhu:"
COOLDOWN = 1.0
"""Seconds calls fail fast after a failure before one call tries Redis again."""

log = logging.getLogger("yezhu.services")
T = TypeVar("T")

# What "Redis is unavailable" looks like: refused or reset connections, timeouts (ours or the
# socket's), a server still loading its data set after a restart (BusyLoadingError is a
# ConnectionError). A ResponseError (a bug of ours, a wrong type) is not an outage and propagates.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class Breaker:
    """Time limit and circuit breaker around every Redis call of one client."""

    def __init__(self, timeout: float, on_failure: Callable[[str], None] | None = None) -> None:
        self.timeout = timeout
        self.on_failure = on_failure
        self.last_error: str | None = None
        """Why the last call failed, while Redis is considered down; None when it is up."""
        self._open_until = 0.0
        self._probing = False

    async def call(self, what: str, make: Callable[[], Awaitable[T]], *, timeout: float | None = None) -> T:
        probe = False
        if self.last_error is not None:
            if self._probing or time.monotonic() < self._open_until:
                self._count(what)
                raise ServiceUnavailable(f"redis {what}: {self.last_error} (failing fast)")
            self._probing = probe = True
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                result = await make()
        except UNAVAILABLE as exc:
            reason = f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__
            if self.last_error is None:
                log.warning("redis unavailable (%s during %s): degraded until it answers again", reason, what)
            self.last_error = reason
            self._open_until = time.monotonic() + COOLDOWN
            self._count(what)
            raise ServiceUnavailable(f"redis {what}: {reason}") from exc
        finally:
            if probe:
                self._probing = False
        if self.last_error is not None:
            log.warning("redis answers again (down since: %s)", self.last_error)
            self.last_error = None
        return result

    def _count(self, what: str) -> None:
        if self.on_failure is not None:
            self.on_failure(what)

# Compare-and-delete: drop a cached value only if it is still the one we saw (another process may
# already have refreshed the token; deleting its fresh token would make every process refresh again).
_DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

# Set-if-absent returning the value already there, in one round trip on any Redis version (``SET NX GET``
# needs Redis 7).
_SET_IF_ABSENT = """
local old = redis.call('GET', KEYS[1])
if old then return old end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""

# Sliding-window log in one round trip: trim, count, maybe add; atomic because Lua runs alone.
_RATE = """
local key, now, window, limit, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, 0, tostring(tonumber(oldest[2]) + window - now)}
end
redis.call('ZADD', key, now, member)
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return {1, limit - count - 1, '0'}
"""


class RedisDeduper:
    def __init__(self, client: aioredis.Redis, breaker: Breaker) -> None:
        self.r, self.b = client, breaker

    async def first_seen(self, key: str, ttl: int) -> bool:
        return bool(await self.b.call("dedup", lambda: self.r.set(PREFIX + "dedup:" + key, b"1", nx=True, ex=ttl)))

    async def forget(self, key: str) -> None:
        await self.b.call("dedup", lambda: self.r.delete(PREFIX + "dedup:" + key))


# Release a lock only if we still hold it (its token), and publish what the holder's unit of work left
# to announce, in one round trip: a turn's end costs one command instead of two.
_RELEASE = """
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) released = 1 end
for i = 3, #ARGV do redis.call('PUBLISH', ARGV[2], ARGV[i]) end
return released
"""


class Held:
    """A held Redis lock: ``publish_on_release`` hands it events to publish in the release's round trip."""

    __slots__ = ("channel", "payloads")

    def __init__(self) -> None:
        self.channel: str | None = None
        self.payloads: list[str] = []

    def publish_on_release(self, channel: str, messages: list[dict[str, Any]]) -> None:
        self.channel = PREFIX + channel
        self.payloads = [_payload(messages)]


def _payload(messages: list[dict[str, Any]]) -> str:
    """One pub/sub message for a unit of work's events: the event itself, or a JSON array of several
    (one PUBLISH, and one message for every subscriber to read, instead of one per event)."""
    return json.dumps(messages[0] if len(messages) == 1 else messages, ensure_ascii=False, default=str)


class RedisLocks:
    """Per-key mutual exclusion across processes: ``SET key token NX PX`` (retried every 5 ms while
    another holder has it, up to ``wait``), released by compare-and-delete, so an expired lock that
    someone else took meanwhile is never deleted (the algorithm of redis-py's ``Lock``, one command
    each way; yields a :class:`Held`)."""

    def __init__(self, client: aioredis.Redis, breaker: Breaker) -> None:
        self.r, self.b = client, breaker
        self._release = client.register_script(_RELEASE)

    @asynccontextmanager
    async def lock(self, key: str, *, timeout: float = 30.0, wait: float = 30.0) -> AsyncIterator[Held]:
        name, token, ms = PREFIX + "lock:" + key, os.urandom(16).hex(), int(timeout * 1000)

        async def acquire() -> bool:
            deadline = time.monotonic() + wait
            while not await self.r.set(name, token, nx=True, px=ms):
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.005)
            return True

        # Waiting for a holder may take up to ``wait``; each command within is bounded by the socket
        # timeout, so a dead or hung Redis still fails within YEZHU_REDIS_TIMEOUT.
        if not await self.b.call("lock", acquire, timeout=wait + self.b.timeout):
            raise LockTimeout(key)
        held = Held()
        try:
            yield held
        finally:
            args = [token, held.channel or "", *held.payloads]
            try:
                await self.b.call("unlock", lambda: self._release(keys=[name], args=args))
            except ServiceUnavailable as exc:
                # The lock's timeout frees it; live screens miss these updates (they reload from the database).
                if held.payloads:
                    log.warning("events not published (%s)", exc)


class RedisPubSub:
    def __init__(self, client: aioredis.Redis, breaker: Breaker) -> None:
        self.r, self.b = client, breaker

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        payload = json.dumps(message, ensure_ascii=False, default=str)
        await self.b.call("publish", lambda: self.r.publish(PREFIX + channel, payload))

    async def publish_many(self, channel: str, messages: list[dict[str, Any]]) -> None:
        if messages:
            payload = _payload(messages)
            await self.b.call("publish", lambda: self.r.publish(PREFIX + channel, payload))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(PREFIX + channel)

        async def messages() -> AsyncIterator[dict[str, Any]]:
            while True:
                item = await pubsub.get_message(timeout=1.0)
                if item is None:
                    continue
                data = json.loads(item["data"])
                if isinstance(data, list):  # the events of one unit of work, in order
                    for message in data:
                        yield message
                else:
                    yield data

        try:
            yield messages()
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, breaker: Breaker) -> None:
        self.r, self.b = client, breaker
        self._script = client.register_script(_RATE)

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        allowed, remaining, retry = await self.b.call(
            "rate",
            lambda: self._script(keys=[PREFIX + "rate:" + key], args=[time.time(), window, limit, uuid.uuid4().hex]),
        )
        return RateDecision(bool(int(allowed)), int(remaining), float(retry))

    async def reset(self, key: str) -> None:
        await self.b.call("rate", lambda: self.r.delete(PREFIX + "rate:" + key))


class RedisCache:
    def __init__(self, client: aioredis.Redis, breaker: Breaker) -> None:
        self.r, self.b = client, breaker
        self._delete_if = client.register_script(_DELETE_IF)
        self._set_if_absent = client.register_script(_SET_IF_ABSENT)
        self._locks = RedisLocks(client, breaker)

    async def get(self, key: str) -> str | None:
        value = await self.b.call("cache", lambda: self.r.get(PREFIX + "cache:" + key))
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl: int) -> None:
        await self.b.call("cache", lambda: self.r.set(PREFIX + "cache:" + key, value, ex=ttl))

    async def delete(self, key: str, only_if: str | None = None) -> None:
        if only_if is None:
            await self.b.call("cache", lambda: self.r.delete(PREFIX + "cache:" + key))
        else:
            await self.b.call("cache", lambda: self._delete_if(keys=[PREFIX + "cache:" + key], args=[only_if]))

    def lock(self, key: str, timeout: float) -> Any:
        return self._locks.lock("cache:" + key, timeout=timeout, wait=timeout)

    async def set_if_absent(self, key: str, value: str, ttl: int) -> str | None:
        old = await self.b.call(
            "cache", lambda: self._set_if_absent(keys=[PREFIX + "cache:" + key], args=[value, max(1, int(ttl))])
        )
        return old.decode() if isinstance(old, bytes) else old


def redis_services(url: str, *, timeout: float = 0.5, on_failure: Callable[[str], None] | None = None) -> Services:
    """The Redis services; every call is bounded by ``timeout`` seconds (``YEZHU_REDIS_TIMEOUT``) and
    ``on_failure(operation)`` is called for each call Redis failed (or that failed fast meanwhile)."""
    # One immediate retry on a fresh connection: after a Redis restart every pooled connection is
    # stale and fails once; without it each would open the circuit for a second in turn.
    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )
    breaker = Breaker(timeout, on_failure)
    return Services(
        backend="redis",
        dedup=RedisDeduper(client, breaker),
        locks=RedisLocks(client, breaker),
        pubsub=RedisPubSub(client, breaker),
        rate=RedisRateLimiter(client, breaker),
        cache=RedisCache(client, breaker),
        redis=client,
        timeout=timeout,
        breaker=breaker,
    )


async def wait_ready(client: aioredis.Redis, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            await client.ping()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
