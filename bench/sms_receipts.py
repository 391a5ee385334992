"""SMS receipts under load: 10,000 Aliyun SmsReport items pushed in arrays of 100 to one web process.

Run by hand from the project root (PostgreSQL and Redis on 127.0.0.1, as in production)::

    .venv/bin/python bench/sms_receipts.py                    # server pinned to core 0, pusher to core 1
    .venv/bin/python bench/sms_receipts.py --sqlite           # the embedded mode (SQLite, in-process jobs)

It starts ``yezhu run`` (one process, pinned with ``taskset`` to one core) on a fresh database holding
10,000 sent SMS, then pushes their receipts exactly as Aliyun does (JSON arrays of 100, ``--concurrency``
pushes in flight) and reports:

- **stored**: seconds from the first push to the last answer (each answer is given after its 100 items
  are committed), and the answer latency of every push (the target: all under 200 ms; Aliyun gives up
  at 700 ms and pushes again);
- **applied**: seconds until every receipt has updated its SMS to ``delivered`` (the work after the
  answer: the in-process job in the embedded mode, a ``yezhu worker`` with ``--worker``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PG_DB = "yezhu_smsbench"
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"
REDIS_URL = "redis://127.0.0.1:6379/12"  # database 12 belongs to this bench
KEY = "bench-callback-key"
PORT = 8797


async def prepare(url: str, n: int) -> None:
    """A fresh schema with ``n`` sent SMS waiting for their receipts."""
    import sqlalchemy as sa

    from bot.store.db import Database
    from bot.store.models import SmsMessage, utcnow

    if url.startswith("postgresql"):
        from webhook_load import recreate_pg_database

        await recreate_pg_database(PG_DB)
    db = Database(url)
    await db.migrate()
    now = utcnow()
    rows = [{"direction": "out", "phone": f"139{i:08d}", "kind": "notice", "provider": "aliyun",
             "template_code": "SMS_460001017", "params": {}, "text": "【物业客服】示范花园通知：明日停水", "segments": 1,
             "status": "sent", "urgent": False, "out_id": f"bench{i}", "provider_id": f"{i:018d}^0", "attempts": 1,
             "sent_at": now, "created_at": now, "updated_at": now} for i in range(n)]
    async with db.engine.begin() as c:
        for start in range(0, n, 1000):
            await c.execute(sa.insert(SmsMessage), rows[start:start + 1000])
    await db.close()


def receipts(n: int, per_push: int) -> list[bytes]:
    bodies = []
    for start in range(0, n, per_push):
        items = [{"phone_number": f"139{i:08d}", "send_time": "2026-12-01 10:00:00",
                  "report_time": "2026-12-01 10:00:03", "success": True, "err_code": "DELIVERED",
                  "err_msg": "用户接收成功", "sms_size": "1", "biz_id": f"{i:018d}^0", "out_id": f"bench{i}"}
                 for i in range(start, min(n, start + per_push))]
        bodies.append(json.dumps(items, ensure_ascii=False).encode())
    return bodies


async def push_all(bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    url = f"http://127.0.0.1:{PORT}/sms/aliyun/{KEY}/receipt"
    latencies: list[float] = []
    order: list[tuple[float, int]] = []
    queue = list(reversed(bodies))

    async with aiohttp.ClientSession() as http:
        async def worker() -> None:
            while queue:
                body = queue.pop()
                t = time.perf_counter()
                async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    answer = await resp.json()
                    assert resp.status == 200 and answer == {"code": 0, "msg": "接收成功"}, answer
                latencies.append(time.perf_counter() - t)
                order.append((time.perf_counter() - t, len(order)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    slow = [f"#{i + 1} {lat * 1000:.0f} ms" for lat, i in order if lat > 0.2]
    if slow:
        print("pushes over 200 ms (answer order):", ", ".join(slow))
    return time.perf_counter() - started, latencies


async def wait_applied(url: str, n: int, timeout: float) -> float | None:
    import sqlalchemy as sa

    from bot.store.db import Database
    from bot.store.models import SmsMessage

    db = Database(url)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout:
            async with db.session() as s:
                done = await s.scalar(sa.select(sa.func.count()).where(SmsMessage.status == "delivered"))
            if done >= n:
                return time.perf_counter() - started
            await asyncio.sleep(0.2)
    finally:
        await db.close()
    return None


def start(cmd: list[str], env: dict[str, str], core: str | None) -> subprocess.Popen[bytes]:
    prefix = ["taskset", "-c", core] if core is not None else []
    return subprocess.Popen(prefix + cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--per-push", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--sqlite", action="store_true", help="the embedded mode: SQLite, in-process jobs")
    ap.add_argument("--worker", action="store_true", help="also run one yezhu worker (PostgreSQL mode)")
    ap.add_argument("--server-core", default="0")
    ap.add_argument("--worker-core", default="1")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="yezhu-smsbench-")
    url = f"sqlite+aiosqlite:///{tmp}/bench.db" if args.sqlite else PG_URL
    await prepare(url, args.n)
    env = {**os.environ, "YEZHU_DATABASE_URL": url, "YEZHU_SMS_CALLBACK_KEY": KEY, "YEZHU_LOG_LEVEL": "WARNING",
           "YEZHU_PORT": str(PORT), "YEZHU_TURN_RECOVERY_AFTER": "0"}
    if not args.sqlite:
        env["YEZHU_REDIS_URL"] = REDIS_URL
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
    yezhu = str(ROOT / ".venv" / "bin" / "yezhu")
    procs = [start([yezhu, "run", "--port", str(PORT)], env, args.server_core)]
    if args.worker and not args.sqlite:
        procs.append(start([yezhu, "worker"], env, args.worker_core))
    try:
        from webhook_load import wait_healthy

        if not wait_healthy(f"http://127.0.0.1:{PORT}", procs[0], 60):
            raise SystemExit("yezhu run did not start: " + (procs[0].stderr.read().decode()[-2000:] if procs[0].stderr else ""))
        bodies = receipts(args.n, args.per_push)
        total, latencies = await push_all(bodies, args.concurrency)
        latencies.sort()
        print(f"stored {args.n} receipts in {len(bodies)} pushes of {args.per_push} "
              f"({args.concurrency} in flight): {total:.2f} s, {args.n / total:.0f} receipts/s")
        print(f"answer latency: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
              f"over 200 ms: {sum(1 for x in latencies if x > 0.2)}")
        if args.sqlite or args.worker:
            applied = await wait_applied(url, args.n, 120)
            print("applied: " + (f"every SMS delivered {applied:.2f} s after the last answer" if applied is not None
                                 else "not all within 120 s"))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
