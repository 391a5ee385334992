"""SQLite's full-text indexes for the console's search box (the embedded mode), by name.

Migration 0008 creates three FTS5 tables with the ``trigram`` tokenizer (SQLite 3.34+), each an
*external-content* index of one table's searchable columns, kept in step by triggers:

* ``ticket_fts`` — ``ticket``'s description, location, number and contact phone;
* ``owner_fts`` — ``owner``'s name and phone;
* ``message_fts`` — ``message``'s text.

They are not models: SQLAlchemy has no FTS5 table type, and each one brings shadow tables of its own
(``ticket_fts_data``, ``_idx``, ``_docsize``, ``_config``). :func:`include_name` keeps all of them out
of Alembic's comparison of the database with the models (``migrations/env.py`` and the test that the
migrations build exactly the models' schema). On PostgreSQL none of them exists (pg_trgm serves search).

A later migration that rebuilds ``ticket``, ``owner`` or ``message`` with ``batch_alter_table`` on
SQLite drops the table's triggers with it: it must recreate them (the search tests check they exist).
"""

from __future__ import annotations

FTS_TABLES: dict[str, tuple[str, ...]] = {
    "ticket_fts": ("description", "location", "number", "contact_phone"),
    "owner_fts": ("name", "phone"),
    "message_fts": ("text",),
}
"""Each FTS5 table and the columns it indexes (named as in its content table, ``ticket_fts`` → ``ticket``)."""

SHADOW_SUFFIXES = ("_data", "_idx", "_content", "_docsize", "_config")


def is_fts(name: str | None) -> bool:
    """Is this table one of the search indexes or one of their FTS5 shadow tables?"""
    if not name:
        return False
    return any(name == table or name in {table + suffix for suffix in SHADOW_SUFFIXES} for table in FTS_TABLES)


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Alembic's ``include_name`` hook: leave the FTS5 tables out of autogenerate's comparison."""
    return not (type_ == "table" and is_fts(name))
