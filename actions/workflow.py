"""The ticket workflow (工单流转): one responsible person, status transitions, SLA due times, owner notices.

Statuses (DOMAIN.md "Repairs"/"Complaints")::

    new 新建 → dispatched 已派单 → in_progress 处理中 → done 已完工 → awaiting_acceptance 待验收 → closed 已关闭
                                                                    ↘ reopened 返修 (rework_count + 1) ↗

* **One responsible person** (责任到人): ``dispatch`` names the engineer once; after that the only way to
  change them is ``reassign`` with a written reason, which the timeline keeps.
* **Due times** come from :data:`DEFAULT_SLA_HOURS` per kind and priority, overridden per project by
  ``Project.settings["sla"]`` (same shape, hours; partial overrides are fine). A ticket is overdue while
  it is the desk's turn (not awaiting the owner's acceptance, not closed) and past ``due_at``.
* **The owner is told** every change that matters to them (dispatched with the engineer and visit time;
  done — please check and accept within :data:`ACCEPTANCE_DAYS` days; rework; a new engineer; closed)
  in their own chat: ``runtime.engine.send`` in the caller's transaction, delivered after the commit
  (``engine.after_commit(batch, message_ids)``). When WeChat's 48-hour customer-service window is
  closed the notice goes by SMS through the notifier (``actions.notify``: the notice kind's approved
  template, recorded in ``sms_message`` and sent after the commit).
* **Every change appends a TicketEvent** and emits ``ticket.updated`` after the commit. ``close`` and
  ``reopen`` also *settle* the batch: the in-transaction listeners of ``bot/events.py`` run in the same
  transaction (``actions/surveys.py`` schedules the callback survey (回访) of a closed repair or
  complaint, and cancels one not yet sent when the ticket is reopened).

Usage (the console, or an action)::

    batch = EventBatch()
    async with db.session() as s, s.begin():
        ticket = await s.get_one(Ticket, ticket_id)
        ids = await TicketWorkflow(runtime).dispatch(s, batch, ticket, assignee=engineer,
                                                     visit_time="明天上午", actor="kefu")
    await runtime.engine.after_commit(batch, ids)

Who may do what is written here too (:func:`allowed_verbs`), and :meth:`TicketWorkflow.perform` is the one
path the console's buttons and the API's ``POST /api/v1/tickets/{ref}/actions`` both take: role check,
state check, the verb, and the audit row, so a script can do nothing a person at the console could not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions import labels as _labels
from bot import events
from bot.events import EventBatch
from bot.store.models import (
    AuditLog,
    Conversation,
    Identity,
    Owner,
    Project,
    StaffUser,
    Ticket,
    TicketEvent,
    utcnow,
)
from channels.base import BUILTIN_CAPABILITIES

NEW, DISPATCHED, IN_PROGRESS, DONE, AWAITING, CLOSED, REOPENED = (
    "new", "dispatched", "in_progress", "done", "awaiting_acceptance", "closed", "reopened",
)
STATUSES = (NEW, DISPATCHED, IN_PROGRESS, DONE, AWAITING, CLOSED, REOPENED)
# Words for the codes live in actions/labels.py (one module of label tables).
STATUS_LABELS = _labels.STATUS_LABELS
KIND_LABELS = _labels.KIND_LABELS
PRIORITY_LABELS = _labels.PRIORITY_LABELS
EVENT_LABELS = _labels.TICKET_EVENT_LABELS

# verb -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "dispatch": (frozenset({NEW}), DISPATCHED),
    "start": (frozenset({DISPATCHED, REOPENED}), IN_PROGRESS),
    "complete": (frozenset({DISPATCHED, IN_PROGRESS, REOPENED}), DONE),
    "request_acceptance": (frozenset({DONE}), AWAITING),
    "close": (frozenset({DONE, AWAITING}), CLOSED),
    "reopen": (frozenset({DONE, AWAITING, CLOSED}), REOPENED),
}

# Hours from creation (or from a rework) to resolution, per kind and priority; a project overrides any
# of them in Project.settings["sla"]. They match what the bot promises owners (serious and group
# complaints answered within 4 hours, other complaints within 24) and actions/tickets.py's table.
DEFAULT_SLA_HOURS: dict[str, dict[str, float]] = {
    "repair": {"urgent": 2, "normal": 48},
    "complaint": {"group": 4, "serious": 4, "normal": 24},
    "inquiry": {"normal": 24},
    "certificate": {"normal": 72},
}
FALLBACK_SLA_HOURS = 72.0
ACCEPTANCE_DAYS = 2
"""The owner is asked to check and accept the work within this many days (DOMAIN.md)."""
WECHAT_WINDOW = dt.timedelta(hours=48)
"""WeChat's customer-service messages reach an owner only within 48 h of their last message."""
ASSIGNABLE_ROLES = frozenset({"engineer", "supervisor"})
DESK_TURN = frozenset({NEW, DISPATCHED, IN_PROGRESS, DONE, REOPENED})
"""Statuses in which the company (not the owner) must act: only these can be overdue."""


class WorkflowError(Exception):
    """A change the rules do not allow; the message is shown to staff as is (Simplified Chinese).

    ``en`` says the same in English for the JSON API; ``code`` and ``status`` are its API error."""

    code = "refused"
    status = 409

    def __init__(self, message: str, en: str | None = None) -> None:
        super().__init__(message)
        self.en = en or "the ticket workflow refused this action"


class WrongState(WorkflowError):
    """The verb exists for this person, but not in the ticket's current status."""

    code = "wrong_state"


class NotPermitted(WorkflowError):
    """This person's role (or, for an engineer, not being the responsible one) does not allow the verb."""

    code = "forbidden"
    status = 403


# --- who may do what ------------------------------------------------------------------------------
# The console's permission table (bot/console/core.py PERMISSIONS) takes these sets, so the console's
# buttons and the API's actors obey one rule.

DESK_ROLES = frozenset({"agent", "supervisor", "admin"})
"""Dispatch, ask for acceptance, close, rework (the desk)."""
WORK_ROLES = frozenset({"engineer", "supervisor", "admin"})
"""Start and complete (an engineer: only tickets they are responsible for)."""
REASSIGN_ROLES = frozenset({"supervisor", "admin"})
"""Change the responsible person (with a reason)."""
VERBS = ("dispatch", "start", "complete", "request_acceptance", "close", "reopen", "reassign", "visit_time", "note")
QUOTE_PENDING, QUOTE_ACCEPTED, QUOTE_DECLINED = "pending", "accepted", "declined"
"""A paid repair's quote status (``Ticket.quote["status"]``, actions/quotes.py)."""


class Actor(Protocol):
    """A staff member acting on a ticket: the console's logged-in ``Staff`` or a ``StaffUser``."""

    @property
    def id(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...


def _works_on(actor: Actor, t: Ticket) -> bool:
    return actor.role in WORK_ROLES and (t.assignee_id == actor.id or actor.role in REASSIGN_ROLES)


def allowed_verbs(actor: Actor, t: Ticket) -> set[str]:
    """The verbs this staff member may use on this ticket now (the console's buttons)."""
    mine = t.assignee_id == actor.id
    out: set[str] = {"note"} if actor.role != "engineer" or mine else set()
    desk = actor.role in DESK_ROLES
    work = _works_on(actor, t)
    if t.status == NEW and desk:
        out.add("dispatch")
    if t.status in (DISPATCHED, REOPENED) and work:
        out.add("start")
    if t.status in (DISPATCHED, IN_PROGRESS, REOPENED) and work:
        out.add("complete")
    if t.status == DONE and desk:
        out |= {"request_acceptance", "close"}
    if t.status == AWAITING and desk:
        out.add("close")
    if t.status in (DONE, AWAITING, CLOSED) and desk:
        out.add("reopen")
    if t.status not in (CLOSED, AWAITING, DONE) and (desk or work):
        out.add("visit_time")
    if t.assignee_id is not None and t.status != CLOSED and actor.role in REASSIGN_ROLES:
        out.add("reassign")
    return out


def role_permits(actor: Actor, t: Ticket, verb: str) -> bool:
    """Would this staff member's role allow ``verb`` on this ticket in some status?"""
    if verb in ("dispatch", "request_acceptance", "close", "reopen"):
        return actor.role in DESK_ROLES
    if verb in ("start", "complete"):
        return _works_on(actor, t)
    if verb == "reassign":
        return actor.role in REASSIGN_ROLES
    if verb == "visit_time":
        return actor.role in DESK_ROLES or (actor.role in WORK_ROLES and t.assignee_id == actor.id)
    if verb == "note":
        return actor.role != "engineer" or t.assignee_id == actor.id
    return False


def check_allowed(actor: Actor, t: Ticket, verb: str) -> None:
    """Raise :class:`NotPermitted` (the role) or :class:`WrongState` (the status) unless ``verb`` may run."""
    if verb not in VERBS:
        raise WorkflowError("未知的工单操作", f"unknown verb {verb!r}")
    if verb in allowed_verbs(actor, t):
        return
    if role_permits(actor, t, verb):
        raise _wrong_state(t, verb)
    raise NotPermitted("您的角色无权对该工单执行此操作",
                       f"role {actor.role!r} may not {verb} this ticket"
                       + (" (an engineer acts only on tickets they are responsible for)" if actor.role == "engineer"
                          else ""))


def _wrong_state(t: Ticket, verb: str) -> WrongState:
    return WrongState(f"工单当前状态为“{STATUS_LABELS.get(t.status, t.status)}”，不能执行此操作",
                      f"a ticket in status {t.status!r} cannot {verb}")


def check_quote_allows_start(ticket: Ticket) -> None:
    """Paid work starts only after the owner said yes to its price (actions/quotes.py)."""
    status = (ticket.quote or {}).get("status")
    if status == QUOTE_PENDING:
        raise WorkflowError("业主尚未同意报价，请待业主确认后再开始施工",
                            "the owner has not accepted the quote yet; work cannot start")
    if status == QUOTE_DECLINED:
        raise WorkflowError("业主未同意报价，请与业主沟通后重新报价",
                            "the owner declined the quote; agree a new quote before starting")


# --- SLAs ---------------------------------------------------------------------------------------


def sla_hours(kind: str, priority: str, project_settings: Mapping[str, Any] | None = None) -> float:
    """Hours to resolve a ticket of ``kind`` and ``priority``; the project's table wins over the default."""
    override = ((project_settings or {}).get("sla") or {}).get(kind) or {}
    if priority in override:
        return float(override[priority])
    default = DEFAULT_SLA_HOURS.get(kind, {})
    if priority in default:
        return float(default[priority])
    return float(override.get("normal", default.get("normal", FALLBACK_SLA_HOURS)))


def compute_due(
    kind: str, priority: str, start: dt.datetime, project_settings: Mapping[str, Any] | None = None
) -> dt.datetime:
    return start + dt.timedelta(hours=sla_hours(kind, priority, project_settings))


def is_overdue(ticket: Ticket, now: dt.datetime | None = None) -> bool:
    return ticket.status in DESK_TURN and ticket.due_at is not None and ticket.due_at < (now or utcnow())


async def project_settings(s: AsyncSession, ticket: Ticket) -> dict[str, Any]:
    if ticket.project_id is None:
        return {}
    project = await s.get(Project, ticket.project_id)
    return dict(project.settings or {}) if project else {}


async def ensure_due(s: AsyncSession, ticket: Ticket) -> dt.datetime:
    """Give a ticket created without a due time the one its SLA says (from its creation)."""
    if ticket.due_at is None:
        created = ticket.created_at or utcnow()
        ticket.due_at = compute_due(ticket.kind, ticket.priority, created, await project_settings(s, ticket))
    return ticket.due_at


# --- channels ----------------------------------------------------------------------------------

NOTICE_KINDS = {
    "dispatched": "ticket_dispatched", "awaiting_acceptance": "acceptance_request", "closed": "ticket_closed",
    "reopened": "ticket_reopened", "reassigned": "ticket_reassigned", "visit_time": "ticket_visit_time",
}
"""Workflow notice → the SMS template catalogue's message kind."""


def wechat_window_open(identity: Identity | None, now: dt.datetime | None = None) -> bool:
    """Can a customer-service message reach this identity now? (Other channels: always.)"""
    if identity is None:
        return False
    caps = BUILTIN_CAPABILITIES.get(identity.channel)
    return caps is not None and not caps.templates_only and caps.window_open(identity.last_inbound_at, now or utcnow())


# --- the workflow -------------------------------------------------------------------------------


class TicketWorkflow:
    """The verbs that change a ticket. Each returns the ids of outbound messages to deliver after commit."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime

    # -- verbs ----------------------------------------------------------------------------------

    async def dispatch(
        self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, assignee: StaffUser,
        visit_time: str | None, actor: str, now: dt.datetime | None = None,
    ) -> list[int]:
        """Name the one responsible person and (for visits) the time; the owner is told both."""
        now = now or utcnow()
        self._check_assignee(assignee)
        if ticket.assignee_id is not None and ticket.assignee_id != assignee.id:
            raise WorkflowError("该工单已有负责人；如确需更换，请由主管填写原因后更换负责人",
                                "the ticket already has a responsible person; a supervisor reassigns with a reason")
        ticket.assignee_id = assignee.id
        ticket.visit_time = (visit_time or "").strip()[:60] or None
        await ensure_due(s, ticket)
        self._move(s, batch, ticket, "dispatch", actor, now, assignee=assignee.display_name,
                   assignee_id=assignee.id, visit_time=ticket.visit_time)
        who = assignee.display_name
        if ticket.kind == "repair":
            text = f"{self._head(ticket)}已派单，由{who}负责处理"
            text += f"，预计上门时间：{ticket.visit_time}。" if ticket.visit_time else "，工程师会尽快与您联系确认上门时间。"
            text += "如需改约，直接回复本消息即可。"
        else:
            text = f"{self._head(ticket)}已转交{who}负责处理，我们会在{fmt_time(ticket.due_at)}前给您答复。"
        return await self.notify(s, batch, ticket, text, notice="dispatched", actor=actor, now=now)

    async def start(self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, actor: str,
                    now: dt.datetime | None = None) -> list[int]:
        check_quote_allows_start(ticket)
        self._move(s, batch, ticket, "start", actor, now or utcnow())
        return []

    async def complete(
        self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, actor: str, note: str = "",
        request_acceptance: bool = True, now: dt.datetime | None = None,
    ) -> list[int]:
        """The work is done; by default the owner is asked at once to check and accept it."""
        now = now or utcnow()
        self._move(s, batch, ticket, "complete", actor, now, note=note.strip()[:500])
        if request_acceptance:
            return await self.request_acceptance(s, batch, ticket, actor=actor, now=now)
        return []

    async def request_acceptance(self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, actor: str,
                                 now: dt.datetime | None = None) -> list[int]:
        now = now or utcnow()
        deadline = now + dt.timedelta(days=ACCEPTANCE_DAYS)
        self._move(s, batch, ticket, "request_acceptance", actor, now, accept_by=deadline.isoformat())
        text = (f"{self._head(ticket)}已处理完毕。请您在{ACCEPTANCE_DAYS}天内查验确认；"
                "如仍有问题，请直接回复本消息，我们会安排返修。")
        return await self.notify(s, batch, ticket, text, notice="awaiting_acceptance", actor=actor, now=now)

    async def close(self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, actor: str, reason: str = "",
                    now: dt.datetime | None = None, notify: bool = True) -> list[int]:
        """Close (办结); ``notify=False`` when the owner accepted the work in the chat answering them now."""
        now = now or utcnow()
        self._move(s, batch, ticket, "close", actor, now, reason=reason.strip()[:500])
        ticket.closed_at = now
        await batch.settle(self.rt, s)  # in-transaction listeners: the callback survey (actions/surveys.py)
        if not notify:
            return []
        text = f"{self._head(ticket)}已办结，感谢您的耐心与配合。如有其他需要，随时给我们留言。"
        return await self.notify(s, batch, ticket, text, notice="closed", actor=actor, now=now)

    async def reopen(self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, actor: str, reason: str,
                     now: dt.datetime | None = None, notify: bool = True) -> list[int]:
        """Rework (返修): the same responsible person, a fresh due time, counted in the reports.

        ``notify=False`` when the owner asked for it in the chat that is answering them right now."""
        now = now or utcnow()
        if not reason.strip():
            raise WorkflowError("返修请填写原因（例如业主反馈仍未修好）", "a rework needs a reason")
        ticket.rework_count += 1
        ticket.closed_at = None
        ticket.due_at = compute_due(ticket.kind, ticket.priority, now, await project_settings(s, ticket))
        self._move(s, batch, ticket, "reopen", actor, now, reason=reason.strip()[:500],
                   rework_count=ticket.rework_count, due_at=ticket.due_at.isoformat())
        await batch.settle(self.rt, s)  # a callback not yet sent is cancelled (actions/surveys.py)
        if not notify:
            return []
        who = await self._assignee_name(s, ticket)
        text = f"{self._head(ticket)}已安排返修"
        text += f"，仍由{who}负责，我们会尽快与您联系。" if who else "，我们会尽快与您联系。"
        return await self.notify(s, batch, ticket, text, notice="reopened", actor=actor, now=now)

    async def reassign(
        self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, assignee: StaffUser, reason: str,
        actor: str, now: dt.datetime | None = None,
    ) -> list[int]:
        """Change the responsible person — only with a recorded reason (责任到人: no silent swaps)."""
        now = now or utcnow()
        self._check_assignee(assignee)
        if ticket.status == CLOSED:
            raise WorkflowError("工单已关闭，不能更换负责人", "a closed ticket keeps its responsible person")
        if ticket.assignee_id is None:
            raise WorkflowError("工单尚未派单，请直接派单", "the ticket has not been dispatched yet; dispatch it")
        if ticket.assignee_id == assignee.id:
            raise WorkflowError("新负责人与当前负责人相同", "the new responsible person is the current one")
        if not reason.strip():
            raise WorkflowError("更换负责人必须填写原因", "a reassignment needs a reason")
        previous = await self._assignee_name(s, ticket)
        ticket.assignee_id = assignee.id
        self._record(s, batch, ticket, "reassigned", actor, now, change="reassigned",
                     from_assignee=previous, assignee=assignee.display_name, assignee_id=assignee.id,
                     reason=reason.strip()[:500])
        text = f"{self._head(ticket)}因工作安排改由{assignee.display_name}负责，给您带来不便敬请谅解。"
        return await self.notify(s, batch, ticket, text, notice="reassigned", actor=actor, now=now)

    async def set_visit_time(self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, visit_time: str,
                             actor: str, now: dt.datetime | None = None) -> list[int]:
        now = now or utcnow()
        if ticket.status in (CLOSED, AWAITING, DONE):
            raise WorkflowError("工单已完工，无需再约上门时间", "the work is done; no visit time to change")
        visit = visit_time.strip()[:60]
        if not visit:
            raise WorkflowError("请填写上门时间", "visit_time is required")
        ticket.visit_time = visit
        self._record(s, batch, ticket, "visit_time", actor, now, change="visit_time", visit_time=visit)
        text = f"{self._head(ticket)}上门时间已改为：{visit}。如需再调整，直接回复本消息即可。"
        return await self.notify(s, batch, ticket, text, notice="visit_time", actor=actor, now=now)

    async def add_note(self, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, text: str, actor: str,
                       now: dt.datetime | None = None) -> list[int]:
        """An internal note on the timeline (the owner never sees it)."""
        if not text.strip():
            raise WorkflowError("备注不能为空", "a note needs text")
        self._record(s, batch, ticket, "note", actor, now or utcnow(), change="note", text=text.strip()[:2000])
        return []

    # -- the one entry point of the console's buttons and the API ------------------------------

    async def perform(
        self, s: AsyncSession, batch: EventBatch, ticket: Ticket, verb: str, *, actor: Actor,
        assignee: StaffUser | None = None, visit_time: str | None = None, reason: str = "", note: str = "",
        request_acceptance: bool = True, via: str = "console", now: dt.datetime | None = None,
    ) -> list[int]:
        """Check ``actor`` may use ``verb`` on ``ticket`` now, run it, and audit it (``via`` says where from).

        Raises :class:`NotPermitted`, :class:`WrongState` or :class:`WorkflowError`; the caller's
        transaction then rolls back. Returns the outbound messages to deliver after the commit."""
        now = now or utcnow()
        check_allowed(actor, ticket, verb)
        name = actor.username
        if verb in ("dispatch", "reassign"):
            if assignee is None:
                raise WorkflowError("请选择负责人", "assignee is required")
            if verb == "dispatch":
                ids = await self.dispatch(s, batch, ticket, assignee=assignee, visit_time=visit_time, actor=name,
                                          now=now)
            else:
                ids = await self.reassign(s, batch, ticket, assignee=assignee, reason=reason, actor=name, now=now)
        elif verb == "start":
            ids = await self.start(s, batch, ticket, actor=name, now=now)
        elif verb == "complete":
            ids = await self.complete(s, batch, ticket, actor=name, note=note,
                                      request_acceptance=request_acceptance, now=now)
        elif verb == "request_acceptance":
            ids = await self.request_acceptance(s, batch, ticket, actor=name, now=now)
        elif verb == "close":
            ids = await self.close(s, batch, ticket, actor=name, reason=reason, now=now)
        elif verb == "reopen":
            ids = await self.reopen(s, batch, ticket, actor=name, reason=reason, now=now)
        elif verb == "visit_time":
            ids = await self.set_visit_time(s, batch, ticket, visit_time=visit_time or "", actor=name, now=now)
        else:
            ids = await self.add_note(s, batch, ticket, text=note, actor=name, now=now)
        data: dict[str, Any] = {"owner_id": ticket.owner_id}
        if assignee is not None and verb in ("dispatch", "reassign"):
            data["assignee_id"] = assignee.id
        data.update({k: v for k, v in (("visit_time", visit_time), ("reason", reason), ("note", note)) if v})
        if via != "console":
            data["via"] = via
        s.add(AuditLog(actor=name, action=f"ticket.{verb}", target=f"ticket:{ticket.number}", data=data, at=now))
        return ids

    # -- owner notices --------------------------------------------------------------------------

    async def notify(
        self, s: AsyncSession, batch: EventBatch, ticket: Ticket, text: str, *, notice: str, actor: str,
        now: dt.datetime | None = None,
    ) -> list[int]:
        """Tell the owner through the notifier (their chat within its window, else SMS); record which."""
        now = now or utcnow()
        conv, identity = await self._owner_chat(s, ticket)
        phone = ticket.contact_phone
        owner = await s.get(Owner, ticket.owner_id) if ticket.owner_id is not None else None
        if not phone and owner is not None:
            phone = owner.phone
        params = {"kind": KIND_LABELS.get(ticket.kind, "工单"), "number": ticket.number,
                  "assignee": await self._assignee_name(s, ticket) or "工程师",
                  "visit_time": ticket.visit_time or "待工程师与您电话确认"}
        told = await self.rt.notifier.owner(
            s, batch, text=text, kind=NOTICE_KINDS.get(notice, notice), params=params, phone=phone,
            owner_id=ticket.owner_id, identity=identity, conversation=conv, project_id=ticket.project_id,
            idempotency_key=f"ticket:{ticket.id}:{notice}:{now.isoformat()}",
            data={"ticket": ticket.number, "notice": notice}, now=now,
        )
        if told.channel is None:
            reason = told.reason
            if identity is not None and identity.channel == "wechat":
                reason = "微信客服窗口已关闭（业主48小时内未留言），且" + reason
            self._record(s, batch, ticket, "owner_not_notified", actor, now, notice=notice, reason=reason,
                         text=text, emit=False)
            return []
        extra: dict[str, Any] = {"sms_id": told.sms.id} if told.sms is not None else {"message_id": told.message_ids[0]}
        self._record(s, batch, ticket, "owner_notified", actor, now, notice=notice, channel=told.channel,
                     text=told.text, emit=False, **extra)
        return told.message_ids

    async def _owner_chat(self, s: AsyncSession, ticket: Ticket) -> tuple[Conversation | None, Identity | None]:
        """The conversation the ticket came from, else the owner's most recently active identity."""
        if ticket.conversation_id is not None:
            conv = await s.get(Conversation, ticket.conversation_id)
            if conv is not None:
                return conv, await s.get(Identity, conv.identity_id)
        if ticket.owner_id is None:
            return None, None
        identity = (
            await s.execute(
                sa.select(Identity)
                .where(Identity.owner_id == ticket.owner_id)
                .order_by((Identity.channel == "wechat").desc(), Identity.last_inbound_at.desc().nulls_last())
                .limit(1)
            )
        ).scalar_one_or_none()
        if identity is None:
            return None, None
        conv = (
            await s.execute(
                sa.select(Conversation).where(Conversation.identity_id == identity.id)
                .order_by(Conversation.id.desc()).limit(1)
            )
        ).scalar_one_or_none()
        return conv, identity

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _check_assignee(assignee: StaffUser) -> None:
        if not assignee.active:
            raise WorkflowError(f"{assignee.display_name} 的账号已停用", f"assignee {assignee.username!r} is inactive")
        if assignee.role not in ASSIGNABLE_ROLES:
            raise WorkflowError("负责人须为工程师或主管", "the assignee must be an engineer or a supervisor")

    @staticmethod
    def _head(ticket: Ticket) -> str:
        return f"【{KIND_LABELS.get(ticket.kind, '工单')}进度】您的{KIND_LABELS.get(ticket.kind, '工单')}（单号 {ticket.number}）"

    async def _assignee_name(self, s: AsyncSession, ticket: Ticket) -> str | None:
        if ticket.assignee_id is None:
            return None
        staff = await s.get(StaffUser, ticket.assignee_id)
        return staff.display_name if staff else None

    def _move(self, s: AsyncSession, batch: EventBatch, ticket: Ticket, verb: str, actor: str,
              now: dt.datetime, **data: Any) -> None:
        allowed, target = TRANSITIONS[verb]
        if ticket.status not in allowed:
            raise _wrong_state(ticket, verb)
        previous = ticket.status
        ticket.status = target
        kind = {"dispatch": "dispatched", "start": "started", "complete": "done",
                "request_acceptance": "awaiting_acceptance", "close": "closed", "reopen": "reopened"}[verb]
        self._record(s, batch, ticket, kind, actor, now, change="status", previous=previous, status=target, **data)

    @staticmethod
    def _record(s: AsyncSession, batch: EventBatch, ticket: Ticket, kind: str, actor: str, now: dt.datetime,
                *, emit: bool = True, **data: Any) -> None:
        ticket.updated_at = now
        s.add(TicketEvent(ticket_id=ticket.id, kind=kind, data=data, actor=actor, at=now))
        if emit:
            batch.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, kind=kind,
                       status=ticket.status, assignee_id=ticket.assignee_id, actor=actor)


CHINA = dt.timezone(dt.timedelta(hours=8), "CST")


def fmt_time(value: dt.datetime | None) -> str:
    """A time as owners and staff read it: Beijing time, ``11月23日 14:00``."""
    if value is None:
        return ""
    local = value.astimezone(CHINA)
    return f"{local.month}月{local.day}日 {local:%H:%M}"
