"""The embedded mode's hot-path writer: its own ``sqlite3`` connection, used on the event loop's thread.

aiosqlite runs every statement -- and every cursor, checkout, rollback-on-return and isolation-level
switch -- as a separate hop to its connection's thread and back: about 30 hops per message on the
engine's hot path, each a wake-up of that thread and, worse, a wait for the GIL held by the busy event
loop (up to the 5 ms switch interval after *every* statement): the second-long tails of issue 16. The
engine's few hot-path statements (accept's append, a turn's load and its write) instead run inline,
each unit of work in one ``BEGIN IMMEDIATE ... COMMIT`` (WAL, ``synchronous=NORMAL``, as the aiosqlite
connections): a commit returned means durably stored, so the engine still gives no acknowledgement or
de-duplication verdict for a message that is not.

Statements are SQLAlchemy constructs compiled once for SQLite (:class:`Compiled`), with SQLAlchemy's own
bind and result processors, so the rows are exactly what the ORM writes and reads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError

log = logging.getLogger("yezhu.store")

T = TypeVar("T")


class Compiled:
    """A SQLAlchemy statement compiled once for SQLite: its SQL text, its positional parameters with
    their bind processors (JSON, ``UTCDateTime``) and, for a SELECT or RETURNING, result processors."""

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        names = list(compiled.positiontup or [])
        processors = compiled._bind_processors
        defaults = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        self.params: list[tuple[str, Callable[[Any], Any] | None, Any]] = [
            (name, processors.get(name), defaults.get(name)) for name in names
        ]
        columns = getattr(stmt, "selected_columns", None)
        if columns is None and getattr(stmt, "_returning", None):
            columns = stmt._returning
        self.keys: list[str] = [c.key for c in columns] if columns is not None else []
        self.results: list[Callable[[Any], Any] | None] = (
            [c.type._cached_result_processor(dialect, None) for c in columns] if columns is not None else []
        )

    def bind(self, values: dict[str, Any]) -> list[Any]:
        out = []
        for name, process, default in self.params:
            value = values.get(name, default)
            out.append(process(value) if process is not None else value)
        return out

    def row(self, raw: Sequence[Any] | None) -> Row | None:
        if raw is None:
            return None
        return Row(self.keys, [p(v) if p is not None else v for p, v in zip(self.results, raw, strict=True)])

    def execute(self, conn: sqlite3.Connection, values: dict[str, Any]) -> sqlite3.Cursor:
        return conn.execute(self.sql, self.bind(values))

    def one(self, conn: sqlite3.Connection, values: dict[str, Any]) -> Row | None:
        return self.row(self.execute(conn, values).fetchone())


class Row:
    """A result row: attribute access by column key, ``_mapping`` as SQLAlchemy's rows have."""

    __slots__ = ("_mapping",)

    def __init__(self, keys: list[str], values: list[Any]) -> None:
        self._mapping = dict(zip(keys, values, strict=True))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, index: int) -> Any:
        return list(self._mapping.values())[index]


class SqliteWriter:
    """The hot path's own ``sqlite3`` connection, used on the event loop's thread.

    ``await writer.run(fn)`` runs ``fn(conn)`` (a unit of work) in a group commit: every unit queued
    during one pass of the event loop runs in one ``BEGIN IMMEDIATE`` ... ``COMMIT``, each inside its
    own savepoint, and its future is resolved after the commit -- its result, or what it raised (its
    savepoint rolled back alone). Messages arriving together share one transaction, so the pages they
    all touch (the message table's last leaf, its indexes, the FTS index) are written to the WAL once.

    A SQLite statement on a local file in WAL mode takes tens of microseconds: running it inline is
    cheaper than any hop to a thread, and a hop costs more than CPU -- the thread must win the GIL back
    from a busy event loop after every statement (``sys.getswitchinterval()``, 5 ms), which is where
    the embedded mode's tail latency came from.

    Never blocks the loop on a lock: the connection has no busy timeout, and while another connection
    (an aiosqlite one: the console, a flow's session) holds the write lock, ``run`` yields to the loop
    and tries again (up to ``busy_wait`` seconds, then the error propagates: the channel answers 503
    and WeChat retries). The WAL is checkpointed in a worker thread, not inside a commit on the loop.
    """

    def __init__(self, path: str, *, busy_wait: float = 10.0, checkpoint_every: int = 500) -> None:
        self.path = path
        self.busy_wait = busy_wait
        self.checkpoint_every = checkpoint_every
        self._conn: sqlite3.Connection | None = None
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future[Any] | None = None
        self._units: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self._waited = 0.0
        self._busy_streak = 0
        self.commits = 0
        self.units = 0
        self.busy_retries = 0

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoint_soon() does it off the loop
        return conn

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` outside a transaction: reads only (each statement sees the latest commit; WAL
        readers never wait for a writer)."""
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect()
        return fn(conn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the next group commit and return its result once committed (or raise
        what it raised: its savepoint was rolled back, the other units of the batch are not affected)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._units.append((fn, future))
        if self._scheduled_on is not loop:  # (a flush scheduled on a loop that closed never runs)
            self._scheduled_on = loop
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """One transaction for every unit queued since the last: ``BEGIN IMMEDIATE``, each unit in its
        own savepoint, ``COMMIT``, then the futures. Runs as a callback of the event loop."""
        self._scheduled_on = None
        units, self._units = self._units, []
        units = [(fn, f) for fn, f in units if not f.cancelled() and not f.get_loop().is_closed()]
        if not units:
            return
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc) and self._waited < self.busy_wait:
                # Another connection writes: try again shortly, the loop goes on meanwhile.
                self.busy_retries += 1
                delay = min(0.0005 * 2 ** min(self._busy_streak, 6), 0.02)
                self._busy_streak += 1
                self._waited += delay
                self._units[:0] = units
                loop = self._scheduled_on = asyncio.get_running_loop()
                loop.call_later(delay, self._flush)
                return
            self._waited, self._busy_streak = 0.0, 0
            for _, future in units:
                if not future.done():
                    future.set_exception(exc)
            return
        self._waited, self._busy_streak = 0.0, 0
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            for fn, future in units:
                conn.execute("SAVEPOINT unit")
                try:
                    outcomes.append((future, True, fn(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO unit")
                    outcomes.append((future, False, _translate(exc)))
                conn.execute("RELEASE unit")
            conn.execute("COMMIT")
        except BaseException as exc:  # the transaction itself failed (I/O error, disk full)
            log.exception("the hot-path transaction failed; %d unit(s) not stored", len(units))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, future in units:
                if not future.done():
                    future.set_exception(_translate(exc))
            return
        for future, ok, value in outcomes:
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        self.commits += 1
        self.units += len(units)
        self._since_checkpoint += len(units)
        if self._since_checkpoint >= self.checkpoint_every:
            self.checkpoint_soon()

    def checkpoint_soon(self) -> None:
        """Copy the WAL back into the database file in a worker thread (PASSIVE: never waits for, nor
        blocks, a writer), unless a checkpoint is already running."""
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._since_checkpoint = 0
        self._checkpoint = asyncio.ensure_future(asyncio.to_thread(_checkpoint, self.path))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None


def _checkpoint(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=1000")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:
        log.warning("SQLite checkpoint failed: %s", exc)
    finally:
        conn.close()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _translate(exc: BaseException) -> BaseException:
    """The errors the engine tells apart, as SQLAlchemy raises them (a unique constraint: IntegrityError)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(None, None, exc)  # type: ignore[arg-type]
    return exc


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL; None for an in-memory database (another connection would not see it)."""
    if not url.startswith("sqlite"):
        return None
    path = sa.engine.make_url(url).database
    return path if path and path != ":memory:" and not path.startswith("file:") else None
