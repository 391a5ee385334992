"""Domain event names (one module, like Chatwoot's ``lib/events/types.rb``) and the after-commit bus.

Events describe something that already happened (``ticket.created``). They are collected while a unit
of work runs and published only after its transaction commits, so no subscriber ever sees an effect
that was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.services.base import PubSub, ServiceUnavailable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("yezhu.events")

MESSAGE_CREATED = "message.created"
CONVERSATION_CREATED = "conversation.created"
CONVERSATION_STATUS_CHANGED = "conversation.status_changed"
CONVERSATION_ASSIGNED = "conversation.assigned"
TICKET_CREATED = "ticket.created"
TICKET_UPDATED = "ticket.updated"
EMERGENCY_RAISED = "emergency.raised"
STAFF_ALERT = "staff.alert"
DELIVERY_FAILED = "delivery.failed"
SMS_STATUS_CHANGED = "sms.status_changed"
SMS_OPT_OUT_CHANGED = "sms.opt_out_changed"
KNOWLEDGE_CHANGED = "knowledge.changed"
SURVEY_SCHEDULED = "survey.scheduled"
SURVEY_INVITED = "survey.invited"
SURVEY_COMPLETED = "survey.completed"
RECOVERY_OPENED = "recovery.opened"

ALL = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and "." in v)

CHANNEL = "events"
"""The pub/sub channel every domain event is published on (the console listens here)."""


@dataclass(frozen=True, slots=True)
class DomainEvent:
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in ALL:
            raise ValueError(f"unknown domain event {self.name!r}: add it to bot/events.py")


Listener = Callable[[Any, "AsyncSession", "EventBatch", DomainEvent], Awaitable[None]]
"""``listener(runtime, session, batch, event)``: runs inside the unit of work that emitted ``event``."""
_LISTENERS: dict[str, list[Listener]] = {}


def listen(*names: str) -> Callable[[Listener], Listener]:
    """Register an in-transaction listener of ``names`` (at import time, like a route).

    Listeners are for effects that must commit or roll back *with* the change that caused them (a
    callback survey scheduled when a ticket closes); live notifications go through ``publish``. They run
    when the unit of work calls :meth:`EventBatch.settle` (the ticket workflow's verbs do)."""
    for name in names:
        if name not in ALL:
            raise ValueError(f"unknown domain event {name!r}: add it to bot/events.py")

    def register(fn: Listener) -> Listener:
        for name in names:
            if fn not in _LISTENERS.setdefault(name, []):
                _LISTENERS[name].append(fn)
        return fn

    return register


class EventBatch:
    """Events of one unit of work; ``publish`` is called after the commit."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []
        self.after: list[Callable[[], Awaitable[None]]] = []
        self._settled = 0

    async def settle(self, runtime: Any, session: AsyncSession) -> None:
        """Run the in-transaction listeners (:func:`listen`) of the events emitted since the last settle,
        in the caller's transaction; events a listener emits are settled too."""
        while self._settled < len(self.events):
            event = self.events[self._settled]
            self._settled += 1
            for listener in _LISTENERS.get(event.name, ()):
                await listener(runtime, session, self, event)

    def emit(self, name: str, **data: Any) -> None:
        self.events.append(DomainEvent(name, data))

    def after_commit(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` once the unit of work committed (``publish``): the outbox's "send after commit".

        What it starts must survive being lost (a crash between commit and publish): the SMS outbox's
        sweep re-enqueues rows left ``queued``."""
        self.after.append(work)

    def take_events(self) -> list[dict[str, Any]]:
        """The events as published, removed from the batch (the caller publishes them)."""
        events, self.events = self.events, []
        self._settled = 0
        return [{"event": ev.name, **ev.data} for ev in events]

    async def publish(self, pubsub: PubSub) -> None:
        after, self.after = self.after, []
        for work in after:
            try:
                await work()
            except Exception:  # committed already; the outbox sweep retries what this failed to start
                log.exception("after-commit work failed")
        if not self.events:
            return
        messages = self.take_events()
        try:  # in one round trip
            await pubsub.publish_many(CHANNEL, messages)
        except ServiceUnavailable as exc:
            # Redis is down: live screens miss this update (they read the database when they reload).
            log.warning("events not published (%s): %s", exc, ", ".join(m["event"] for m in messages))
        except Exception:  # the state is committed; a lost notification must not fail the request
            log.exception("could not publish %s", ", ".join(m["event"] for m in messages))
