"""Follow-ups join their ticket (issue 10, "Deliver 3").

A message about a matter that already has an open ticket (same owner or same chat, same kind, same
category or house, within ``Project.settings["followup_hours"]``, default :data:`FOLLOWUP_HOURS`) is
added to that ticket's timeline (``owner_followup``) instead of opening a second ticket; "still not
fixed" on a finished repair reopens it as 返修 through the workflow's own verb.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from actions.flows.context import Ctx
from actions.flows.labels import STATUS_LABEL
from actions.workflow import CLOSED, TicketWorkflow
from bot import events
from bot.store.models import Conversation, Ticket, TicketEvent

FOLLOWUP_HOURS = 72
REOPEN_DAYS = 30
"""A repair closed longer ago than this is a new problem, not a rework."""


def owner_condition(ctx: Ctx) -> sa.ColumnElement[bool]:
    """Tickets of this owner, or (before binding) opened from this identity's chats."""
    mine = Ticket.conversation_id.in_(
        sa.select(Conversation.id).where(Conversation.identity_id == ctx.identity.id))
    if ctx.identity.owner_id is not None:
        return sa.or_(Ticket.owner_id == ctx.identity.owner_id, mine)
    return mine


async def open_tickets(ctx: Ctx, kind: str | None = None) -> list[Ticket]:
    q = (sa.select(Ticket).where(owner_condition(ctx), Ticket.status != CLOSED)
         .options(selectinload(Ticket.assignee)).order_by(Ticket.id))
    if kind is not None:
        q = q.where(Ticket.kind == kind)
    return list((await ctx.session.execute(q)).scalars())


async def tickets_by_number(ctx: Ctx, numbers: list[str]) -> list[Ticket]:
    """The owner's own tickets among ``numbers`` (a stranger's number reveals nothing)."""
    q = (sa.select(Ticket).where(owner_condition(ctx), Ticket.number.in_(numbers))
         .options(selectinload(Ticket.assignee)).order_by(Ticket.id))
    return list((await ctx.session.execute(q)).scalars())


async def window(ctx: Ctx) -> dt.timedelta:
    return dt.timedelta(hours=float(await ctx.setting("followup_hours", FOLLOWUP_HOURS)))


async def related_open(ctx: Ctx, kind: str, *, category: str | None, house_id: int | None = None,
                       location: str | None = None) -> Ticket | None:
    """The open ticket this message is about, if any (the most recent)."""
    since = ctx.now - await window(ctx)
    candidates = [t for t in await open_tickets(ctx, kind) if t.created_at is not None
                  and _aware(t.created_at) >= since and t.priority != "group"]
    for ticket in reversed(candidates):
        if kind == "complaint":
            if category in (None, "other") or ticket.category == category:
                return ticket
            continue
        same_category = category is not None and category != "other" and ticket.category == category
        same_place = (house_id is not None and ticket.house_id == house_id) or (
            location is not None and ticket.location is not None and (location in ticket.location
                                                                      or ticket.location in location))
        no_place = house_id is None and location is None
        if same_category and (same_place or no_place):
            return ticket
    return None


async def finished_repair(ctx: Ctx, *, category: str | None) -> Ticket | None:
    """The owner's latest finished repair (done, awaiting acceptance, or closed recently)."""
    since = ctx.now - dt.timedelta(days=REOPEN_DAYS)
    q = (sa.select(Ticket).where(owner_condition(ctx), Ticket.kind == "repair",
                                 Ticket.status.in_(("done", "awaiting_acceptance", "closed")))
         .options(selectinload(Ticket.assignee)).order_by(Ticket.id.desc()).limit(5))
    for ticket in (await ctx.session.execute(q)).scalars():
        if ticket.status == CLOSED and ticket.closed_at is not None and _aware(ticket.closed_at) < since:
            continue
        if category in (None, "other") or ticket.category == category:
            return ticket
    return None


def add_followup(ctx: Ctx, ticket: Ticket, text: str, **data: object) -> None:
    ctx.session.add(TicketEvent(ticket_id=ticket.id, kind="owner_followup", actor="owner", at=ctx.now,
                                data={"text": text[:2000], "conversation_id": ctx.conversation.id, **data}))
    ctx.events.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, change="owner_followup")


async def reopen(ctx: Ctx, ticket: Ticket, text: str) -> None:
    workflow = TicketWorkflow(ctx.desk.runtime)
    await workflow.reopen(ctx.session, ctx.events, ticket, actor="owner", reason=f"业主反馈：{text}"[:500],
                          now=ctx.now, notify=False)


def status_line(ticket: Ticket) -> str:
    status, nxt = STATUS_LABEL.get(ticket.status, (ticket.status, ""))
    who = f"，负责人：{ticket.assignee.display_name}" if ticket.assignee else ""
    when = f"，预约上门：{ticket.visit_time}" if ticket.visit_time and ticket.kind == "repair" else ""
    return f"状态：{status}{who}{when}。{nxt}"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
