"""Live updates: domain events from the shared pub/sub, fanned out to browsers as server-sent events.

Each web process subscribes once to the ``events`` channel (Redis pub/sub in production, so an owner's
message accepted by one process reaches an agent whose browser is connected to another) and hands
each event to the SSE streams of that process. Browsers get only ids and states — never message text —
and fetch what they need through the authorised console routes. The hub also reloads the bot's
knowledge base when another process changed it (``knowledge.changed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from aiohttp import web

from bot import events
from bot.console.core import COOKIE, console_of, route, staff_of

log = logging.getLogger("yezhu.console.live")

HEARTBEAT = 15.0
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

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
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
        for queue in list(self.clients):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a stalled browser: end its stream; it reconnects and refreshes
                self.clients.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)


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
