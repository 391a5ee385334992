"""Profile the webhook path in one process (cProfile or wall/CPU only), no network hop: embedded, or
the production path with ``--postgres``/``--redis``.

    taskset -c 0 .venv/bin/python bench/profile_embedded.py -n 2000 -c 16 [--profile out.prof]

A fresh SQLite database with the demo data in a temporary folder, the aiohttp app served on a local
port, and an in-process aiohttp client sending signed WeChat text messages (bench/webhook_load.py's
texts, 500 senders warmed up first). Prints messages/s and CPU per message of the whole process (the
client included, so it is a relative figure: use it to compare code, webhook_load.py for the record).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhook_load import APP_ID, OA_ID, TEXTS, TOKEN  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    import aiohttp
    from aiohttp import web

    from tests.fakes.wechat_client import WeChatOwner

    tmp = Path(tempfile.mkdtemp(prefix="yezhu-prof-"))
    url = f"sqlite+aiosqlite:///{tmp / 'yezhu.db'}"
    if args.postgres:
        url = await fresh_postgres(args.postgres)
    os.environ.update(
        YEZHU_DATABASE_URL=url,
        YEZHU_WECHAT_TOKEN=TOKEN,
        YEZHU_WECHAT_APP_ID=APP_ID,
        YEZHU_WECHAT_APP_SECRET="x",
        YEZHU_WECHAT_API_BASE="http://127.0.0.1:9",
        YEZHU_LOG_LEVEL="WARNING",
        YEZHU_REPLY_BUDGET="4.5",
        YEZHU_ADMIN_PASSWORD="bench-admin-password",
    )
    os.environ.pop("YEZHU_REDIS_URL", None)
    if args.redis:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(args.redis)
        await r.flushdb()
        await r.aclose()
        os.environ["YEZHU_REDIS_URL"] = args.redis
    from bot.app import RUNTIME, create_app
    from bot.demo import load_demo
    from bot.store.db import Database

    db = Database(os.environ["YEZHU_DATABASE_URL"])
    await db.migrate()
    await load_demo(db, admin_password="bench-admin-password")
    await db.close()
    if args.stored:
        t = time.perf_counter()
        prefill(str(tmp / "yezhu.db"), args.stored)
        print(f"prefilled {args.stored} stored messages in {time.perf_counter() - t:.0f} s")
    app = create_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if args.kb:
        from knowledge.bench import synthetic_items
        from knowledge.retrieval import KnowledgeIndex

        service = app[RUNTIME].knowledge
        base = (await service.ensure()).items
        service.index = KnowledgeIndex.build(synthetic_items(base, args.kb), service.synonyms)
        print(f"knowledge base: {len(service.index.items)} entries")
    site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port: several profiles may run at once
    await site.start()
    port = runner.addresses[0][1]
    owners = [
        WeChatOwner(
            None,
            token=TOKEN,
            app_id=APP_ID,
            aes_key=None,
            openid=f"oProf{i:06d}",
            account="default",
            mode="plain",
            oa_id=OA_ID,
        )
        for i in range(500)
    ]
    k = 0
    base = time.time_ns() // 1000

    def one() -> tuple[str, bytes]:
        nonlocal k
        owner = owners[k % len(owners)]
        xml = owner.text_xml(TEXTS[(k + k // len(owners)) % len(TEXTS)], msg_id=base + k)
        k += 1
        query, body = owner.signed_request(xml)
        return f"http://127.0.0.1:{port}{owner.path}?{urlencode(query)}", body

    bad = 0
    kinds: collections.Counter[str] = collections.Counter()

    async def run(n: int, c: int) -> None:
        nonlocal bad
        left = n
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                nonlocal left, bad
                while left > 0:
                    left -= 1
                    url, body = one()
                    async with session.post(url, data=body) as r:
                        text = await r.text()
                        if r.status != 200 or "<Content>" not in text:
                            bad += 1
                            kinds[f"{r.status} {text[:40]!r}"] += 1

            await asyncio.gather(*(worker() for _ in range(c)))

    await run(500, args.c)
    await asyncio.sleep(float(os.environ.get("SETTLE", "1")))
    if args.bound:
        await bind_senders(app[RUNTIME].db)
    from sqlalchemy import event

    statements: collections.Counter[str] = collections.Counter()

    @event.listens_for(app[RUNTIME].db.engine.sync_engine, "before_cursor_execute")
    def _count(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        statements[" ".join(statement.split())[:100]] += 1

    writer = app[RUNTIME].db.writer
    busy_before = writer.busy_retries if writer is not None else 0
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile(time.process_time)
        prof.enable()
    t, cpu = time.perf_counter(), time.process_time()
    await run(args.n, args.c)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    if prof:
        prof.disable()
        prof.dump_stats(args.profile)
    print(
        f"stored {args.stored}, kb {args.kb or 'demo'}: {args.n} messages, C={args.c}: {args.n / wall:.0f}/s, process CPU {cpu * 1000 / args.n:.2f} ms per message "
        f"(client included), bad answers {bad} {dict(kinds) if kinds else ''}"
    )
    w = writer
    if w is not None:
        print(
            f"hot-path writer: {w.units} units in {w.commits} commits, {w.busy_retries} waits for another "
            f"connection's write lock ({w.busy_retries - busy_before} during the measured run; the others: "
            "new senders' first messages in the warm-up)"
        )
    if statements:
        print("statements through SQLAlchemy (aiosqlite) during the measured run:")
    for text, n in statements.most_common(20):
        print(f"{n:6d}  {text}")
    await runner.cleanup()


async def bind_senders(db: object) -> None:
    """Bind every warmed-up sender to one of the demo's owners, as registered owners are."""
    import sqlalchemy as sa

    from bot.store.models import Conversation, Identity, Owner

    async with db.session() as s, s.begin():  # type: ignore[attr-defined]
        owners = list((await s.execute(sa.select(Owner.id).order_by(Owner.id))).scalars())
        identities = list((await s.execute(sa.select(Identity).where(Identity.external_id.like("oProf%")))).scalars())
        for n, identity in enumerate(identities):
            identity.owner_id = owners[n % len(owners)]
        await s.flush()
        await s.execute(
            sa.update(Conversation)
            .where(Conversation.identity_id == Identity.id, Identity.external_id.like("oProf%"))
            .values(owner_id=Identity.owner_id)
        )
    print(f"bound {len(identities)} senders to {len(owners)} demo owners")


async def fresh_postgres(admin_url: str) -> str:
    """A new, empty database beside ``admin_url``'s (dropped first if it exists); its URL."""
    import asyncpg

    name = "yezhu_profile"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def prefill(path: str, n: int) -> None:
    """``n`` stored messages (half inbound, half replies) in conversations of 20 messages, from
    ``n / 20`` other owners, written straight into the file (the FTS triggers index them as usual)."""
    import datetime as dt
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(" ")
    per = 20
    start = conn.execute("SELECT coalesce(max(id), 0) FROM identity").fetchone()[0] + 1
    conv0 = conn.execute("SELECT coalesce(max(id), 0) FROM conversation").fetchone()[0] + 1
    owners = max(1, n // per)
    with conn:
        conn.executemany(
            "INSERT INTO identity (id, channel, account, external_id, subscribed, created_at, last_inbound_at) "
            "VALUES (?, 'wechat', 'default', ?, 1, ?, ?)",
            ((start + i, f"oFill{i:08d}", now, now) for i in range(owners)),
        )
        conn.executemany(
            "INSERT INTO conversation (id, identity_id, mode, priority, state, updated_at, created_at, last_message_at) "
            "VALUES (?, ?, 'bot', 0, '{}', ?, ?, ?)",
            ((conv0 + i, start + i, now, now, now) for i in range(owners)),
        )
        texts = TEXTS
        conn.executemany(
            "INSERT INTO message (conversation_id, direction, channel, account, channel_msg_id, kind, text, media, "
            "author, delivery, attempts, at, handled_at) VALUES (?, ?, 'wechat', 'default', ?, 'text', ?, '{}', ?, ?, 0, ?, ?)",
            (
                (
                    conv0 + k // per,
                    "in" if k % 2 == 0 else "out",
                    f"fill{k}" if k % 2 == 0 else None,
                    texts[k % len(texts)] + (f" {k}" if k % 2 == 0 else " 的答复"),
                    None if k % 2 == 0 else "bot",
                    None if k % 2 == 0 else "sent",
                    now,
                    now if k % 2 == 0 else None,
                )
                for k in range(n)
            ),
        )
    conn.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("-c", type=int, default=16)
    p.add_argument("--profile")
    p.add_argument("--stored", type=int, default=0, help="messages already stored before the run")
    p.add_argument(
        "--kb", type=int, default=0, help="knowledge-base entries (synthetic copies of the demo's)"
    )
    p.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="PostgreSQL instead of SQLite: a fresh database yezhu_profile beside this one, e.g. "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    )
    p.add_argument("--bound", action="store_true", help="senders are registered owners (bound identities)")
    p.add_argument("--redis", metavar="URL", help="use this Redis (its database is flushed), e.g. redis://127.0.0.1:6379/9")
    args = p.parse_args()
    import uvloop

    uvloop.run(main(args))
