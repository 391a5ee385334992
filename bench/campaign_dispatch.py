"""A campaign to 100,000 owners on PostgreSQL: audience + preview time, dispatch rate, worker memory.

Run by hand from the project root (PostgreSQL and Redis on 127.0.0.1, as in production)::

    .venv/bin/python bench/campaign_dispatch.py                  # 100,000 owners, 80% WeChat followers
    .venv/bin/python bench/campaign_dispatch.py --owners 20000 --wechat-share 0.5

It builds a fresh database (``yezhu_campaignbench``) with ``--owners`` owners, one house each, a share of
them following the Official Account (the others reachable by SMS only), then:

1. **audience + preview**: ``campaigns.create`` of a ``notice`` to the whole project (the set-based
   audience query, its GROUP BY preview, one rendered sample per channel) — seconds (target: < 10 s);
2. **dispatch**: starts local fake providers (the fake WeChat API and the fake Aliyun SMS API of
   ``tests/fakes``, in a process of their own) and **one** ``yezhu worker`` (Redis database 13), hands the
   campaign to it as ``yezhu campaign send`` does, and follows the progress every second (printed) until
   every delivery is settled — deliveries per second overall (target: ≥ 1,000);
3. **memory**: the worker's peak RSS (``VmHWM`` in ``/proc/<pid>/status``; target: < 300 MB, flat).

Exactly-once is checked at the end: the fakes hold one message per owner.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PG_DB = "yezhu_campaignbench"
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"
REDIS_URL = "redis://127.0.0.1:6379/10"  # database 10 belongs to this bench (and the campaign tests)
WECHAT_PORT, SMS_PORT = 8801, 8802
APP_ID, APP_SECRET = "wxBENCH0000000001", "bench-secret"


def serve_fakes() -> None:
    """The child process: both fake providers until killed; counts on SIGUSR1 are written to a file."""
    import signal

    from aiohttp import web

    from bot.settings import Settings
    from tests.fakes.wechat_server import FakeWeChatAPI
    from tests.sms.conftest import fake_for

    async def main() -> None:
        wechat = FakeWeChatAPI({APP_ID: APP_SECRET})
        sms = fake_for(Settings(_env_file=None))  # type: ignore[call-arg]
        wapp = web.Application()
        wapp.router.add_get("/cgi-bin/token", wechat._token)
        wapp.router.add_post("/cgi-bin/message/template/send", wechat._template_send)
        runners = []
        for app, port in ((wapp, WECHAT_PORT), (sms.app(), SMS_PORT)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
        out = Path(os.environ["BENCH_COUNTS"])

        def dump() -> None:
            touser = {m.touser for m in wechat.template_messages}
            phones = {s.phone for s in sms.sent}
            out.write_text(f"{len(wechat.template_messages)} {len(touser)} {len(sms.sent)} {len(phones)}")

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)
        await asyncio.Event().wait()

    asyncio.run(main())


async def prepare(owners: int, wechat_share: float) -> None:
    import sqlalchemy as sa

    from bot.store.db import Database
    from webhook_load import recreate_pg_database

    await recreate_pg_database(PG_DB)
    db = Database(PG_URL)
    await db.migrate()
    followers = int(owners * wechat_share)
    statements = [
        "INSERT INTO project (code, name, settings, created_at) VALUES ('bench', '压测花园', "
        "'{\"campaign_approval_threshold\": 1000000}', now())",
        "INSERT INTO building (project_id, name) SELECT 1, g::text FROM generate_series(1, 100) g",
        f"INSERT INTO house (building_id, unit, room, handover_date) SELECT 1 + (g % 100), (1 + g % 4)::text, "
        f"g::text, DATE '2024-01-01' FROM generate_series(1, {owners}) g",
        f"INSERT INTO owner (name, phone, consent_service, consent_marketing, sms_opt_out, created_at) "
        f"SELECT '业主' || g, '139' || lpad(g::text, 8, '0'), true, false, false, now() "
        f"FROM generate_series(1, {owners}) g",
        f"INSERT INTO owner_house (owner_id, house_id, relation) SELECT g, g, 'owner' FROM generate_series(1, {owners}) g",
        f"INSERT INTO identity (channel, account, external_id, owner_id, subscribed, created_at) "
        f"SELECT 'wechat', 'default', 'oBENCH' || g, g, true, now() FROM generate_series(1, {followers}) g",
        "INSERT INTO staff_user (username, display_name, role, password_hash, on_duty, active, created_at) "
        "VALUES ('admin', '管理员', 'admin', 'x', false, true, now())",
        "ANALYZE",
    ]
    async with db.engine.begin() as c:
        for statement in statements:
            await c.execute(sa.text(statement))
    await db.close()


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("YEZHU_")}
    e.update({
        "YEZHU_DATABASE_URL": PG_URL, "YEZHU_REDIS_URL": REDIS_URL, "YEZHU_WECHAT_APP_ID": APP_ID,
        "YEZHU_WECHAT_APP_SECRET": APP_SECRET, "YEZHU_WECHAT_API_BASE": f"http://127.0.0.1:{WECHAT_PORT}",
        "YEZHU_SMS_PROVIDER": "aliyun", "YEZHU_SMS_ENDPOINT": f"http://127.0.0.1:{SMS_PORT}",
        "YEZHU_ALIYUN_ACCESS_KEY_ID": "LTAI-test-key", "YEZHU_ALIYUN_ACCESS_KEY_SECRET": "aliyun-test-secret",
        "YEZHU_SMS_WINDOW": "00:00-24:00", "YEZHU_SMS_RATE_LIMIT": "100000", "YEZHU_SMS_DAILY_CAP": "100",
        "YEZHU_SCHEDULER": "false", "YEZHU_LOG_LEVEL": "WARNING", "YEZHU_JOB_REDELIVERY_SECONDS": "600",
    })
    return e


def rss_peak(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of ``pid`` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) // 1024, int(fields["VmRSS"].split()[0]) // 1024


async def run(owners: int, wechat_share: float) -> None:
    import redis

    from actions import campaigns
    from actions.campaigns.dispatch import counts
    from bot.runtime import Runtime
    from bot.settings import Settings

    redis.Redis.from_url(REDIS_URL).flushdb()
    t = time.perf_counter()
    await prepare(owners, wechat_share)
    print(f"prepared {owners} owners ({wechat_share:.0%} WeChat followers) in {time.perf_counter() - t:.1f} s")

    os.environ.update({k: v for k, v in env().items() if k.startswith("YEZHU_")})
    rt = Runtime(Settings(_env_file=None), nlu=None)  # type: ignore[call-arg]
    await rt.jobs.broker.startup()
    t = time.perf_counter()
    created = await campaigns.create(rt, kind="notice", project="bench", params={"content": "明日9:00-12:00停水检修"})
    preview_s = time.perf_counter() - t
    for line in created.preview.lines():
        print("  " + line)
    print(f"audience + preview: {preview_s:.2f} s")
    cid = created.campaign.id

    counts_file = Path(f"/tmp/campaignbench-{os.getpid()}.counts")
    fakes = subprocess.Popen([sys.executable, __file__, "--serve-fakes"], env={**env(), "BENCH_COUNTS": str(counts_file)},
                             cwd=ROOT)
    worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env(), cwd=ROOT)
    try:
        await asyncio.sleep(8)  # both listening, the worker started (its NLU model loaded)
        base_rss = rss_peak(worker.pid)
        t = time.perf_counter()
        materialise_t = time.perf_counter()
        assert await campaigns.send(rt, cid, "admin") == "queued"
        print(f"deliveries made (INSERT … SELECT) and handed to the worker in {time.perf_counter() - materialise_t:.2f} s")
        peak = base_rss[0]
        while True:
            await asyncio.sleep(1)
            c = await counts(rt, cid)
            settled = sum(c.values()) - c["queued"] - c["sending"]
            hwm, now_rss = rss_peak(worker.pid)
            peak = max(peak, hwm)
            elapsed = time.perf_counter() - t
            print(f"  {elapsed:5.1f} s  settled {settled:>6}/{sum(c.values())}  {settled / elapsed:6.0f}/s  "
                  f"worker RSS {now_rss} MB (peak {hwm} MB)", flush=True)
            if (await campaigns.status(rt, cid))["status"] == "done":
                break
        elapsed = time.perf_counter() - t
        c = await counts(rt, cid)
        total = sum(c.values())
        import sqlalchemy as sa

        from bot.store.models import Delivery

        async with rt.db.session() as s:  # the dispatcher's own span: first claim to last outcome written
            first, last = (await s.execute(sa.select(sa.func.min(Delivery.claimed_at), sa.func.max(Delivery.updated_at))
                                           .where(Delivery.campaign_id == cid))).one()
        span = (last - first).total_seconds()
        print(f"dispatcher span (first claim to last outcome): {span:.1f} s = {total / span:.0f} deliveries/s")
        fakes.send_signal(__import__("signal").SIGUSR1)
        await asyncio.sleep(0.5)
        tpl, users, texts, phones = map(int, counts_file.read_text().split())
        print(f"dispatch: {total} deliveries in {elapsed:.1f} s = {total / elapsed:.0f}/s "
              f"(WeChat {c['sent'] and tpl}, SMS {texts}); worker peak RSS {peak} MB (at start {base_rss[0]} MB)")
        print(f"exactly once: {tpl} template messages to {users} openids, {texts} SMS to {phones} phones; "
              f"statuses {c}")
    finally:
        worker.terminate()
        fakes.terminate()
        worker.wait(15)
        fakes.wait(15)
        counts_file.unlink(missing_ok=True)
        await rt.jobs.broker.shutdown()
        await rt.db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--owners", type=int, default=100_000)
    parser.add_argument("--wechat-share", type=float, default=0.8)
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes:
        serve_fakes()
        return
    asyncio.run(run(args.owners, args.wechat_share))


if __name__ == "__main__":
    main()
