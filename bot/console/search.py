"""One search box on every page (``/console/search?q=…``): tickets, owners and conversations.

What the box understands (the way the desk types it on the phone with an owner):

* a ticket number, whole or its start (``BX20261201-0007``, ``bx20261201``);
* a phone, whole (``13800000001``) or its last 3–4 digits (``0001``) — owners, ticket contact phones and
  SMS senders;
* a house, ``3栋2单元501`` or ``3-2-501`` — its owners and its tickets;
* anything else as words in the text: owner names, ticket descriptions and locations, and what owners
  and staff wrote in chats.

Filters narrow the tickets: kind, category, status (or “未关闭”), engineer, project, created between two
dates. On PostgreSQL ``LIKE '%…%'`` is served by pg_trgm GIN indexes (migration 0006; trigrams work on
Chinese characters). On SQLite, the embedded mode, FTS5 tables with the trigram tokenizer do the same
(migration 0008, ``bot.store.fts``): a word or digits of three characters or more are first looked up
there (``MATCH`` of the phrase), and the same ``LIKE`` as on PostgreSQL then decides, so both paths
return the same rows. Trigrams cannot serve one or two characters ("漏水", "杨建"): those keep
``LIKE`` — a scan of the tickets newest first that stops at the ``NEWEST`` matches (complete, as the
bigram index on PostgreSQL is), and of the latest ``MESSAGE_WINDOW`` messages for chats.
``bench/console_search.py`` measures PostgreSQL on 200,000 tickets. Engineers search only their own
tickets; every search is in the audit log.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from actions import labels as L
from actions.workflow import CHINA, CLOSED, STATUSES, is_overdue
from bot.console.core import (
    Staff,
    audit,
    int_param,
    render,
    route,
    runtime_of,
    shown_phone,
    staff_list,
    staff_of,
)
from bot.console.intake import houses_matching, parse_house, phone_digits
from bot.store.fts import FTS_TABLES
from bot.store.models import (
    Conversation,
    House,
    Identity,
    Message,
    Owner,
    OwnerHouse,
    Project,
    Ticket,
    utcnow,
)

TICKET_NUMBER = re.compile(r"^(BX|TS|ZX|BZ)\d{4,8}(-\d{1,4})?$", re.IGNORECASE)
LIMIT_TICKETS, LIMIT_OWNERS, LIMIT_CONVERSATIONS = 50, 20, 20
PROBE = 20_000
"""A two-character word is first looked for among this many latest tickets (see ``_two_characters``)."""
MESSAGE_WINDOW = 50_000
"""Chats are searched for a one- or two-character word among this many latest messages (the message
table grows with every owner's every word; a bigram index there would cost each inbound message)."""
NEWEST = 500
"""Tickets and messages are matched newest first, up to this many, before the most urgent tickets (and
the latest chats) are shown: a common word ("漏水") matches tens of thousands of rows, and reading them
backwards along the primary key stops early instead of sorting them all."""
URGENT_FIRST = {"urgent": 3, "group": 3, "serious": 2}


def _like(text: str) -> str:
    """``%text%`` with LIKE's own wildcards escaped (an owner may type ``100%``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _date(value: str, end: bool = False) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    start = dt.datetime.combine(day, dt.time(), tzinfo=CHINA)
    return start + dt.timedelta(days=1) if end else start


class Query:
    """What one search asks: the words and the filters, parsed once."""

    def __init__(self, params: Any) -> None:
        self.q = phone_digits(str(params.get("q", "")).strip()[:60])
        self.kind = params.get("kind", "") if params.get("kind", "") in L.KIND_LABELS else ""
        self.category = str(params.get("category", ""))[:30]
        status = params.get("status", "")
        self.status = status if status in STATUSES or status == "open" else ""
        self.engineer = int_param(params.get("engineer"))
        self.project = str(params.get("project", ""))[:32]
        self.since, self.until = _date(params.get("from", "")), _date(params.get("to", ""), end=True)
        self.number = self.q.upper() if TICKET_NUMBER.match(self.q) else None
        self.house = parse_house(self.q) if not self.number else None
        self.digits = self.q if self.q.isdigit() and len(self.q) >= 3 else None
        self.words = self.q if self.q and not (self.number or self.house or self.digits) else None
        self.fts: frozenset[str] | None = None  # this database's FTS5 tables, once looked up (``_fts``)

    @property
    def filtered(self) -> bool:
        return bool(self.kind or self.category or self.status or self.engineer or self.project or self.since
                    or self.until)

    def args(self) -> dict[str, str]:
        return {"q": self.q, "kind": self.kind, "category": self.category, "status": self.status,
                "engineer": str(self.engineer or ""), "project": self.project,
                "from": self.since.date().isoformat() if self.since else "",
                "to": (self.until - dt.timedelta(days=1)).date().isoformat() if self.until else ""}


async def _fts(s: AsyncSession, q: Query) -> frozenset[str]:
    """The FTS5 search tables of this database: SQLite's from migration 0008 (none on PostgreSQL, none
    on a SQLite without the trigram tokenizer, where the search scans with ``LIKE``)."""
    if q.fts is None:
        q.fts = frozenset()
        if s.get_bind().dialect.name == "sqlite":
            q.fts = frozenset((await s.execute(sa.text(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('ticket_fts', 'owner_fts', "
                "'message_fts')"))).scalars())
    return q.fts


def _narrowed(fts: frozenset[str], table: str, row_id: Any, columns: Sequence[str], text: str, exact: Any) -> Any:
    """``exact`` (the ``LIKE`` that decides), first narrowed to the rows whose FTS5 trigram index has
    ``text`` in one of ``columns`` — when the table has one and ``text`` has a trigram (3+ characters).

    The phrase is quoted for FTS5 (``"`` doubled), so the owner's text is never read as query syntax;
    the trigram index finds a superset (it folds case a little more widely than ``LIKE``), which
    ``exact`` then trims to the very rows the ``LIKE`` path returns."""
    if table not in fts or len(text) < 3:
        return exact
    assert set(columns) <= set(FTS_TABLES[table]), columns
    phrase = "{" + " ".join(columns) + "} : \"" + text.replace('"', '""') + '"'
    hits: sa.Select[Any] = sa.select(sa.literal_column("rowid")).select_from(sa.table(table)).where(
        sa.literal_column(table).op("MATCH")(phrase))
    return sa.and_(row_id.in_(hits), exact)


def _phone(column: Any, digits: str) -> Any:
    return column.like("%" + digits) if len(digits) <= 4 else column.like(_like(digits), escape="\\")


def _house_ids(q: Query) -> Any:
    assert q.house is not None
    return houses_matching(q.house)


def _filtered(query: sa.Select[Any], q: Query, staff: Staff) -> sa.Select[Any]:
    if q.kind:
        query = query.where(Ticket.kind == q.kind)
    if q.category:
        query = query.where(Ticket.category == q.category)
    if q.status == "open":
        query = query.where(Ticket.status != CLOSED)
    elif q.status:
        query = query.where(Ticket.status == q.status)
    if q.engineer:
        query = query.where(Ticket.assignee_id == q.engineer)
    if q.project:
        query = query.where(Ticket.project_id.in_(sa.select(Project.id).where(Project.code == q.project)))
    if q.since:
        query = query.where(Ticket.created_at >= q.since)
    if q.until:
        query = query.where(Ticket.created_at < q.until)
    if staff.role == "engineer":
        query = query.where(Ticket.assignee_id == staff.id)
    return query.order_by(Ticket.id.desc()).limit(NEWEST)


async def _two_characters(s: AsyncSession, q: Query, staff: Staff, plain: Any, owners: list[int]) -> Any:
    """A two-character word on PostgreSQL, where trigrams cannot help. A common one ("漏水") fills the
    newest matches from the latest tickets at once; a rare one (a name, "闭门器") would scan the whole
    table for them, so it goes through the bigram index instead (migration 0006). Trying the cheap way
    first matters: on a common word the index finds tens of thousands of rows to read."""
    latest = (await s.execute(sa.select(sa.func.max(Ticket.id)))).scalar() or 0
    recent = list((await s.execute(_filtered(
        sa.select(Ticket.id).where(Ticket.id > latest - PROBE, plain), q, staff))).scalars())
    if len(recent) >= NEWEST:
        return Ticket.id.in_(recent)
    bigrams = sa.func.yezhu_bigrams(Ticket.description, Ticket.location)  # spelled as the index is
    word = sa.cast(postgresql.array([q.words]), postgresql.ARRAY(sa.Text))
    indexed = sa.and_(bigrams.op("@>")(word), sa.or_(Ticket.description.like(_like(q.words or ""), escape="\\"),
                                                     Ticket.location.like(_like(q.words or ""), escape="\\")))
    # Without owners to add, the bigram condition stays an index condition (checked once per page, not
    # re-evaluated as a filter on every row the index found).
    return sa.or_(indexed, Ticket.owner_id.in_(owners)) if owners else indexed


async def find_tickets(s: AsyncSession, q: Query, staff: Staff) -> list[Ticket]:
    query = sa.select(Ticket.id)
    fts = await _fts(s, q)
    if q.number:
        query = query.where(_narrowed(fts, "ticket_fts", Ticket.id, ["number"], q.number, Ticket.number.like(
            q.number + "%")) if len(q.number) < 15 else Ticket.number == q.number)
    elif q.house:
        query = query.where(Ticket.house_id.in_(_house_ids(q)))
    elif q.digits:
        # The owners first (a few): then each branch has its index and PostgreSQL ORs the bitmaps.
        owners = list((await s.execute(sa.select(Owner.id).where(_narrowed(
            fts, "owner_fts", Owner.id, ["phone"], q.digits, _phone(Owner.phone, q.digits))).limit(200))).scalars())
        cond, columns = _phone(Ticket.contact_phone, q.digits), ["contact_phone"]
        if len(q.digits) == 4:  # "0007" may also be the end of a ticket number
            cond, columns = sa.or_(cond, Ticket.number.like("%-" + q.digits)), ["contact_phone", "number"]
        query = query.where(sa.or_(_narrowed(fts, "ticket_fts", Ticket.id, columns, q.digits, cond),
                                   Ticket.owner_id.in_(owners or [0])))
    elif q.words:
        pattern = _like(q.words)
        owners = list((await s.execute(sa.select(Owner.id).where(_narrowed(
            fts, "owner_fts", Owner.id, ["name"], q.words, Owner.name.like(pattern, escape="\\"))).limit(200))).scalars())
        text = sa.or_(Ticket.description.like(pattern, escape="\\"), Ticket.location.like(pattern, escape="\\"))
        plain = sa.or_(_narrowed(fts, "ticket_fts", Ticket.id, ["description", "location"], q.words, text),
                       Ticket.owner_id.in_(owners or [0]))
        if len(q.words) == 2 and s.get_bind().dialect.name == "postgresql":
            plain = await _two_characters(s, q, staff, plain, owners)
        query = query.where(plain)
    elif not q.filtered:
        return []
    newest = _filtered(query, q, staff).scalar_subquery()
    shown = (sa.select(Ticket).where(Ticket.id.in_(newest))
             .options(selectinload(Ticket.house).selectinload(House.building), selectinload(Ticket.assignee),
                      selectinload(Ticket.owner))
             .order_by((Ticket.status == CLOSED), sa.case(URGENT_FIRST, value=Ticket.priority, else_=0).desc(),
                       Ticket.due_at.is_(None), Ticket.due_at, Ticket.id.desc()).limit(LIMIT_TICKETS))
    return list((await s.execute(shown)).scalars())


async def find_owners(s: AsyncSession, q: Query) -> list[Owner]:
    query = sa.select(Owner).options(selectinload(Owner.houses).selectinload(OwnerHouse.house)
                                     .selectinload(House.building))
    fts = await _fts(s, q)
    if q.house:
        query = query.where(Owner.id.in_(sa.select(OwnerHouse.owner_id).where(OwnerHouse.house_id.in_(_house_ids(q)))))
    elif q.digits:
        query = query.where(_narrowed(fts, "owner_fts", Owner.id, ["phone"], q.digits, _phone(Owner.phone, q.digits)))
    elif q.words:
        query = query.where(_narrowed(fts, "owner_fts", Owner.id, ["name"], q.words,
                                      Owner.name.like(_like(q.words), escape="\\")))
    else:
        return []
    return list((await s.execute(query.order_by(Owner.id).limit(LIMIT_OWNERS))).scalars().unique())


async def find_conversations(s: AsyncSession, q: Query) -> list[dict[str, Any]]:
    """Chats whose messages contain the words (or, for digits, whose SMS sender or owner has the phone)."""
    if q.words:
        said = _narrowed(await _fts(s, q), "message_fts", Message.id, ["text"], q.words,
                         Message.text.like(_like(q.words), escape="\\"))
        query = (sa.select(Message.conversation_id, Message.id)
                 .where(said, Message.direction.in_(("in", "out", "note")))
                 .order_by(Message.id.desc()).limit(NEWEST))
        if len(q.words) < 3:  # no trigram to use: look through the latest messages only
            latest = (await s.execute(sa.select(sa.func.max(Message.id)))).scalar() or 0
            query = query.where(Message.id > latest - MESSAGE_WINDOW)
        hits = (await s.execute(query)).all()
        ids: dict[int, int | None] = {}
        for cid, mid in hits:  # newest first: each chat with its latest matching message
            if cid not in ids and len(ids) < LIMIT_CONVERSATIONS:
                ids[cid] = mid
    elif q.digits:
        rows = (await s.execute(
            sa.select(Conversation.id).join(Identity, Identity.id == Conversation.identity_id)
            .outerjoin(Owner, Owner.id == Conversation.owner_id)
            .where(sa.or_(_phone(Owner.phone, q.digits),
                          sa.and_(Identity.channel == "sms", _phone(Identity.external_id, q.digits))))
            .order_by(Conversation.id.desc()).limit(LIMIT_CONVERSATIONS)
        )).scalars()
        ids = {cid: None for cid in rows}
    else:
        return []
    if not ids:
        return []
    convs = (await s.execute(
        sa.select(Conversation, Identity, Owner).join(Identity, Identity.id == Conversation.identity_id)
        .outerjoin(Owner, Owner.id == Conversation.owner_id).where(Conversation.id.in_(list(ids)))
    )).all()
    texts = dict((await s.execute(sa.select(Message.id, Message.text).where(
        Message.id.in_([m for m in ids.values() if m])))).all()) if any(ids.values()) else {}
    from bot.console.queue import who

    out: list[dict[str, Any]] = [{"c": c, "who": who(i, o), "channel": L.label(L.CHANNEL_LABELS, i.channel),
            "text": texts.get(ids[c.id] or 0, ""), "mode": c.mode} for c, i, o in convs]
    out.sort(key=lambda r: r["c"].last_message_at or r["c"].created_at, reverse=True)
    return out


@route("GET", "/search", "tickets.view")
async def search(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    q = Query(request.query)
    started = utcnow()
    async with runtime_of(request).db.session() as s, s.begin():
        tickets = await find_tickets(s, q, staff)
        owners = await find_owners(s, q) if staff.can("owners") else []
        conversations = await find_conversations(s, q) if staff.can("chat") else []
        engineers = await staff_list(s, ("engineer", "supervisor"))
        if q.q or q.filtered:
            audit(s, staff, "search", None, query=q.q, results=len(tickets) + len(owners) + len(conversations))
    took = (utcnow() - started).total_seconds() * 1000
    now = utcnow()
    rows = [{"t": t, "overdue": is_overdue(t, now),
             "place": t.house.label if t.house else (t.location or ""),
             "phone": shown_phone(staff, t.contact_phone or (t.owner.phone if t.owner else None),
                                  assigned_to_me=t.assignee_id == staff.id)} for t in tickets]
    people = [{"o": o, "phone": shown_phone(staff, o.phone), "houses": [oh.house.label for oh in o.houses]}
              for o in owners]
    return render(request, "search.html", title="搜索", page="search", q=q, args=q.args(), rows=rows,
                  owners=people, conversations=conversations, engineers=engineers, took=took,
                  categories={**L.REPAIR_CATEGORY_LABELS, **L.COMPLAINT_CATEGORY_LABELS})
