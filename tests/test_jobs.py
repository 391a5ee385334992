"""The job queue: in-process in the embedded mode; on Redis, a job whose worker dies is run again."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.runtime import Runtime
from bot.store.models import Conversation, Identity, Message, utcnow
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent


class HangingWeChat:
    """WeChat's token and custom-send APIs; sends hang while ``hang`` is set (a worker is mid-job)."""

    def __init__(self) -> None:
        self.hang = True
        self.attempts = 0
        self.delivered: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_get("/cgi-bin/token", self.token)
        self.app.router.add_post("/cgi-bin/message/custom/send", self.send)

    async def token(self, request: web.Request) -> web.Response:
        return web.json_response({"access_token": "TOKEN", "expires_in": 7200})

    async def send(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.hang:
            await asyncio.sleep(3600)
        self.delivered.append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})


async def _outbound_message(rt: Runtime, text: str, openid: str = "oDEMO0001x") -> int:
    async with rt.db.session() as s, s.begin():
        ident = Identity(channel="wechat", account="default", external_id=openid, last_inbound_at=utcnow())
        s.add(ident)
        await s.flush()
        conv = Conversation(identity_id=ident.id, mode="staff", state={})
        s.add(conv)
        await s.flush()
        msg = Message(conversation_id=conv.id, direction="out", channel="wechat", account="default", text=text,
                      author="staff:kefu", delivery="queued")
        s.add(msg)
        await s.flush()
        return msg.id


async def _wait(predicate: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def _start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "worker", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )


async def test_a_job_whose_worker_dies_is_run_again(sqlite_url: str, redis_url: str) -> None:
    fake = HangingWeChat()
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    overrides = {"database_url": sqlite_url, "redis_url": redis_url, "job_redelivery_seconds": 1.0,
                 "wechat_api_base": str(server.make_url("")).rstrip("/")}
    settings = make_settings(**overrides)
    env = {**os.environ, **{f"YEZHU_{k.upper()}": str(v) for k, v in overrides.items()},
           "YEZHU_WECHAT_TOKEN": settings.wechat_token, "YEZHU_WECHAT_APP_ID": settings.wechat_app_id,
           "YEZHU_WECHAT_APP_SECRET": settings.wechat_app_secret.get_secret_value(), "YEZHU_JOB_RETRY_BASE": "0.01"}
    rt = Runtime(settings, nlu=None)
    await rt.start()
    first = second = None
    try:
        mid = await _outbound_message(rt, "您好，维修师傅明天上午上门。")
        await rt.jobs.enqueue_delivery(mid)
        first = await _start_worker(env)
        await _wait(lambda: fake.attempts >= 1, 20)  # the first worker is inside the send
        first.send_signal(signal.SIGKILL)
        await first.wait()
        fake.hang = False
        second = await _start_worker(env)
        await _wait(lambda: fake.delivered, 30)
        assert fake.delivered[0]["touser"] == "oDEMO0001x"
        assert fake.delivered[0]["text"]["content"] == "您好，维修师傅明天上午上门。"

        async def delivered() -> str | None:
            async with rt.db.session() as s:
                return await s.scalar(sa.select(Message.delivery).where(Message.id == mid))

        for _ in range(100):
            if await delivered() == "sent":
                break
            await asyncio.sleep(0.05)
        assert await delivered() == "sent"
        assert len(fake.delivered) == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
        await rt.stop()
        await server.close()


async def test_embedded_mode_runs_jobs_in_process(sqlite_url: str) -> None:
    fake = HangingWeChat()
    fake.hang = False
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    rt = Runtime(make_settings(database_url=sqlite_url, wechat_api_base=str(server.make_url("")).rstrip("/")), nlu=None)
    await rt.start()
    try:
        assert rt.jobs.in_process
        mid = await _outbound_message(rt, "测试")
        await rt.jobs.enqueue_delivery(mid)
        await _wait(lambda: fake.delivered, 10)
        await rt.engine.drain()
        await asyncio.sleep(0.1)
        async with rt.db.session() as s:
            assert await s.scalar(sa.select(Message.delivery).where(Message.id == mid)) == "sent"
    finally:
        await rt.stop()
        await server.close()


async def _owed(rt: Runtime, text: str, *, delivery: str, handoff_ago: float | None, age: float = 0) -> int:
    """An outbound message as a process left it: ``queued`` (its hand-off lost) or ``sending`` (its
    worker died), handed over ``handoff_ago`` seconds ago."""
    mid = await _outbound_message(rt, text, openid=f"oOWED{abs(hash(text)) % 10**8:08d}")
    now = utcnow()
    async with rt.db.session() as s, s.begin():
        await s.execute(sa.update(Message).where(Message.id == mid).values(
            delivery=delivery,
            handoff_at=None if handoff_ago is None else now - dt.timedelta(seconds=handoff_ago),
            at=now - dt.timedelta(seconds=age),
        ))
    return mid


async def _delivery(rt: Runtime, mid: int) -> tuple[str | None, str | None]:
    async with rt.db.session() as s:
        row = (await s.execute(sa.select(Message.delivery, Message.delivery_error).where(Message.id == mid))).one()
    return row.delivery, row.delivery_error


async def test_two_jobs_for_one_message_send_it_once(db_url: str) -> None:
    from tests.fakes.wechat_server import FakeWeChatAPI

    async with FakeWeChatAPI({"wx0123456789abcdef": "secret-for-tests"}, send_delay=0.3) as api:
        rt = Runtime(make_settings(database_url=db_url, wechat_api_base=api.base_url, turn_recovery_after=0),
                     nlu=None)
        await rt.start()
        try:
            mid = await _owed(rt, "您的报修已派单。", delivery="queued", handoff_ago=0)
            # the sweep's job and the original one (a slow queue), at the same time
            results = await asyncio.gather(rt.jobs.deliver_message(mid), rt.jobs.deliver_message(mid))
            assert sorted(results) == ["sending", "sent"]
            assert [m.content for m in api.messages] == ["您的报修已派单。"]
            assert await rt.jobs.deliver_message(mid) == "sent"  # and a late redelivery does nothing
            assert len(api.messages) == 1 and await _delivery(rt, mid) == ("sent", None)
        finally:
            await rt.stop()


async def test_the_delivery_sweep_hands_over_what_no_job_delivered(db_url: str) -> None:
    from tests.fakes.wechat_server import FakeWeChatAPI

    async with FakeWeChatAPI({"wx0123456789abcdef": "secret-for-tests"}) as api:
        rt = Runtime(make_settings(database_url=db_url, wechat_api_base=api.base_url, turn_recovery_after=0),
                     nlu=None)
        await rt.start()
        try:
            lost = await _owed(rt, "维修师傅下午两点上门。", delivery="queued", handoff_ago=600)
            dead_worker = await _owed(rt, "您的快递已到前台。", delivery="sending", handoff_ago=600)
            in_queue = await _owed(rt, "明天停水。", delivery="queued", handoff_ago=5)  # its job is on its way
            too_old = await _owed(rt, "上周的通知。", delivery="queued", handoff_ago=600, age=25 * 3600)

            assert await rt.jobs.sweep_deliveries(older_than=60) == 2
            sent = await api.wait_for_messages(2, timeout=10)
            assert sorted(m.content for m in sent) == ["您的快递已到前台。", "维修师傅下午两点上门。"]
            await rt.jobs.shutdown()  # let the in-process jobs finish
            await rt.jobs.startup()
            assert await _delivery(rt, lost) == ("sent", None)
            assert await _delivery(rt, dead_worker) == ("sent", None)
            assert await _delivery(rt, in_queue) == ("queued", None)  # not yet overdue: left to its job
            delivery, reason = await _delivery(rt, too_old)
            assert delivery == "failed" and reason is not None and "24 hours" in reason
            assert await rt.jobs.sweep_deliveries(older_than=60) == 0  # nothing is handed over twice
            assert len(api.messages) == 2
            text = rt.metrics.render().decode()
            assert 'yezhu_deliveries_swept_total{outcome="requeued"} 2.0' in text
            assert 'yezhu_deliveries_swept_total{outcome="expired"} 1.0' in text
        finally:
            await rt.stop()
