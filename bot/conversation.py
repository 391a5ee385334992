"""The conversation mode state machine: ``bot`` → ``waiting`` → ``staff`` → ``bot`` | ``closed``.

Modes change only through the named verbs below (Chatwoot's ``resolve!``/``open!``), each of which
appends to the conversation's event log and emits ``conversation.status_changed``. There is no
setter: a verb not allowed from the current mode raises :class:`TransitionError`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import events
from bot.events import EventBatch
from bot.store.models import Conversation, ConversationEvent, utcnow

BOT, WAITING, STAFF, CLOSED = "bot", "waiting", "staff", "closed"

# verb -> (modes it may start from, mode it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "hand_over": (frozenset({BOT}), WAITING),
    "claim": (frozenset({WAITING, BOT}), STAFF),
    "transfer": (frozenset({STAFF}), STAFF),
    "hand_back": (frozenset({WAITING, STAFF}), BOT),
    "close": (frozenset({BOT, WAITING, STAFF}), CLOSED),
    "reopen": (frozenset({CLOSED}), BOT),
}


class TransitionError(Exception):
    def __init__(self, verb: str, mode: str) -> None:
        super().__init__(f"cannot {verb} a conversation that is {mode}")
        self.verb, self.mode = verb, mode


def log_event(
    session: AsyncSession, conv: Conversation, kind: str, actor: str | None = None, **data: Any
) -> ConversationEvent:
    ev = ConversationEvent(conversation_id=conv.id, kind=kind, data=data, actor=actor, at=utcnow())
    session.add(ev)
    return ev


def _apply(
    session: AsyncSession, batch: EventBatch, conv: Conversation, verb: str, actor: str | None, **data: Any
) -> None:
    allowed, target = TRANSITIONS[verb]
    if conv.mode not in allowed:
        raise TransitionError(verb, conv.mode)
    previous = conv.mode
    conv.mode = target
    conv.updated_at = utcnow()
    log_event(session, conv, verb, actor, previous=previous, mode=target, **data)
    batch.emit(
        events.CONVERSATION_STATUS_CHANGED,
        conversation_id=conv.id,
        previous=previous,
        mode=target,
        verb=verb,
        actor=actor,
        priority=conv.priority,
        **data,
    )


def hand_over(
    session: AsyncSession, batch: EventBatch, conv: Conversation, *, reason: str, priority: int = 0,
    actor: str = "bot", now: dt.datetime | None = None,
) -> None:
    """Ask for a person (owner asked, bot unsure, serious complaint, emergency)."""
    conv.priority = max(conv.priority, priority)
    conv.waiting_since = now or utcnow()
    _apply(session, batch, conv, "hand_over", actor, reason=reason)


def claim(session: AsyncSession, batch: EventBatch, conv: Conversation, *, staff_id: int, actor: str) -> None:
    conv.assignee_id = staff_id
    _apply(session, batch, conv, "claim", actor, staff_id=staff_id)


def transfer(
    session: AsyncSession, batch: EventBatch, conv: Conversation, *, staff_id: int, actor: str, note: str = ""
) -> None:
    previous = conv.assignee_id
    conv.assignee_id = staff_id
    _apply(session, batch, conv, "transfer", actor, staff_id=staff_id, from_staff_id=previous, note=note)


def hand_back(session: AsyncSession, batch: EventBatch, conv: Conversation, *, actor: str) -> None:
    conv.assignee_id = None
    conv.waiting_since = None
    conv.priority = 0
    _apply(session, batch, conv, "hand_back", actor)


def close(session: AsyncSession, batch: EventBatch, conv: Conversation, *, actor: str, reason: str = "") -> None:
    conv.waiting_since = None
    conv.priority = 0
    conv.state = {}
    _apply(session, batch, conv, "close", actor, reason=reason)


def reopen(session: AsyncSession, batch: EventBatch, conv: Conversation, *, actor: str = "owner") -> None:
    conv.assignee_id = None
    _apply(session, batch, conv, "reopen", actor)
