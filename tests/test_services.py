"""Contract tests for the shared services, run over both implementations (in-process and Redis).

After aiogram's storage tests and Rasa's lock-store tests: one behaviour, every backend.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from bot.services import Services, memory_services, redis_services
from bot.services.base import LockTimeout


@pytest.fixture(params=["memory", "redis"])
async def services(request: pytest.FixtureRequest) -> AsyncIterator[Services]:
    if request.param == "memory":
        svc = memory_services()
    else:
        svc = redis_services(request.getfixturevalue("redis_url"))
    yield svc
    await svc.close()


async def test_dedup_admits_a_key_once(services: Services) -> None:
    results = await asyncio.gather(*(services.dedup.first_seen("msg:wechat:default:1", 60) for _ in range(10)))
    assert results.count(True) == 1
    assert await services.dedup.first_seen("msg:wechat:default:2", 60)


async def test_dedup_expires_and_forgets(services: Services) -> None:
    assert await services.dedup.first_seen("k", 1)
    await services.dedup.forget("k")
    assert await services.dedup.first_seen("k", 1)
    await asyncio.sleep(1.1)
    assert await services.dedup.first_seen("k", 1)


async def test_lock_serialises_holders_of_one_key(services: Services) -> None:
    inside, overlaps, order = 0, 0, []

    async def worker(n: int) -> None:
        nonlocal inside, overlaps
        async with services.locks.lock("conv:1", timeout=5, wait=5):
            inside += 1
            overlaps = max(overlaps, inside)
            order.append(n)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(worker(n) for n in range(8)))
    assert overlaps == 1 and sorted(order) == list(range(8))


async def test_locks_on_different_keys_do_not_wait(services: Services) -> None:
    async with services.locks.lock("a", timeout=5, wait=5):
        async with services.locks.lock("b", timeout=5, wait=0.5):
            pass


async def test_lock_wait_times_out(services: Services) -> None:
    async with services.locks.lock("busy", timeout=5, wait=5):
        with pytest.raises(LockTimeout):
            async with services.locks.lock("busy", timeout=5, wait=0.2):
                pass


async def test_pubsub_delivers_to_every_subscriber(services: Services) -> None:
    # Pub/sub channels are server-wide in Redis (not per database): a unique name keeps other
    # Yezhu processes on this server out of the test.
    channel = f"events-{uuid.uuid4().hex}"
    async with services.pubsub.subscribe(channel) as first, services.pubsub.subscribe(channel) as second:
        await asyncio.sleep(0.05)  # Redis: let SUBSCRIBE reach the server
        await services.pubsub.publish(channel, {"event": "message.created", "text": "卫生间漏水"})
        await services.pubsub.publish("other", {"event": "ignored"})
        got1 = await asyncio.wait_for(anext(first), 2)
        got2 = await asyncio.wait_for(anext(second), 2)
    assert got1 == got2 == {"event": "message.created", "text": "卫生间漏水"}


async def test_pubsub_publishes_a_batch_in_order(services: Services) -> None:
    channel = f"events-{uuid.uuid4().hex}"
    batch = [{"event": "message.created", "n": n} for n in range(5)]
    async with services.pubsub.subscribe(channel) as messages:
        await asyncio.sleep(0.05)  # Redis: let SUBSCRIBE reach the server
        await services.pubsub.publish_many(channel, batch)
        await services.pubsub.publish_many(channel, [{"event": "ticket.created", "n": 5}])
        got = [await asyncio.wait_for(anext(messages), 2) for _ in range(6)]
    assert [m["n"] for m in got] == [0, 1, 2, 3, 4, 5]
    assert got[:5] == batch


async def test_rate_limiter_sliding_window(services: Services) -> None:
    decisions = [await services.rate.hit("login:kefu", limit=5, window=0.5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[4].remaining == 0 and 0 < decisions[5].retry_after <= 0.5
    await asyncio.sleep(0.55)
    assert (await services.rate.hit("login:kefu", limit=5, window=0.5)).allowed
    await services.rate.reset("login:kefu")
    assert (await services.rate.hit("login:kefu", limit=1, window=10)).allowed


async def test_cache_compare_and_delete(services: Services) -> None:
    await services.cache.set("wechat:token:wx1", "T1", ttl=60)
    assert await services.cache.get("wechat:token:wx1") == "T1"
    await services.cache.delete("wechat:token:wx1", only_if="T0")  # someone else refreshed: keep it
    assert await services.cache.get("wechat:token:wx1") == "T1"
    await services.cache.delete("wechat:token:wx1", only_if="T1")
    assert await services.cache.get("wechat:token:wx1") is None


async def test_cache_ttl(services: Services) -> None:
    await services.cache.set("short", "v", ttl=1)
    await asyncio.sleep(1.1)
    assert await services.cache.get("short") is None


async def test_cache_set_if_absent_keeps_the_first_value(services: Services) -> None:
    results = await asyncio.gather(*(services.cache.set_if_absent("nonce:1", f"v{n}", ttl=60) for n in range(8)))
    assert results.count(None) == 1  # exactly one writer won, across concurrent callers
    first = next(f"v{n}" for n, r in enumerate(results) if r is None)
    assert all(r == first for r in results if r is not None)
    assert await services.cache.set_if_absent("nonce:1", "other", ttl=60) == first
    assert await services.cache.get("nonce:1") == first


async def test_cache_set_if_absent_expires(services: Services) -> None:
    assert await services.cache.set_if_absent("nonce:2", "a", ttl=1) is None
    await asyncio.sleep(1.1)
    assert await services.cache.set_if_absent("nonce:2", "b", ttl=1) is None
    assert await services.cache.get("nonce:2") == "b"


async def test_cache_lock_makes_one_refresher(services: Services) -> None:
    fetches = 0

    async def token() -> str:
        nonlocal fetches
        if (value := await services.cache.get("tok")) is not None:
            return value
        async with services.cache.lock("tok", timeout=5):
            if (value := await services.cache.get("tok")) is not None:  # double-checked
                return value
            fetches += 1
            await asyncio.sleep(0.05)
            await services.cache.set("tok", "fresh", ttl=60)
            return "fresh"

    assert set(await asyncio.gather(*(token() for _ in range(10)))) == {"fresh"}
    assert fetches == 1


async def test_two_redis_clients_share_state(redis_url: str) -> None:
    """Two processes' worth of clients: de-dup and locks hold across them."""
    a, b = redis_services(redis_url), redis_services(redis_url)
    try:
        assert await a.dedup.first_seen("shared", 60)
        assert not await b.dedup.first_seen("shared", 60)
        async with a.locks.lock("shared", timeout=5, wait=1):
            with pytest.raises(LockTimeout):
                async with b.locks.lock("shared", timeout=5, wait=0.2):
                    pass
    finally:
        await a.close()
        await b.close()


async def test_redis_lock_expired_while_held_is_not_taken_from_its_next_holder(redis_url: str) -> None:
    """A holder whose lock expired (a turn stuck longer than its timeout) must not release the lock
    another process took meanwhile."""
    a, b = redis_services(redis_url), redis_services(redis_url)
    b_holds, a_released = asyncio.Event(), asyncio.Event()

    async def second_holder() -> None:
        async with b.locks.lock("slow", timeout=5, wait=2):
            b_holds.set()
            await a_released.wait()
            with pytest.raises(LockTimeout):  # still b's, although a "released" it
                async with a.locks.lock("slow", timeout=5, wait=0.2):
                    pass

    try:
        async with a.locks.lock("slow", timeout=0.2, wait=1):
            task = asyncio.ensure_future(second_holder())
            await asyncio.wait_for(b_holds.wait(), 2)  # only after a's lock expired
        a_released.set()
        await asyncio.wait_for(task, 3)
    finally:
        await a.close()
        await b.close()


async def test_redis_lock_publishes_on_release_in_order(redis_url: str) -> None:
    """A turn's events go out with its lock's release (one round trip) and reach subscribers in order;
    the lock is free afterwards."""
    svc = redis_services(redis_url)
    channel = f"events-{uuid.uuid4().hex}"
    batch = [{"event": "message.created", "n": 0, "text": "卫生间漏水"}, {"event": "message.created", "n": 1}]
    try:
        async with svc.pubsub.subscribe(channel) as messages:
            await asyncio.sleep(0.05)  # let SUBSCRIBE reach the server
            async with svc.locks.lock("turn:x", timeout=5, wait=1) as held:
                held.publish_on_release(channel, batch)
            got = [await asyncio.wait_for(anext(messages), 2) for _ in range(2)]
        assert got == batch
        async with svc.locks.lock("turn:x", timeout=5, wait=0.1):
            pass  # released
    finally:
        await svc.close()
