"""Live updates: domain events from the shared pub/sub, fanned out to browsers as server-sent events.

Each web process subscribes once to the ``events`` channel (Redis pub/sub in production, so an owner's
message accepted by one process reaches an agent whose browser is connected to another) and hands
each event to the SSE streams of that process. Browsers get only ids and states — never message text —
and fetch what they need through the authorised console routes. The hub also reloads the bot's
knowledge base when another process changed it (``knowledge.changed``).

In the embedded mode (no Redis) pub/sub cannot cross processes, so the hub also watches the shared
database's append-only tables (:class:`DatabaseWatcher`): an owner typing in ``yezhu chat`` in another
terminal shows up in the console within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from bot import events
from bot.console.core import COOKIE, console_of, route, staff_of
from bot.store.models import Conversation, ConversationEvent, Message, Ticket, TicketEvent

log = logging.getLogger("yezhu.console.live")

HEARTBEAT = 15.0
WATCH_INTERVAL = 0.5
"""Embedded mode: how often the database is checked for what other processes did (events within ~1 s)."""
WATCH_BATCH = 500
QUEUE_SIZE = 500
CHAT_EVENTS = frozenset({events.MESSAGE_CREATED, events.CONVERSATION_STATUS_CHANGED, events.CONVERSATION_ASSIGNED,
                         events.CONVERSATION_CREATED, events.EMERGENCY_RAISED, events.STAFF_ALERT,
                         events.DELIVERY_FAILED})
TICKET_EVENTS = frozenset({events.TICKET_CREATED, events.TICKET_UPDATED})
FORWARDED_FIELDS = ("conversation_id", "message_id", "direction", "mode", "previous", "verb", "priority",
                    "staff_id", "ticket_id", "number", "status", "assignee_id", "kind", "author")


class EventHub:
    """One pub/sub subscription per process, fanned out to local SSE clients."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.origin = uuid.uuid4().hex
        self.clients: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.overdue: dict[str, Any] | None = None
        """The console's cached overdue counts (``Console.overdue``), cleared on ticket events."""

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        if self.rt.settings.redis_url is None:
            # Embedded mode: pub/sub is in-process, so what another process (``yezhu chat``, a worker,
            # a second ``yezhu run`` on the same SQLite file) commits never reaches it. The database
            # is shared, though: watch its append-only tables instead.
            self._watch = asyncio.ensure_future(self._watch_database())

    async def _watch_database(self) -> None:
        watcher = DatabaseWatcher(self.rt.db)
        first, warned = True, 0.0
        while True:
            if not first:
                await asyncio.sleep(WATCH_INTERVAL)
            first = False
            try:  # from start-up on, and even while no browser is connected, so a new one misses nothing
                found = await watcher.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # SQLite busy for a moment: look again next time (and say so once a minute)
                if time.monotonic() - warned > 60:
                    warned = time.monotonic()
                    log.warning("live events: database poll failed", exc_info=True)
                continue
            if self.clients:
                for message in found:
                    await self.dispatch(message)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for queue in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def connect(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self.clients.add(queue)
        return queue

    def disconnect(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.clients.discard(queue)

    async def _run(self) -> None:
        while True:
            try:
                async with self.rt.services.pubsub.subscribe(events.CHANNEL) as messages:
                    self.subscribed.set()
                    async for message in messages:
                        await self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis went away: keep the console alive and resubscribe
                self.subscribed.clear()
                log.exception("live events: subscription lost; retrying")
                await asyncio.sleep(1.0)

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("event") == events.KNOWLEDGE_CHANGED and message.get("origin") != self.origin:
            await reload_knowledge(self.rt)
        if message.get("event") in TICKET_EVENTS and self.overdue is not None:
            self.overdue.clear()  # the navigation's overdue counts are recounted on the next page
        for queue in list(self.clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a stalled browser: end its stream; it reconnects and refreshes
                self.clients.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)


class DatabaseWatcher:
    """Domain events rebuilt from the append-only tables (messages, conversation and ticket logs).

    Each poll reads the rows added since the last one — three indexed range scans on primary keys —
    and turns them into the same ids-only events the pub/sub carries. An event this process also
    published is seen twice; the browser's handlers are idempotent (they refetch by id).
    """

    def __init__(self, db: Any) -> None:
        self.db = db
        self.last: dict[str, int] | None = None

    async def poll(self) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            if self.last is None:
                self.last = {
                    "message": (await s.execute(sa.select(sa.func.max(Message.id)))).scalar() or 0,
                    "conversation": (await s.execute(sa.select(sa.func.max(ConversationEvent.id)))).scalar() or 0,
                    "ticket": (await s.execute(sa.select(sa.func.max(TicketEvent.id)))).scalar() or 0,
                }
                return []
            out: list[dict[str, Any]] = []
            for mid, conv_id, direction, mode in (await s.execute(
                sa.select(Message.id, Message.conversation_id, Message.direction, Conversation.mode)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.id > self.last["message"]).order_by(Message.id).limit(WATCH_BATCH)
            )).all():
                self.last["message"] = mid
                out.append({"event": events.MESSAGE_CREATED, "conversation_id": conv_id, "message_id": mid,
                            "direction": direction, "mode": mode})
            for eid, conv_id, kind, mode in (await s.execute(
                sa.select(ConversationEvent.id, ConversationEvent.conversation_id, ConversationEvent.kind,
                          Conversation.mode)
                .join(Conversation, Conversation.id == ConversationEvent.conversation_id)
                .where(ConversationEvent.id > self.last["conversation"]).order_by(ConversationEvent.id)
                .limit(WATCH_BATCH)
            )).all():
                self.last["conversation"] = eid
                out.append({"event": events.CONVERSATION_STATUS_CHANGED, "conversation_id": conv_id, "verb": kind,
                            "mode": mode})
            for eid, ticket_id, kind, number, status, assignee in (await s.execute(
                sa.select(TicketEvent.id, TicketEvent.ticket_id, TicketEvent.kind, Ticket.number, Ticket.status,
                          Ticket.assignee_id)
                .join(Ticket, Ticket.id == TicketEvent.ticket_id)
                .where(TicketEvent.id > self.last["ticket"]).order_by(TicketEvent.id).limit(WATCH_BATCH)
            )).all():
                self.last["ticket"] = eid
                name = events.TICKET_CREATED if kind == "created" else events.TICKET_UPDATED
                out.append({"event": name, "ticket_id": ticket_id, "number": number, "kind": kind, "status": status,
                            "assignee_id": assignee})
            return out


async def reload_knowledge(runtime: Any) -> None:
    """Make knowledge-base edits take effect for the bot at once (``runtime.knowledge``, when built)."""
    knowledge = getattr(runtime, "knowledge", None)
    if knowledge is None:
        return
    try:
        await knowledge.reload()
    except Exception:
        log.exception("knowledge base reload failed")


def visible(staff: Any, message: dict[str, Any]) -> dict[str, Any] | None:
    """What of an event a staff member's browser may see (ids and states only)."""
    name = message.get("event")
    if name in CHAT_EVENTS and not staff.can("chat"):
        return None
    if name not in CHAT_EVENTS and name not in TICKET_EVENTS and name != events.KNOWLEDGE_CHANGED:
        return None
    return {"event": name, **{k: message[k] for k in FORWARDED_FIELDS if k in message}}


@route("GET", "/events", "console")
async def stream(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    staff = staff_of(request)
    hub: EventHub = console.hub
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff",
    })
    await response.prepare(request)
    queue = hub.connect()
    token = request.cookies.get(COOKIE, "")
    try:
        await response.write(b"retry: 3000\nevent: hello\ndata: {}\n\n")
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                if await console.sessions.load(token) is None:  # logged out or expired: stop streaming
                    await response.write(b"event: expired\ndata: {}\n\n")
                    break
                await response.write(b": ping\n\n")
                continue
            if message is None:
                break
            payload = visible(staff, message)
            if payload is not None:
                data = json.dumps(payload, ensure_ascii=False, default=str)
                await response.write(f"event: {payload['event']}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        hub.disconnect(queue)
    return response
