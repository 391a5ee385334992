"""The monthly report (客服月报) over a year of data for 50,000 households, on PostgreSQL.

    .venv/bin/python bench/monthly_report.py            # load the data (about 2–4 minutes), then time
    .venv/bin/python bench/monthly_report.py --reuse    # time again on the data already loaded
    .venv/bin/python bench/monthly_report.py --resume-at messages   # carry on a load that failed there

Loads, with ``INSERT … SELECT generate_series`` in the database (no ORM loops): 5 projects × 50
buildings × 200 houses = 50,000 houses with one owner, identity and conversation each; 200,000 tickets
over 2026 with their timelines (dispatched, done, closed, reworks); 2,000,000 chat messages; 100,000
survey responses (repair callbacks and periodic surveys); certificate-collection and notice campaigns
with their deliveries; certificate records; unanswered questions. Then it times, for November 2026, the
report's queries and each file (``reports.monthly.build`` + ``reports.xlsx/pdf.render``), for all
projects and for one, and ``yezhu report monthly`` end to end as a user runs it. Goal: < 10 s per file.
Figures: docs/PERFORMANCE.md. The database ``yezhu_bench_report`` belongs to this script (dropped and
re-created unless ``--reuse``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "yezhu_bench_report"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"

YEAR = "timestamptz '2026-01-01 00:00+08'"
LOAD = [
    ("projects", """INSERT INTO project (id, code, name, settings, created_at)
        SELECT g, 'p' || g, (ARRAY['翠湖花园','锦绣华庭','滨江一号','云栖苑','南山里'])[g], '{}', now()
        FROM generate_series(1, 5) g"""),
    ("buildings", """INSERT INTO building (project_id, name) SELECT p, b::text
        FROM generate_series(1, 5) p, generate_series(1, 50) b"""),
    ("houses", """INSERT INTO house (building_id, unit, room, handover_date)
        SELECT b.id, (1 + (g - 1) / 100)::text, (100 * (1 + (g - 1) % 25 / 4) + 1 + (g - 1) % 4)::text || '-' || g,
               CASE WHEN random() < 0.05 THEN NULL ELSE date '2021-06-01' + (random() * 2000)::int END
        FROM building b, generate_series(1, 200) g ORDER BY b.id, g"""),
    ("owners", """INSERT INTO owner (id, name, phone, consent_service, consent_marketing, sms_opt_out, created_at)
        SELECT h.id, '业主' || h.id, '139' || lpad(h.id::text, 8, '0'), true, false, random() < 0.02, now() FROM house h"""),
    ("owner_house", "INSERT INTO owner_house (owner_id, house_id, relation) SELECT id, id, 'owner' FROM house"),
    ("staff", """INSERT INTO staff_user (username, display_name, role, password_hash, on_duty, active, created_at)
        SELECT 'eng' || g, '工程师' || g, 'engineer', '-', false, true, now() FROM generate_series(1, 40) g"""),
    ("identities", """INSERT INTO identity (id, channel, account, external_id, owner_id, subscribed, created_at)
        SELECT id, 'wechat', 'default', 'oB' || id, id, true, now() FROM owner"""),
    ("conversations", """INSERT INTO conversation (id, identity_id, owner_id, mode, priority, state, updated_at, created_at)
        SELECT id, id, id, 'closed', 0, '{}', now(), now() FROM owner"""),
    ("tickets", f"""INSERT INTO ticket (id, number, kind, category, project_id, house_id, owner_id, conversation_id,
            description, priority, status, assignee_id, due_at, origin, rework_count, closed_at, created_at,
            updated_at, media)
        SELECT g, 'B' || g, k.kind,
               CASE WHEN k.kind = 'repair' THEN (ARRAY['plumbing','drainage','electrical','door_window','wall_floor',
                    'hvac','elevator','other'])[1 + (r2 * 8)::int % 8]
                    WHEN k.kind = 'complaint' THEN (ARRAY['noise','staff_attitude','fees','parking','hygiene',
                    'security'])[1 + (r2 * 6)::int % 6] END,
               (h - 1) / 10000 + 1, h, h, CASE WHEN r3 < 0.7 THEN h END,
               '卫生间地漏返水，麻烦尽快安排', CASE WHEN k.kind = 'complaint' AND r3 < 0.05 THEN 'serious'
                    WHEN k.kind = 'complaint' AND r3 < 0.07 THEN 'group' ELSE 'normal' END,
               CASE WHEN r4 < 0.93 THEN 'closed' ELSE 'dispatched' END, 1 + (r2 * 40)::int % 40,
               c + interval '48 hours', CASE WHEN r3 < 0.7 THEN NULL ELSE 'phone' END, 0,
               CASE WHEN r4 < 0.93 THEN c + (6 + r4 * 60) * interval '1 hour' END, c, c, '[]'
        FROM (SELECT g, 1 + (random() * 49999)::int AS h, random() AS r1, random() AS r2, random() AS r3,
                     random() AS r4, {YEAR} + random() * interval '365 days' AS c
              FROM generate_series(1, 200000) g) x
        CROSS JOIN LATERAL (SELECT CASE WHEN r1 < 0.6 THEN 'repair' WHEN r1 < 0.75 THEN 'complaint'
                                        WHEN r1 < 0.95 THEN 'inquiry' ELSE 'certificate' END AS kind) k"""),
    ("ticket events", """INSERT INTO ticket_event (ticket_id, kind, data, actor, at)
        SELECT id, 'created', '{}'::json, 'bot', created_at FROM ticket
        UNION ALL SELECT id, 'dispatched', '{}', 'staff:kefu', created_at + (0.2 + random() * 6) * interval '1 hour' FROM ticket
        UNION ALL SELECT id, 'done', '{}', 'staff:eng', closed_at - interval '3 hours' FROM ticket WHERE closed_at IS NOT NULL
        UNION ALL SELECT id, 'closed', '{}', 'staff:kefu', closed_at FROM ticket WHERE closed_at IS NOT NULL
        UNION ALL SELECT id, 'reopened', '{}', 'owner', closed_at - interval '2 hours' FROM ticket
                  WHERE kind = 'repair' AND closed_at IS NOT NULL AND id % 20 = 0"""),
    ("messages", f"""INSERT INTO message (conversation_id, direction, channel, account, channel_msg_id, kind, text, media,
            author, attempts, at)
        SELECT 1 + (g::bigint * 7919) % 50000, CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END, 'wechat', 'default', 'm' || g,
               'text', '物业费怎么交', '{{}}', CASE WHEN g % 2 = 0 THEN NULL WHEN g % 41 = 1 THEN 'staff:kefu' ELSE 'bot' END,
               0, {YEAR} + (g % 1000000) * interval '31.536 seconds'
        FROM generate_series(1, 2000000) g"""),
    ("hand-overs", f"""INSERT INTO conversation_event (conversation_id, kind, data, actor, at)
        SELECT 1 + (random() * 49999)::int, 'hand_over', '{{}}', 'bot', {YEAR} + random() * interval '365 days'
        FROM generate_series(1, 60000)"""),
    ("survey templates", """INSERT INTO survey_template (id, code, name, kind, items, active, updated_at, created_at) VALUES
        (1, 'periodic', '居住体验调查', 'periodic', '[{"code":"overall","area":"客户服务","type":"score","text":"总体"},
          {"code":"rebuy","area":"销售服务","type":"score","text":"再次购买"},{"code":"recommend","area":"规划设计","type":"score","text":"推荐"},
          {"code":"quality","area":"工程质量","type":"score","text":"质量"},{"code":"estate","area":"物业管理","type":"score","text":"物业"}]', true, now(), now()),
        (2, 'repair', '报修回访', 'repair', '[{"code":"overall","area":"物业管理","type":"score","text":"总体"},
          {"code":"timeliness","area":"物业管理","type":"score","text":"及时"},{"code":"result","area":"工程质量","type":"score","text":"效果"},
          {"code":"attitude","area":"客户服务","type":"score","text":"态度"},{"code":"tidiness","area":"物业管理","type":"score","text":"整洁"}]', true, now(), now())"""),
    ("survey responses", """INSERT INTO survey_response (template_id, owner_id, ticket_id, kind, project_id, house_id, status,
            channel, source, due_at, invited_at, completed_at, category, engineer_id, scores, answers, created_at)
        SELECT CASE WHEN p THEN 1 ELSE 2 END, t.owner_id, CASE WHEN p THEN NULL ELSE t.id END,
               CASE WHEN p THEN 'periodic' ELSE 'repair' END, t.project_id, t.house_id,
               CASE WHEN s < 0.85 THEN 'complete' WHEN s < 0.95 THEN 'expired' ELSE 'invited' END,
               'wechat', 'bot', t.closed_at + interval '1 day', t.closed_at + interval '1 day',
               CASE WHEN s < 0.85 THEN t.closed_at + interval '2 days' END,
               CASE WHEN p THEN NULL ELSE t.category END, CASE WHEN p THEN NULL ELSE t.assignee_id END,
               CASE WHEN s >= 0.85 THEN '{}'::json WHEN p THEN json_build_object('overall', 1 + (s * 1000)::int % 5,
                    'rebuy', 1 + (s * 777)::int % 5, 'recommend', 2 + (s * 555)::int % 4, 'quality', 1 + (s * 333)::int % 5,
                    'estate', 3 + (s * 91)::int % 3)
                    ELSE json_build_object('overall', 2 + (s * 1000)::int % 4, 'timeliness', 1 + (s * 777)::int % 5,
                    'result', 3 + (s * 555)::int % 3, 'attitude', 4 + (s * 333)::int % 2, 'tidiness', 1 + (s * 91)::int % 5) END,
               '{}', t.closed_at
        FROM (SELECT id, owner_id, project_id, house_id, closed_at, category, assignee_id, random() AS s,
                     random() < 0.2 AS p
              FROM ticket WHERE closed_at IS NOT NULL AND kind IN ('repair', 'complaint') ORDER BY id LIMIT 100000) t"""),
    ("campaigns", f"""INSERT INTO campaign (id, name, kind, text, status, project_id, audience, params, channels, urgent,
            created_at, updated_at)
        SELECT g, CASE WHEN g <= 12 THEN '第' || g || '批办证通知' ELSE '停水通知' || g END,
               CASE WHEN g <= 12 THEN 'certificate_collection' ELSE 'outage' END, '…', 'done', 1 + g % 5, '{{}}',
               '{{}}', '["wechat","sms"]', false, {YEAR} + (g % 12) * interval '30 days', now()
        FROM generate_series(1, 36) g"""),
    ("deliveries", """INSERT INTO delivery (campaign_id, owner_id, house_id, channel, idempotency_key, status, attempts,
            sent_at, delivered_at, acknowledged_at, created_at, updated_at)
        SELECT c.id, h.id, h.id, 'wechat', c.id || ':' || h.id,
               CASE WHEN r < 0.03 THEN 'failed' WHEN r < 0.4 THEN 'acknowledged' ELSE 'delivered' END, 1,
               CASE WHEN r >= 0.03 THEN c.created_at + interval '1 hour' END,
               CASE WHEN r >= 0.03 THEN c.created_at + interval '2 hours' END,
               CASE WHEN r >= 0.03 AND r < 0.4 THEN c.created_at + interval '1 day' END, c.created_at, now()
        FROM campaign c JOIN LATERAL (SELECT id, random() AS r FROM house
                                      WHERE (id - 1) / 10000 + 1 = c.project_id AND id % 7 = c.id % 7) h ON true"""),
    ("certificate records", """INSERT INTO certificate_record (house_id, status, collected_at, proxy_letter, id_checked,
            reminder_count, created_at)
        SELECT d.house_id, 'collected', d.created_at + (1 + random() * 60) * interval '1 day', false, true, 0, now()
        FROM (SELECT DISTINCT ON (house_id) house_id, d.created_at FROM delivery d JOIN campaign c ON c.id = d.campaign_id
              WHERE c.kind = 'certificate_collection' ORDER BY house_id, d.id) d WHERE random() < 0.7"""),
    ("unanswered questions", f"""INSERT INTO unanswered_question (text, project_code, resolved, created_at)
        SELECT '问题' || (g % 300) || '：能不能开发票', 'p' || (1 + g % 5), g % 9 = 0,
               {YEAR} + random() * interval '365 days' FROM generate_series(1, 20000) g"""),
]


async def load(resume_at: str | None = None) -> None:
    import asyncpg

    from bot.store.db import Database

    steps = LOAD
    if resume_at is None:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {DB_NAME}")
        finally:
            await admin.close()
        db = Database(DATABASE_URL)
        await db.migrate()
        await db.close()
    else:  # a load that failed at this step: carry on from it (its statement wrote nothing)
        steps = LOAD[[name for name, _ in LOAD].index(resume_at):]
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute("SELECT setseed(0.42)")
        # The search indexes (pg_trgm, bigrams) are dropped for the load and built once after it.
        indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND "
                                   "(indexdef LIKE '%gin%')")
        for row in indexes:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        for name, sql in steps:
            started = time.monotonic()
            status = await conn.execute(sql)
            print(f"  {name:<22} {status.split()[-1]:>10} rows  {time.monotonic() - started:6.1f} s", flush=True)
        started = time.monotonic()
        for row in indexes:
            await conn.execute(row["indexdef"])
        for table in ("project", "owner", "identity", "conversation", "ticket", "campaign", "survey_template"):
            await conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        await conn.execute("ANALYZE")
        print(f"  indexes + analyze            {time.monotonic() - started:6.1f} s", flush=True)
    finally:
        await conn.close()


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend on this machine has used (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_in_process(month: str, project: str | None) -> list[tuple[str, float, int]]:
    """Wall time, and the CPU it took: this process's and its PostgreSQL backend's (read from /proc;
    parallel query workers are switched off for the session so the backend does all of the database's
    work). On a machine shared with other work the wall time grows with the load; the CPU does not."""
    import sqlalchemy as sa

    from bot.store.db import Database
    from reports import monthly, pdf, xlsx
    from reports.period import Month

    out = []
    db = Database(DATABASE_URL)
    try:
        for fmt, render in (("xlsx", xlsx.render), ("pdf", pdf.render)):
            started, cpu = time.monotonic(), time.process_time()
            async with db.session() as s:
                await s.execute(sa.text("SET max_parallel_workers_per_gather = 0"))
                pid = (await s.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
                db_cpu = backend_cpu(pid)
                found = await monthly.find_project(s, project)
                report = await monthly.build(s, Month.parse(month), found)
                db_cpu = backend_cpu(pid) - db_cpu
            queried = time.monotonic() - started
            body = render(report)
            own = time.process_time() - cpu
            out.append((f"{fmt} ({project or 'all projects'})", time.monotonic() - started, len(body)))
            print(f"  {fmt:<4} {project or 'all':<4} wall: queries {queried:5.2f} s, with the file {time.monotonic() - started:5.2f} s;"
                  f" CPU: PostgreSQL {db_cpu:4.2f} s + this process {own:4.2f} s = {db_cpu + own:4.2f} s; "
                  f"{len(body) // 1024} KB; load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        await db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="time on the data already loaded")
    parser.add_argument("--resume-at", metavar="STEP", help="carry on a failed load from this step")
    parser.add_argument("--month", default="2026-11")
    args = parser.parse_args()
    if not args.reuse:
        print("loading a year of data for 50,000 households …", flush=True)
        started = time.monotonic()
        asyncio.run(load(args.resume_at))
        print(f"loaded in {time.monotonic() - started:.0f} s", flush=True)
    print(f"report for {args.month} (in process: queries + file):", flush=True)
    asyncio.run(time_in_process(args.month, None))
    asyncio.run(time_in_process(args.month, "p1"))
    print("`yezhu report monthly` end to end (process start, queries, file):", flush=True)
    env = {**os.environ, "YEZHU_DATABASE_URL": DATABASE_URL}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("xlsx", "pdf"):
            out = Path(tmp) / f"report.{suffix}"
            started = time.monotonic()
            subprocess.run([str(ROOT / ".venv/bin/yezhu"), "report", "monthly", "--month", args.month, "--out", str(out)],
                           check=True, env=env, capture_output=True)
            print(f"  {suffix:<4} {time.monotonic() - started:5.2f} s  ({out.stat().st_size // 1024} KB), "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
