"""The embedded mode's hot-path writer (bot/store/sqlite_writer.py): what it commits is stored, what
fails is rolled back alone, a duplicate is told as the unique constraint it is, and a write lock held by
another connection (the console, a flow's session) makes it wait without blocking the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from bot.store.sqlite_writer import SqliteWriter


@pytest.fixture
def path(tmp_path: Path) -> str:
    db = str(tmp_path / "w.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, msg_id TEXT UNIQUE, text TEXT)")
    conn.close()
    return db


def insert(msg_id: str, text: str):  # type: ignore[no-untyped-def]
    return lambda c: c.execute(
        "INSERT INTO m (msg_id, text) VALUES (?, ?) RETURNING id", (msg_id, text)
    ).fetchone()[0]


def stored(path: str) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT msg_id, text FROM m ORDER BY id"))


async def test_commits_and_rolls_back_each_unit_alone(path: str) -> None:
    writer = SqliteWriter(path)
    assert await writer.run(insert("1", "物业费怎么交")) == 1
    with pytest.raises(IntegrityError):  # the same MsgId again: the engine's "stored already"
        await writer.run(insert("1", "again"))

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO m (msg_id, text) VALUES ('2', 'half')")
        raise RuntimeError("the unit failed after its first statement")

    with pytest.raises(RuntimeError):
        await writer.run(half_then_fail)
    assert await writer.run(insert("3", "谢谢")) == 2
    writer.close()
    assert stored(path) == [("1", "物业费怎么交"), ("3", "谢谢")]  # nothing of the failed units


async def test_waits_for_another_writer_without_blocking_the_loop(path: str) -> None:
    writer = SqliteWriter(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    other.execute("INSERT INTO m (msg_id, text) VALUES ('a', 'console')")
    ticks = 0

    async def loop_alive() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    ticker = asyncio.ensure_future(loop_alive())
    pending = asyncio.ensure_future(writer.run(insert("b", "owner")))
    await asyncio.sleep(0.1)
    assert not pending.done() and ticks > 10  # waiting, and the loop kept running meanwhile
    other.execute("COMMIT")
    assert await pending == 2
    ticker.cancel()
    other.close()
    writer.close()
    assert stored(path) == [("a", "console"), ("b", "owner")]
