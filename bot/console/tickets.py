"""Tickets (工单): filtered lists, the detail page with its timeline, and the workflow verbs.

The business rules, and who may press which button, live in :mod:`actions.workflow`
(``allowed_verbs``, ``TicketWorkflow.perform``), shared with the JSON API's ticket actions: the desk
(agents, supervisors) dispatches, asks for acceptance, closes and reopens; the responsible engineer
starts and completes their own tickets; only supervisors change the responsible person.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote as quote_url

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.orm import selectinload

from actions import quotes
from actions.labels import TICKET_EVENT_LABELS, categories_for, label
from actions.workflow import (
    CLOSED,
    DESK_TURN,
    KIND_LABELS,
    STATUS_LABELS,
    STATUSES,
    VERBS,
    TicketWorkflow,
    WorkflowError,
    allowed_verbs,
    ensure_due,
    is_overdue,
)
from bot.console.core import (
    PREFIX,
    Refused,
    Staff,
    audit,
    done,
    form,
    int_param,
    locked_ticket,
    match_id,
    page_param,
    render,
    route,
    runtime_of,
    shown_phone,
    staff_list,
    staff_of,
)
from bot.console.intake import PRIORITIES
from bot.console.repairs import may_work, ticket_gallery
from bot.console.surveys import ticket_section as survey_section
from bot.events import EventBatch
from bot.store.models import Building, House, Project, StaffUser, Ticket, utcnow
from knowledge.cases import cases_of_ticket

PAGE_SIZE = 50
NEAR_DUE = dt.timedelta(hours=2)
"""A ticket due within this time is marked 临近超时."""
URGENT_FIRST = {"urgent": 3, "group": 3, "serious": 2}


def near_due(t: Ticket, now: dt.datetime) -> bool:
    return t.status in DESK_TURN and t.due_at is not None and now <= t.due_at < now + NEAR_DUE


def _ticket_query() -> sa.Select[Any]:
    return sa.select(Ticket).options(
        selectinload(Ticket.house).selectinload(House.building).selectinload(Building.project),
        selectinload(Ticket.assignee),
        selectinload(Ticket.owner),
    )


def place(t: Ticket) -> str:
    if t.house is not None:
        return t.house.label
    return t.location or ""


@route("GET", "/tickets", "tickets.view")
async def ticket_list(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    q = request.query
    filters = {k: q.get(k, "") for k in ("kind", "status", "project", "building", "overdue", "mine", "q", "sort")}
    page = page_param(request)
    now = utcnow()
    query = _ticket_query()
    if filters["kind"] in KIND_LABELS:
        query = query.where(Ticket.kind == filters["kind"])
    if filters["status"] == "open":
        query = query.where(Ticket.status != CLOSED)
    elif filters["status"] in STATUSES:
        query = query.where(Ticket.status == filters["status"])
    if filters["project"]:
        query = query.join(Project, Project.id == Ticket.project_id).where(Project.code == filters["project"])
    if filters["building"]:
        query = (query.join(House, House.id == Ticket.house_id).join(Building, Building.id == House.building_id)
                 .where(Building.name == filters["building"]))
    if filters["overdue"]:
        query = query.where(Ticket.status.in_(DESK_TURN), Ticket.due_at.is_not(None), Ticket.due_at < now)
    if filters["mine"]:
        query = query.where(Ticket.assignee_id == staff.id)
    if filters["q"]:
        query = query.where(Ticket.number.contains(filters["q"].strip().upper()))
    total = (await _count(request, query))
    if filters["sort"] == "new":
        query = query.order_by(Ticket.id.desc())
    else:  # urgency first, then the SLA: emergencies and serious complaints on top, overdue before near-due
        query = query.order_by((Ticket.status == CLOSED), sa.case(URGENT_FIRST, value=Ticket.priority, else_=0).desc(),
                               Ticket.due_at.is_(None), Ticket.due_at, Ticket.id)
    query = query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    async with runtime_of(request).db.session() as s:
        tickets = list((await s.execute(query)).scalars())
        projects = (await s.execute(sa.select(Project.code, Project.name).order_by(Project.code))).all()
    rows = [{
        "t": t, "place": place(t), "overdue": is_overdue(t, now), "near": near_due(t, now),
        "owner": t.owner.name if t.owner else "",
        "phone": shown_phone(staff, t.contact_phone or (t.owner.phone if t.owner else None),
                             assigned_to_me=t.assignee_id == staff.id),
    } for t in tickets]
    return render(request, "tickets.html", title="工单", page="tickets", rows=rows, filters=filters,
                  projects=projects, total=total, page_no=page, pages=max(1, -(-total // PAGE_SIZE)))


async def _count(request: web.Request, query: sa.Select[Any]) -> int:
    async with runtime_of(request).db.session() as s:
        return int((await s.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one())


def _actions(staff: Staff, t: Ticket) -> set[str]:
    """The buttons this staff member gets for this ticket (``TicketWorkflow.perform`` checks the same rules)."""
    return allowed_verbs(staff, t)


@route("GET", "/tickets/{id}", "tickets.view")
async def ticket_page(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    ticket_id = match_id(request)
    async with runtime_of(request).db.session() as s, s.begin():
        t = (await s.execute(_ticket_query().options(selectinload(Ticket.events)).where(Ticket.id == ticket_id))
             ).scalar_one_or_none()
        if t is None:
            raise web.HTTPNotFound(text="工单不存在")
        await ensure_due(s, t)
        engineers = await staff_list(s, ("engineer", "supervisor"))
        photos = await ticket_gallery(s, t)
        cases = await cases_of_ticket(s, t.id)
        project = await s.get(Project, t.project_id) if t.project_id else None
        callbacks = await survey_section(s, t)
        audit(s, staff, "ticket.view", f"ticket:{t.number}", owner_id=t.owner_id)
    mine = t.assignee_id == staff.id
    timeline = [{
        "e": e, "label": label(TICKET_EVENT_LABELS, e.kind, "记录"),
        "status": STATUS_LABELS.get(str((e.data or {}).get("status")), ""),
    } for e in t.events]
    return render(
        request, "ticket.html", title=f"工单 {t.number}", page="ticket", t=t, place=place(t),
        overdue=is_overdue(t, utcnow()), timeline=timeline, actions=_actions(staff, t), engineers=engineers,
        owner_phone=shown_phone(staff, t.owner.phone if t.owner else None, assigned_to_me=mine),
        contact_phone=shown_phone(staff, t.contact_phone, assigned_to_me=mine),
        can_see_owner=staff.can("owners"), photos=photos, may_work=may_work(staff, t),
        quote=t.quote or None, quote_possible=_quote_possible(t), dial=_dial(staff, t, mine),
        navigate=_navigate(t, project), near=near_due(t, utcnow()),
        categories=categories_for(t.kind), priorities=PRIORITIES[t.kind] if t.kind in PRIORITIES else ("normal",),
        can_edit=staff.can("tickets.dispatch") and t.status != CLOSED, cases=cases, callbacks=callbacks,
    )


def _quote_possible(t: Ticket) -> bool:
    """A repair out of warranty (or not judged yet) may be charged for, before its work is done."""
    return t.kind == "repair" and (t.warranty or {}).get("covered") is not True and \
        t.status in ("new", "dispatched", "reopened", "in_progress") and \
        (t.quote or {}).get("status") in (None, quotes.DECLINED)  # none yet, or the owner said no


def _dial(staff: Staff, t: Ticket, mine: bool) -> str:
    """The number a tel: link may call: the staff member must be allowed to see it in full."""
    phone = t.contact_phone or (t.owner.phone if t.owner else "")
    return phone if phone and (staff.can("phones") or mine) else ""


def _navigate(t: Ticket, project: Project | None) -> str:
    """A map search for the house or spot (Amap's public URI API; the phone opens its map app)."""
    where = " ".join(x for x in ((project.city or "") if project else "", project.name if project else "",
                                 t.house.building.name + "栋" if t.house else (t.location or "")) if x)
    return f"https://uri.amap.com/search?keyword={quote_url(where)}" if where.strip() else ""


@route("POST", "/tickets/{id}/{verb}", "tickets.view")
async def ticket_action(request: web.Request) -> web.StreamResponse:
    """A workflow verb from the ticket page: the same path as ``POST /api/v1/tickets/{ref}/actions``."""
    staff = staff_of(request)
    ticket_id, verb = match_id(request), request.match_info["verb"]
    if verb not in VERBS:
        raise web.HTTPNotFound()
    data = await form(request)
    rt = runtime_of(request)
    batch = EventBatch()
    back = f"{PREFIX}/tickets/{ticket_id}"
    async with rt.db.session() as s, s.begin():
        t = await locked_ticket(s, rt, ticket_id)
        assignee = None
        if verb in ("dispatch", "reassign"):
            assignee = await s.get(StaffUser, int_param(data.get("assignee_id")) or 0)
        try:
            ids = await TicketWorkflow(rt).perform(
                s, batch, t, verb, actor=staff, assignee=assignee, visit_time=data.get("visit_time"),
                reason=data.get("reason", ""), note=data.get("note", ""),
                request_acceptance=data.get("request_acceptance", "1") not in ("0", "", "false"), now=utcnow())
        except WorkflowError as exc:
            raise Refused(str(exc), status=exc.status, back=back) from None
    await rt.engine.after_commit(batch, ids)
    return done(request, back, "已更新", status=t.status)
