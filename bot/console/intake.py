"""Tickets staff open and edit (工单登记): phone calls, walk-ins, matters arising in a taken-over chat.

A ticket opened here is the same as one the bot opens: :func:`actions.tickets.open_ticket` numbers it,
sets its SLA due time and first timeline entry, and a repair gets the same warranty verdict
(:func:`actions.tickets.warranty_verdict` with the project's table) the bot tells owners. What this
module adds is the desk's side: who called (an owner found by phone, name or house — with
autocomplete — or nobody, for a public spot), the channel it came in by, and a form pre-filled from a
chat. Edits (category, priority, place, description, visit time) go on the timeline with what changed
and in the audit log; a new visit time is told to the owner through the workflow's own verb. An urgent
repair logged here (or made urgent by an edit) pages the duty staff exactly as the bot's emergency
does (:func:`actions.alerts.raise_emergency`: SMS, WeCom group, the supervisor when nobody takes it).

Routes are registered before ``tickets.py``'s ``/tickets/{id}`` so that ``/tickets/new`` is this form.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from actions import labels as L
from actions.alerts import raise_emergency
from actions.tickets import local_now, open_ticket, warranty_verdict
from actions.workflow import CLOSED, TicketWorkflow, WorkflowError, compute_due, project_settings
from bot import events
from bot.console.core import (
    PREFIX,
    Refused,
    audit,
    done,
    form,
    int_param,
    locked_ticket,
    match_id,
    render,
    route,
    runtime_of,
    staff_of,
)
from bot.events import EventBatch
from bot.imports import Invalid, parse_phone, split_house_label
from bot.store.models import (
    Building,
    Conversation,
    House,
    Identity,
    Message,
    Owner,
    OwnerHouse,
    Project,
    Ticket,
    TicketEvent,
    utcnow,
)
from nlu.emergency import detect_emergencies
from nlu.normalize import normalize

HOUSE_RE = re.compile(r"^\s*([0-9A-Za-z]+)\s*(?:栋|幢|号楼|座|#|-|/|\s)\s*([0-9]+)\s*(?:单元|-|/|\s)\s*([0-9]+)\s*室?\s*$")
NO_UNIT = re.compile(r"^\s*([0-9A-Za-z]+)\s*(?:栋|幢|号楼|座|#)\s*([0-9]+)\s*室?\s*$")
PHONE_NOISE = re.compile(r"[\s\-()]")
COUNTRY_CODE = re.compile(r"^(\+?86|0086)(?=1\d{10}$)")


def parse_house(q: str) -> tuple[str, str | None, str] | None:
    """A house as the desk types it: ``3栋2单元501``, ``3-2-501``, ``三栋二单元501``, ``3#2-501``, ``B座1单元201``
    (the roster's own parser), or without the unit, ``3栋501`` (unit: any)."""
    try:
        parts = split_house_label(q)
    except Invalid:  # a part too long to be a building, unit or room
        return None
    if parts is not None:
        return parts
    if m := HOUSE_RE.match(q):
        return m[1].upper(), m[2], m[3]
    if m := NO_UNIT.match(q):
        return m[1].upper(), None, m[2]
    return None


def phone_digits(q: str) -> str:
    """``138 0000 0001``, ``+86 138-0000-0001`` → ``13800000001``; anything else (``3-2-501``) unchanged."""
    compact = COUNTRY_CODE.sub("", PHONE_NOISE.sub("", q.strip()))
    return compact if compact.isdigit() and len(compact) >= 7 else q.strip()


def houses_matching(place: tuple[str, str | None, str]) -> sa.Select[Any]:
    building, unit, room = place
    query = (sa.select(House.id).join(Building, Building.id == House.building_id)
             .where(Building.name == building, House.room == room))
    return query.where(House.unit == unit) if unit is not None else query
PRIORITIES = {"repair": ("normal", "urgent"), "complaint": ("normal", "serious", "group"),
              "inquiry": ("normal",), "certificate": ("normal",)}
MAX_DESCRIPTION = 2000
ENGLISH_NOTE = re.compile(r"\s*\([^()]*[A-Za-z][^()]*\)")


def _cn(message: str) -> str:
    """The Chinese half of a bilingual message (bot/imports.py adds English in parentheses)."""
    return ENGLISH_NOTE.sub("", message)


def _owner_json(o: Owner) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, "phone": o.phone,
            "houses": [{"id": oh.house.id, "label": f"{oh.house.building.project.name} {oh.house.label}"}
                       for oh in o.houses]}


def _owner_query() -> sa.Select[Any]:
    return sa.select(Owner).options(selectinload(Owner.houses).selectinload(OwnerHouse.house)
                                    .selectinload(House.building).selectinload(Building.project))


async def find_owners(s: AsyncSession, q: str, limit: int = 10) -> list[Owner]:
    """Owners by phone (full or its last digits), name, or house (``3栋2单元501``, ``3-2-501``)."""
    q = phone_digits(q[:50])
    if not q:
        return []
    query = _owner_query().limit(limit).order_by(Owner.id)
    if place := parse_house(q):
        query = query.where(Owner.id.in_(sa.select(OwnerHouse.owner_id)
                                         .where(OwnerHouse.house_id.in_(houses_matching(place)))))
    elif q.isdigit():
        query = query.where(Owner.phone.endswith(q) if len(q) <= 4 else Owner.phone.contains(q))
    else:
        query = query.where(Owner.name.contains(q))
    return list((await s.execute(query)).scalars().unique())


@route("GET", "/api/owners", "tickets.dispatch")
async def owner_autocomplete(request: web.Request) -> web.StreamResponse:
    q = request.query.get("q", "")
    async with runtime_of(request).db.session() as s, s.begin():
        owners = await find_owners(s, q)
        if q.strip():
            audit(s, staff_of(request), "owner.search", None, query=q.strip()[:50], results=len(owners))
    return web.json_response({"owners": [_owner_json(o) for o in owners]})


async def _prefill(s: AsyncSession, request: web.Request) -> dict[str, Any]:
    """Values for a blank form, or one pre-filled from a chat (``?conversation=ID``) or an owner."""
    values: dict[str, Any] = {"origin": "phone", "kind": "repair", "priority": "normal", "category": "",
                              "description": "", "contact_phone": "", "visit_time": "", "location": "",
                              "owner": None, "house_id": None, "conversation_id": None}
    conv_id = int_param(request.query.get("conversation"))
    owner_id = int_param(request.query.get("owner"))
    if conv_id:
        conv = await s.get(Conversation, conv_id)
        if conv is None:
            raise web.HTTPNotFound(text="会话不存在")
        identity = await s.get(Identity, conv.identity_id)
        values["conversation_id"] = conv.id
        values["origin"] = identity.channel if identity and identity.channel in L.ORIGIN_LABELS else "wechat"
        owner_id = owner_id or conv.owner_id
        inbound = list((await s.execute(
            sa.select(Message).where(Message.conversation_id == conv.id, Message.direction == "in",
                                     Message.kind.in_(("text", "voice"))).order_by(Message.id.desc()).limit(12)
        )).scalars())
        said = [m for m in reversed(inbound) if len((m.text or "").strip()) >= 4]
        values["description"] = "\n".join(m.text.strip() for m in said[-3:])
        kind_found = False
        for m in inbound:  # what the bot understood of the owner's words, newest first
            nlu = m.nlu or {}
            if nlu.get("intent") in PRIORITIES and not kind_found:
                values["kind"], kind_found = nlu["intent"], True
            for e in nlu.get("entities") or []:
                if not isinstance(e, dict):
                    continue
                if e.get("entity") in ("repair_category", "complaint_category") and not values["category"]:
                    values["category"] = str(e.get("value") or "")
                if e.get("entity") == "urgency":
                    values["kind"], values["priority"] = "repair", "urgent"
                if e.get("entity") == "severity" and values["kind"] == "complaint":
                    values["priority"] = "serious"
                if e.get("entity") == "phone" and not values["contact_phone"]:
                    values["contact_phone"] = str(e.get("value") or "")
        if identity is not None and identity.channel == "sms" and not values["contact_phone"]:
            values["contact_phone"] = identity.external_id
    if owner_id:
        owner = (await s.execute(_owner_query().where(Owner.id == owner_id))).scalar_one_or_none()
        if owner is not None:
            values["owner"] = _owner_json(owner)
            values["contact_phone"] = values["contact_phone"] or owner.phone
            if len(owner.houses) == 1:
                values["house_id"] = owner.houses[0].house_id
    return values


@route("GET", "/tickets/new", "tickets.dispatch")
async def new_ticket_form(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s:
        values = await _prefill(s, request)
    return render(request, "ticket_new.html", title="新建工单", page="tickets", values=values,
                  priorities=PRIORITIES, categories={k: L.categories_for(k) for k in L.KIND_LABELS})


async def _house_and_project(s: AsyncSession, house_id: int | None, owner: Owner | None,
                             location: str) -> tuple[House | None, Project | None]:
    house = None
    if house_id:
        house = (await s.execute(sa.select(House).where(House.id == house_id).options(
            selectinload(House.building).selectinload(Building.project)))).scalar_one_or_none()
        if house is None:
            raise Refused("所选房屋不存在")
        if owner is not None:
            mine = await s.scalar(sa.select(sa.func.count()).select_from(OwnerHouse)
                                  .where(OwnerHouse.owner_id == owner.id, OwnerHouse.house_id == house.id))
            if not mine:
                raise Refused("所选房屋不属于该业主，请重新选择")
        return house, house.building.project
    if not location:
        raise Refused("请选择业主的房屋，或填写公共区域的具体位置（如：5栋电梯、地下车库B2）")
    project = None
    if owner is not None:  # a public spot in the owner's own estate
        row = (await s.execute(
            sa.select(Project).join(Building, Building.project_id == Project.id).join(House, House.building_id == Building.id)
            .join(OwnerHouse, OwnerHouse.house_id == House.id).where(OwnerHouse.owner_id == owner.id).limit(1)
        )).scalar_one_or_none()
        project = row
    if project is None:
        project = (await s.execute(sa.select(Project).order_by(Project.id).limit(1))).scalar_one_or_none()
    return None, project


def verdict_for(category: str | None, description: str, house: House | None, project: Project | None,
                now: Any) -> dict[str, Any]:
    """The warranty verdict exactly as the bot gives it (actions.policy ``_verdict``)."""
    today = local_now(now).date()
    if house is None:
        return warranty_verdict("public_facility", "", None, {}, today).to_dict()
    table = ((project.settings if project else None) or {}).get("warranty") or {}
    return warranty_verdict(category, description, house.handover_date, table, today).to_dict()


async def _page_duty(s: AsyncSession, batch: EventBatch, rt: Any, ticket: Ticket, house: House | None,
                     now: Any) -> None:
    """An urgent repair from the desk (a phoned-in gas leak, flooding) pages the people on duty as the
    bot's emergency flow does; what the danger is comes from the description, as the bot reads it."""
    found = detect_emergencies(normalize(ticket.description).text)
    what = L.URGENCY_LABELS[found[0].kind] if found else f"{L.category_label('repair', ticket.category)}紧急报修"
    where = house.label if house is not None else (ticket.location or "")
    await raise_emergency(s, batch, rt, ticket=ticket, what=what, location=where, now=now,
                          conversation_id=ticket.conversation_id)


def _clean(data: dict[str, str]) -> dict[str, Any]:
    kind = data.get("kind", "")
    if kind not in L.KIND_LABELS:
        raise Refused("请选择工单类型")
    category = data.get("category", "").strip()
    allowed = L.categories_for(kind)
    if allowed and category not in allowed:
        category = "other" if not category else category
        if category not in allowed:
            raise Refused("请选择正确的类别")
    priority = data.get("priority", "normal") or "normal"
    if priority not in PRIORITIES[kind]:
        raise Refused(f"{L.KIND_LABELS[kind]}工单的紧急程度只能是："
                      + "、".join(L.PRIORITY_LABELS[p] for p in PRIORITIES[kind]))
    description = data.get("description", "").strip()
    if not description:
        raise Refused("请填写问题描述")
    if len(description) > MAX_DESCRIPTION:
        raise Refused(f"问题描述请控制在{MAX_DESCRIPTION}字以内")
    phone = data.get("contact_phone", "").strip()
    if phone:
        try:
            phone = parse_phone(phone)
        except Invalid as exc:
            raise Refused(_cn(str(exc))) from None
    origin = data.get("origin", "")
    if origin not in L.ORIGIN_LABELS:
        raise Refused("请选择来源（电话、来访、微信或短信）")
    return {"kind": kind, "category": category or None, "priority": priority, "description": description,
            "contact_phone": phone or None, "visit_time": data.get("visit_time", "").strip()[:60] or None,
            "location": data.get("location", "").strip()[:100], "origin": origin}


@route("POST", "/tickets", "tickets.dispatch")
async def create_ticket(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    data = await form(request)
    values = _clean(data)
    rt = runtime_of(request)
    now = utcnow()
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        owner = await s.get(Owner, int_param(data.get("owner_id")) or 0) if data.get("owner_id") else None
        if data.get("owner_id") and owner is None:
            raise Refused("所选业主不存在")
        conv_id = int_param(data.get("conversation_id"))
        if conv_id and await s.get(Conversation, conv_id) is None:
            raise Refused("来源会话不存在")
        house, project = await _house_and_project(s, int_param(data.get("house_id")), owner, values["location"])
        if owner is None and values["contact_phone"] is None:
            raise Refused("未关联业主时请填写联系电话，以便回访")
        warranty = verdict_for(values["category"], values["description"], house, project, now) \
            if values["kind"] == "repair" else None
        ticket = await open_ticket(
            s, kind=values["kind"], project=project, description=values["description"], category=values["category"],
            house=house, location=None if house else values["location"], owner_id=owner.id if owner else None,
            conversation_id=conv_id, contact_phone=values["contact_phone"] or (owner.phone if owner else None),
            priority=values["priority"], visit_time=values["visit_time"], warranty=warranty, actor=staff.username,
            now=now,
        )
        ticket.origin = values["origin"]
        batch.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind=ticket.kind,
                   priority=ticket.priority, conversation_id=conv_id)
        if ticket.kind == "repair" and ticket.priority == "urgent":
            await _page_duty(s, batch, rt, ticket, house, now)
        audit(s, staff, "ticket.create", f"ticket:{ticket.number}", owner_id=owner.id if owner else None,
              origin=values["origin"], kind=values["kind"])
    await batch.publish(rt.services.pubsub)
    message = f"已创建工单 {ticket.number}"
    if warranty is not None:
        message += f"。保修判定：{warranty['reason']}"
    return done(request, f"{PREFIX}/tickets/{ticket.id}", message, ticket_id=ticket.id, number=ticket.number)


EDITABLE = ("category", "priority", "location", "description")


@route("POST", "/tickets/{id}/edit", "tickets.dispatch")
async def edit_ticket(request: web.Request) -> web.StreamResponse:
    """Change what the ticket says; every change is on the timeline (old → new) and in the audit log."""
    staff = staff_of(request)
    ticket_id = match_id(request)
    data = await form(request)
    rt = runtime_of(request)
    back = f"{PREFIX}/tickets/{ticket_id}"
    now = utcnow()
    batch = EventBatch()
    ids: list[int] = []
    async with rt.db.session() as s, s.begin():
        t = await locked_ticket(s, rt, ticket_id)
        if t.status == CLOSED:
            raise Refused("工单已关闭，如需修改请先返修", status=409, back=back)
        values = _clean({**{"kind": t.kind, "origin": t.origin or "phone",
                            "contact_phone": t.contact_phone or "", "category": t.category or "",
                            "priority": t.priority, "description": t.description, "location": t.location or ""},
                         **{k: v for k, v in data.items() if k in EDITABLE}})
        changes: dict[str, list[Any]] = {}
        for key in EDITABLE:
            new = values[key] if key != "location" else (values["location"] or None)
            if key == "location" and t.house_id is not None and not new:
                continue  # a home repair keeps its house; the location is an optional detail
            if (getattr(t, key) or None) != (new or None):
                changes[key] = [getattr(t, key), new]
                setattr(t, key, new)
        if "priority" in changes:
            t.due_at = compute_due(t.kind, t.priority, t.created_at or now, await project_settings(s, t))
            changes["due_at"] = [None, t.due_at.isoformat()]
        if t.kind == "repair" and ({"category", "description"} & changes.keys()):
            house = (await s.execute(sa.select(House).where(House.id == t.house_id).options(
                selectinload(House.building).selectinload(Building.project)))).scalar_one_or_none() \
                if t.house_id else None
            verdict = verdict_for(t.category, t.description, house, house.building.project if house else None, now)
            if verdict != t.warranty:
                changes["warranty"] = [(t.warranty or {}).get("reason"), verdict["reason"]]
                t.warranty = verdict
        if t.kind == "repair" and changes.get("priority", [None, None])[1] == "urgent":
            house = (await s.execute(sa.select(House).where(House.id == t.house_id).options(
                selectinload(House.building)))).scalar_one_or_none() if t.house_id else None
            await _page_duty(s, batch, rt, t, house, now)
        if changes:
            t.updated_at = now
            s.add(TicketEvent(ticket_id=t.id, kind="edited", actor=staff.username, at=now, data={"changes": changes}))
            batch.emit(events.TICKET_UPDATED, ticket_id=t.id, number=t.number, kind="edited", status=t.status,
                       assignee_id=t.assignee_id, actor=staff.username)
        visit = data.get("visit_time", "").strip()
        if visit and visit != (t.visit_time or ""):
            try:
                ids = await TicketWorkflow(rt).set_visit_time(s, batch, t, visit_time=visit, actor=staff.username,
                                                              now=now)
            except WorkflowError as exc:
                raise Refused(str(exc), status=409, back=back) from None
            changes["visit_time"] = [None, visit]
        if not changes:
            raise Refused("没有需要保存的修改", back=back)
        audit(s, staff, "ticket.edit", f"ticket:{t.number}", owner_id=t.owner_id, changes=sorted(changes))
    await rt.engine.after_commit(batch, ids)
    return done(request, back, "已保存修改")
