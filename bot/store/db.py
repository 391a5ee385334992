"""The async database handle: one engine and session factory per process.

SQLite (aiosqlite) is the embedded default and PostgreSQL (asyncpg) the production database; both run
the same Alembic migrations (``yezhu migrate``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.store.sqlite_writer import SqliteWriter, sqlite_path

log = logging.getLogger("yezhu.store")

MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers go on while the single writer commits; foreign keys are off by default in SQLite;
    # busy_timeout makes a second writer wait instead of failing with "database is locked".
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        # hide_parameters: a database error's message would otherwise quote the statement's parameters
        # (owners' message text, phones, openids) into tracebacks and logs.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if url.startswith("sqlite"):
            ensure_sqlite_dir(url)
        else:
            # No pre-ping: it costs a round trip on every checkout (several per message). A connection
            # that died with the server fails one statement, and SQLAlchemy then invalidates the whole
            # pool; recycling keeps connections from outliving server-side idle timeouts.
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        path = sqlite_path(url)
        self.writer: SqliteWriter | None = SqliteWriter(path) if path else None
        """The engine's hot-path writer for a SQLite file (``bot/store/sqlite_writer.py``); None for
        PostgreSQL and in-memory SQLite."""
        self._hot: Any = None
        self.pg: Any = None
        """The engine's hot-path statements on an asyncpg pool of their own (``PgHotPath``,
        ``bot/store/hot_path.py``); None for SQLite."""
        if self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "asyncpg":
            from bot.store.hot_path import PgHotPath

            self.pg = PgHotPath(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self) -> AsyncSession:
        return self.sessions()

    def autocommit(self) -> AsyncConnection:
        """A connection without an explicit transaction (``async with db.autocommit() as c``): each
        statement commits on its own, saving the BEGIN and COMMIT round trips of a one-statement write."""
        return self._autocommit.connect()

    async def warm(self) -> None:
        """Open the hot path's PostgreSQL pool at start-up, so the first message does not pay for it;
        if PostgreSQL does not answer yet, the first message opens it (and answers 503 until it can)."""
        if self.pg is not None:
            try:
                await self.pg.pool()
            except Exception as exc:
                log.warning("the hot path's PostgreSQL pool could not be opened yet: %s", exc)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @property
    def hot(self) -> Any:
        """The hot path's units of work for the writer (``SqliteHotPath``), compiled on first use."""
        if self._hot is None:
            from bot.store.hot_path import SqliteHotPath

            self._hot = SqliteHotPath(self.engine.dialect)
        return self._hot

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.pg is not None:
            await self.pg.close()
        await self.engine.dispose()

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (run in a thread: Alembic's API is sync)."""
        await asyncio.to_thread(upgrade, self.url, revision)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder and the file of a SQLite database readable by their owner only (folder 0700,
    file 0600): the file holds owners' names and phone numbers. SQLite itself would create the file 0644
    and no folder; its ``-wal`` and ``-shm`` files copy the database file's mode. A database file an
    older version left wider is tightened, with one warning in the log (the next start finds it tight).
    A folder that already exists is left as it is: it may be shared (``/srv``, ``/tmp``)."""
    if not url.startswith("sqlite"):
        return
    name = sa.engine.make_url(url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # SQLite takes an empty file as new
    except FileExistsError:
        pass
    except OSError:
        return  # an unwritable folder: SQLite's own error says so when it opens the file
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(0o600)
                log.warning("%s was readable by other users (mode %o); now only by its owner (600)", file, mode)
        except FileNotFoundError:
            continue
        except OSError as exc:  # someone else's file: say so, the database still opens
            log.warning("%s is readable by other users and could not be restricted: %s", file, exc)


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    ensure_sqlite_dir(url)

    command.upgrade(alembic_config(url), revision)
