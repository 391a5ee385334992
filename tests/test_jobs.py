"""The job queue: in-process in the embedded mode; on Redis, a job whose worker dies is run again."""

from __future__ import annotations

import asyncio
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


async def _outbound_message(rt: Runtime, text: str) -> int:
    async with rt.db.session() as s, s.begin():
        ident = Identity(channel="wechat", account="default", external_id="oDEMO0001x", last_inbound_at=utcnow())
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
