"""The live queue (会话队列): chats waiting for a person, most urgent first, each with why it waits.

A waiting chat shows the reason of its hand-over (an emergency and its kind, a serious or group
complaint, the owner asked for a person, the bot could not help) and the owner's message that caused
it — not merely the last message, which is often "你好" or "确认". Order: urgency, then waiting time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from actions.labels import CHANNEL_LABELS, HANDOVER_REASON_LABELS, URGENCY_LABELS, label
from bot import conversation as verbs
from bot.console.core import PREFIX, Staff, mask_phone, render, render_string, route, runtime_of, staff_of
from bot.store.models import Conversation, ConversationEvent, Identity, Message, Owner, StaffUser, utcnow

SHORT = 6
"""A cause shorter than this ("人工", "转人工") gets the owner's previous, substantive message as context."""
GAVE_UP = frozenset({"unsure", "low_confidence", "fallback", "misunderstood", "gave_up", "unanswered",
                     "unknown_question", "repeated"})


def urgency(priority: int, reason: str | None) -> tuple[int, str, str]:
    """(rank, label, css class): emergencies, then serious and group complaints, then the rest.

    The policy records each hand-over's ``reason`` (``emergency``, ``group_complaint``,
    ``serious_complaint``, ``owner_asked``, ``unknown_question``…) and a ``priority`` (100 emergency,
    90 group, 80 serious complaint, 0 otherwise); either is enough to rank.
    """
    r = (reason or "").lower()
    if "emergenc" in r or priority >= 100:
        return 3, "紧急", "urgent"
    if "group" in r:
        return 2, "群体投诉", "serious"
    if "serious" in r or priority >= 50:
        return 2, "严重投诉", "serious"
    if priority > 0 or "complaint" in r:
        return 1, "优先", "high"
    return 0, "", "normal"


def reason_label(reason: str | None) -> str:
    if not reason:
        return ""
    return label(HANDOVER_REASON_LABELS, reason, "需要人工处理")


def who(identity: Identity, owner: Owner | None) -> str:
    """The owner's name; an identity not bound to an owner by its channel and a short number (its
    openid or CRM id is a code nobody reads; an SMS sender's number is shown masked)."""
    if owner is not None:
        return owner.name
    if identity.channel == "sms" and identity.external_id.isdigit():
        return f"未绑定用户 {mask_phone(identity.external_id)}"
    return f"未绑定{label(CHANNEL_LABELS, identity.channel, '')}用户 #{identity.id}"


def _urgency_kind(nlu: dict[str, Any] | None) -> str | None:
    for e in (nlu or {}).get("entities") or []:
        if isinstance(e, dict) and e.get("entity") == "urgency" and e.get("value"):
            return str(e["value"])
    return None


async def _hand_overs(s: AsyncSession, conv_ids: list[int]) -> dict[int, ConversationEvent]:
    if not conv_ids:
        return {}
    rows = (await s.execute(
        sa.select(ConversationEvent)
        .where(ConversationEvent.conversation_id.in_(conv_ids), ConversationEvent.kind == "hand_over")
        .order_by(ConversationEvent.id)
    )).scalars()
    return {e.conversation_id: e for e in rows}


async def _recent_inbound(s: AsyncSession, conv_ids: list[int], per: int = 8) -> dict[int, list[Message]]:
    """The last few owner messages of each chat, newest first (one query)."""
    if not conv_ids:
        return {}
    ranked = (
        sa.select(Message.id, sa.func.row_number().over(partition_by=Message.conversation_id,
                                                        order_by=Message.id.desc()).label("n"))
        .where(Message.conversation_id.in_(conv_ids), Message.direction == "in").subquery()
    )
    rows = (await s.execute(
        sa.select(Message).join(ranked, ranked.c.id == Message.id).where(ranked.c.n <= per)
        .order_by(Message.conversation_id, Message.id.desc())
    )).scalars()
    out: dict[int, list[Message]] = {}
    for m in rows:
        out.setdefault(m.conversation_id, []).append(m)
    return out


def cause_of(hand_over: ConversationEvent | None, inbound: list[Message]) -> tuple[Message | None, str]:
    """The owner's message that made the chat wait, and context when that one is a bare "人工"."""
    if not inbound:
        return None, ""
    cause = inbound[0]
    if hand_over is not None:
        # The hand-over is logged after the message that caused it was stored (a channel's time is, if
        # anything, earlier: WeChat's CreateTime is truncated to the second).
        cause = next((m for m in inbound if m.at <= hand_over.at), inbound[-1])
    context = ""
    if len((cause.text or "").strip()) < SHORT:
        earlier = next((m for m in inbound if m.id < cause.id and len((m.text or "").strip()) >= SHORT), None)
        context = earlier.text if earlier is not None else ""
    return cause, context


def _why(reason: str, cause: Message | None) -> str:
    kind = _urgency_kind(cause.nlu if cause is not None else None)
    if "emergenc" in reason.lower() or kind:
        return f"紧急情况：{label(URGENCY_LABELS, kind, '需立即处理')}" if kind else "紧急情况"
    if reason in GAVE_UP:
        return f"机器人未能解决（{reason_label(reason)}）"
    return reason_label(reason)


async def load_queue(s: AsyncSession, staff: Staff, now: dt.datetime) -> dict[str, list[dict[str, Any]]]:
    rows = (await s.execute(
        sa.select(Conversation, Identity, Owner, StaffUser)
        .join(Identity, Identity.id == Conversation.identity_id)
        .outerjoin(Owner, Owner.id == Conversation.owner_id)
        .outerjoin(StaffUser, StaffUser.id == Conversation.assignee_id)
        .where(Conversation.mode.in_((verbs.WAITING, verbs.STAFF)))
    )).all()
    ids = [c.id for c, *_ in rows]
    hand_overs = await _hand_overs(s, ids)
    inbound = await _recent_inbound(s, ids)
    waiting: list[dict[str, Any]] = []
    mine: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for conv, identity, owner, assignee in rows:
        event = hand_overs.get(conv.id)
        reason = str((event.data or {}).get("reason") or "") if event is not None else ""
        cause, context = cause_of(event, inbound.get(conv.id, []))
        rank, urgency_label, css = urgency(conv.priority, reason)
        if rank < 3 and _urgency_kind(cause.nlu if cause is not None else None):
            rank, urgency_label, css = 3, "紧急", "urgent"
        since = conv.waiting_since or conv.updated_at
        latest = inbound.get(conv.id, [None])[0]
        item: dict[str, Any] = {
            "id": conv.id, "who": who(identity, owner), "channel": label(CHANNEL_LABELS, identity.channel),
            "rank": rank, "priority": conv.priority, "urgency": urgency_label, "css": css,
            "reason": reason_label(reason), "why": _why(reason, cause), "since": since,
            "waited": (now - since).total_seconds() if since else 0.0,
            "cause": (cause.text if cause is not None else "")[:120], "context": context[:80],
            "preview": (latest.text if latest is not None else "")[:80],
            "newer": latest is not None and cause is not None and latest.id != cause.id,
            "assignee": assignee.display_name if assignee else "", "last": conv.last_message_at,
        }
        if conv.mode == verbs.WAITING:
            waiting.append(item)
        elif conv.assignee_id == staff.id:
            mine.append(item)
        else:
            others.append(item)
    waiting.sort(key=lambda i: (-i["rank"], -i["priority"], i["since"] or now, i["id"]))
    mine.sort(key=lambda i: i["last"] or now, reverse=True)
    others.sort(key=lambda i: i["last"] or now, reverse=True)
    return {"waiting": waiting, "mine": mine, "others": others}


@route("GET", "/", "console")
async def home(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    if not staff.can("chat"):
        raise web.HTTPFound(f"{PREFIX}/tickets?mine=1")
    async with runtime_of(request).db.session() as s:
        queue = await load_queue(s, staff, utcnow())
    return render(request, "queue.html", title="会话队列", page="queue", queue=queue)


@route("GET", "/api/queue", "chat")
async def queue_fragment(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    async with runtime_of(request).db.session() as s:
        queue = await load_queue(s, staff, utcnow())
    html = render_string(request, "_queue.html", queue=queue)
    return web.json_response({
        "html": html,
        "waiting": [{"id": i["id"], "rank": i["rank"], "who": i["who"], "urgency": i["urgency"]}
                    for i in queue["waiting"]],
    })
