"""The JSON API under ``/api/v1`` (bearer token ``YEZHU_API_TOKEN``): the JSON channel and read access
for integrations (tickets, conversations), per DESIGN.md's HTTP contract."""

from __future__ import annotations

import hmac
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.orm import selectinload

from bot import params
from bot.runtime import RUNTIME
from bot.store.models import Building, Conversation, House, Identity, Message, Owner, Project, Ticket, utcnow
from reports import surveys
from reports.monthly import find_project
from reports.period import BadPeriod, Month

routes = web.RouteTableDef()


def authorized(request: web.Request) -> bool:
    token = request.app[RUNTIME].settings.api_token
    given = request.headers.get("Authorization", "")
    if token is None or not given.startswith("Bearer "):
        return False
    return hmac.compare_digest(given[7:].encode(), token.get_secret_value().encode())


@web.middleware
async def api_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """The bearer token, then the parameters (:mod:`bot.params`): a bad one is a JSON 400."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    if not authorized(request):
        return web.json_response(
            {"error": "unauthorized", "detail": "a valid 'Authorization: Bearer <YEZHU_API_TOKEN>' is required"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        params.check_request(request)
        return await handler(request)
    except params.BadParameter as exc:
        return web.json_response({"error": "bad_request", "parameter": exc.name, "detail": exc.detail}, status=400)


def iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def house_label(house: House | None) -> str | None:
    if house is None:
        return None
    return f"{house.building.project.code}:{house.building.name}栋{house.unit}单元{house.room}"


def ticket_json(t: Ticket, *, timeline: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": t.id,
        "number": t.number,
        "kind": t.kind,
        "category": t.category,
        "house": house_label(t.house),
        "location": t.location,
        "description": t.description,
        "status": t.status,
        "priority": t.priority,
        "assignee": t.assignee.display_name if t.assignee else None,
        "warranty": t.warranty,
        "contact_phone": t.contact_phone,
        "visit_time": t.visit_time,
        "due_at": iso(t.due_at),
        "created_at": iso(t.created_at),
        "closed_at": iso(t.closed_at),
        "rework_count": t.rework_count,
        "quote": t.quote or None,
        "group_id": t.group_id,
        "media": t.media,
    }
    if timeline:
        data["timeline"] = [
            {"kind": e.kind, "data": e.data, "actor": e.actor, "at": iso(e.at)} for e in t.events
        ]
    return data


def ticket_query() -> sa.Select[Any]:
    return sa.select(Ticket).options(
        selectinload(Ticket.house).selectinload(House.building).selectinload(Building.project),
        selectinload(Ticket.assignee),
        selectinload(Ticket.events),
    )


def ticket_ref_condition(ref: str) -> sa.ColumnElement[bool]:
    """A ticket named by its id (digits) or its number (``BX20261123-0007``)."""
    if ref.isascii() and ref.isdigit():  # an id; one too large for the table names no ticket
        ticket_id = params.parse_id(ref)
        return Ticket.id == ticket_id if ticket_id is not None else sa.false()
    return Ticket.number == ref


@routes.get("/api/v1/tickets")
async def list_tickets(request: web.Request) -> web.Response:
    limit = params.int_param(request.query, "limit", default=100, minimum=1, maximum=500)
    q = ticket_query().order_by(Ticket.id.desc()).limit(limit)
    if phone := request.query.get("owner_phone"):
        q = q.join(Owner, Owner.id == Ticket.owner_id).where(Owner.phone == phone)
    if kind := request.query.get("kind"):
        q = q.where(Ticket.kind == kind)
    if status := request.query.get("status"):
        q = q.where(Ticket.status == status)
    if project := request.query.get("project"):
        q = q.join(Project, Project.id == Ticket.project_id).where(Project.code == project)
    async with request.app[RUNTIME].db.session() as s:
        tickets = (await s.execute(q)).scalars().all()
    return web.json_response({"tickets": [ticket_json(t, timeline=True) for t in tickets]})


@routes.get("/api/v1/tickets/{ref}")
async def get_ticket(request: web.Request) -> web.Response:
    ref = request.match_info["ref"]
    async with request.app[RUNTIME].db.session() as s:
        ticket = (await s.execute(ticket_query().where(ticket_ref_condition(ref)))).scalar_one_or_none()
    if ticket is None:
        return web.json_response({"error": "not_found", "detail": f"no ticket {ref}"}, status=404)
    return web.json_response(ticket_json(ticket, timeline=True))


@routes.get("/api/v1/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    channel, sender = request.query.get("channel"), request.query.get("sender")
    if not channel or not sender:
        return web.json_response(
            {"error": "bad_request", "detail": "query parameters 'channel' and 'sender' are required"}, status=400
        )
    async with request.app[RUNTIME].db.session() as s:
        convs = (
            await s.execute(
                sa.select(Conversation)
                .join(Identity, Identity.id == Conversation.identity_id)
                .where(Identity.channel == channel, Identity.external_id == sender)
                .order_by(Conversation.id)
            )
        ).scalars().all()
        out = []
        for c in convs:
            msgs = (
                await s.execute(
                    sa.select(Message)
                    .where(Message.conversation_id == c.id, Message.direction != "note")
                    .order_by(Message.id)
                )
            ).scalars().all()
            out.append(
                {
                    "id": c.id,
                    "mode": c.mode,
                    "owner_id": c.owner_id,
                    "created_at": iso(c.created_at),
                    "messages": [
                        {
                            "id": m.id,
                            "direction": m.direction,
                            "kind": m.kind,
                            "text": m.text,
                            "intent": (m.nlu or {}).get("intent"),
                            "confidence": (m.nlu or {}).get("confidence"),
                            "author": m.author,
                            "delivery": m.delivery,
                            "delivery_error": m.delivery_error,
                            "at": iso(m.at),
                        }
                        for m in msgs
                    ],
                }
            )
    return web.json_response({"conversations": out})


@routes.post("/api/v1/nlu/parse")
async def nlu_parse(request: web.Request) -> web.Response:
    nlu = request.app[RUNTIME].nlu
    try:
        body = await request.json()
        text = body["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError
    except Exception:
        return web.json_response({"error": "bad_request", "detail": "body must be {\"text\": \"...\"}"}, status=400)
    if nlu is None:
        return web.json_response({"error": "unavailable", "detail": "no NLU model is loaded"}, status=503)
    result = await nlu.aparse(text)
    return web.json_response(result.to_dict())


@routes.get("/api/v1/surveys/summary")
async def survey_summary(request: web.Request) -> web.Response:
    """Satisfaction, loyalty and response rates for one month (default: this month, China time) and
    optionally one project (its code), as reports.surveys defines them (docs/REPORTS.md)."""
    raw_month = request.query.get("month", "").strip()
    try:
        month = Month.parse(raw_month) if raw_month else Month.containing(utcnow())
    except BadPeriod as exc:
        raise params.BadParameter("month", str(exc), exc.zh) from None
    async with request.app[RUNTIME].db.session() as s:
        try:
            project = await find_project(s, request.query.get("project", "").strip() or None)
        except LookupError as exc:
            raise params.BadParameter("project", str(exc), "没有这个楼盘代码") from None
        data = await surveys.summary(s, month, project.id if project else None)
    return web.json_response(data)
