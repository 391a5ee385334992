"""`yezhu run` as an operator starts it: several web processes on one port, and a server killed mid-burst.

The servers run as real subprocesses and get signed WeChat messages from many owners at once. Several
processes on PostgreSQL and Redis answer every owner exactly once (de-duplication and per-sender locks
are shared through Redis); a server killed with SIGKILL leaves nothing acknowledged unstored, and after
its restart every stored message is answered (the turn-recovery sweep).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store.models import Message
from tests.conftest import WECHAT
from tests.fakes.wechat_client import WeChatOwner

ROOT = Path(__file__).resolve().parent.parent
YEZHU = Path(sys.executable).parent / "yezhu"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def web_processes(pid: int) -> list[int]:
    """The server's child processes that serve (multiprocessing also starts a resource tracker)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return [c for c in found if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def start_server(args: list[str], cwd: Path, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(YEZHU), "run", *args], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


async def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the server exited while starting"
            try:
                async with http.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise AssertionError("the server did not become healthy")


async def test_several_web_processes_share_the_port_and_the_work(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("YEZHU_")},
        "YEZHU_DATABASE_URL": pg_url,
        "YEZHU_REDIS_URL": redis_url,
        "YEZHU_WECHAT_TOKEN": WECHAT["wechat_token"],
        "YEZHU_WECHAT_APP_ID": WECHAT["wechat_app_id"],
        "YEZHU_WECHAT_APP_SECRET": WECHAT["wechat_app_secret"],
        "YEZHU_WECHAT_API_BASE": "http://127.0.0.1:9",
        "YEZHU_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "server.log").open("wb")
    proc = start_server(["--host", "127.0.0.1", "--port", str(port), "--processes", "2"], tmp_path, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        workers = web_processes(proc.pid)
        assert len(workers) == 2, workers
        cpu_before = {pid: cpu_ticks(pid) for pid in workers}

        async with aiohttp.ClientSession(base_url=base) as http:
            owners = [
                WeChatOwner(http, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"],
                            openid=f"oPROC{n:04d}")
                for n in range(40)
            ]
            # each owner's message twice at once (WeChat's retry): one answer, one stored message
            xmls = [o.text_xml("你好", msg_id=8054768590064710000 + n) for n, o in enumerate(owners)]
            responses = await asyncio.gather(
                *(o.post(xml) for o, xml in zip(owners, xmls, strict=True)),
                *(o.post(xml) for o, xml in zip(owners, xmls, strict=True)),
            )
        assert all(r.status == 200 for r in responses)
        answered: Counter[str] = Counter()
        for o, r in zip(owners + owners, responses, strict=True):
            fields = o.reply_fields(r)
            if fields:
                assert fields["ToUserName"] == o.openid and "您好" in fields["Content"]
                answered[o.openid] += 1
        assert sorted(answered.values()) == [1] * 40, answered  # every owner answered exactly once

        engine = create_async_engine(pg_url)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(Message.direction, Message.channel_msg_id))).all()
        await engine.dispose()
        inbound = Counter(m for d, m in rows if d == "in")
        assert len(inbound) == 40 and set(inbound.values()) == {1}
        assert sum(1 for d, _ in rows if d == "out") == 40

        # both processes took part (the kernel spreads new connections over the listening sockets)
        worked = {pid: cpu_ticks(pid) - cpu_before[pid] for pid in workers}
        assert all(ticks > 0 for ticks in worked.values()), worked
        server_log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in server_log, server_log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert not any(running(pid) for pid in workers)


def test_several_processes_need_redis_and_postgresql(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YEZHU_")}
    env["YEZHU_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    done = subprocess.run([str(YEZHU), "run", "--processes", "2"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "YEZHU_REDIS_URL" in done.stderr


async def test_messages_of_a_killed_server_are_answered_after_the_restart(tmp_path: Path) -> None:
    """SIGKILL in the middle of a burst: everything acknowledged is stored once, and every stored
    message gets its answer -- the restarted server runs the turns the dead one never finished and
    sends their replies through the customer-service API."""
    from tests.fakes.wechat_server import FakeWeChatAPI

    db = tmp_path / "yezhu.db"
    url = f"sqlite+aiosqlite:///{db}"
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as api:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("YEZHU_")},
            "YEZHU_DATABASE_URL": url,
            "YEZHU_WECHAT_TOKEN": WECHAT["wechat_token"],
            "YEZHU_WECHAT_APP_ID": WECHAT["wechat_app_id"],
            "YEZHU_WECHAT_APP_SECRET": WECHAT["wechat_app_secret"],
            "YEZHU_WECHAT_API_BASE": api.base_url,
            "YEZHU_LOG_LEVEL": "WARNING",
            "YEZHU_TURN_CONCURRENCY": "1",  # a backlog of turns builds up behind the accepted messages
            "YEZHU_TURN_RECOVERY_AFTER": "0.5",
        }
        base = f"http://127.0.0.1:{port}"
        log = (tmp_path / "first.log").open("wb")
        first = start_server(["--host", "127.0.0.1", "--port", str(port)], tmp_path, env, log)
        try:
            await wait_healthy(base, first)
            acknowledged: set[int] = set()
            async with aiohttp.ClientSession(base_url=base) as http:
                owners = [
                    WeChatOwner(http, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"],
                                openid=f"oKILL{n:04d}")
                    for n in range(120)
                ]

                async def send(n: int, o: WeChatOwner) -> None:
                    try:
                        response = await o.post(o.text_xml("物业费怎么交", msg_id=9054768590064710000 + n))
                    except (aiohttp.ClientError, OSError):
                        return  # the server died under it: not acknowledged, WeChat would retry
                    if response.status == 200:
                        acknowledged.add(9054768590064710000 + n)
                        if len(acknowledged) == 10:
                            first.send_signal(signal.SIGKILL)

                await asyncio.gather(*(send(n, o) for n, o in enumerate(owners)))
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
            log.close()

        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(
                    sa.select(Message.channel_msg_id, Message.handled_at).where(Message.direction == "in")
                )).all()
            stored = Counter(int(m) for m, _ in rows)
            unfinished = sum(1 for _, handled in rows if handled is None)
            assert acknowledged <= stored.keys() and set(stored.values()) == {1}
            assert unfinished > 0, "the kill came too late to leave a turn unfinished"

            log = (tmp_path / "second.log").open("wb")
            second = start_server(["--host", "127.0.0.1", "--port", str(port)], tmp_path, env, log)
            try:
                await wait_healthy(base, second)
                await api.wait_for_messages(unfinished, timeout=60)
                async with engine.connect() as conn:
                    inbound = (await conn.execute(
                        sa.select(Message.conversation_id, Message.handled_at).where(Message.direction == "in")
                    )).all()
                    replied = set((await conn.execute(
                        sa.select(Message.conversation_id).where(Message.direction == "out")
                    )).scalars())
                assert all(handled is not None for _, handled in inbound)
                assert {conv for conv, _ in inbound} <= replied  # every stored message has its answer
                assert all(m.content.strip() for m in api.messages)  # the bot's answer, not an empty send
                assert len({m.touser for m in api.messages}) == unfinished
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=40)
                log.close()
        finally:
            await engine.dispose()
