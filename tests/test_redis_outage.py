"""Redis failing under load, with a private ``redis-server`` per test (never the shared one).

Redis is stopped, restarted empty, and hung (SIGSTOP) while signed WeChat messages flow into the real
app on PostgreSQL: the webhook keeps answering well inside WeChat's 5 s, ``/healthz`` answers within a
second and says Redis is down, nothing acknowledged is lost, and every reply whose hand-off to the job
queue failed is delivered once Redis is back (the delivery sweep), exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from taskiq.api import run_receiver_task

from bot.runtime import Runtime
from bot.store.models import Message
from tests.conftest import make_settings
from tests.fakes.wechat_server import FakeWeChatAPI
from tests.test_wechat_app import EchoPolicy, api, messages, owner, start

__all__ = ["api"]

WECHAT_PATIENCE = 5.0
"""WeChat gives up on an answer after 5 s and retries."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of this test alone, on a free port, without persistence (a restart loses
    everything, as a Redis without AOF does)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # in case it was paused
                self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def timed(coro: Any) -> tuple[Any, float]:
    began = time.monotonic()
    result = await coro
    return result, time.monotonic() - began


async def health(client: Any) -> tuple[int, dict[str, str], float]:
    began = time.monotonic()
    resp = await client.get("/healthz")
    return resp.status, await resp.json(), time.monotonic() - began


async def test_the_webhook_and_healthz_answer_in_time_while_redis_is_down_or_hung(
    aiohttp_client: Any, pg_url: str, api: FakeWeChatAPI, private_redis: PrivateRedis
) -> None:
    client, rt = await start(aiohttp_client, pg_url, api, redis_url=private_redis.url, redis_timeout=0.3)
    owners = [owner(client, openid=f"oDOWN{n:04d}") for n in range(12)]
    acknowledged: list[tuple[str, str]] = []
    slowest = 0.0

    async def burst(round_: int) -> None:
        """Every owner writes at once (known senders and, each round, new ones)."""
        nonlocal slowest
        fresh = [owner(client, openid=f"oNEW{round_}{n:03d}") for n in range(4)]
        sent = [(o, f"第{round_}轮：{o.openid[-3:]}号楼道灯坏了") for o in owners + fresh]
        results = await asyncio.gather(*(timed(o.post(o.text_xml(text))) for o, text in sent))
        for (o, text), (response, seconds) in zip(sent, results, strict=True):
            slowest = max(slowest, seconds)
            assert seconds < WECHAT_PATIENCE - 1, f"{seconds:.1f} s to answer in round {round_}"
            if response.status == 200:
                acknowledged.append((o.openid, text))
                reply = o.reply_fields(response)
                assert reply is not None and reply["Content"] == f"收到[0]：{text}"  # answered inline

    await burst(0)
    assert await health(client) == (200, {"status": "ok", "database": "ok", "redis": "ok"}, pytest.approx(0, abs=1))

    private_redis.stop()  # Redis goes away: connections refused
    await burst(1)
    status, body, seconds = await health(client)
    assert seconds < 1 and status == 200 and body["status"] == "degraded" and body["redis"].startswith("down")
    await burst(2)

    private_redis.start()  # back, empty
    await asyncio.sleep(1.2)  # the circuit breaker lets a call through again after a second
    await burst(3)
    status, body, _ = await health(client)
    assert status == 200 and body["redis"] == "ok"

    private_redis.pause()  # hung: connections accepted, nothing answered
    try:
        await burst(4)
        status, body, seconds = await health(client)
        assert seconds < 1 and body["status"] == "degraded" and body["redis"].startswith("down"), body
        await burst(5)
    finally:
        private_redis.resume()

    # every acknowledged message is stored exactly once, with the bot's reply
    stored = await messages(rt)
    inbound = Counter((m.conversation_id, m.text) for m in stored if m.direction == "in")
    assert len(inbound) == len(acknowledged) == 6 * 16 and set(inbound.values()) == {1}
    assert sorted(m.text for m in stored if m.direction == "out") == sorted(f"收到[0]：{t}" for _, t in acknowledged)
    text = await (await client.get("/metrics")).text()
    assert 'yezhu_redis_failures_total{operation="lock"}' in text
    assert 'yezhu_degraded_total{step="lock"}' in text
    logging.getLogger(__name__).info("slowest webhook answer while Redis failed: %.2f s", slowest)


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def worker_runtime(pg_url: str, api: FakeWeChatAPI, private_redis: PrivateRedis) -> AsyncIterator[Runtime]:
    """A ``yezhu worker`` in this process: a runtime of its own consuming the job queue."""
    rt = Runtime(make_settings(database_url=pg_url, redis_url=private_redis.url, wechat_api_base=api.base_url,
                               turn_recovery_after=0), nlu=None)
    rt.jobs.broker.is_worker_process = True
    await rt.start()
    receiver = asyncio.ensure_future(run_receiver_task(rt.jobs.broker, max_async_tasks=20))
    yield rt
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    await rt.stop()


async def test_replies_whose_hand_off_failed_during_a_redis_restart_are_delivered_once(
    aiohttp_client: Any,
    pg_url: str,
    api: FakeWeChatAPI,
    private_redis: PrivateRedis,
    worker_runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every reply misses the inline window (a slow answer), so each goes through the job queue.
    client, rt = await start(
        aiohttp_client, pg_url, api, policy=EchoPolicy(delay=0.05), redis_url=private_redis.url,
        redis_timeout=0.3, reply_budget=0.02, turn_recovery_interval=0.3, delivery_sweep_after=1.0,
    )
    owners = [owner(client, openid=f"oBLIP{n:04d}") for n in range(30)]

    async def send(n: int) -> None:
        o = owners[n]
        response = await o.post(o.text_xml(f"第{n}条：电梯异响"))
        assert response.status == 200 and o.reply_fields(response) is None  # success; the answer comes later

    with caplog.at_level(logging.WARNING, logger="yezhu.jobs"):
        flowing = [asyncio.ensure_future(send(n)) for n in range(10)]
        await asyncio.gather(*flowing)
        private_redis.stop()  # Redis restarts while messages keep coming
        for n in range(10, 20):
            await send(n)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # the last turns finish while Redis is still down
        private_redis.start()  # empty: the job stream and its consumer group are gone
        await asyncio.gather(*(send(n) for n in range(20, 30)))

        async def all_sent() -> bool:
            outbound = [m for m in await messages(rt) if m.direction == "out"]
            return len(outbound) == 30 and all(m.delivery == "sent" for m in outbound)

        await wait_until(all_sent, 40, "every reply to be sent")
    await asyncio.sleep(1.0)  # a second send of any reply would have happened by now
    delivered = Counter((m.touser, m.content) for m in api.messages)
    assert delivered == Counter({(o.openid, f"收到[0]：第{n}条：电梯异响"): 1 for n, o in enumerate(owners)})
    # the failed hand-offs were logged when they happened, and counted
    assert any("could not queue" in r.getMessage() for r in caplog.records)
    text = await (await client.get("/metrics")).text()
    failures = [line for line in text.splitlines() if line.startswith("yezhu_job_enqueue_failures_total")]
    assert failures and float(failures[0].split()[-1]) >= 1
    assert 'yezhu_deliveries_swept_total{outcome="requeued"}' in text
    # nothing is left owed
    async with rt.db.autocommit() as c:
        owed = (await c.execute(
            sa.select(sa.func.count()).select_from(Message).where(Message.delivery.in_(("queued", "sending", "reply")))
        )).scalar_one()
    assert owed == 0
    assert os.environ.get("YEZHU_REDIS_URL") is None  # the shared Redis was never touched


async def test_every_service_call_gives_up_within_the_timeout_and_recovers(private_redis: PrivateRedis) -> None:
    from bot.services import ServiceUnavailable, redis_services

    failures: list[str] = []
    services = redis_services(private_redis.url, timeout=0.3, on_failure=failures.append)
    try:
        assert await services.dedup.first_seen("k", 60)
        calls = {
            "dedup": lambda: services.dedup.first_seen("k2", 60),
            "lock": lambda: services.locks.lock("turn:x", timeout=5, wait=5).__aenter__(),
            "publish": lambda: services.pubsub.publish("events", {"event": "x"}),
            "rate": lambda: services.rate.hit("r", limit=5, window=60),
            "cache": lambda: services.cache.get("token"),
            "ping": services.ping,
        }
        private_redis.pause()
        try:
            for name, call in calls.items():
                began = time.monotonic()
                with pytest.raises(ServiceUnavailable):
                    await call()
                assert time.monotonic() - began < 0.6, f"{name} took {time.monotonic() - began:.2f} s"
        finally:
            private_redis.resume()
        assert set(failures) == set(calls)  # every failure counted, by operation
        await asyncio.sleep(1.1)  # after the cool-down one call tries Redis again, and it answers
        await services.ping()
        assert await services.dedup.first_seen("k3", 60)
    finally:
        await services.close()
