"""Tickets (工单): filtered lists, the detail page with its timeline, and the workflow verbs.

The business rules live in :mod:`actions.workflow`; this module decides who may press which button:
the desk (agents, supervisors) dispatches, asks for acceptance, closes and reopens; the responsible
engineer starts and completes their own tickets; only supervisors change the responsible person.
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
    AWAITING,
    CLOSED,
    DESK_TURN,
    DONE,
    KIND_LABELS,
    STATUS_LABELS,
    STATUSES,
    TicketWorkflow,
    WorkflowError,
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
    """The buttons this staff member gets for this ticket (the routes check the same rules)."""
    mine = t.assignee_id == staff.id
    out: set[str] = {"note"} if staff.role != "engineer" or mine else set()
    desk = staff.can("tickets.dispatch")
    work = staff.can("tickets.work") and (mine or staff.role in ("supervisor", "admin"))
    if t.status == "new" and desk:
        out.add("dispatch")
    if t.status in ("dispatched", "reopened") and work:
        out.add("start")
    if t.status in ("dispatched", "in_progress", "reopened") and work:
        out.add("complete")
    if t.status == DONE and desk:
        out |= {"request_acceptance", "close"}
    if t.status == AWAITING and desk:
        out.add("close")
    if t.status in (DONE, AWAITING, CLOSED) and desk:
        out.add("reopen")
    if t.status not in (CLOSED, AWAITING, DONE) and (desk or work):
        out.add("visit_time")
    if t.assignee_id is not None and t.status != CLOSED and staff.can("tickets.reassign"):
        out.add("reassign")
    return out


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
        can_edit=staff.can("tickets.dispatch") and t.status != CLOSED, callbacks=callbacks,
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


VERBS = ("dispatch", "start", "complete", "request_acceptance", "close", "reopen", "reassign", "visit_time", "note")


@route("POST", "/tickets/{id}/{verb}", "tickets.view")
async def ticket_action(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    ticket_id, verb = match_id(request), request.match_info["verb"]
    if verb not in VERBS:
        raise web.HTTPNotFound()
    data = await form(request)
    rt = runtime_of(request)
    wf = TicketWorkflow(rt)
    batch = EventBatch()
    back = f"{PREFIX}/tickets/{ticket_id}"
    now = utcnow()
    async with rt.db.session() as s, s.begin():
        t = await s.get(Ticket, ticket_id, with_for_update=not rt.db.is_sqlite)
        if t is None:
            raise web.HTTPNotFound(text="工单不存在")
        if verb not in _actions(staff, t):
            if _permitted_in_other_state(staff, t, verb):
                raise Refused(f"工单当前状态为“{STATUS_LABELS.get(t.status, t.status)}”，不能执行此操作",
                            status=409, back=back)
            raise Refused("您的角色无权对该工单执行此操作", status=403, back=back) from None
        try:
            ids = await _apply(s, batch, wf, t, verb, data, staff, now)
        except WorkflowError as exc:
            raise Refused(str(exc), status=409, back=back) from None
        audit(s, staff, f"ticket.{verb}", f"ticket:{t.number}", owner_id=t.owner_id,
              **{k: v for k, v in data.items() if k in ("assignee_id", "visit_time", "reason", "note")})
    await rt.engine.after_commit(batch, ids)
    return done(request, back, "已更新", status=t.status)


def _permitted_in_other_state(staff: Staff, t: Ticket, verb: str) -> bool:
    mine = t.assignee_id == staff.id
    if verb in ("dispatch", "request_acceptance", "close", "reopen"):
        return staff.can("tickets.dispatch")
    if verb in ("start", "complete"):
        return staff.can("tickets.work") and (mine or staff.role in ("supervisor", "admin"))
    if verb == "reassign":
        return staff.can("tickets.reassign")
    if verb == "visit_time":
        return staff.can("tickets.dispatch") or (staff.can("tickets.work") and mine)
    return False


async def _apply(s: Any, batch: EventBatch, wf: TicketWorkflow, t: Ticket, verb: str, data: dict[str, str],
                 staff: Staff, now: dt.datetime) -> list[int]:
    actor = staff.username
    if verb in ("dispatch", "reassign"):
        assignee = await s.get(StaffUser, int_param(data.get("assignee_id")) or 0)
        if assignee is None:
            raise WorkflowError("请选择负责人")
        if verb == "dispatch":
            return await wf.dispatch(s, batch, t, assignee=assignee, visit_time=data.get("visit_time"), actor=actor,
                                     now=now)
        return await wf.reassign(s, batch, t, assignee=assignee, reason=data.get("reason", ""), actor=actor, now=now)
    if verb == "start":
        quotes.check_can_start(t)
        return await wf.start(s, batch, t, actor=actor, now=now)
    if verb == "complete":
        return await wf.complete(s, batch, t, actor=actor, note=data.get("note", ""),
                                 request_acceptance=data.get("request_acceptance", "1") not in ("0", "", "false"),
                                 now=now)
    if verb == "request_acceptance":
        return await wf.request_acceptance(s, batch, t, actor=actor, now=now)
    if verb == "close":
        return await wf.close(s, batch, t, actor=actor, reason=data.get("reason", ""), now=now)
    if verb == "reopen":
        return await wf.reopen(s, batch, t, actor=actor, reason=data.get("reason", ""), now=now)
    if verb == "visit_time":
        return await wf.set_visit_time(s, batch, t, visit_time=data.get("visit_time", ""), actor=actor, now=now)
    return await wf.add_note(s, batch, t, text=data.get("note", ""), actor=actor, now=now)
