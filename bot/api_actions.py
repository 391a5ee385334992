"""``POST /api/v1/tickets/{ref}/actions``: ticket workflow verbs for field-service apps and scripts.

The same path as the console's buttons (``TicketWorkflow.perform`` in actions/workflow.py): the
actor's role is checked as the console checks a logged-in staff member's, the verb runs under the
same transition table, the owner is told what the console would tell them, and the timeline and the
audit log name the actor (the audit row also says ``"via": "api"``).

Body (JSON)::

    {"verb": "dispatch", "actor": "kefu", "assignee": "gongcheng", "visit_time": "明天上午"}

Verbs and their fields: ``dispatch`` (``assignee`` username, optional ``visit_time``), ``start``,
``complete`` (optional ``note``, ``request_acceptance`` default true), ``request_acceptance``,
``close`` (optional ``reason``), ``reopen`` (``reason``: a rework, counted), ``note`` (``text``),
``reassign`` (``assignee``, ``reason``; supervisors), ``visit_time`` (``visit_time``).

Errors are JSON ``{"error": code, "detail": English, "detail_zh": 中文}`` with 400 (bad body, unknown
verb, missing or unknown field value), 403 (unknown or inactive actor, role not allowed), 404 (no such
ticket) or 409 (the ticket's status or the workflow's rules refuse it). Nothing changes on an error.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from actions.workflow import VERBS, TicketWorkflow, WorkflowError
from bot import params
from bot.api import ticket_json, ticket_query, ticket_ref_condition
from bot.events import EventBatch
from bot.runtime import RUNTIME
from bot.store.models import StaffUser, Ticket, utcnow

routes = web.RouteTableDef()

REQUIRED: dict[str, tuple[str, ...]] = {
    "dispatch": ("assignee",),
    "reopen": ("reason",),
    "note": ("text",),
    "reassign": ("assignee", "reason"),
    "visit_time": ("visit_time",),
}
"""Fields a verb cannot do without (the workflow would refuse it anyway; the API says which is missing)."""
TEXT_FIELDS = ("actor", "assignee", "visit_time", "reason", "note", "text")
FIELD_ZH = {"actor": "操作人（actor）", "assignee": "负责人（assignee）", "reason": "原因（reason）",
            "text": "备注内容（text）", "visit_time": "上门时间（visit_time）"}


def error(status: int, code: str, detail: str, detail_zh: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "detail": detail, "detail_zh": detail_zh, **extra}, status=status)


def _fields(body: Any) -> dict[str, Any] | web.Response:
    """The body's fields, checked like every form value (text only, no control characters)."""
    if not isinstance(body, dict):
        return error(400, "bad_request", 'the body must be a JSON object such as {"verb": "start", "actor": "laochen"}',
                     '请求体须为 JSON 对象，例如 {"verb": "start", "actor": "laochen"}')
    out: dict[str, Any] = {}
    for key in ("verb", *TEXT_FIELDS):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            return error(400, "bad_request", f"'{key}' must be a string", f"字段 {key} 须为文本", field=key)
        out[key] = value
    flag = body.get("request_acceptance", True)
    if not isinstance(flag, bool):
        return error(400, "bad_request", "'request_acceptance' must be true or false",
                     "字段 request_acceptance 须为 true 或 false", field="request_acceptance")
    out["request_acceptance"] = flag
    params.check_form({k: v for k, v in out.items() if isinstance(v, str)})
    return out


@routes.post("/api/v1/tickets/{ref}/actions")
async def ticket_action(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        body = None
    fields = _fields(body)
    if isinstance(fields, web.Response):
        return fields
    verb = fields.get("verb", "").strip()
    if verb not in VERBS:
        return error(400, "unknown_verb", f"'verb' must be one of: {', '.join(VERBS)}",
                     f"未知的操作 verb，可用：{'、'.join(VERBS)}", verbs=list(VERBS))
    username = fields.get("actor", "").strip()
    if not username:
        return error(400, "missing_field", "'actor' (a staff username) is required", "请提供操作人 actor（员工用户名）",
                     field="actor")
    if verb == "note" and not fields.get("text", "").strip():
        fields["text"] = fields.get("note", "")
    for name in REQUIRED.get(verb, ()):
        if not fields.get(name, "").strip():
            return error(400, "missing_field", f"'{name}' is required for {verb}",
                         f"{verb} 操作须提供{FIELD_ZH.get(name, name)}", field=name)

    try:
        return await _act(request, verb, fields)
    except _Refusal as refusal:
        return refusal.response


class _Refusal(Exception):
    """Leave the transaction (rolled back) with this answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


async def _act(request: web.Request, verb: str, fields: dict[str, Any]) -> web.Response:
    rt = request.app[RUNTIME]
    ref = request.match_info["ref"]
    username = fields["actor"].strip()
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        query = sa.select(Ticket).where(ticket_ref_condition(ref))
        if not rt.db.is_sqlite:
            query = query.with_for_update()
        ticket = (await s.execute(query)).scalar_one_or_none()
        if ticket is None:
            raise _Refusal(error(404, "not_found", f"no ticket {ref}", f"工单 {ref} 不存在"))
        actor = (await s.execute(sa.select(StaffUser).where(StaffUser.username == username))).scalar_one_or_none()
        if actor is None:
            raise _Refusal(error(403, "unknown_actor", f"no staff user {username!r}", f"员工 {username} 不存在",
                                 field="actor"))
        if not actor.active:
            raise _Refusal(error(403, "inactive_actor", f"staff user {username!r} is deactivated",
                                 f"员工 {username} 的账号已停用", field="actor"))
        assignee = None
        if verb in ("dispatch", "reassign"):
            wanted = fields["assignee"].strip()
            assignee = (await s.execute(sa.select(StaffUser).where(StaffUser.username == wanted))).scalar_one_or_none()
            if assignee is None:
                raise _Refusal(error(400, "unknown_assignee", f"no staff user {wanted!r}", f"负责人 {wanted} 不存在",
                                     field="assignee"))
        status = ticket.status
        try:
            ids = await TicketWorkflow(rt).perform(
                s, batch, ticket, verb, actor=actor, assignee=assignee, visit_time=fields.get("visit_time"),
                reason=fields.get("reason", ""), note=fields.get("text" if verb == "note" else "note", ""),
                request_acceptance=fields["request_acceptance"], via="api", now=utcnow())
        except WorkflowError as exc:
            raise _Refusal(error(exc.status, exc.code, exc.en, str(exc), ticket_status=status)) from None
        ticket_id = ticket.id
    await rt.engine.after_commit(batch, ids)
    async with rt.db.session() as s:
        fresh = (await s.execute(ticket_query().where(Ticket.id == ticket_id))).scalar_one()
    return web.json_response(ticket_json(fresh, timeline=True))
