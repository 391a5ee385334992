"""Callback surveys in the console (回访): callbacks due and overdue, survey templates, the ticket page's
callback section (staff-recorded phone callbacks) and service recovery's outcome.

The business rules are in :mod:`actions.surveys`; this module decides who may do what: the desk
(agents, supervisors) records callbacks; supervisors edit templates and record the recovery call.
Every change is audited.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from actions import surveys
from actions.labels import SURVEY_KIND_LABELS
from actions.stages import AREAS
from bot.console.core import (
    PREFIX,
    Refused,
    audit,
    done,
    form,
    locked_ticket,
    match_id,
    render,
    route,
    runtime_of,
    staff_of,
)
from bot.events import EventBatch
from bot.store.models import SurveyTemplate, Ticket, utcnow

ITEM_ROWS = 10
"""Item rows on the template form (empty rows are ignored)."""


@route("GET", "/callbacks", "tickets.dispatch")
async def callbacks_page(request: web.Request) -> web.StreamResponse:
    rt = runtime_of(request)
    async with rt.db.session() as s:
        board = await surveys.callbacks_board(rt, s)
    return render(request, "callbacks.html", title="回访", page="callbacks", board=board,
                  kinds=SURVEY_KIND_LABELS)


@route("GET", "/surveys/templates", "tickets.dispatch")
async def template_list(request: web.Request) -> web.StreamResponse:
    rt = runtime_of(request)
    async with rt.db.session() as s, s.begin():
        await surveys.seed_templates(s)
        templates = (await s.execute(sa.select(SurveyTemplate).order_by(SurveyTemplate.kind, SurveyTemplate.id))
                     ).scalars().all()
    return render(request, "survey_templates.html", title="问卷模板", page="callbacks", templates=templates,
                  kinds=SURVEY_KIND_LABELS, may_edit=staff_of(request).role in ("supervisor", "admin"))


def _supervisor(request: web.Request) -> None:
    if staff_of(request).role not in ("supervisor", "admin"):
        raise Refused("只有主管可以修改问卷模板", status=403, back=f"{PREFIX}/surveys/templates")


@route("GET", "/surveys/templates/{id}", "tickets.dispatch")
async def template_edit(request: web.Request) -> web.StreamResponse:
    _supervisor(request)
    async with runtime_of(request).db.session() as s:
        template = await s.get(SurveyTemplate, match_id(request))
    if template is None:
        raise web.HTTPNotFound(text="问卷模板不存在")
    items = list(template.items or [])
    rows = items + [{"code": "", "text": "", "area": "", "type": "score"}] * max(0, ITEM_ROWS - len(items))
    return render(request, "survey_template_edit.html", title=f"编辑问卷：{template.name}", page="callbacks",
                  tpl=template, rows=rows, areas=AREAS, kinds=SURVEY_KIND_LABELS)


@route("POST", "/surveys/templates/{id}", "tickets.dispatch")
async def template_save(request: web.Request) -> web.StreamResponse:
    _supervisor(request)
    staff = staff_of(request)
    data = await form(request)
    template_id = match_id(request)
    back = f"{PREFIX}/surveys/templates/{template_id}"
    raw = [{"code": data.get(f"code_{n}", ""), "text": data.get(f"text_{n}", ""), "area": data.get(f"area_{n}", ""),
            "type": data.get(f"type_{n}", "score")} for n in range(ITEM_ROWS * 2)]
    async with runtime_of(request).db.session() as s, s.begin():
        template = await s.get(SurveyTemplate, template_id)
        if template is None:
            raise web.HTTPNotFound(text="问卷模板不存在")
        try:
            items = surveys.validate_items(raw)
            surveys.check_loyalty(template.kind, items)
        except ValueError as exc:
            raise Refused(str(exc), status=400, back=back) from None
        name = (data.get("name") or template.name).strip()[:100]
        before = [i["code"] for i in template.items or []]
        template.items, template.name = items, name
        template.active = data.get("active", "") not in ("", "0", "false")
        template.updated_by, template.updated_at = staff.username, utcnow()
        audit(s, staff, "survey.template", f"survey_template:{template.code}", before=before,
              items=[i["code"] for i in items], active=template.active)
    return done(request, f"{PREFIX}/surveys/templates", "问卷模板已保存")


def _scores(data: dict[str, str]) -> tuple[dict[str, int], dict[str, str]]:
    scores: dict[str, int] = {}
    answers: dict[str, str] = {}
    for key, value in data.items():
        if key.startswith("score_") and value.strip():
            if not value.strip().isdigit():
                raise ValueError("评分须为1-5分")
            scores[key[6:]] = int(value.strip())
        elif key.startswith("answer_") and value.strip():
            answers[key[7:]] = value.strip()
    return scores, answers


@route("POST", "/callbacks/{id}/record", "tickets.dispatch")
async def record_callback(request: web.Request) -> web.StreamResponse:
    """A callback made by phone: its scores per item and notes, on the ticket (``{id}``)."""
    staff = staff_of(request)
    rt = runtime_of(request)
    ticket_id = match_id(request)
    back = f"{PREFIX}/tickets/{ticket_id}"
    data = await form(request)
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        ticket = await locked_ticket(s, rt, ticket_id)
        try:
            scores, answers = _scores(data)
            row, recovery = await surveys.record_staff_callback(
                rt, s, batch, ticket, scores=scores, answers=answers, comment=data.get("note", ""),
                recorded_by=staff.username, channel="phone" if data.get("channel", "phone") == "phone" else "console")
        except ValueError as exc:
            raise Refused(str(exc), status=409 if "已完成" in str(exc) else 400, back=back) from None
        audit(s, staff, "survey.record", f"ticket:{ticket.number}", owner_id=ticket.owner_id, survey_id=row.id,
              scores=scores)
        survey_id, number = row.id, recovery.number if recovery else None
    await rt.engine.after_commit(batch, [])
    message = "回访已登记" + (f"，低分已生成补救单 {number}" if number else "")
    return done(request, back, message, survey_id=survey_id, recovery=number)


@route("POST", "/recovery/{id}/outcome", "tickets.reassign")
async def recovery_outcome(request: web.Request) -> web.StreamResponse:
    """The supervisor's recovery call: its outcome closes the recovery ticket; a recheck follows."""
    staff = staff_of(request)
    rt = runtime_of(request)
    ticket_id = match_id(request)
    back = f"{PREFIX}/tickets/{ticket_id}"
    data = await form(request)
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        ticket = await locked_ticket(s, rt, ticket_id)
        try:
            recheck = await surveys.record_recovery_outcome(rt, s, batch, ticket, outcome=data.get("outcome", ""),
                                                            actor=staff.username)
        except ValueError as exc:
            raise Refused(str(exc), status=409, back=back) from None
        audit(s, staff, "survey.recovery", f"ticket:{ticket.number}", owner_id=ticket.owner_id,
              outcome=data.get("outcome", "")[:200])
        recheck_id = recheck.id if recheck else None
    await rt.engine.after_commit(batch, [])
    return done(request, back, "补救结果已登记，将安排二次回访", recheck=recheck_id)


async def ticket_section(s: Any, ticket: Ticket) -> dict[str, Any]:
    """The ticket page's callback section (``ticket.html`` includes ``_callbacks.html``)."""
    return await surveys.for_ticket(s, ticket)
