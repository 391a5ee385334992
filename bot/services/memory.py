"""In-process implementations for the embedded mode (one process; nothing survives a restart)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.services.base import LockTimeout, RateDecision, Services


class MemoryDeduper:
    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._last_sweep = time.monotonic()

    async def first_seen(self, key: str, ttl: int) -> bool:
        now = time.monotonic()
        if now - self._last_sweep > 60:
            self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            self._last_sweep = now
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + ttl
        return True

    async def forget(self, key: str) -> None:
        self._seen.pop(key, None)


class MemoryLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def lock(self, key: str, *, timeout: float = 30.0, wait: float = 30.0) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            if lock.locked():  # wait for the holder (wait_for costs a task: only when there is one)
                try:
                    await asyncio.wait_for(lock.acquire(), wait)
                except TimeoutError as exc:
                    raise LockTimeout(key) from exc
            else:
                await lock.acquire()  # free: taken at once, without suspending
            try:
                yield
            finally:
                lock.release()
        finally:
            self._users[key] -= 1
            if not self._users[key]:  # no holder or waiter: drop it so the dict does not grow forever
                del self._users[key]
                self._locks.pop(key, None)


class MemoryPubSub:
    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        for queue in list(self._queues.get(channel, ())):
            queue.put_nowait(message)

    async def publish_many(self, channel: str, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            await self.publish(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._queues[channel].add(queue)

        async def messages() -> AsyncIterator[dict[str, Any]]:
            while True:
                yield await queue.get()

        try:
            yield messages()
        finally:
            self._queues[channel].discard(queue)
            if not self._queues[channel]:
                del self._queues[channel]


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    async def hit(self, key: str, *, limit: int, window: float) -> RateDecision:
        now = time.monotonic()
        hits = self._hits[key]
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return RateDecision(False, 0, hits[0] + window - now)
        hits.append(now)
        return RateDecision(True, limit - len(hits), 0.0)

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)


class MemoryCache:
    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float]] = {}
        self._last_sweep = time.monotonic()
        self._locks = MemoryLocks()

    async def get(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None or item[1] <= time.monotonic():
            return None
        return item[0]

    async def set(self, key: str, value: str, ttl: int) -> None:
        self._data[key] = (value, time.monotonic() + ttl)

    async def delete(self, key: str, only_if: str | None = None) -> None:
        if only_if is None or (await self.get(key)) == only_if:
            self._data.pop(key, None)

    def lock(self, key: str, timeout: float) -> Any:
        return self._locks.lock(f"cache-lock:{key}", timeout=timeout, wait=timeout)

    async def set_if_absent(self, key: str, value: str, ttl: int) -> str | None:
        existing = await self.get(key)
        if existing is not None:
            return existing
        now = time.monotonic()
        if now - self._last_sweep > 60:  # nonces arrive with every webhook: drop the expired ones now and then
            self._data = {k: item for k, item in self._data.items() if item[1] > now}
            self._last_sweep = now
        self._data[key] = (value, now + ttl)
        return None


def memory_services() -> Services:
    return Services(
        backend="memory",
        dedup=MemoryDeduper(),
        locks=MemoryLocks(),
        pubsub=MemoryPubSub(),
        rate=MemoryRateLimiter(),
        cache=MemoryCache(),
    )
