"""The console's search box on 200,000 tickets (PostgreSQL, pg_trgm): end to end over HTTP.

Run by hand from the project root (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)::

    .venv/bin/python bench/console_search.py                 # 200,000 tickets, 200,000 messages
    .venv/bin/python bench/console_search.py --tickets 20000 # a smaller run
    .venv/bin/python bench/console_search.py --reuse         # keep the database of the last run

It creates its own database (``yezhu_console_search``), migrates it (migration 0006 adds the trigram
indexes), loads the demo data, adds ``--tickets`` tickets and as many chat messages with realistic
Chinese descriptions, phones and houses (PostgreSQL ``COPY``), runs ``ANALYZE``, logs an agent into
the real console and times ``GET /console/search`` — the page the desk sees: tickets, owners and
conversations — for what the desk types: the last 4 digits of a phone, a whole phone, a house, a
ticket number, a common word, a rare word, a name, and words with filters. It prints the median and
the 95th percentile of the wall time per query (``--rounds`` each), the median CPU time of this process
(the console's handler, templates and the HTTP client; PostgreSQL's own time is in the wall time) and,
with ``--explain``, PostgreSQL's plans.

The machine is shared (2 cores, other engineers' tests running): figures are wall-clock times under
whatever load there was; the script prints the load average next to them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "yezhu_console_search"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"

PLACES = ["卫生间", "厨房", "主卧", "次卧", "客厅", "阳台", "书房", "入户门", "楼道", "地下车库", "电梯厅"]
PROBLEMS = ["地漏返水", "水管漏水", "天花板渗水", "插座没电", "灯不亮", "门锁卡住打不开", "窗户关不严",
            "墙面开裂", "瓷砖空鼓", "空调不制冷", "暖气不热", "下水堵塞", "马桶漏水", "对讲不通", "电梯异响",
            "外墙渗水", "燃气表不走字", "楼上装修噪音", "垃圾没人清运", "停车位被占"]
DETAILS = ["已经好几天了", "楼下邻居反映", "麻烦尽快安排", "周末在家", "上次修过又坏了", "孩子在家不方便",
           "晚上七点后方便", "急", "请先打电话", ""]
CATEGORIES = ["plumbing", "drainage", "electrical", "door_window", "wall_floor", "hvac", "elevator", "other"]
STATUSES = ["new", "dispatched", "in_progress", "done", "awaiting_acceptance", "closed", "closed", "closed"]


def describe(rng: random.Random) -> str:
    return f"{rng.choice(PLACES)}{rng.choice(PROBLEMS)}，{rng.choice(DETAILS)}".rstrip("，")


async def prepare(tickets: int, seed: int) -> None:
    import asyncpg

    from bot.demo import load_demo
    from bot.store.db import Database

    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        await admin.close()
    db = Database(DATABASE_URL)
    await db.migrate()
    await load_demo(db, admin_password="console-search-bench")
    await db.close()

    rng = random.Random(seed)
    conn = await asyncpg.connect(DSN)
    try:  # COPY is binary: json columns take the document's UTF-8 text
        await conn.set_type_codec("json", schema="pg_catalog", format="binary",
                                  encoder=lambda v: json.dumps(v, ensure_ascii=False).encode(),
                                  decoder=lambda b: json.loads(b))
        owners = await conn.fetch(
            "SELECT o.id, o.phone, oh.house_id FROM owner o JOIN owner_house oh ON oh.owner_id = o.id")
        project = await conn.fetchval("SELECT id FROM project WHERE code = 'demo'")
        staff = [r["id"] for r in await conn.fetch("SELECT id FROM staff_user WHERE role IN ('engineer', 'supervisor')")]
        now = dt.datetime.now(dt.UTC)
        started = time.monotonic()
        # One identity and conversation per owner (their WeChat chat); messages spread over them.
        first_identity = (await conn.fetchval("SELECT coalesce(max(id), 0) FROM identity")) + 1
        first_conv = (await conn.fetchval("SELECT coalesce(max(id), 0) FROM conversation")) + 1
        identities = [(first_identity + i, "wechat", "default", f"oBENCH{i:06d}", o["id"], True, now)
                      for i, o in enumerate(owners)]
        await conn.copy_records_to_table("identity", records=identities, columns=[
            "id", "channel", "account", "external_id", "owner_id", "subscribed", "created_at"])
        conversations = [(first_conv + i, first_identity + i, o["id"], "closed", 0, {}, now, now, now)
                         for i, o in enumerate(owners)]
        await conn.copy_records_to_table("conversation", records=conversations, columns=[
            "id", "identity_id", "owner_id", "mode", "priority", "state", "last_message_at", "updated_at",
            "created_at"])
        rows = []
        messages = []
        per_day: dict[str, int] = {}
        for n in range(tickets):
            o = rng.choice(owners)
            kind = "repair" if rng.random() < 0.8 else "complaint"
            created = now - dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 730))
            prefix = ("BX" if kind == "repair" else "TS") + created.strftime("%Y%m%d")
            per_day[prefix] = per_day.get(prefix, 0) + 1
            number = f"{prefix}-{per_day[prefix]:04d}"
            # As at a real desk: what is older than two weeks is closed, save a few stragglers.
            old = created < now - dt.timedelta(days=14)
            status = "closed" if old and rng.random() < 0.98 else rng.choice(STATUSES)
            text = describe(rng)
            rows.append((n + 1, number, kind, rng.choice(CATEGORIES) if kind == "repair" else "other", project,
                         o["house_id"], None, o["id"], None, o["phone"], text,
                         rng.choice(["normal"] * 9 + ["urgent" if kind == "repair" else "serious"]), status,
                         rng.choice(staff) if status != "new" else None, None,
                         created + dt.timedelta(hours=48), None, [], None, None, None, 0,
                         created if status == "closed" else None, created, created))
            conv = first_conv + rng.randrange(len(owners))
            messages.append((n + 1, conv, "in", "wechat", "default", f"bench-{n}", "text", text, {}, None, None,
                             None, None, 0, created, created))
        columns = ["id", "number", "kind", "category", "project_id", "house_id", "location", "owner_id",
                   "conversation_id", "contact_phone", "description", "priority", "status", "assignee_id",
                   "visit_time", "due_at", "warranty", "media", "origin", "quote", "group_id", "rework_count",
                   "closed_at", "updated_at", "created_at"]
        await conn.copy_records_to_table("ticket", records=rows, columns=columns)
        await conn.copy_records_to_table("message", records=messages, columns=[
            "id", "conversation_id", "direction", "channel", "account", "channel_msg_id", "kind", "text", "media",
            "nlu", "author", "delivery", "delivery_error", "attempts", "at", "handled_at"])
        for table in ("identity", "conversation", "ticket", "message"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        await conn.execute("ANALYZE")
        print(f"loaded {tickets:,} tickets and {len(messages):,} messages for {len(owners):,} owners "
              f"in {time.monotonic() - started:.1f} s")
    finally:
        await conn.close()


async def run(rounds: int, explain: bool) -> None:
    import asyncpg
    from aiohttp.test_utils import TestClient, TestServer

    from bot.app import create_app
    from bot.security import hash_password
    from bot.settings import Settings

    conn = await asyncpg.connect(DSN)
    await conn.execute("UPDATE staff_user SET password_hash = $1 WHERE username = 'kefu'", hash_password("bench-pass-1"))
    sample = await conn.fetchrow("SELECT t.number, o.phone, o.name, b.name AS building, h.unit, h.room "
                                 "FROM ticket t JOIN owner o ON o.id = t.owner_id JOIN house h ON h.id = t.house_id "
                                 "JOIN building b ON b.id = h.building_id ORDER BY t.id DESC LIMIT 1")
    total = await conn.fetchval("SELECT count(*) FROM ticket")
    await conn.close()
    settings = Settings(database_url=DATABASE_URL, redis_url=None, api_token="bench", admin_password="x" * 12)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await client.start_server()
    try:
        page = await (await client.get("/console/login")).text()
        token = re.search(r'name="_csrf" value="([^"]+)"', page)
        assert token
        resp = await client.post("/console/login", data={"username": "kefu", "password": "bench-pass-1",
                                                        "_csrf": token.group(1)}, allow_redirects=False)
        assert resp.status == 303, await resp.text()
        queries = {
            "phone, last 4 digits": {"q": sample["phone"][-4:]},
            "phone, whole": {"q": sample["phone"]},
            "house 3-2-501 style": {"q": f"{sample['building']}-{sample['unit']}-{sample['room']}"},
            "ticket number": {"q": sample["number"]},
            "common word (漏水)": {"q": "漏水"},
            "rarer words (门锁卡住)": {"q": "门锁卡住"},
            "owner name": {"q": sample["name"]},
            "words + filters": {"q": "渗水", "kind": "repair", "status": "open", "category": "plumbing",
                                "from": (dt.date.today() - dt.timedelta(days=90)).isoformat()},
            "filters only": {"status": "open", "kind": "complaint"},
        }
        print(f"{total:,} tickets; GET /console/search as an agent; {rounds} rounds each; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"{'query':<26} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'CPU ms':>7}  found (tickets/owners/chats)")
        for name, params in queries.items():
            times, cpu = [], []
            found = ""
            for _ in range(rounds + 2):
                started, started_cpu = time.perf_counter(), time.process_time()
                resp = await client.get("/console/search", params=params)
                body = await resp.text()
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
                assert resp.status == 200
                found = "/".join(str(body.count(marker)) for marker in ("data-ticket=", "data-owner=",
                                                                         'class="queue-item"'))
            times, cpu = sorted(times[2:]), sorted(cpu[2:])  # the first two warm caches and the pool
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{name:<26} {statistics.median(times):>10.1f} {p95:>8.1f} {times[-1]:>8.1f} "
                  f"{statistics.median(cpu):>7.1f}  {found}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if explain:
            await show_plans(sample["phone"][-4:])
    finally:
        await client.close()


async def show_plans(digits: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(DSN)
    try:
        for sql in ("SELECT id FROM ticket WHERE description LIKE '%门锁卡住%' LIMIT 50",
                    f"SELECT id FROM owner WHERE phone LIKE '%{digits}'",
                    f"SELECT id FROM ticket WHERE contact_phone LIKE '%{digits}'"):
            print("\n" + sql)
            for row in await conn.fetch("EXPLAIN (ANALYZE, COSTS OFF) " + sql):
                print("  " + row[0])
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--reuse", action="store_true", help="keep the database of the last run")
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plans of the main lookups")
    args = parser.parse_args()

    async def go() -> None:
        if not args.reuse:
            await prepare(args.tickets, args.seed)
        await run(args.rounds, args.explain)

    asyncio.run(go())


if __name__ == "__main__":
    main()
