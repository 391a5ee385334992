"""SQLite: FTS5 trigram indexes for the console's search box (a no-op on PostgreSQL)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:10:00

In the embedded mode the console's search scanned ``ticket``, ``owner`` and ``message`` with
``LIKE '%…%'``. This adds one FTS5 table per searched table, tokenized into character trigrams
(``tokenize='trigram'``, SQLite 3.34+; Chinese works as on PostgreSQL's pg_trgm, a trigram being any
three characters). Each is an external-content index (``content=``: the text is not stored twice),
filled from the existing rows (``'rebuild'``) and kept in step by AFTER INSERT / UPDATE OF / DELETE
triggers. The table names are listed in ``bot.store.fts`` (Alembic's comparison leaves them out).

On a SQLite older than 3.34 (no trigram tokenizer) nothing is created and search keeps scanning.
The DDL is written out here, not generated from ``bot.store.fts``: a migration must not change with
later code.
"""

import sqlite3
from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {  # FTS table: (content table, columns)
    "ticket_fts": ("ticket", ("description", "location", "number", "contact_phone")),
    "owner_fts": ("owner", ("name", "phone")),
    "message_fts": ("message", ("text",)),
}


def _statements(fts: str, table: str, columns: tuple[str, ...]) -> list[str]:
    cols = ", ".join(columns)
    new = ", ".join(f"new.{c}" for c in columns)
    old = ", ".join(f"old.{c}" for c in columns)
    # An external-content FTS5 table forgets a row by being told the values it indexed ('delete').
    forget = f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old});"
    learn = f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new});"
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{table}', content_rowid='id', tokenize='trigram')",
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN {learn} END",
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN {forget} END",
        f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {cols} ON {table} BEGIN {forget} {learn} END",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",  # the rows already there
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or sqlite3.sqlite_version_info < (3, 34):
        return
    for fts, (table, columns) in INDEXES.items():
        for statement in _statements(fts, table, columns):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for fts in INDEXES:
        for trigger in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS {fts}_{trigger}")
        op.execute(f"DROP TABLE IF EXISTS {fts}")
