"""The case library (客服案例库) in the console: list and search, mark a ticket or chat as a case, view,
edit, delete and export to .xlsx.

The queries are :mod:`knowledge.cases`'; this module decides who may do what (agents create,
supervisors edit and delete, everyone reads) and audits every change (``case.create``,
``case.update`` with the changed fields and their previous values, ``case.delete``, ``case.export``).
A form with a mistake comes back with everything typed still in it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from actions.labels import CASE_AUDIENCE_LABELS, COMPLAINT_CATEGORY_LABELS, REPAIR_CATEGORY_LABELS
from actions.stages import AREAS
from bot.console.core import (
    PREFIX,
    audit,
    done,
    form,
    match_id,
    page_param,
    render,
    route,
    runtime_of,
    staff_of,
    wants_json,
)
from bot.params import parse_id
from bot.store.models import CaseEntry, Conversation, Ticket, utcnow
from knowledge import cases as library

FIELDS = ("title", "area", "category", "happened", "learned", "audience", "project_id")


def _choices() -> dict[str, Any]:
    return {
        "areas": AREAS, "audiences": CASE_AUDIENCE_LABELS,
        "repair_categories": {k: v for k, v in REPAIR_CATEGORY_LABELS.items() if k != "other"},
        "complaint_categories": {k: v for k, v in COMPLAINT_CATEGORY_LABELS.items() if k != "other"},
        "category_labels": library.CATEGORY_LABELS,
    }


async def _ticket_numbers(s: Any, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await s.execute(sa.select(Ticket.id, Ticket.number).where(Ticket.id.in_(ids)))
    return {tid: number for tid, number in rows}


@route("GET", "/cases", "cases")
async def case_list(request: web.Request) -> web.StreamResponse:
    f = library.CaseFilter.from_query(request.query)
    page = page_param(request)
    async with runtime_of(request).db.session() as s:
        total = await library.count(s, f)
        rows = await library.search(s, f, limit=library.PAGE_SIZE, offset=(page - 1) * library.PAGE_SIZE)
        projects = await library.project_names(s)
        numbers = await _ticket_numbers(s, {c.ticket_id for c in rows if c.ticket_id})
    query = {k: v for k, v in (("q", f.q), ("area", f.area), ("category", f.category), ("audience", f.audience),
                               ("project", f.project_id or "")) if v}
    return render(request, "cases.html", title="案例库", page="cases", rows=rows, f=f, total=total, page_no=page,
                  pages=max(1, -(-total // library.PAGE_SIZE)), projects=projects, numbers=numbers,
                  query=urlencode(query), **_choices())


@route("GET", "/cases/export.xlsx", "cases")
async def export(request: web.Request) -> web.StreamResponse:
    """Every case the filters match (no paging) as a spreadsheet."""
    f = library.CaseFilter.from_query(request.query)
    async with runtime_of(request).db.session() as s, s.begin():
        rows = await library.search(s, f, limit=100_000)
        projects = await library.project_names(s)
        numbers = await _ticket_numbers(s, {c.ticket_id for c in rows if c.ticket_id})
        audit(s, staff_of(request), "case.export", "cases", rows=len(rows),
              filters={k: v for k, v in (("q", f.q), ("area", f.area), ("category", f.category),
                                         ("audience", f.audience), ("project_id", f.project_id)) if v})
    body = library.export_xlsx(rows, projects=projects, tickets=numbers)
    name = f"cases-{utcnow():%Y%m%d}.xlsx"
    return web.Response(body=body, headers={
        "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "Content-Disposition": f'attachment; filename="{name}"',
    })


def _id_param(value: str | None) -> int | None:
    """An id from a link or a hidden field; anything else names nothing (never an error page)."""
    return parse_id(value) if value else None


@route("GET", "/cases/new", "cases.create")
async def new_case(request: web.Request) -> web.StreamResponse:
    """The form, filled from ``?ticket=``, ``?conversation=``, or the monthly report's candidate link
    (``ticket``, ``category``, ``building``, ``project``, ``title``; all optional)."""
    q = request.query
    async with runtime_of(request).db.session() as s:
        values = await library.prefill(
            s, ticket_id=_id_param(q.get("ticket")), conversation_id=_id_param(q.get("conversation")),
            category=q.get("category", ""), building_id=_id_param(q.get("building")),
            project_id=_id_param(q.get("project")), title=q.get("title", ""))
        return await _form_page(request, s, None, values)


async def _form_page(request: web.Request, s: Any, case: CaseEntry | None, values: dict[str, Any], *,
                     error: str = "", status: int = 200) -> web.Response:
    projects = await library.project_names(s)
    ticket_number = None
    if values.get("ticket_id"):
        ticket_number = (await _ticket_numbers(s, {values["ticket_id"]})).get(values["ticket_id"])
    title = "编辑案例" if case is not None else "新增案例"
    return render(request, "case.html", status=status, title=title, page="cases", case=case, fv=values, error=error,
                  projects=projects, ticket_number=ticket_number, **_choices())


async def _case_form(request: web.Request) -> tuple[dict[str, str], list[str]]:
    """The posted form (or JSON object) and its checked audiences."""
    data = await form(request)
    if request.content_type == "application/json":
        raw = (await request.json()).get("audience", [])
        audience = [str(a) for a in raw] if isinstance(raw, list) else re.split(r"[,，、\s]+", str(raw or ""))
    else:
        audience = [str(a) for a in (await request.post()).getall("audience", [])]
    return data, [a for a in audience if a]


def _refused(request: web.Request, detail: str) -> web.Response | None:
    if wants_json(request):
        return web.json_response({"error": "refused", "detail": detail}, status=400)
    return None


@route("POST", "/cases", "cases.create")
async def create_case(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    data, audience = await _case_form(request)
    async with runtime_of(request).db.session() as s, s.begin():
        source = {"ticket_id": _id_param(data.get("ticket_id")),
                  "conversation_id": _id_param(data.get("conversation_id"))}
        try:
            values = library.validate(data, audience)
            if source["ticket_id"] is not None and await s.get(Ticket, source["ticket_id"]) is None:
                raise library.CaseError("来源工单不存在")
            if source["conversation_id"] is not None and await s.get(Conversation, source["conversation_id"]) is None:
                raise library.CaseError("来源会话不存在")
        except library.CaseError as exc:
            typed = {**{k: data.get(k, "") for k in FIELDS}, **source, "audience": audience}
            return _refused(request, str(exc)) or await _form_page(request, s, None, typed, error=str(exc), status=400)
        case = CaseEntry(**values, **source, created_by=staff.username)
        s.add(case)
        await s.flush()
        audit(s, staff, "case.create", f"case:{case.id}", title=case.title, **{k: v for k, v in source.items() if v})
    return done(request, f"{PREFIX}/cases/{case.id}", "案例已加入案例库", id=case.id)


@route("GET", "/cases/{id}", "cases")
async def case_page(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s:
        case = await s.get(CaseEntry, match_id(request))
        if case is None:
            raise web.HTTPNotFound(text="案例不存在")
        values = {k: getattr(case, k) for k in (*FIELDS, "ticket_id", "conversation_id")}
        return await _form_page(request, s, case, values)


@route("POST", "/cases/{id}", "cases.edit")
async def update_case(request: web.Request) -> web.StreamResponse:
    staff = staff_of(request)
    data, audience = await _case_form(request)
    async with runtime_of(request).db.session() as s, s.begin():
        case = await s.get(CaseEntry, match_id(request))
        if case is None:
            raise web.HTTPNotFound(text="案例不存在")
        try:
            values = library.validate(data, audience)
        except library.CaseError as exc:
            typed = {**{k: data.get(k, "") for k in FIELDS}, "audience": audience, "ticket_id": case.ticket_id,
                     "conversation_id": case.conversation_id}
            return _refused(request, str(exc)) or await _form_page(request, s, case, typed, error=str(exc), status=400)
        before = {k: getattr(case, k) for k in values}
        changed = [k for k, v in values.items() if before[k] != v]
        for k in changed:
            setattr(case, k, values[k])
        if changed:
            case.updated_at = utcnow()
        audit(s, staff, "case.update", f"case:{case.id}", changed=changed,
              before={k: (before[k][:200] if isinstance(before[k], str) else before[k]) for k in changed})
    return done(request, f"{PREFIX}/cases/{case.id}", "案例已更新" if changed else "没有修改")


@route("POST", "/cases/{id}/delete", "cases.edit")
async def delete_case(request: web.Request) -> web.StreamResponse:
    async with runtime_of(request).db.session() as s, s.begin():
        case = await s.get(CaseEntry, match_id(request))
        if case is None:
            raise web.HTTPNotFound(text="案例不存在")
        audit(s, staff_of(request), "case.delete", f"case:{case.id}", title=case.title, area=case.area,
              category=case.category, ticket_id=case.ticket_id)
        await s.delete(case)
    return done(request, f"{PREFIX}/cases", "案例已删除")
