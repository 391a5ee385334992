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
from tests.fakes.wechat_client import WeChatOwner, WeChatResponse

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


def start_worker(cwd: Path, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(YEZHU), "worker"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


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
        # The test counts passive replies; on a shared, loaded machine 80 first messages can take more
        # than the default 3 s (a late answer would go through the API, which this test does not run).
        "YEZHU_REPLY_BUDGET": "4.5",
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
            sent_before = len(api.messages)  # replies the first server sent before it died
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
                await api.wait_for_messages(sent_before + unfinished, timeout=60)
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
                assert len({m.touser for m in api.messages[sent_before:]}) == unfinished
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=40)
                log.close()
        finally:
            await engine.dispose()


WECHAT_RETRY_INTERVAL = float(os.environ.get("YEZHU_TEST_WECHAT_RETRY_INTERVAL", "2.5"))
"""Seconds between WeChat's tries of one message (WeChat: 5 s; shorter here to keep the test fast)."""
WECHAT_TIMEOUT = 5.0
"""WeChat waits this long for an answer before it counts the try as failed."""


async def message_states(engine: Any, openids: set[str]) -> list[dict[str, Any]]:
    """What the database says about these owners' messages (for a failing assertion's message)."""
    from bot.store.models import Conversation, Identity

    async with engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(Identity.external_id, Message.id, Message.direction, Message.handled_at, Message.attempts,
                      Message.delivery, Message.delivery_error, Message.handoff_at, Message.at)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(Identity, Identity.id == Conversation.identity_id)
            .where(Identity.external_id.in_(openids))
            .order_by(Message.id)
        )).all()
    return [dict(row._mapping) for row in rows]


class WeChatPush:
    """One message as WeChat pushes it: the same signed request on every try (WeChat repeats the
    timestamp, nonce and signature), at most three retries after the first try, until one is answered
    with 200."""

    def __init__(self, owner: WeChatOwner, msg_id: int, text: str) -> None:
        self.owner, self.msg_id = owner, msg_id
        self.query, self.body = owner.signed_request(owner.text_xml(text, msg_id=msg_id))
        self.tries = 0
        self.outcomes: list[str] = []
        self.answer: str | None = None
        """The passive reply's text, "" for ``success``, None while unanswered."""

    async def push(self, http: aiohttp.ClientSession) -> None:
        self.tries += 1
        began = time.monotonic()
        try:
            async with http.post(
                self.owner.path, params=self.query, data=self.body, headers={"Content-Type": "text/xml"},
                timeout=aiohttp.ClientTimeout(total=WECHAT_TIMEOUT),
            ) as resp:
                status, text = resp.status, await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.outcomes.append(f"{type(exc).__name__} after {time.monotonic() - began:.1f}s")
            return  # connection refused or reset, or no answer in time: WeChat tries again
        self.outcomes.append(f"{status} after {time.monotonic() - began:.1f}s")
        if status != 200:
            return  # 503: WeChat tries again
        fields = self.owner.reply_fields(WeChatResponse(status, text, "text/xml"))
        self.answer = fields["Content"] if fields else ""


async def test_no_message_is_lost_when_a_server_on_postgresql_and_redis_is_killed(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """kill -9 in the middle of a burst of 64 signed messages, then WeChat's retries: every acknowledged
    message is stored exactly once and its owner gets exactly one answer, inline or through the
    customer-service API -- no retry of an unstored message is taken for a duplicate."""
    from tests.fakes.wechat_server import FakeWeChatAPI

    count = 64
    async with FakeWeChatAPI({WECHAT["wechat_app_id"]: WECHAT["wechat_app_secret"]}) as api:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("YEZHU_")},
            "YEZHU_DATABASE_URL": pg_url,
            "YEZHU_REDIS_URL": redis_url,
            "YEZHU_WECHAT_TOKEN": WECHAT["wechat_token"],
            "YEZHU_WECHAT_APP_ID": WECHAT["wechat_app_id"],
            "YEZHU_WECHAT_APP_SECRET": WECHAT["wechat_app_secret"],
            "YEZHU_WECHAT_API_BASE": api.base_url,
            "YEZHU_LOG_LEVEL": "WARNING",
            "YEZHU_TURN_RECOVERY_AFTER": "1",
            "YEZHU_TURN_RECOVERY_INTERVAL": "1",
            "YEZHU_DELIVERY_SWEEP_AFTER": "3",
            "YEZHU_JOB_RETRY_BASE": "0.05",
        }
        base = f"http://127.0.0.1:{port}"
        logs = [(tmp_path / name).open("wb") for name in ("worker.log", "first.log", "second.log")]
        worker = start_worker(tmp_path, env, logs[0])
        first = start_server(["--host", "127.0.0.1", "--port", str(port)], tmp_path, env, logs[1])
        second: subprocess.Popen[bytes] | None = None
        engine = create_async_engine(pg_url)
        try:
            await wait_healthy(base, first)
            async with aiohttp.ClientSession(base_url=base) as http:
                pushes = [
                    WeChatPush(
                        WeChatOwner(http, token=WECHAT["wechat_token"], app_id=WECHAT["wechat_app_id"],
                                    openid=f"oLOSS{n:04d}"),
                        9154768590064710000 + n, "请问物业费怎么交",
                    )
                    for n in range(count)
                ]

                finished = 0

                async def first_try(p: WeChatPush) -> None:
                    nonlocal finished
                    await p.push(http)
                    finished += 1
                    if finished == 12:
                        first.send_signal(signal.SIGKILL)  # most messages are still being accepted

                await asyncio.gather(*(first_try(p) for p in pushes))
                first.wait(timeout=10)
                unanswered = [p for p in pushes if p.answer is None]
                assert unanswered, "the kill came too late: every message was answered before it"

                second = start_server(["--host", "127.0.0.1", "--port", str(port)], tmp_path, env, logs[2])
                await wait_healthy(base, second)
                for _ in range(3):  # WeChat's three retries
                    unanswered = [p for p in pushes if p.answer is None]
                    if not unanswered:
                        break
                    await asyncio.sleep(WECHAT_RETRY_INTERVAL)
                    await asyncio.gather(*(p.push(http) for p in unanswered))
            acknowledged = [p for p in pushes if p.answer is not None]
            # WeChat gives up on a message only after four tries without an answer within 5 s (a badly
            # overloaded machine); such a message was never acknowledged, so nothing was promised.
            gave_up = [(p.msg_id, p.outcomes) for p in pushes if p.answer is None]
            assert len(gave_up) <= count // 8, gave_up
            assert any(p.tries > 1 for p in acknowledged)  # retries after the restart were acknowledged

            async with engine.connect() as conn:
                inbound = Counter(
                    (await conn.execute(sa.select(Message.channel_msg_id).where(Message.direction == "in"))).scalars()
                )
            assert set(inbound.values()) == {1}  # nothing stored twice
            assert {str(p.msg_id) for p in acknowledged} <= inbound.keys()  # everything acknowledged is stored

            inline = {p.owner.openid for p in acknowledged if p.answer}
            assert all(p.answer.strip() for p in acknowledged if p.answer)
            owed = {p.owner.openid for p in acknowledged if not p.answer}  # "success": the API answers
            deadline = time.monotonic() + 40
            while not owed <= {m.touser for m in api.messages}:
                if time.monotonic() > deadline:
                    missing = owed - {m.touser for m in api.messages}
                    raise AssertionError(f"never answered: {await message_states(engine, missing)}")
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.5)  # a second send of any of them would show up by now
            through_api = Counter(m.touser for m in api.messages)
            twice = {o for o, n in through_api.items() if n > 1} | (inline & through_api.keys())
            assert not twice, f"answered twice: {await message_states(engine, twice)}"
            assert all(m.content.strip() for m in api.messages)
            async with engine.connect() as conn:
                pending = (await conn.execute(
                    sa.select(sa.func.count()).select_from(Message).where(
                        Message.direction == "in", Message.handled_at.is_(None))
                )).scalar_one()
            assert pending == 0
            for name in ("worker.log", "second.log"):
                assert "Traceback" not in (tmp_path / name).read_text(), (tmp_path / name).read_text()[-3000:]
        finally:
            for proc in (first, second, worker):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            for f in logs:
                f.close()
            await engine.dispose()
