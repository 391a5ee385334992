"""What one inbound message costs, piece by piece: the floor under the webhook's throughput.

Run by hand from the project root, pinned to one core, on an otherwise idle machine::

    taskset -c 0 .venv/bin/python bench/hot_path.py                 # PostgreSQL + Redis (database yezhu_hotpath)
    taskset -c 0 .venv/bin/python bench/hot_path.py --loop asyncio  # the same on asyncio's own loop

It measures CPU time (``time.process_time``), best of ``--repeat`` rounds of ``-n`` operations each:

1. the building blocks on this machine: one Redis command (redis-py), a Redis lock taken and released,
   one asyncpg query on a bare connection, one SQLAlchemy Core statement in autocommit, one
   SQLAlchemy ORM select in a session transaction, one NLU parse, one knowledge-base answer;
2. the engine itself (``Engine.accept`` and the turn it starts, without HTTP), one message at a time
   from known senders, split into its steps.

Together with the bare aiohttp server of ``webhook_load.py`` (the HTTP ceiling) this bounds what one
core can do: docs/PERFORMANCE.md adds the figures up.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_DB = "yezhu_hotpath"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"
REDIS_URL = "redis://127.0.0.1:6379/13"  # database 13 belongs to this bench

# The webhook benchmark's texts (what owners ask all day), so both measure the same messages.
from webhook_load import TEXTS  # noqa: E402  (bench/ is this script's folder, first on sys.path)


async def prepare() -> None:
    """A fresh database with the schema and the demo data (as ``yezhu migrate`` + ``yezhu demo``)."""
    from webhook_load import recreate_pg_database

    from bot.demo import load_demo
    from bot.store.db import Database

    await recreate_pg_database(PG_DB)
    db = Database(DATABASE_URL)
    await db.migrate()
    await load_demo(db, admin_password="hot-path-admin")
    await db.close()


async def measure(fn: Callable[[int], Awaitable[Any]], n: int, repeat: int) -> float:
    """Best CPU microseconds per call of ``fn(i)`` over ``repeat`` rounds of ``n`` calls."""
    for i in range(min(50, n)):
        await fn(-1 - i)  # warm: connections, prepared statements, compiled SQL
    best = float("inf")
    for r in range(repeat):
        t = time.process_time()
        for i in range(n):
            await fn(r * n + i)
        best = min(best, (time.process_time() - t) / n)
    return best * 1e6


async def building_blocks(rt: Any, n: int, repeat: int) -> list[tuple[str, float]]:
    import asyncpg
    import sqlalchemy as sa

    from bot.store.models import Conversation

    r = rt.services.locks.r  # the shared redis.asyncio client
    raw = await asyncpg.connect(DATABASE_URL.replace("+asyncpg", ""))
    if not await raw.fetchval("SELECT count(*) FROM conversation"):  # a conversation for the turn's load
        from channels.base import InboundMessage

        first = InboundMessage(
            channel="wechat", account="default", sender="oHotBlocks", msg_id=f"blocks{time.time_ns()}", kind="text",
            text="你好",
        )
        await (await rt.engine.accept(first)).replies
    conv_id = (await raw.fetchval("SELECT min(id) FROM conversation")) or 0

    async def redis_set(i: int) -> None:
        await r.set(f"yezhu:bench:hot:{i % 100}", "1", nx=True, ex=60)

    async def redis_lock(i: int) -> None:
        async with rt.services.locks.lock(f"bench:hot:{i % 100}"):
            pass

    async def asyncpg_query(i: int) -> None:
        await raw.fetchrow("SELECT id, mode, state FROM conversation WHERE id = $1", conv_id)

    core = sa.select(Conversation.__table__).where(Conversation.__table__.c.id == sa.bindparam("cid"))

    async def sa_core(i: int) -> None:
        async with rt.db.autocommit() as c:
            (await c.execute(core, {"cid": conv_id})).first()

    async def sa_orm(i: int) -> None:
        async with rt.db.session() as s, s.begin():
            await s.get(Conversation, conv_id)

    from bot.store.hot_path import TURN

    turn_params = {"p_cid": conv_id, "p_mid": 0}

    async def turn_load_sa(i: int) -> None:  # the turn's load as it ran through SQLAlchemy's engine
        async with rt.db.autocommit() as c:
            (await c.execute(TURN.load, turn_params)).one()

    async def turn_load_pool(i: int) -> None:  # the same statement on the hot path's asyncpg pool
        await rt.db.pg.load(turn_params)

    events = [
        {"event": "message.created", "conversation_id": conv_id, "message_id": i, "direction": d, "text": "物业费怎么交"}
        for i, d in ((1, "in"), (2, "out"))
    ]

    async def redis_lock_before(i: int) -> None:  # redis-py's Lock, then the events pipelined: 3 commands
        lock = r.lock(f"yezhu:lock:bench:hot:{i % 100}", timeout=15, blocking_timeout=30, sleep=0.005)
        await lock.acquire()
        await lock.release()
        async with r.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.publish("yezhu:bench:hot:events", json.dumps(event, ensure_ascii=False))
            await pipe.execute()

    async def redis_lock_turn(i: int) -> None:  # the turn's lock now: SET NX PX, then one script
        async with rt.services.locks.lock(f"bench:hot:{i % 100}", timeout=15, wait=30) as held:
            held.publish_on_release("bench:hot:events", events)

    async def nlu(i: int) -> None:
        rt.nlu.parse(TEXTS[i % len(TEXTS)])

    async def kb(i: int) -> None:
        await rt.knowledge.answer(TEXTS[i % len(TEXTS)], None)

    rows = [
        ("Redis command (SET NX EX)", await measure(redis_set, n, repeat)),
        ("Redis lock, acquire + release", await measure(redis_lock, n, repeat)),
        ("the turn's lock + events, before: redis-py Lock, pipelined PUBLISH x2", await measure(redis_lock_before, n, repeat)),
        ("the turn's lock + events, now: SET NX PX, one release-and-publish script", await measure(redis_lock_turn, n, repeat)),
        ("asyncpg query, bare connection", await measure(asyncpg_query, n, repeat)),
        ("the turn's load through SQLAlchemy's engine (autocommit)", await measure(turn_load_sa, n, repeat)),
        ("the turn's load on the hot path's asyncpg pool (PgHotPath)", await measure(turn_load_pool, n, repeat)),
        ("SQLAlchemy Core statement, autocommit (pool checkout included)", await measure(sa_core, n, repeat)),
        ("SQLAlchemy ORM get in a session transaction", await measure(sa_orm, n, repeat)),
        ("NLU parse (shipped model)", await measure(nlu, n, repeat)),
        ("knowledge-base answer (demo base)", await measure(kb, n, repeat)),
    ]
    await raw.close()
    return rows


async def engine_steps(rt: Any, n: int, repeat: int) -> tuple[float, dict[str, float]]:
    """CPU per message of ``Engine.accept`` + its turn, and of each step (one message at a time)."""
    from channels.base import InboundMessage

    engine = rt.engine
    spent: collections.Counter[str] = collections.Counter()

    def timed(obj: Any, name: str, label: str) -> None:
        original = getattr(obj, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.process_time()
            try:
                return await original(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - t

        setattr(obj, name, wrapper)

    timed(engine, "_parse", "NLU parse")
    timed(engine, "_store_inbound", "store the inbound message (fast path)")
    timed(engine, "_turn", "turn transaction (load, policy, replies, commit)")
    timed(engine.policy, "respond", "  of which the dialogue policy (knowledge base)")
    tag = f"{os.getpid()}x{time.time_ns() % 10**6}"
    ids = iter(range(10**9))

    async def one(i: int) -> None:
        msg = InboundMessage(
            channel="wechat",
            account="default",
            sender=f"oHot{tag}s{i % 50}",
            msg_id=f"hot{tag}m{next(ids)}",
            kind="text",
            text=TEXTS[i % len(TEXTS)],
        )
        accepted = await engine.accept(msg)
        await accepted.replies

    for i in range(60):
        await one(-1 - i)  # 50 senders become known
    spent.clear()
    total = await measure(one, n, 1)
    return total, {k: v / n * 1e6 for k, v in spent.items()}


async def main(args: argparse.Namespace) -> None:
    os.environ.update(
        YEZHU_DATABASE_URL=DATABASE_URL,
        YEZHU_REDIS_URL=REDIS_URL,
        YEZHU_WECHAT_TOKEN="hot-path",
        YEZHU_WECHAT_APP_ID="wxhotpath",
        YEZHU_WECHAT_APP_SECRET="hot-path-secret",
        YEZHU_LOG_LEVEL="WARNING",
        YEZHU_ADMIN_PASSWORD="hot-path-admin",
        YEZHU_JOB_QUEUE="yezhu:bench:hot:jobs",
    )
    if not args.no_prepare:
        await prepare()
    from bot.runtime import Runtime
    from bot.settings import Settings

    rt = Runtime(Settings())
    await rt.start()
    try:
        await rt.services.locks.r.flushdb()
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        print(f"event loop: {loop}; CPU per operation, best of {args.repeat} x {args.n}")
        for label, us in await building_blocks(rt, args.n, args.repeat):
            print(f"  {us:8.0f} µs  {label}")
        total, steps = await engine_steps(rt, args.n, args.repeat)
        print(f"engine, one message at a time (accept + turn, no HTTP): {total:8.0f} µs per message")
        for label, us in steps.items():
            print(f"  {us:8.0f} µs  {label}")
    finally:
        await rt.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=500, help="operations per round")
    p.add_argument("--repeat", type=int, default=3, help="rounds (the best counts)")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--no-prepare", action="store_true", help="reuse the database of an earlier run")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
