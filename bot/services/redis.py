"""Redis implementations (``redis.asyncio``), shared by every web and worker process."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import LockError

from bot.services.base import LockTimeout, RateDecision, Services

PREFIX = "yezhu:"

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
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    async def first_seen(self, key: str, ttl: int) -> bool:
        return bool(await self.r.set(PREFIX + "dedup:" + key, b"1", nx=True, ex=ttl))

    async def forget(self, key: str) -> None:
        await self.r.delete(PREFIX + "dedup:" + key)


class RedisLocks:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    @asynccontextmanager
    async def lock(self, key: str, *, timeout: float = 30.0, wait: float = 30.0) -> AsyncIterator[None]:
        lock = self.r.lock(PREFIX + "lock:" + key, timeout=timeout, blocking_timeout=wait, sleep=0.005)
        if not await lock.acquire():
            raise LockTimeout(key)
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:
                pass  # expired while held: another holder may own it now; nothing of ours to release


class RedisPubSub:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        await self.r.publish(PREFIX + channel, json.dumps(message, ensure_ascii=False, default=str))

    async def publish_many(self, channel: str, messages: list[dict[str, Any]]) -> None:
        if len(messages) == 1:
            return await self.publish(channel, messages[0])
        async with self.r.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(PREFIX + channel, json.dumps(message, ensure_ascii=False, default=str))
            await pipe.execute()

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(PREFIX + channel)

        async def messages() -> AsyncIterator[dict[str, Any]]:
            while True:
                item = await pubsub.get_message(timeout=1.0)
                if item is None:
                    continue
                yield json.loads(item["data"])

        try:
            yield messages()
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client
        self._script = client.register_script(_RATE)

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        allowed, remaining, retry = await self._script(
            keys=[PREFIX + "rate:" + key], args=[time.time(), window, limit, uuid.uuid4().hex]
        )
        return RateDecision(bool(int(allowed)), int(remaining), float(retry))

    async def reset(self, key: str) -> None:
        await self.r.delete(PREFIX + "rate:" + key)


class RedisCache:
    def __init__(self, client: aioredis.Redis) -> None:
        self.r = client
        self._delete_if = client.register_script(_DELETE_IF)
        self._set_if_absent = client.register_script(_SET_IF_ABSENT)
        self._locks = RedisLocks(client)

    async def get(self, key: str) -> str | None:
        value = await self.r.get(PREFIX + "cache:" + key)
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl: int) -> None:
        await self.r.set(PREFIX + "cache:" + key, value, ex=ttl)

    async def delete(self, key: str, only_if: str | None = None) -> None:
        if only_if is None:
            await self.r.delete(PREFIX + "cache:" + key)
        else:
            await self._delete_if(keys=[PREFIX + "cache:" + key], args=[only_if])

    def lock(self, key: str, timeout: float) -> Any:
        return self._locks.lock("cache:" + key, timeout=timeout, wait=timeout)

    async def set_if_absent(self, key: str, value: str, ttl: int) -> str | None:
        old = await self._set_if_absent(keys=[PREFIX + "cache:" + key], args=[value, max(1, int(ttl))])
        return old.decode() if isinstance(old, bytes) else old


def redis_services(url: str) -> Services:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)
    return Services(
        backend="redis",
        dedup=RedisDeduper(client),
        locks=RedisLocks(client),
        pubsub=RedisPubSub(client),
        rate=RedisRateLimiter(client),
        cache=RedisCache(client),
        redis=client,
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
