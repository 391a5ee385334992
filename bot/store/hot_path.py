"""The engine's hand-written statements: the hot path of one inbound message in as few round trips as
the database allows (docs/PERFORMANCE.md, "What changed on the hot path").

Built once at import; SQLAlchemy compiles each once and caches it. PostgreSQL gets single statements
with data-modifying CTEs, run in autocommit (atomic on their own, no BEGIN/COMMIT round trips); a SQLite
file gets the same steps as separate statements in one unit of the hot-path writer's group commit
(``SqliteHotPath``, ``bot/store/sqlite_writer.py``), in-memory SQLite in one short aiosqlite
transaction. ``bot/engine.py`` decides which.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState, Mapper, Session
from sqlalchemy.orm.attributes import NO_VALUE, set_committed_value

from bot.conversation import CLOSED
from bot.store.models import Conversation, Identity, Message, Owner

__all__ = ["APPEND", "REPLY", "TURN", "UNCHANGED", "WROTE", "SqliteHotPath", "Unchanged"]


def table(model: type[Any]) -> sa.Table:
    return cast(sa.Table, model.__table__)


def mapper(model: type[Any]) -> Mapper[Any]:
    return cast(Mapper[Any], sa.inspect(model))


class AppendStatements:
    """The fast-path accept statements, built once (their SQL is compiled once and cached)."""

    def __init__(self) -> None:
        conv, ident, message = table(Conversation), table(Identity), table(Message)
        self.columns = [
            "direction", "channel", "account", "channel_msg_id", "kind", "text", "media", "nlu", "attempts", "at",
        ]
        # The conversation only while it is open; it takes the identity's owner once the owner bound.
        self.touch = (
            sa.update(conv)
            .where(conv.c.id == sa.bindparam("p_cid"), conv.c.mode != sa.literal_column(f"'{CLOSED}'"))
            .values(
                last_message_at=sa.bindparam("p_now"),
                updated_at=sa.bindparam("p_now"),
                owner_id=sa.func.coalesce(
                    conv.c.owner_id,
                    sa.select(ident.c.owner_id).where(ident.c.id == sa.bindparam("p_iid")).scalar_subquery(),
                ),
            )
        )
        self.stamp = (
            sa.update(ident).where(ident.c.id == sa.bindparam("p_iid")).values(last_inbound_at=sa.bindparam("p_now"))
        )
        # Parameters are prefixed: an UPDATE would take a parameter named like a column as a new value.
        binds = [sa.bindparam("p_" + k, type_=message.c[k].type) for k in self.columns]
        self.insert = (
            sa.insert(message)
            .from_select(
                ["conversation_id", *self.columns], sa.select(sa.bindparam("p_cid", type_=sa.Integer), *binds)
            )
            .returning(message.c.id)
        )
        # PostgreSQL: all three in one statement, atomic on its own (data-modifying CTEs), so it can
        # run in autocommit without BEGIN and COMMIT round trips.
        touched = self.touch.returning(conv.c.id).cte("touched")
        stamped = self.stamp.where(sa.exists(sa.select(touched.c.id))).cte("stamped")
        self.combined = (
            sa.insert(message)
            .from_select(["conversation_id", *self.columns], sa.select(touched.c.id, *binds))
            .returning(message.c.id)
            .add_cte(stamped)
        )


APPEND = AppendStatements()
REPLY = sa.insert(table(Message)).returning(table(Message).c.id)


class Unchanged:
    """The dialogue state did not change (as opposed to a new state, which may be ``{}``)."""


UNCHANGED = Unchanged()


class TurnStatements:
    """Loading a turn's entities without the ORM's query machinery, and writing a simple turn."""

    def __init__(self) -> None:
        self.models = (Conversation, Identity, Owner)
        self.attrs = [
            [(attr.key, attr.columns[0].name) for attr in mapper(model).column_attrs] for model in self.models
        ]
        conv, ident, owner = (table(m) for m in self.models)
        columns = [
            table.c[column].label(f"{prefix}_{column}")
            for table, prefix, attrs in zip((conv, ident, owner), "cio", self.attrs, strict=True)
            for _, column in attrs
        ]
        message = table(Message)
        handled = sa.select(message.c.handled_at).where(message.c.id == sa.bindparam("p_mid")).scalar_subquery()
        self.load = (
            sa.select(*columns, handled.label("m_handled_at"))
            .select_from(conv.join(ident, ident.c.id == conv.c.identity_id).outerjoin(owner, owner.c.id == ident.c.owner_id))
            .where(conv.c.id == sa.bindparam("p_cid"))
        )
        self.mark_handled = (
            sa.update(message)
            .where(message.c.id == sa.bindparam("p_mid"), message.c.handled_at.is_(None))
            .values(handled_at=sa.bindparam("p_now"))
        )
        self.save_state = (
            sa.update(conv)
            .where(conv.c.id == sa.bindparam("p_cid"))
            .values(state=sa.bindparam("p_state", type_=conv.c.state.type), updated_at=sa.bindparam("p_now"))
        )
        self.reply_columns = [
            "conversation_id", "direction", "channel", "account", "kind", "text", "media", "author", "delivery",
            "attempts", "at", "reply_to", "handoff_at",
        ]
        binds = [sa.bindparam("p_" + k, type_=message.c[k].type) for k in self.reply_columns]
        marked = self.mark_handled.cte("marked")
        self.reply_only = (
            sa.insert(message)
            .from_select(self.reply_columns, sa.select(*binds))
            .returning(message.c.id)
            .add_cte(marked)
        )
        # SQLite (no data-modifying CTEs): the reply alone, beside ``mark_handled`` in one transaction.
        self.reply_insert = (
            sa.insert(message).from_select(self.reply_columns, sa.select(*binds)).returning(message.c.id)
        )
        saved = self.save_state.returning(conv.c.id).cte("saved")
        self.reply_and_state = (
            sa.insert(message)
            .from_select(self.reply_columns, sa.select(*binds).where(sa.exists(sa.select(saved.c.id))))
            .returning(message.c.id)
            .add_cte(marked)
        )

        # A retried webhook: the message's stored replies that no job owns (its request died before
        # answering). Through ix_message_conversation_at: the replies follow the message in its
        # conversation.
        self.unanswered = (
            sa.select(message.c.id, message.c.kind, message.c.text, message.c.media)
            .where(
                message.c.conversation_id == sa.bindparam("p_cid"),
                message.c.id > sa.bindparam("p_mid"),
                message.c.reply_to == sa.bindparam("p_mid"),
                message.c.delivery == sa.literal_column("'reply'"),
            )
            .order_by(message.c.id)
        )

    def entities(self, row: Any) -> tuple[Conversation, Identity, Owner | None]:
        data = row._mapping
        built: list[Any] = []
        for model, prefix, attrs in zip(self.models, "cio", self.attrs, strict=True):
            if data[f"{prefix}_id"] is None:
                built.append(None)  # no owner bound
                continue
            # As the ORM's loader does: a bare instance whose __dict__ holds the loaded values (no
            # constructor, no attribute events, no history).
            obj = mapper(model).class_manager.new_instance()
            obj.__dict__.update({key: data[f"{prefix}_{column}"] for key, column in attrs})
            built.append(obj)
        return built[0], built[1], built[2]

    @staticmethod
    def attach(s: AsyncSession, conv: Conversation, identity: Identity, owner: Owner | None) -> None:
        """Put the entities into the session as persistent and clean, as a query's loader does: each
        gets its identity key and joins the session's identity map. Unlike ``Session.add`` this starts
        no transaction (most turns never use one: a knowledge-base answer) and walks no cascades (about
        100 µs of a turn, measured in docs/PERFORMANCE.md); the session begins its transaction when a
        flow first queries or flushes, as it would after a query."""
        sync = s.sync_session
        for obj in (conv, identity, owner):
            if obj is not None:
                state: InstanceState[Any] = sa.inspect(obj)
                state.key = state.mapper.identity_key_from_instance(obj)
                state.session_id = sync.hash_key
                sync.identity_map.add(state)
        set_committed_value(conv, "identity", identity)
        set_committed_value(identity, "owner", owner)
        if owner is not None and conv.owner_id == owner.id:
            set_committed_value(conv, "owner", owner)
        elif conv.owner_id is None:
            set_committed_value(conv, "owner", None)

    @staticmethod
    def only_state_changed(s: AsyncSession, conv: Conversation) -> dict[str, Any] | Unchanged | None:
        """The new dialogue state if that is all the policy changed (``UNCHANGED`` if not even that);
        None if it did more (wrote through the session, added, deleted, or changed anything else).
        Queries alone do not count: a flow that looked up the owner's houses or last notice and only
        answered still takes the one-statement write (its read transaction is rolled back at close).

        Reads each dirty instance's committed state (the original values of the attributes set since
        the load) instead of computing every attribute's history: an attribute set back to its original
        value is no change; one whose original is unknown counts as changed (the general path then
        writes it, which is always correct)."""
        if s.info.get(WROTE) or s.new or s.deleted:
            return None
        changed: dict[str, Any] | Unchanged = UNCHANGED
        for obj in s.dirty:
            state = sa.inspect(obj)
            for key, original in state.committed_state.items():
                if obj is conv and key == "state":
                    if original is NO_VALUE or original != conv.state:
                        changed = conv.state
                elif original is NO_VALUE or original != state.dict.get(key, NO_VALUE):
                    return None
        return changed


TURN = TurnStatements()

WROTE = "yezhu.wrote"
"""``session.info`` key: the session flushed or executed a statement that is not a SELECT."""


class SqliteHotPath:
    """The same steps as units of work for the embedded mode's writer thread
    (``bot/store/sqlite_writer.py``): plain functions of a ``sqlite3`` connection, run inside the
    writer's transaction, on statements compiled once for SQLite."""

    def __init__(self, dialect: Any) -> None:
        from bot.store.sqlite_writer import Compiled

        self.touch = Compiled(APPEND.touch, dialect)
        self.stamp = Compiled(APPEND.stamp, dialect)
        self.insert = Compiled(APPEND.insert, dialect)
        self.load_turn = Compiled(TURN.load, dialect)
        self.save_state = Compiled(TURN.save_state, dialect)
        self.reply = Compiled(TURN.reply_insert, dialect)
        self.mark_handled = Compiled(TURN.mark_handled, dialect)

    def append(self, conn: Any, params: dict[str, Any]) -> int | None:
        """Accept's fast path: the message id, or None if the conversation was closed meanwhile."""
        if self.touch.execute(conn, params).rowcount == 0:
            return None
        self.stamp.execute(conn, params)
        return cast(int, self.insert.execute(conn, params).fetchone()[0])

    def load(self, conn: Any, params: dict[str, Any]) -> Any:
        row = self.load_turn.one(conn, params)
        if row is None:
            raise LookupError(f"conversation {params['p_cid']} not found")
        return row

    def write_turn(
        self, conn: Any, params: dict[str, Any], state: dict[str, Any] | Unchanged, rows: list[dict[str, Any]]
    ) -> list[int]:
        """The new dialogue state (unless unchanged), the replies, the inbound message marked handled."""
        if not isinstance(state, Unchanged):
            self.save_state.execute(conn, params)
        out_ids = []
        for row in rows:
            values = {"p_" + k: v for k, v in row.items()}
            out_ids.append(cast(int, self.reply.execute(conn, values).fetchone()[0]))
        self.mark_handled.execute(conn, params)
        return out_ids


@sa.event.listens_for(Session, "do_orm_execute")
def _mark_statement(state: Any) -> None:
    """Every statement a flow runs through its session passes here (ORM queries, lazy loads,
    ``session.get``, Core statements): anything but a SELECT (an UPDATE, a DELETE, raw SQL text) means
    the turn wrote, and must commit through the session."""
    if not state.is_select:
        state.session.info[WROTE] = True


@sa.event.listens_for(Session, "after_flush")
def _mark_flush(session: Session, flush_context: Any) -> None:
    """A flush (explicit, or before a query: autoflush) wrote the session's changes."""
    session.info[WROTE] = True


APPLICATION_NAME = "yezhu-hot-path"
"""The hot path's PostgreSQL connections, as ``pg_stat_activity`` shows them."""


class PgHotPath:
    """The same steps for PostgreSQL, on an asyncpg pool of their own (issue 16, production mode).

    Through SQLAlchemy each hot-path statement costs a greenlet switch, a compiled-cache lookup,
    execution events, a connection checkout with its reset, and a cursor adapter: about as much CPU as
    everything else a turn does. Here each step is one statement, compiled once by SQLAlchemy for the
    asyncpg dialect (the same SQL, bind and result processors, and JSON codecs as the ORM's
    connections, so the rows are identical), run by asyncpg straight from a small pool whose
    connections need no reset (every statement runs in autocommit: atomic on its own, data-modifying
    CTEs). A unique violation is raised as SQLAlchemy's ``IntegrityError``, as through the engine; any
    other database error propagates as asyncpg's (the webhook answers 503 and the channel retries)."""

    def __init__(self, engine: Any, *, size: int = 10) -> None:
        from bot.store.sqlite_writer import Compiled

        dialect = engine.dialect
        self.append_stmt = Compiled(APPEND.combined, dialect)
        self.load_stmt = Compiled(TURN.load, dialect)
        self.reply_only = Compiled(TURN.reply_only, dialect)
        self.reply_and_state = Compiled(TURN.reply_and_state, dialect)
        args, kwargs = dialect.create_connect_args(engine.url)
        settings = {"application_name": APPLICATION_NAME, **(kwargs.pop("server_settings", None) or {})}
        self._args, self._kwargs = list(args), {**kwargs, "server_settings": settings}
        self._json = getattr(dialect, "_json_deserializer", None) or json.loads
        self.size = size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _setup(self, conn: Any) -> None:
        """SQLAlchemy's asyncpg JSON codecs (``PGDialect_asyncpg.setup_asyncpg_json_codec``): bind values
        arrive serialised by the columns' bind processors, results are parsed here."""
        loads = self._json
        await conn.set_type_codec(
            "json", encoder=str.encode, decoder=lambda b: loads(b.decode()), schema="pg_catalog", format="binary"
        )
        await conn.set_type_codec(
            "jsonb",
            encoder=lambda s: b"\x01" + s.encode(),
            decoder=lambda b: loads(b[1:].decode()),
            schema="pg_catalog",
            format="binary",
        )

    async def pool(self) -> asyncpg.Pool:
        """The pool, opened on first use (one opening at a time; a failed one is tried again next time)."""
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        *self._args, min_size=1, max_size=self.size, init=self._setup, reset=_no_reset, **self._kwargs
                    )
        return self._pool

    async def _fetchrow(self, stmt: Any, values: dict[str, Any]) -> Any:
        pool = await self.pool()
        try:
            return await pool.fetchrow(stmt.sql, *stmt.bind(values))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise sa.exc.IntegrityError(stmt.sql, None, exc) from exc

    async def append(self, params: dict[str, Any]) -> int | None:
        """Accept's fast path: the message id, or None if the conversation was closed meanwhile."""
        row = await self._fetchrow(self.append_stmt, params)
        return None if row is None else cast(int, row[0])

    async def load(self, params: dict[str, Any]) -> Any:
        row = self.load_stmt.row(await self._fetchrow(self.load_stmt, params))
        if row is None:
            raise LookupError(f"conversation {params['p_cid']} not found")
        return row

    async def write_turn(self, params: dict[str, Any], state: dict[str, Any] | Unchanged, reply: dict[str, Any]) -> int:
        """One reply, the new dialogue state (unless unchanged) and the inbound message marked handled,
        in one statement."""
        stmt = self.reply_only if isinstance(state, Unchanged) else self.reply_and_state
        row = await self._fetchrow(stmt, {**params, **{"p_" + k: v for k, v in reply.items()}})
        if row is None:
            raise LookupError(f"conversation {params['p_cid']} not found")
        return cast(int, row[0])

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def _no_reset(_conn: Any) -> None:
    """The hot path's connections need no reset on release: no transactions, session settings, listeners
    or cursors are ever left on them."""
