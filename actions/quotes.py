"""Paid repairs (有偿维修): a quote the owner accepts in chat before the work starts.

DOMAIN.md: after the warranty the property company offers paid repair — "上门后先报价，经您同意再施工".
Staff (the engineer on site, or the desk) put a price on a repair ticket with :func:`propose`; the owner
is told the amount and what it covers in their own chat (WeChat within its window, else SMS) and
answers "同意报价" or "不同意". The dialogue calls :func:`answer_from_chat` on each owner message: it
answers only when that owner has a quote waiting and the message is a yes or a no to it. Until the
owner accepts, the ticket cannot be started (:func:`check_can_start`). Every step is on the timeline
with the price.

Usage (the console)::

    ids = await propose(s, batch, TicketWorkflow(runtime), ticket, amount="180", items="更换角阀", actor="laochen")
    await runtime.engine.after_commit(batch, ids)
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.workflow import (
    AWAITING,
    CLOSED,
    DONE,
    QUOTE_ACCEPTED,
    QUOTE_DECLINED,
    QUOTE_PENDING,
    TicketWorkflow,
    WorkflowError,
    check_quote_allows_start,
)
from bot import events
from bot.events import EventBatch
from bot.store.models import Conversation, Ticket, TicketEvent, utcnow

PENDING, ACCEPTED, DECLINED = QUOTE_PENDING, QUOTE_ACCEPTED, QUOTE_DECLINED
MAX_AMOUNT = Decimal("100000")
QUOTE_DAYS = 7
"""A quote waits this long for the owner's answer; after that a yes is no longer taken from chat."""

# Whole-message answers only: "同意" inside "我不同意你们的处理方式" must not accept a price.
ACCEPT = re.compile(r"^\s*(我)?(同意|接受|确认|认可)(报价|维修|修|施工|这个价格?)?(的)?(，|,)?(请|麻烦)?(尽快)?(安排|来修|上门)?(吧|了)?\s*[。.!！~～]*\s*$")
DECLINE = re.compile(r"^\s*(我)?(不同意|不接受|拒绝|不修了?|太贵了?|算了|不用了?|不需要了?)(报价|维修|这个价格?)?(，|,)?.{0,20}$")


def money(amount: Decimal | str | float) -> str:
    value = Decimal(str(amount)).quantize(Decimal("0.01"))
    return f"{value:,.2f}元"


def parse_amount(raw: str) -> Decimal:
    text = (raw or "").strip().replace("元", "").replace("¥", "").replace("￥", "").replace(",", "").replace("，", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise WorkflowError("请填写正确的报价金额（元），例如 180 或 65.5") from None
    if not value.is_finite() or value <= 0 or value > MAX_AMOUNT:
        raise WorkflowError(f"报价金额须大于0且不超过{MAX_AMOUNT}元")
    return value.quantize(Decimal("0.01"))


def parse_reply(text: str) -> bool | None:
    """True for a plain yes to the quote, False for a no, None for anything else."""
    if DECLINE.match(text or ""):
        return False
    if ACCEPT.match(text or ""):
        return True
    return None


def is_pending(ticket: Ticket) -> bool:
    return bool(ticket.quote) and (ticket.quote or {}).get("status") == PENDING


check_can_start = check_quote_allows_start
"""Paid work starts only after the owner said yes to its price (``TicketWorkflow.start`` checks it)."""


async def propose(
    s: AsyncSession, batch: EventBatch, wf: TicketWorkflow, ticket: Ticket, *, amount: str, items: str,
    actor: str, now: dt.datetime | None = None,
) -> list[int]:
    """Put a price on a repair and ask the owner; returns the message ids to deliver after the commit."""
    now = now or utcnow()
    if ticket.kind != "repair":
        raise WorkflowError("只有报修工单可以报价")
    if ticket.status in (CLOSED, DONE, AWAITING):
        raise WorkflowError("工单已完工，不能再报价")
    if (ticket.warranty or {}).get("covered") is True:
        raise WorkflowError("该报修在保修期内，由开发商免费维修，不能向业主收费")
    value = parse_amount(amount)
    what = (items or "").strip()[:200]
    if not what:
        raise WorkflowError("请写明报价包含的项目（如：更换角阀 1 个、人工费）")
    ticket.quote = {"amount": str(value), "items": what, "status": PENDING, "by": actor, "at": now.isoformat()}
    ticket.updated_at = now
    s.add(TicketEvent(ticket_id=ticket.id, kind="quote", actor=actor, at=now,
                      data={"amount": str(value), "items": what, "status": PENDING}))
    batch.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, kind="quote", status=ticket.status,
               assignee_id=ticket.assignee_id, actor=actor)
    text = (f"【维修报价】您的报修（单号 {ticket.number}）属于有偿维修，费用合计{money(value)}（{what}）。"
            "同意请回复“同意报价”，不需要请回复“不同意”；您同意后我们再开始施工。")
    return await wf.notify(s, batch, ticket, text, notice="quote", actor=actor, now=now)


async def answer(
    s: AsyncSession, batch: EventBatch, ticket: Ticket, *, accepted: bool, actor: str = "owner",
    now: dt.datetime | None = None,
) -> str:
    """Record the owner's answer; returns what to tell the owner."""
    now = now or utcnow()
    quote = dict(ticket.quote or {})
    if quote.get("status") != PENDING:
        raise WorkflowError("该工单没有待确认的报价")
    quote.update(status=ACCEPTED if accepted else DECLINED, answered_at=now.isoformat())
    ticket.quote = quote  # replaced whole: the JSON column is not mutation-tracked
    ticket.updated_at = now
    kind = "quote_accepted" if accepted else "quote_declined"
    s.add(TicketEvent(ticket_id=ticket.id, kind=kind, actor=actor, at=now,
                      data={"amount": quote["amount"], "items": quote.get("items", "")}))
    batch.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, kind=kind, status=ticket.status,
               assignee_id=ticket.assignee_id, actor=actor)
    if accepted:
        return (f"好的，已确认报价{money(quote['amount'])}（单号 {ticket.number}），工程师会按约定上门施工，"
                "完工后请您查验。")
    return (f"好的，已记录您不同意报价（单号 {ticket.number}），暂不施工。客服会与您联系沟通，"
            "如需重新报价或有其他安排请直接留言。")


async def pending_for(s: AsyncSession, conversation: Conversation, now: dt.datetime | None = None) -> Ticket | None:
    """The newest repair of this chat (or its owner) whose quote waits for an answer."""
    since = (now or utcnow()) - dt.timedelta(days=QUOTE_DAYS)
    cond: Any = Ticket.conversation_id == conversation.id
    if conversation.owner_id is not None:
        cond = sa.or_(cond, Ticket.owner_id == conversation.owner_id)
    candidates = (await s.execute(
        sa.select(Ticket).where(cond, Ticket.kind == "repair", Ticket.status != CLOSED, Ticket.quote.is_not(None),
                                Ticket.updated_at >= since)
        .order_by(Ticket.updated_at.desc()).limit(10)
    )).scalars()
    return next((t for t in candidates if is_pending(t)), None)


async def answer_from_chat(
    s: AsyncSession, batch: EventBatch, conversation: Conversation, text: str, *, now: dt.datetime | None = None,
) -> str | None:
    """The dialogue's hook: the reply to an owner's yes/no to a waiting quote, or None (not about a quote)."""
    verdict = parse_reply(text)
    if verdict is None:
        return None
    ticket = await pending_for(s, conversation, now)
    if ticket is None:
        return None
    return await answer(s, batch, ticket, accepted=verdict, actor="owner", now=now)
