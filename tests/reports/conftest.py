"""A database with the hand-computed data set (tests/reports/seed.py), once per module and backend."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_sync, truncate_pg
from tests.console.conftest import fast_argon2  # noqa: F401 (fixture: cheap password hashes)
from tests.console.live import browser, live  # noqa: F401 (fixtures for the browser test)
from tests.reports.seed import seed


async def _seed(url: str) -> dict[str, Any]:
    from bot.store.db import Database

    db = Database(url)
    try:
        async with db.session() as s, s.begin():
            return await seed(s)
    finally:
        await db.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def seeded(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(database url, ids)`` of the October 2026 data set, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("reports") / "seeded.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_database")
        run_sync(truncate_pg(url))
    ids = run_sync(_seed(url))
    yield url, ids
    if request.param == "postgres":
        run_sync(truncate_pg(url))
