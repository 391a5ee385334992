"""Load benchmark of the WeChat webhook (DESIGN.md "The hot path"), end to end over HTTP.

Sends signed WeChat text messages (plaintext or safe mode, built by ``tests.fakes.wechat_client``'s
``WeChatOwner.signed_request``) from many distinct owners (openids), each message with a unique MsgId,
to ``POST /wechat/default`` of a running server, in two shapes:

* **closed loop**: ``--concurrency C`` senders, each sending its next message as soon as the previous
  one was answered -- the maximum throughput;
* **open loop**: a fixed offered rate (``--rate R`` messages/s for ``--duration D`` s) whatever the
  server does -- latency percentiles, measured from each message's *scheduled* send time, so a server
  (or generator) that falls behind is charged for it (no coordinated omission).

Then it checks every answer (a 200 with a well-formed passive text reply, decrypted and its
MsgSignature verified in safe mode, addressed to the right openid, non-empty; ``success``-only answers
are counted separately: they mean the reply went the slow path through the customer-service API),
checks the database (every acknowledged MsgId stored exactly once as an inbound message, each with an
outbound reply in its conversation) and reads the server's peak RSS (``VmHWM`` of the server process
and its children) and CPU time.

The script can start the server itself, pinned to core 0 (``taskset -c 0``), on a fresh database::

    .venv/bin/python bench/webhook_load.py --target embedded --mode plain     # SQLite file, in-process services
    .venv/bin/python bench/webhook_load.py --target postgres --mode safe      # PostgreSQL + Redis
    .venv/bin/python bench/webhook_load.py --target bare                      # bench/bare_server.py: the ceiling
    .venv/bin/python bench/webhook_load.py --all --json var/bench.json        # all five, one after the other

or load a server that is already running::

    .venv/bin/python bench/webhook_load.py --url http://127.0.0.1:8080 --mode plain \\
        --database-url sqlite+aiosqlite:////path/to/yezhu.db --server-pid 1234 \\
        --token T --app-id wx... [--aes-key K]

The load generator pins itself to core 1 (``--no-pin`` to leave it). ``--py-spy DIR`` samples the
server with py-spy during the closed-loop phase and prints where its time goes (use it on a separate
run: sampling costs the server a little). Not part of the test suite; see bench/README.md.

The PostgreSQL target (re)creates the database ``yezhu_bench`` and uses Redis database 12 (emptied
before each run); the embedded target uses a SQLite file in a temporary directory. Nothing leaves
127.0.0.1: ``YEZHU_WECHAT_API_BASE`` points the customer-service API at the discard port.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from yarl import URL  # noqa: E402

from tests.fakes.wechat_client import Mode, WeChatOwner, WeChatReplyError, WeChatResponse  # noqa: E402

TOKEN = "yezhubenchtoken"
APP_ID = "wxbench0123456789"
AES_KEY = base64.b64encode(bytes(range(1, 33))).decode().rstrip("=")  # 43 characters
OA_ID = "gh_0123456789ab"
ACCOUNT = "default"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DB = "yezhu_bench"
REDIS_BENCH_URL = "redis://127.0.0.1:6379/12"
PEER_PREFIX = "peer-sqlite:"  # the peer's "database URL": its SQLite file (bench/peer_werobot.py)
DISCARD_API = "http://127.0.0.1:9"  # the customer-service API of a deferred reply: nothing listens there

# What owners ask an Official Account all day: questions the knowledge base answers, greetings, thanks.
# (No repair reports: an unknown sender's repair opens a binding dialogue, not a one-message turn.)
TEXTS = [
    "物业费怎么交",
    "停车月卡多少钱",
    "装修要办什么手续",
    "门禁卡丢了怎么补办",
    "客服中心几点上班",
    "你好",
    "维修基金怎么查",
    "快递可以放哪里",
    "小区可以养狗吗",
    "谢谢",
    "水电燃气怎么开户",
    "房产证要准备什么材料",
]

CONFIGS: list[tuple[str, Mode]] = [
    ("bare", "plain"),
    ("embedded", "plain"),
    ("embedded", "safe"),
    ("postgres", "plain"),
    ("postgres", "safe"),
    ("peer", "plain"),
]

COMPARE: list[tuple[str, Mode]] = [
    ("embedded", "plain"),
    ("postgres", "plain"),
    ("peer", "plain"),
    ("peer-default", "plain"),
]
"""``--compare``: issue 16's side-by-side run. The peer is bench/peer_werobot.py: ``peer`` with the
durability of Yezhu's embedded mode (WAL, ``synchronous=NORMAL``), ``peer-default`` with SQLite's
defaults (a rollback journal and an fsync per commit: what ``create_engine("sqlite:///…")`` alone
gives, and what issue 16's 188 messages/s were measured with)."""

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- processes and /proc -------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def status_kb(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def tree_cpu(pid: int) -> dict[int, int]:
    return {p: cpu_ticks(p) for p in descendants(pid)}


def comm_cpu(names: set[str]) -> dict[int, int]:
    """CPU ticks of every process whose ``comm`` is in ``names`` (postgres, redis-server)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        out[int(entry)] = cpu_ticks(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


@contextlib.contextmanager
def services_pinned(core: int | None) -> Iterator[None]:
    """Run PostgreSQL and Redis on ``core`` (the load generator's) while measuring, their affinity
    restored afterwards: the web process's core then serves the web process alone, which is what "per
    web process core" measures (in production the database has its own machine). New PostgreSQL
    backends inherit the postmaster's affinity. ``None``: leave them where the scheduler puts them."""
    if core is None:
        yield
        return
    saved: dict[int, set[int]] = {}
    for pid in comm_cpu({"postgres", "redis-server"}):
        with contextlib.suppress(OSError):  # a process that ended meanwhile, or not ours to move
            for tid in map(int, os.listdir(f"/proc/{pid}/task")):
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {core})
    if saved:
        print(f"PostgreSQL and Redis ({len(saved)} threads) pinned to core {core} for the run", flush=True)
    try:
        yield
    finally:
        for tid, mask in saved.items():
            with contextlib.suppress(ProcessLookupError, OSError):
                os.sched_setaffinity(tid, mask)


def ticks_delta(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds spent between two snapshots (processes born in between count from zero)."""
    return sum(t - before.get(p, 0) for p, t in after.items()) / CLK_TCK


def system_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def pid_listening_on(port: int) -> int | None:
    try:
        out = subprocess.run(
            ["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    marker = "pid="
    if marker in out:
        return int(out.split(marker, 1)[1].split(",", 1)[0])
    return None


# --- the server under test -----------------------------------------------------------------------


class Server:
    """One server process started by the bench (``taskset -c 0``), on a fresh database."""

    def __init__(self, target: str, mode: str, port: int, args: argparse.Namespace) -> None:
        self.target, self.mode, self.port, self.args = target, mode, port, args
        self.workdir = Path(tempfile.mkdtemp(prefix=f"yezhu-bench-{target}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "server.log"
        self.counts_path = self.workdir / "counts.json"
        self.venv_bin = Path(args.venv) / "bin"
        if target == "embedded":
            self.database_url: str | None = f"sqlite+aiosqlite:///{self.workdir / 'yezhu.db'}"
            self.redis_url: str | None = None
        elif target == "postgres":
            self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_BENCH_DB}"
            self.redis_url = REDIS_BENCH_URL
        elif target in ("peer", "peer-default"):
            self.database_url = PEER_PREFIX + str(self.workdir / "peer.db")
            self.redis_url = None
        else:
            self.database_url = self.redis_url = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("YEZHU_")}
        env.update(
            YEZHU_WECHAT_TOKEN=TOKEN,
            YEZHU_WECHAT_APP_ID=APP_ID,
            YEZHU_WECHAT_APP_SECRET="bench-secret",
            YEZHU_WECHAT_API_BASE=DISCARD_API,
            YEZHU_LOG_LEVEL="WARNING",
            # As deployed: docker-compose.yml logs JSON; `yezhu run` on its own logs to the console.
            YEZHU_LOG_JSON=str(
                self.args.log_json == "true" or (self.args.log_json == "auto" and self.target == "postgres")
            ).lower(),
            YEZHU_REPLY_BUDGET=str(self.args.reply_budget),
            YEZHU_ADMIN_PASSWORD="bench-admin-password",
            YEZHU_JOB_QUEUE="yezhu:bench:jobs",
        )
        if self.mode == "safe":
            env["YEZHU_WECHAT_AES_KEY"] = AES_KEY
        if self.args.count_queries:
            env["YEZHU_BENCH_COUNTS"] = str(self.counts_path)
        if self.target in ("peer", "peer-default"):
            assert self.database_url
            env.update(PEER_DB=self.database_url.removeprefix(PEER_PREFIX), PEER_TOKEN=TOKEN, PEER_APP_ID=APP_ID)
            env["PEER_JOURNAL"] = "default" if self.target == "peer-default" else "wal"
            return env
        if self.database_url:
            env["YEZHU_DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["YEZHU_REDIS_URL"] = self.redis_url
        return env

    def _cli(self, *argv: str) -> None:
        # cwd is the temporary directory, so no stray .env is read.
        done = subprocess.run(
            [str(self.venv_bin / "yezhu"), *argv],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"yezhu {' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")

    def prepare(self) -> None:
        if self.target == "postgres":
            asyncio.run(recreate_pg_database())
            import redis

            client = redis.Redis.from_url(REDIS_BENCH_URL)
            client.flushdb()  # database 12 belongs to the bench
            client.close()
        if self.target in ("embedded", "postgres"):
            self._cli("migrate")
            if not self.args.no_demo:
                self._cli("demo")

    def start(self) -> None:
        if self.target == "bare":
            cmd = [sys.executable, str(ROOT / "bench" / "bare_server.py"), "--port", str(self.port)]
        elif self.target in ("peer", "peer-default"):  # bench/peer_werobot.py: gunicorn, one sync worker
            cmd = [str(self.venv_bin / "gunicorn"), "--workers", "1", "--worker-class", "sync"]
            cmd += ["--bind", f"127.0.0.1:{self.port}", "--chdir", str(ROOT), "bench.peer_werobot:app"]
        elif self.args.count_queries:
            cmd = [str(self.venv_bin / "python"), str(Path(__file__).resolve()), "--serve-counting"]
            cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        else:
            cmd = [str(self.venv_bin / "yezhu"), "run", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.args.pin:
            cmd = ["taskset", "-c", str(self.args.server_core), *cmd]
        attempts = self.args.start_retries + 1
        for attempt in range(1, attempts + 1):
            with open(self.log_path, "ab") as log_file:
                self.proc = subprocess.Popen(
                    cmd, env=self.env(), cwd=self.workdir, stdout=log_file, stderr=log_file
                )
            if wait_healthy(self.url, self.proc, timeout=90):
                return
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            print(
                f"!! server did not start (attempt {attempt}/{attempts}); log tail:\n{tail}", file=sys.stderr
            )
            if attempt < attempts:
                print(f"   retrying in {self.args.retry_wait:.0f} s", file=sys.stderr)
                time.sleep(self.args.retry_wait)
        raise RuntimeError(f"server did not start: see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


async def recreate_pg_database(name: str = PG_BENCH_DB) -> None:
    """Drop and create a database that belongs to a benchmark (also used by ``hot_path.py``)."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


# --- counting SQL statements and Redis commands inside the server (--count-queries) ---------------


def serve_counting(argv: list[str]) -> None:
    """``yezhu run`` with every SQL statement, transaction and Redis command counted (by text).

    Started by the bench as the server (``--count-queries``): SIGUSR1 resets the counts (after the
    warm-up); at exit they go to the JSON file named by ``YEZHU_BENCH_COUNTS``.
    """
    import atexit

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: collections.Counter[str] = collections.Counter()
    seconds: collections.Counter[str] = collections.Counter()
    transactions: collections.Counter[str] = collections.Counter()
    redis_commands: collections.Counter[str] = collections.Counter()

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("bench_t", []).append(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        key = " ".join(statement.split())[:120]
        statements[key] += 1
        seconds[key] += time.perf_counter() - conn.info["bench_t"].pop()

    for name in ("begin", "commit", "rollback"):
        event.listen(Engine, name, lambda conn, name=name: transactions.update([name]))

    try:
        import redis.asyncio.client as redis_client
    except ImportError:
        pass
    else:
        original = redis_client.Redis.execute_command

        async def execute_command(self: Any, *cmd: Any, **options: Any) -> Any:
            redis_commands[str(cmd[0]).upper()] += 1
            return await original(self, *cmd, **options)

        redis_client.Redis.execute_command = execute_command  # type: ignore[method-assign]

    def reset(*_: Any) -> None:
        for counter in (statements, seconds, transactions, redis_commands):
            counter.clear()

    def dump() -> None:
        Path(os.environ["YEZHU_BENCH_COUNTS"]).write_text(
            json.dumps(
                {
                    "statements": {k: [n, seconds[k]] for k, n in statements.items()},
                    "transactions": dict(transactions),
                    "redis": dict(redis_commands),
                },
                ensure_ascii=False,
            )
        )

    signal.signal(signal.SIGUSR1, reset)
    atexit.register(dump)
    from bot.cli import main as yezhu

    sys.argv = ["yezhu", "run", *argv]
    yezhu()


def counts_report(path: Path, messages: int) -> str:
    data = json.loads(path.read_text())
    n = max(1, messages)
    total = sum(v[0] for v in data["statements"].values())
    lines = [
        f"inside the server, per measured message ({messages}): {total / n:.1f} SQL statements, "
        + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(data["transactions"].items()))
        + (f"; {sum(data['redis'].values()) / n:.1f} Redis commands " if data["redis"] else "")
        + (str({k: round(v / n, 2) for k, v in sorted(data["redis"].items())}) if data["redis"] else "")
    ]
    for text, (count, secs) in sorted(data["statements"].items(), key=lambda kv: -kv[1][0]):
        lines.append(f"  {count / n:5.2f} x  {secs * 1000 / count:6.2f} ms  {text}")
    return "\n".join(lines)


# --- the load --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    phase: str
    sender: int
    msg_id: int
    url: URL
    body: bytes
    sched: float = 0.0
    start: float = 0.0
    end: float = 0.0
    status: int = 0
    reply: bytes = b""
    content_type: str = ""
    error: str | None = None
    verdict: str = ""


class Load:
    def __init__(self, base_url: str, mode: Mode, args: argparse.Namespace) -> None:
        self.base_url = base_url.rstrip("/")
        self.mode: Mode = mode
        self.args = args
        self.prefix = args.sender_prefix or f"oBench{secrets.token_hex(3)}x"  # openids of this run
        self.owners = [
            WeChatOwner(
                None,
                token=args.token,
                app_id=args.app_id,
                aes_key=args.aes_key if mode == "safe" else None,
                openid=f"{self.prefix}{i:06d}",
                account=ACCOUNT,
                mode=mode,
                oa_id=OA_ID,
            )
            for i in range(args.senders)
        ]
        self.next_k = 0
        self.msg_base = time.time_ns() // 1000  # MsgIds: 64-bit, unique per run
        self.samples: list[Sample] = []

    def one(self, phase: str) -> Sample:
        """The next message: senders in turn (so concurrent messages come from different owners), each
        with the next MsgId and a text from TEXTS, signed (and encrypted) as WeChat would."""
        senders = len(self.owners)
        k = self.next_k
        self.next_k += 1
        owner = self.owners[k % senders]
        msg_id = self.msg_base + k
        xml = owner.text_xml(TEXTS[(k + k // senders) % len(TEXTS)], msg_id=msg_id)
        query, body = owner.signed_request(xml)
        url = URL(f"{self.base_url}{owner.path}?{urlencode(query)}", encoded=True)
        return Sample(phase, k % senders, msg_id, url, body)

    def build(self, n: int, phase: str) -> list[Sample]:
        return [self.one(phase) for _ in range(n)]

    async def _send(self, session: aiohttp.ClientSession, s: Sample, loop: asyncio.AbstractEventLoop) -> None:
        s.start = loop.time()
        try:
            async with session.post(s.url, data=s.body, headers={"Content-Type": "text/xml"}) as response:
                s.reply = await response.read()
                s.status = response.status
                s.content_type = response.content_type
        except Exception as exc:  # every failure is a counted error, not a crash
            s.error = f"{type(exc).__name__}: {exc}"[:200]
        s.end = loop.time()

    async def closed(
        self, session: aiohttp.ClientSession, phase: str, n: int, concurrency: int, max_seconds: float
    ) -> list[Sample]:
        """``concurrency`` senders, back to back, until ``n`` messages were sent or ``max_seconds`` passed.
        Messages are built (signed, encrypted) just before they are sent: their timestamps stay fresh."""
        loop = asyncio.get_running_loop()
        sent: list[Sample] = []
        deadline = loop.time() + max_seconds

        async def worker() -> None:
            while len(sent) < n and loop.time() < deadline:
                s = self.one(phase)
                s.sched = loop.time()
                sent.append(s)
                await self._send(session, s, loop)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sent

    async def open(self, session: aiohttp.ClientSession, samples: list[Sample], rate: float) -> list[Sample]:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        tasks = []
        for i, s in enumerate(samples):
            s.sched = t0 + i / rate
            delay = s.sched - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self._send(session, s, loop)))
        await asyncio.gather(*tasks)
        return samples


def session_for(limit: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


# --- checking answers and storage ----------------------------------------------------------------


def judge(load: Load, s: Sample, bare: bool) -> str:
    """``reply``, ``success`` or ``bad:<reason>``."""
    if s.error:
        return "bad:" + s.error.split(":", 1)[0]
    owner = load.owners[s.sender]
    response = WeChatResponse(s.status, s.reply.decode("utf-8", "replace"), s.content_type)
    try:
        fields = owner.reply_fields(response, mode=load.mode)
    except WeChatReplyError as exc:
        return f"bad:{str(exc).split(':', 1)[0]}"
    except Exception as exc:  # e.g. a reply that does not decrypt
        return f"bad:{type(exc).__name__}"
    if fields is None:
        return "success"
    if fields.get("MsgType") != "text" or not fields.get("Content", "").strip():
        return "bad:empty or non-text reply"
    if not bare and (fields.get("ToUserName") != owner.openid or fields.get("FromUserName") != OA_ID):
        return "bad:wrong addressee"
    return "reply"


async def storage_check(database_url: str, load: Load, settle: float) -> dict[str, Any]:
    """The inbound messages of this run's senders: each acknowledged MsgId stored exactly once, each
    followed by a reply. Totals, and the same figures per phase (``phases``)."""
    if database_url.startswith(PEER_PREFIX):
        return storage_figures(peer_rows(database_url.removeprefix(PEER_PREFIX), load.prefix), load)
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from bot.store.models import Conversation, Identity, Message

    engine = create_async_engine(database_url)
    q = (
        sa.select(
            Message.id, Message.direction, Message.channel_msg_id, Message.conversation_id, Message.delivery
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Identity, Identity.id == Conversation.identity_id)
        .where(
            Identity.channel == "wechat",
            Identity.account == ACCOUNT,
            Identity.external_id.like(load.prefix + "%"),
        )
        .order_by(Message.id)
    )
    try:
        deadline, last, stable_since = time.monotonic() + settle, None, time.monotonic()
        while True:  # deferred turns may still be storing their replies: wait until nothing changes
            async with engine.connect() as conn:
                rows = (await conn.execute(q)).all()
            outs = sum(1 for r in rows if r.direction == "out")
            if outs != last:
                last, stable_since = outs, time.monotonic()
            if time.monotonic() - stable_since >= 1.5 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    return storage_figures(rows, load)


def peer_rows(path: str, prefix: str) -> list[Any]:
    """The peer's messages (bench/peer_werobot.py), shaped like Yezhu's rows (the openid stands for the
    conversation; a peer reply is passive only)."""
    import sqlite3

    Row = collections.namedtuple("Row", "id direction channel_msg_id conversation_id delivery")
    with sqlite3.connect(path) as conn:
        return [
            Row(*r)
            for r in conn.execute(
                "SELECT id, direction, msg_id, openid, 'reply' FROM message WHERE openid LIKE ? ORDER BY id",
                (prefix + "%",),
            )
        ]


def storage_figures(rows: list[Any], load: Load) -> dict[str, Any]:
    inbound = collections.Counter(
        int(r.channel_msg_id) for r in rows if r.direction == "in" and r.channel_msg_id
    )
    # Pair replies with inbound messages per conversation, oldest first (turns of one sender run one at a
    # time, in order): an inbound message no outbound message pairs with got no reply.
    pending: dict[int, collections.deque[int]] = collections.defaultdict(collections.deque)
    for r in rows:
        if r.direction == "in" and r.channel_msg_id:
            pending[r.conversation_id].append(int(r.channel_msg_id))
        elif r.direction == "out" and pending[r.conversation_id]:
            pending[r.conversation_id].popleft()
    unanswered = {m for queue in pending.values() for m in queue}
    deliveries = collections.Counter(r.delivery for r in rows if r.direction == "out")

    def figures(samples: list[Sample]) -> dict[str, int]:
        acked = {s.msg_id for s in samples if s.status == 200 and not s.error}
        sent = {s.msg_id for s in samples}
        stored = inbound.keys() & sent
        return {
            "acknowledged": len(acked),
            "lost": len(acked - stored),
            "duplicated": sum(1 for m in stored if inbound[m] > 1),
            "stored_not_acknowledged": len(stored - acked),
            "without_reply": len(stored & unanswered),
            "acknowledged_without_reply": len(acked & unanswered),
        }

    by_phase: dict[str, list[Sample]] = collections.defaultdict(list)
    for sample in load.samples:
        by_phase[sample.phase].append(sample)
    total = figures(load.samples)
    total.update(
        stored_inbound=sum(inbound.values()),
        unexpected=len(inbound.keys() - {s.msg_id for s in load.samples}),
        stored_outbound=sum(deliveries.values()),
    )
    return {
        **total,
        "outbound_delivery": dict(deliveries),
        "phases": {k: figures(v) for k, v in by_phase.items()},
    }


# --- statistics ----------------------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass
class PhaseResult:
    target: str
    mode: str
    shape: str
    offered: str
    sent: int
    seconds: float
    msgs_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    replies: int
    success_only: int
    errors: int
    error_kinds: dict[str, int]
    server_cpu_pct: float
    client_cpu_pct: float
    db_cpu_pct: float
    other_cpu_pct: float
    max_send_lag_ms: float
    server_cpu_ms_per_msg: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Meter:
    """CPU use of the server, this process, PostgreSQL/Redis and the whole machine over one phase."""

    server_pid: int | None
    t: float = 0.0
    server: dict[int, int] = field(default_factory=dict)
    client: float = 0.0
    db: dict[int, int] = field(default_factory=dict)
    busy: tuple[float, float] = (0.0, 0.0)

    def snap(self) -> Meter:
        m = Meter(self.server_pid)
        m.t = time.monotonic()
        m.server = tree_cpu(self.server_pid) if self.server_pid else {}
        ru = os.times()
        m.client = ru.user + ru.system
        m.db = comm_cpu({"postgres", "redis-server"})
        m.busy = system_busy()
        return m

    def since(self, before: Meter) -> dict[str, float]:
        """Percent of one core: server, client (this process), db (PostgreSQL + Redis), busy (the whole
        machine) and other (busy minus the three: anything else running -- noise)."""
        wall = max(1e-9, self.t - before.t)
        cores = os.cpu_count() or 1
        busy = (self.busy[0] - before.busy[0]) / max(1e-9, self.busy[1] - before.busy[1]) * cores * 100
        out = {
            "server": ticks_delta(before.server, self.server) / wall * 100,
            "client": (self.client - before.client) / wall * 100,
            "db": ticks_delta(before.db, self.db) / wall * 100,
            "busy": busy,
            "server_cpu_s": ticks_delta(before.server, self.server),
        }
        out["other"] = max(0.0, busy - out["server"] - out["client"] - out["db"])
        return out


def summarise(
    load: Load, target: str, shape: str, offered: str, sent: list[Sample], cpu: dict[str, float]
) -> PhaseResult:
    bare = target == "bare"
    lat = sorted((s.end - s.sched) * 1000 for s in sent)
    verdicts: collections.Counter[str] = collections.Counter()
    for s in sent:
        s.verdict = judge(load, s, bare)
        verdicts[s.verdict] += 1
    first = min(s.sched for s in sent)
    last = max(s.end for s in sent)
    seconds = last - first
    errors = {k[4:]: v for k, v in verdicts.items() if k.startswith("bad:")}
    answered = verdicts["reply"] + verdicts["success"]
    return PhaseResult(
        target=target,
        mode=load.mode,
        shape=shape,
        offered=offered,
        sent=len(sent),
        seconds=round(seconds, 2),
        msgs_per_s=round(answered / seconds, 1),
        p50_ms=round(pct(lat, 50), 2),
        p95_ms=round(pct(lat, 95), 2),
        p99_ms=round(pct(lat, 99), 2),
        max_ms=round(lat[-1], 2),
        mean_ms=round(statistics.fmean(lat), 2),
        replies=verdicts["reply"],
        success_only=verdicts["success"],
        errors=sum(errors.values()),
        error_kinds=errors,
        server_cpu_pct=round(cpu["server"], 1),
        client_cpu_pct=round(cpu["client"], 1),
        db_cpu_pct=round(cpu["db"], 1),
        other_cpu_pct=round(cpu["other"], 1),
        max_send_lag_ms=round(max((s.start - s.sched) * 1000 for s in sent), 2),
        server_cpu_ms_per_msg=round(cpu["server_cpu_s"] * 1000 / len(sent), 3),
    )


def wait_quiet(args: argparse.Namespace, ours: set[int]) -> float:
    """Wait (at most ``--quiet-wait`` s) until everything but the bench, PostgreSQL and Redis uses less
    than ``--quiet-threshold`` % of one core over 3 s: the machine is shared. Returns that share."""
    deadline = time.monotonic() + args.quiet_wait
    announced = False
    while True:
        pids = {p for pid in ours for p in descendants(pid)}
        before = (system_busy(), {p: cpu_ticks(p) for p in pids}, comm_cpu({"postgres", "redis-server"}))
        time.sleep(3)
        after = (system_busy(), {p: cpu_ticks(p) for p in pids}, comm_cpu({"postgres", "redis-server"}))
        cores = os.cpu_count() or 1
        busy = (after[0][0] - before[0][0]) / max(1e-9, after[0][1] - before[0][1]) * cores * 100
        other = busy - ticks_delta(before[1], after[1]) / 3 * 100 - ticks_delta(before[2], after[2]) / 3 * 100
        if other < args.quiet_threshold or time.monotonic() > deadline:
            if other >= args.quiet_threshold:
                print(
                    f"!! the machine is still busy ({other:.0f}% of a core used by other processes); measuring anyway"
                )
            return other
        if not announced:
            print(f"waiting for a quiet machine: {other:.0f}% of a core used by other processes", flush=True)
            announced = True


async def drain(server_pid: int | None, limit: float) -> float:
    """Wait until the server has finished the work still queued in it (CPU under 5% for 1 s)."""
    if not server_pid:
        await asyncio.sleep(1.0)
        return 1.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        before = tree_cpu(server_pid)
        await asyncio.sleep(1.0)
        if ticks_delta(before, tree_cpu(server_pid)) < 0.05:
            break
    return time.monotonic() - t0


# --- py-spy ----------------------------------------------------------------------------------------


class PySpy:
    """``py-spy record --format raw`` on the server for one phase (pinned to the client's core)."""

    def __init__(self, pid: int, out: Path, args: argparse.Namespace) -> None:
        exe = shutil.which("py-spy", path=str(Path(args.venv) / "bin")) or shutil.which("py-spy")
        if not exe:
            raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
        cmd = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ]
        if args.pin:
            cmd = ["taskset", "-c", str(args.client_core), *cmd]
        self.out = out
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# Where a sample's innermost frame lives -> what it is spent on (first match wins).
COMPONENTS = [
    ("selectors.py", "idle (epoll)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("asyncpg/", "DB driver (asyncpg, aiosqlite, sqlite3)"),
    ("aiosqlite/", "DB driver (asyncpg, aiosqlite, sqlite3)"),
    ("sqlite3/", "DB driver (asyncpg, aiosqlite, sqlite3)"),
    ("greenlet", "SQLAlchemy"),
    ("redis/", "Redis client"),
    ("rich/", "log rendering (structlog, rich, pygments)"),
    ("pygments/", "log rendering (structlog, rich, pygments)"),
    ("structlog/", "log rendering (structlog, rich, pygments)"),
    ("logging/", "log rendering (structlog, rich, pygments)"),
    ("aiohttp/", "aiohttp (HTTP server)"),
    ("asyncio/", "asyncio event loop and sockets"),
    ("wechatpy/", "WeChat XML, signature, AES"),
    ("xmltodict", "WeChat XML, signature, AES"),
    ("defusedxml/", "WeChat XML, signature, AES"),
    ("xml/", "WeChat XML, signature, AES"),
    ("cryptography/", "WeChat XML, signature, AES"),
    ("channels/", "WeChat XML, signature, AES"),
    ("nlu/", "NLU"),
    ("jieba/", "NLU"),
    ("knowledge/", "knowledge base"),
    ("actions/", "dialogue policy and actions"),
    ("bot/", "engine, app (bot/)"),
    ("taskiq", "job queue"),
    ("prometheus_client/", "metrics"),
]
OWN_CODE = ("bot/", "channels/", "actions/", "nlu/", "knowledge/")


def profile_report(raw: Path, top: int = 20) -> str:
    """Samples by component (of the innermost frame), our own functions by inclusive share, and the
    functions with the largest self share, from py-spy's collapsed stacks (``--format raw``)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    components: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue  # a continuation of a frame name with a newline in it (generated code)
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        components[next((c for marker, c in COMPONENTS if marker in frames[-1]), "other")] += n
        for f in set(frames):
            if any(f"({prefix}" in f for prefix in OWN_CODE) and "(bot/cli.py)" not in f:
                inclusive[f] += n
    total = max(1, total)
    lines = [f"py-spy: {total} samples of the server's threads; by component (innermost frame):"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in components.most_common()]
    lines.append("our functions, inclusive (samples with that function anywhere on the stack):")
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append("functions, self (innermost frame):")
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module path without line)"
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path = loc.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


# --- one configuration ---------------------------------------------------------------------------


def parse_rates(text: str, closed_best: float | None) -> list[tuple[float, str]]:
    """``"500,50%"`` -> [(500, "500/s"), (0.5 * closed_best, "250/s = 50% of max")]."""
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        if item.endswith("%"):
            if not closed_best:
                continue
            rate = max(1.0, round(closed_best * float(item[:-1]) / 100))
            out.append((rate, f"{rate:g}/s ({item} of max)"))
        else:
            out.append((float(item), f"{float(item):g}/s"))
    return sorted(out)  # the lowest first: an overload leaves a backlog behind it


async def drive(
    load: Load, target: str, server_pid: int | None, args: argparse.Namespace, spy_dir: Path | None
) -> list[PhaseResult]:
    results: list[PhaseResult] = []
    shapes = [s.strip() for s in args.shape.split(",") if s.strip()]
    # Warm-up, not measured: connections, caches, and the first message of every sender, so the
    # measured messages come from owners the bot already knows (identity and conversation exist).
    warmup = len(load.owners) if args.warmup < 0 else args.warmup
    if warmup:
        t = time.monotonic()
        async with session_for(args.concurrency, args.timeout) as session:
            load.samples += await load.closed(session, "warmup", warmup, args.concurrency, 120)
        print(
            f"warm-up: {warmup} messages in {time.monotonic() - t:.1f} s; drained in {await drain(server_pid, args.drain):.1f} s"
        )
    if args.count_queries and server_pid and target not in ("bare", "peer", "peer-default"):
        os.kill(server_pid, signal.SIGUSR1)  # count the measured messages only
    best: float | None = None
    if "closed" in shapes:
        spy = (
            PySpy(server_pid, spy_dir / f"{target}-{load.mode}-closed.txt", args)
            if spy_dir and server_pid
            else None
        )
        async with session_for(args.concurrency, args.timeout) as session:
            before = Meter(server_pid).snap()
            sent = await load.closed(
                session, f"closed C={args.concurrency}", args.messages, args.concurrency, args.max_seconds
            )
            after = Meter(server_pid).snap()
        if spy:
            spy.stop()
        load.samples += sent
        results.append(summarise(load, target, "closed", f"C={args.concurrency}", sent, after.since(before)))
        best = results[-1].msgs_per_s
        print_result(results[-1], await drain(server_pid, args.drain))
        if spy:
            print(profile_report(spy.out))
    if "open" in shapes:
        for rate, label in parse_rates(args.rate, best):
            duration = args.duration
            if best is not None and rate > 0.9 * best:
                # Beyond what the server sustains the backlog only grows: a short run shows it.
                duration = min(duration, args.overload_duration)
                label += " overload"
            samples = load.build(max(1, int(rate * duration)), f"open {label}")
            async with session_for(args.open_connections, args.timeout) as session:
                before = Meter(server_pid).snap()
                sent = await load.open(session, samples, rate)
                after = Meter(server_pid).snap()
            load.samples += sent
            results.append(summarise(load, target, "open", label, sent, after.since(before)))
            print_result(results[-1], await drain(server_pid, args.drain))
    return results


def run_config(target: str, mode: Mode, args: argparse.Namespace, port: int) -> list[PhaseResult]:
    print(f"\n=== {target} / {mode} ===", flush=True)
    server = Server(target, mode, port, args)
    load: Load | None = None
    try:
        t = time.monotonic()
        server.prepare()
        server.start()
        print(
            f"server pid {server.pid} on {server.url} (prepared and started in {time.monotonic() - t:.1f} s)"
        )
        wait_quiet(args, {server.pid, os.getpid()} if server.pid else {os.getpid()})
        load = Load(server.url, mode, args)
        spy_dir = Path(args.py_spy) if args.py_spy else None
        if spy_dir:
            spy_dir.mkdir(parents=True, exist_ok=True)
        with services_pinned(args.client_core if args.pin and target == "postgres" else None):
            results = asyncio.run(drive(load, target, server.pid, args, spy_dir))
        finish(results, load, server.pid, server.database_url, args)
        return results
    finally:
        server.stop()
        if load is not None and server.counts_path.exists():
            measured = sum(1 for s in load.samples if s.phase != "warmup" and s.status == 200)
            print(counts_report(server.counts_path, measured))
        server.cleanup()


def finish(
    results: list[PhaseResult],
    load: Load,
    pid: int | None,
    database_url: str | None,
    args: argparse.Namespace,
) -> None:
    peak = sum(status_kb(p, "VmHWM") for p in descendants(pid)) if pid else 0
    asyncio.run(drain(pid, args.drain))
    storage = asyncio.run(storage_check(database_url, load, args.settle)) if database_url else None
    total_success = sum(1 for s in load.samples if s.verdict == "success")
    for r in results:
        r.extra["peak_rss_mb"] = round(peak / 1024, 1) if pid else None
        r.extra["storage"] = storage["phases"].get(f"{r.shape} {r.offered}") if storage else None
    print(
        f"peak RSS (VmHWM, server and children): {peak / 1024:.1f} MB"
        if pid
        else "peak RSS: unknown (no --server-pid)"
    )
    if storage:
        print(
            "storage (all phases, warm-up included): {acknowledged} acknowledged, {stored_inbound} stored, "
            "lost {lost}, duplicated {duplicated}, stored but not acknowledged {stored_not_acknowledged}, "
            "unexpected {unexpected}; {stored_outbound} replies stored; stored messages without a reply "
            "{without_reply} (acknowledged ones: {acknowledged_without_reply}); outbound delivery "
            "{outbound_delivery}".format(**storage)
        )
        for phase, f in storage["phases"].items():
            print(
                f"  {phase}: {f['acknowledged']} acknowledged, lost {f['lost']}, duplicated {f['duplicated']}, "
                f"stored but not acknowledged {f['stored_not_acknowledged']}, without a reply {f['without_reply']} "
                f"(acknowledged ones: {f['acknowledged_without_reply']})"
            )
        if total_success:
            print(
                f"({total_success} webhooks answered `success`: their replies go through the customer-service API)"
            )
    else:
        print("storage: not checked (no database)")


# --- output ----------------------------------------------------------------------------------------


def print_result(r: PhaseResult, drained: float) -> None:
    r.extra["drain_s"] = round(drained, 1)
    print(
        f"{r.shape} {r.offered}: {r.sent} msgs in {r.seconds:.1f} s, {r.msgs_per_s:.0f} answered/s; "
        f"latency p50 {r.p50_ms:.1f} / p95 {r.p95_ms:.1f} / p99 {r.p99_ms:.1f} / max {r.max_ms:.0f} ms; "
        f"replies {r.replies}, success-only {r.success_only}, errors {r.errors} {r.error_kinds or ''}\n"
        f"    CPU (% of one core): server {r.server_cpu_pct:.0f} ({r.server_cpu_ms_per_msg:.2f} ms per message), "
        f"load generator {r.client_cpu_pct:.0f}, postgres+redis {r.db_cpu_pct:.0f}, other processes "
        f"{r.other_cpu_pct:.0f}; max send lag {r.max_send_lag_ms:.1f} ms; server drained in {drained:.1f} s",
        flush=True,
    )


def table(results: list[PhaseResult], markdown: bool) -> str:
    head = [
        "server",
        "mode",
        "load",
        "msgs",
        "msgs/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "replies",
        "success",
        "errors",
        "lost",
        "dup",
        "no reply (acked)",
        "peak RSS MB",
        "server CPU",
        "ms CPU/msg",
        "other CPU",
    ]
    rows = []
    for r in results:
        st = r.extra.get("storage") or {}
        rows.append(
            [
                {
                    "bare": "bare aiohttp",
                    "embedded": "SQLite, in-process",
                    "postgres": "PostgreSQL + Redis",
                    "peer": "peer: WeRoBot + SQLAlchemy/SQLite (WAL)",
                    "peer-default": "peer, SQLite defaults (fsync per commit)",
                }.get(r.target, r.target),
                r.mode,
                f"{r.shape} {r.offered}",
                str(r.sent),
                f"{r.msgs_per_s:.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p95_ms:.1f}",
                f"{r.p99_ms:.1f}",
                str(r.replies),
                str(r.success_only),
                str(r.errors),
                str(st.get("lost", "n/a")),
                str(st.get("duplicated", "n/a")),
                f"{st['without_reply']} ({st['acknowledged_without_reply']})" if st else "n/a",
                f"{r.extra.get('peak_rss_mb') or 0:.0f}",
                f"{r.server_cpu_pct:.0f}%",
                f"{r.server_cpu_ms_per_msg:.2f}",
                f"{r.other_cpu_pct:.0f}%",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), *(fmt.format(*row) for row in rows)])


def ratios(results: list[PhaseResult]) -> str:
    """Yezhu's closed-loop throughput and p99 against each peer's, measured in the same run."""
    peers = [r for r in results if r.target in ("peer", "peer-default") and r.shape == "closed"]
    if not peers:
        return "(no peer in this run: no ratio; --compare or --all measures it)"
    names = {"peer": "the peer (WAL)", "peer-default": "the peer with SQLite's defaults"}
    lines = []
    for peer in peers:
        lines.append(
            f"{names[peer.target]} (WeRoBot + SQLAlchemy/SQLite, gunicorn 1 sync worker), closed {peer.offered}: "
            f"{peer.msgs_per_s:.0f} msgs/s, p50 {peer.p50_ms:.1f} ms, p99 {peer.p99_ms:.1f} ms, "
            f"{peer.server_cpu_ms_per_msg:.2f} ms CPU per message"
        )
    for r in results:
        if r.target in ("embedded", "postgres") and r.shape == "closed":
            against = "; ".join(
                f"{r.msgs_per_s / p.msgs_per_s:.2f}x the throughput of {names[p.target]}, "
                f"p99 {r.p99_ms / p.p99_ms:.2f}x its p99"
                for p in peers
                if p.offered == r.offered
            )
            lines.append(
                f"Yezhu {r.target} ({r.mode}): {r.msgs_per_s:.0f} msgs/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, "
                f"{r.server_cpu_ms_per_msg:.2f} ms CPU per message: {against}"
            )
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Load benchmark of the WeChat webhook.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = p.add_argument_group("server")
    where.add_argument(
        "--target",
        choices=["bare", "embedded", "postgres", "peer", "peer-default"],
        help="start this server (pinned to one core); peer: bench/peer_werobot.py (pip install -e .[bench])",
    )
    where.add_argument(
        "--all", action="store_true", help="run all configurations one after another, the peer last"
    )
    where.add_argument(
        "--compare",
        action="store_true",
        help="issue 16's comparison: Yezhu embedded, Yezhu on PostgreSQL + Redis and the peer, plaintext, "
        "closed loop, 3,000 messages at 16 in flight (unless -n / -c say otherwise); prints Yezhu's ratios",
    )
    where.add_argument("--url", help="load an already running server instead (e.g. http://127.0.0.1:8080)")
    where.add_argument("--database-url", help="with --url: its YEZHU_DATABASE_URL, for the storage check")
    where.add_argument(
        "--server-pid",
        type=int,
        help="with --url: its pid, for peak RSS and CPU (default: who listens on the port)",
    )
    where.add_argument("--mode", choices=["plain", "safe"], default="plain", help="WeChat message mode")
    where.add_argument("--token", default=TOKEN, help="with --url: the server's YEZHU_WECHAT_TOKEN")
    where.add_argument("--app-id", default=APP_ID, help="with --url: the server's YEZHU_WECHAT_APP_ID")
    where.add_argument(
        "--aes-key", default=AES_KEY, help="with --url: the server's YEZHU_WECHAT_AES_KEY (safe mode)"
    )
    where.add_argument("--port", type=int, default=18181, help="port of a server the bench starts")
    where.add_argument(
        "--reply-budget", type=float, default=4.5, help="YEZHU_REPLY_BUDGET of a server the bench starts"
    )
    where.add_argument(
        "--no-demo", action="store_true", help="do not load the demo data (empty knowledge base)"
    )
    where.add_argument(
        "--log-json",
        choices=["auto", "true", "false"],
        default="auto",
        help="YEZHU_LOG_JSON of a server the bench starts (auto: true for postgres, as in docker-compose.yml)",
    )
    where.add_argument("--venv", default=str(ROOT / ".venv"))
    where.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (SQLite file, server log)"
    )
    where.add_argument("--start-retries", type=int, default=1)
    where.add_argument("--retry-wait", type=float, default=60.0, help="seconds between start attempts")
    load = p.add_argument_group("load")
    load.add_argument("--shape", default="closed,open", help="closed, open or both")
    load.add_argument(
        "-n", "--messages", type=int, default=50000, help="closed loop: at most this many messages"
    )
    load.add_argument("--max-seconds", type=float, default=20.0, help="closed loop: at most this long")
    load.add_argument("-c", "--concurrency", type=int, default=32, help="closed loop: requests in flight")
    load.add_argument(
        "--rate",
        default="500,50%",
        help="open loop: offered messages/s, comma-separated; N%% is N%% of the closed loop's throughput",
    )
    load.add_argument("--duration", type=float, default=20.0, help="open loop: seconds per rate")
    load.add_argument(
        "--overload-duration",
        type=float,
        default=5.0,
        help="open loop: seconds for a rate above 90%% of the closed loop's throughput",
    )
    load.add_argument("--open-connections", type=int, default=2000, help="open loop: most connections")
    load.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds before a request counts as failed (WeChat waits 5 s, then retries)",
    )
    load.add_argument("--senders", type=int, default=500, help="distinct openids")
    load.add_argument(
        "--sender-prefix",
        help="openids are PREFIX000000, PREFIX000001, ... (default: oBench<random>x, new owners every run; reusing a prefix makes the storage check count the earlier runs messages as unexpected)",
    )
    load.add_argument(
        "--warmup", type=int, default=-1, help="messages sent before measuring (default: one per sender)"
    )
    load.add_argument(
        "--drain",
        type=float,
        default=120.0,
        help="most seconds to wait for the server to finish queued work after a phase",
    )
    load.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="most seconds to wait for deferred replies before the storage check",
    )
    load.add_argument(
        "--no-pin", dest="pin", action="store_false", help="do not pin server and generator to cores"
    )
    load.add_argument("--server-core", type=int, default=0)
    load.add_argument("--client-core", type=int, default=1)
    load.add_argument(
        "--quiet-threshold",
        type=float,
        default=15.0,
        help="before loading, wait until other processes use less than this %% of one core",
    )
    load.add_argument("--quiet-wait", type=float, default=600.0, help="most seconds to wait for that")
    out = p.add_argument_group("output")
    out.add_argument(
        "--count-queries",
        action="store_true",
        help="run the server with every SQL statement, transaction and Redis command counted; print them per "
        "message (use with --shape closed: it costs the server some CPU)",
    )
    out.add_argument("--json", help="write machine, arguments and results to this file")
    out.add_argument("--markdown", action="store_true", help="print the final table as Markdown")
    out.add_argument(
        "--py-spy",
        metavar="DIR",
        help="sample the server with py-spy during the closed loop; raw stacks to DIR",
    )
    args = p.parse_args(argv)
    if args.compare:
        given = set(argv or sys.argv[1:])
        if not given & {"-n", "--messages"}:
            args.messages = 3000
        if not given & {"-c", "--concurrency"}:
            args.concurrency = 16
        if "--shape" not in given:
            args.shape = "closed"
        if "--max-seconds" not in given:
            args.max_seconds = 120.0
    if not (args.target or args.all or args.url or args.compare):
        p.error("give --target, --all, --compare or --url")
    if args.senders <= args.concurrency:
        p.error("--senders must exceed --concurrency, or per-sender locks serialise the load")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-counting"]:  # the server process of --count-queries
        serve_counting(argv[1:])
        return
    args = parse_args(argv)
    if args.pin:
        os.sched_setaffinity(0, {args.client_core})
    info = machine()
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, {info['memory_gb']} GB, Linux {info['kernel']}, "
        f"Python {info['python']}, aiohttp {info['aiohttp']}, {info['date']}; load average {os.getloadavg()}"
    )
    results: list[PhaseResult] = []
    if args.url:
        port = URL(args.url).port or 80
        pid = args.server_pid or pid_listening_on(port)
        print(f"=== {args.url} / {args.mode} (pid {pid or 'unknown'}) ===")
        wait_quiet(args, {pid, os.getpid()} if pid else {os.getpid()})
        load = Load(args.url, args.mode, args)
        spy_dir = Path(args.py_spy) if args.py_spy else None
        if spy_dir:
            spy_dir.mkdir(parents=True, exist_ok=True)
        results = asyncio.run(drive(load, "running", pid, args, spy_dir))
        finish(results, load, pid, args.database_url, args)
    else:
        mode: Mode = "plain" if args.target in ("bare", "peer", "peer-default") else args.mode
        configs = COMPARE if args.compare else CONFIGS if args.all else [(args.target, mode)]
        for target, mode in configs:
            results += run_config(target, mode, args, args.port)
    print()
    print(table(results, args.markdown))
    print(ratios(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"machine": info, "args": vars(args), "results": [asdict(r) for r in results]},
                ensure_ascii=False,
                indent=2,
            )
        )
        print(f"written {args.json}")


if __name__ == "__main__":
    main()
