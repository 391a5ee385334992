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
API_TOKEN = "test-token"


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
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


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
    """Redis database 15, emptied before and after the test."""
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
    from bot.demo import load_demo

    async def make(*, demo: bool = True, **overrides: Any) -> TestClient[Any, Any]:
        if "database_url" not in overrides:
            path = tmp_path / f"yezhu-{uuid.uuid4().hex[:6]}.db"
            shutil.copy(sqlite_demo_template if demo else sqlite_template, path)
            overrides["database_url"] = f"sqlite+aiosqlite:///{path}"
            demo = False
        app = create_app(make_settings(**overrides))
        client = await aiohttp_client(app)
        if demo:
            await load_demo(app[RUNTIME].db, admin_password="admin-pass")
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
