"""Shared fixtures: databases (SQLite and PostgreSQL), Redis, and the real aiohttp app.

Outside CI a test that needs PostgreSQL or Redis skips, with the reason, when the service is absent;
with ``CI=true`` it fails instead (the services must be there: .ci/run starts them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from bot.runtime import RUNTIME
from bot.settings import Settings
from bot.store.db import upgrade
from bot.store.models import Base

CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("YEZHU_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("YEZHU_TEST_REDIS", "redis://127.0.0.1:6379/15")
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
"""``gw0``, ``gw1``… in a worker of pytest-xdist (``./scripts/test`` runs two), "" in a plain pytest."""


def worker_redis_url(url: str, worker: str) -> str:
    """Each xdist worker empties its own Redis database: worker ``gwN`` uses the configured database
    minus N (15 and 14 by default; YEZHU_TEST_REDIS=redis://…/11 gives 11 and 10)."""
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    db = parts.path.strip("/")
    number = int(db) if db.isdigit() else 0
    return urlunsplit(parts._replace(path=f"/{(number - int(worker[2:])) % 16}"))


REDIS_URL = worker_redis_url(REDIS_URL, XDIST_WORKER)
API_TOKEN = "test-token"


RUN_TOGETHER = ("tests/test_quickstart.py",)
"""Modules whose tests build on each other in order (one fresh clone and server for the module): one
xdist worker runs each of them whole. Their ``xdist_group`` mark says the same, but xdist's own grouping
rewrites node ids, which pytest 9.2 no longer lets it do (pytest-xdist issue 1386), so the scheduler
below groups them by module."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (./scripts/test): test by test to whichever worker is free, RUN_TOGETHER
    modules and xdist groups whole, and the larger units first (xdist's order: most tests first)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Scheduler(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in RUN_TOGETHER else str(super()._split_scope(nodeid))

    return Scheduler(config, log)


def unavailable(service: str, reason: str) -> None:
    message = f"{service} is not available ({reason})"
    if CI:
        pytest.fail(message + " — CI=true: services must be running (.ci/run starts them)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("YEZHU_") and not key.startswith("YEZHU_TEST_"):
            monkeypatch.delenv(key)


# --- PostgreSQL ---------------------------------------------------------------------------------


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def _pg_admin(statement: str) -> None:
    import asyncpg

    dsn = PG_ADMIN_URL.replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Any:
    """A fresh PostgreSQL database for this test session, migrated to head; dropped at the end."""
    name = f"yezhu_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        run_sync(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        unavailable("PostgreSQL", f"{type(exc).__name__}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    run_sync(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def truncate_pg(url: str) -> None:
    """Empty every table and restart every sequence, as ``TRUNCATE … RESTART IDENTITY CASCADE`` of all
    the tables would (every sequence belongs to a table's id): rows deleted from the tables that have
    any, which takes milliseconds where TRUNCATE took most of a second (a new file for each table and
    index)."""
    import asyncpg

    tables = Base.metadata.sorted_tables
    conn = await asyncpg.connect(_dsn(url))
    try:
        row = await conn.fetchrow(
            "SELECT " + ", ".join(f'EXISTS (SELECT 1 FROM "{t.name}") AS "{t.name}"' for t in tables))
        sequences = await conn.fetch(
            "SELECT sequencename, start_value FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL")
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # no foreign-key checks
            for table in reversed(tables):
                if row[table.name]:
                    await conn.execute(f'DELETE FROM "{table.name}"')
            for seq in sequences:
                await conn.execute(f"SELECT setval('\"{seq['sequencename']}\"', {seq['start_value']}, false)")
    finally:
        await conn.close()


Snapshot = dict[str, tuple[list[str], list[Any], str]]
"""table -> (column names, rows as asyncpg records, a digest of the table's content)."""


async def _digests(conn: Any) -> dict[str, str]:
    """A digest of every table's content, in one round trip (milliseconds for the demo data)."""
    query = " UNION ALL ".join(
        f"SELECT '{t.name}' AS name, md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) AS digest "
        f'FROM "{t.name}" x' for t in Base.metadata.sorted_tables)
    return {r["name"]: r["digest"] for r in await conn.fetch(query)}


async def snapshot_pg(url: str) -> Snapshot:
    """Every table's rows, to be put back with :func:`restore_pg`."""
    import asyncpg

    conn = await asyncpg.connect(_dsn(url))
    try:
        digests = await _digests(conn)
        snapshot: Snapshot = {}
        for table in Base.metadata.sorted_tables:
            records = await conn.fetch(f'SELECT * FROM "{table.name}"')
            columns = list(records[0].keys()) if records else []
            snapshot[table.name] = (columns, [tuple(r) for r in records], digests[table.name])
        return snapshot
    finally:
        await conn.close()


async def restore_pg(url: str, snapshot: Snapshot) -> None:
    """Put a snapshot back: only the tables whose content changed since the snapshot (and the tables
    that reference them) are emptied and copied back; sequences continue after the ids."""
    import asyncpg

    tables = Base.metadata.sorted_tables
    conn = await asyncpg.connect(_dsn(url))
    try:
        digests = await _digests(conn)
        stale = {t.name for t in tables if digests[t.name] != snapshot[t.name][2]}
        for table in tables:  # sorted: a table comes after every table it references
            if any(fk.column.table.name in stale for fk in table.foreign_keys):
                stale.add(table.name)
        if not stale:
            return
        async with conn.transaction():
            for table in reversed(tables):
                if table.name in stale:
                    await conn.execute(f'DELETE FROM "{table.name}"')
            for table in tables:
                if table.name not in stale:
                    continue
                columns, records, _ = snapshot[table.name]
                if records:
                    await conn.copy_records_to_table(table.name, records=records, columns=columns)
                pk = list(table.primary_key.columns)
                if len(pk) == 1 and isinstance(pk[0].type, sa.Integer) and pk[0].autoincrement in (True, "auto"):
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', '{pk[0].name}'), "
                        f"coalesce((SELECT max(\"{pk[0].name}\") FROM \"{table.name}\"), 0) + 1, false)")
    finally:
        await conn.close()


async def _pg_is_empty(url: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url))
    try:
        return not await conn.fetchval(
            "SELECT " + " OR ".join(f'EXISTS (SELECT 1 FROM "{t.name}")' for t in Base.metadata.sorted_tables))
    finally:
        await conn.close()


_PG_DEMO: dict[tuple[str, int, int, int], Snapshot] = {}
"""The demo data as loaded once per PostgreSQL database (and password-hashing cost) in this process."""


async def load_demo_data(db: Any, url: str) -> None:
    """``load_demo(db, admin_password="admin-pass")``. On PostgreSQL the rows of the first load into an
    empty database are kept, and a later load into an empty database copies them back: the same rows
    and sequences in milliseconds instead of seconds (password hashes, 2,592 houses)."""
    from bot import security
    from bot.demo import load_demo

    if not url.startswith("postgresql"):
        await load_demo(db, admin_password="admin-pass")
        return
    hasher = security._hasher
    key = (url, hasher.time_cost, hasher.memory_cost, hasher.parallelism)
    empty = await _pg_is_empty(url)
    if empty and key in _PG_DEMO:
        await restore_pg(url, _PG_DEMO[key])
        return
    await load_demo(db, admin_password="admin-pass")
    if empty:
        _PG_DEMO[key] = await snapshot_pg(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (much faster than migrating per test)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def sqlite_demo_template(sqlite_template: Path) -> Path:
    """The migrated template with the demo data loaded (staff admin's password: admin-pass)."""
    from bot.demo import load_demo
    from bot.store.db import Database

    path = sqlite_template.parent / "demo.db"
    shutil.copy(sqlite_template, path)

    async def load() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await load_demo(db, admin_password="admin-pass")
        await db.close()

    run_sync(load())
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "yezhu.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even while an event loop runs in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    run_sync(truncate_pg(pg_database))
    return pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test on both databases (DESIGN.md: the persistence tests run on both)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


# --- Redis --------------------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The worker's Redis database (REDIS_URL), emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        unavailable("Redis", f"{type(exc).__name__}: {exc}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


# --- the app ------------------------------------------------------------------------------------

WECHAT = {
    "wechat_token": "yezhutoken",
    "wechat_app_id": "wx0123456789abcdef",
    "wechat_app_secret": "secret-for-tests",
}
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def make_settings(**overrides: Any) -> Settings:
    # No cron ticks in tests (a sweep at a minute boundary would act in the middle of a test); the
    # scheduled jobs are called directly where they are tested (tests/sms/).
    # WeChat's API is unreachable here: a test that sends without its own fake server gets "connection
    # refused" at once from a closed local port, not a DNS failure and its retries at every teardown.
    values: dict[str, Any] = {"api_token": API_TOKEN, **WECHAT, "job_retry_base": 0.01, "scheduler": False,
                              "wechat_api_base": "http://127.0.0.1:9", "wechat_retry_base": 0.001}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


YezhuFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def yezhu(aiohttp_client: Any, sqlite_template: Path, sqlite_demo_template: Path, tmp_path: Path) -> YezhuFactory:
    """``client = await yezhu(**settings)``: the real app on a migrated database.

    By default a copy of the SQLite demo database; pass ``database_url`` (e.g. the ``pg_url`` fixture)
    to run on PostgreSQL, where ``demo=True`` loads the demo data.
    """
    from bot.app import create_app

    async def make(*, demo: bool = True, **overrides: Any) -> TestClient[Any, Any]:
        if "database_url" not in overrides:
            path = tmp_path / f"yezhu-{uuid.uuid4().hex[:6]}.db"
            shutil.copy(sqlite_demo_template if demo else sqlite_template, path)
            overrides["database_url"] = f"sqlite+aiosqlite:///{path}"
            demo = False
        app = create_app(make_settings(**overrides))
        client = await aiohttp_client(app)
        if demo:
            await load_demo_data(app[RUNTIME].db, overrides["database_url"])
            await app[RUNTIME].knowledge.reload()  # the app started before the demo knowledge base existed
        return client

    return make


def auth(token: str = API_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Collect garbage once more before pytest's final unraisable-exception check.

    A database connection still referenced by a cancelled background task at the very end of the run
    would otherwise be finalised during pytest's own teardown, where a ResourceWarning turns a green
    run red. Leaks inside a test are still caught by that test (warnings are errors).
    """
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
