"""Callback surveys (回访): templates, triggers, invitations, completion, service recovery, staff records.

The life of a :class:`~bot.store.models.SurveyResponse` (DOMAIN.md "Surveys and the figures managers
live by"; docs/SURVEYS.md)::

    scheduled ──(due, inside the sending window)──▶ invited ──▶ in_progress ──▶ complete
        │                                              │              └─(silence)─▶ partial
        └─(ticket reopened)─▶ cancelled                 └─(silence)─▶ expired    (refusal: declined)

* **Triggers.** A repair or complaint closed by the ticket workflow (an in-transaction listener of
  ``ticket.updated``, :func:`on_ticket_event`), a house whose handover date arrived (the hourly scan
  :func:`schedule_handovers`, whatever path set the date: import, console, demo), a recovery call's
  outcome (:func:`record_recovery_outcome` → a ``recheck``), and rows a ``survey`` campaign created as
  ``invited`` (the shared contract: treated like ours once the owner answers).
* **Delay** per project and kind: ``surveys.delay`` of the YAML config, then ``surveys.projects.<code>``,
  then ``Project.settings["surveys"]``; ``YEZHU_SURVEY_DELAY`` overrides them all.
* **Invitation** (:func:`invite_due`, every minute): only inside the sending window (Beijing time, the
  project's ``surveys.window``, else ``YEZHU_SMS_WINDOW``), through the notifier: the owner's chat when
  they wrote in the last 48 h, else the WeChat template message, else SMS with reply-by-digit. The
  survey's form goes into the conversation the owner will answer in (actions/flows/survey.py).
* **Completion** (:func:`finish`) fills stage, category, engineer, project, house, completed_at; a score
  of 1–2 opens a ``recovery`` ticket for a supervisor (:func:`open_recovery`).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from actions.labels import KIND_LABELS
from actions.notify import window_opens
from actions.stages import owner_stage
from actions.survey_templates import (  # noqa: F401 (re-exported: the survey's templates)
    TEMPLATE_KIND,
    TEMPLATES,
    check_loyalty,
    seed_templates,
    template_for,
    validate_items,
)
from bot import events
from bot.events import DomainEvent, EventBatch
from bot.store.models import (
    Building,
    Conversation,
    House,
    Identity,
    Message,
    Owner,
    OwnerHouse,
    Project,
    StaffUser,
    SurveyResponse,
    SurveyTemplate,
    Ticket,
    TicketEvent,
    utcnow,
)

log = logging.getLogger("yezhu.surveys")

PENDING = ("scheduled", "invited", "in_progress")
DONE = ("complete", "partial")
LOW = 2
UNREACHABLE = "无法发送回访邀请"
"""The comment of a row the bot could not send (no channel reaches the owner): ``expired`` without an
invitation, still a callback due (the reports count it), listed for the desk to phone."""
"""A score at or below this opens a service-recovery ticket (DOMAIN.md: 1–2)."""
DEFAULTS: dict[str, Any] = {
    "delay": {"repair": 86400, "complaint": 86400, "handover": 7 * 86400, "periodic": 0, "recheck": 86400},
    "expire_hours": 72,
    "within_days": 7,
    "rates": {"complaint": 1.0, "repair": 0.9, "handover": 1.0, "recheck": 1.0},
    "recovery_hours": 24,
    "window": None,
    "handover_lookback_days": 30,
}
"""Seconds of delay per kind; hours until an unanswered invitation expires; days within which a
callback must be done (after that it is overdue); required callback rates per kind; hours a
supervisor has for the recovery call; the sending window (None: ``YEZHU_SMS_WINDOW``); how far back an
arrived handover date still gets its survey."""


# --- configuration --------------------------------------------------------------------------------


def config(settings: Any, project: Project | None = None) -> dict[str, Any]:
    """The survey settings for ``project``: defaults < YAML ``surveys`` < ``surveys.projects.<code>`` <
    ``Project.settings["surveys"]`` (dicts are merged key by key)."""
    raw = dict(getattr(settings, "surveys", {}) or {})
    layers = [{k: v for k, v in raw.items() if k != "projects"}]
    if project is not None:
        layers.append(((raw.get("projects") or {}).get(project.code)) or {})
        layers.append((project.settings or {}).get("surveys") or {})
    out = copy.deepcopy(DEFAULTS)
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


def delay(settings: Any, cfg: dict[str, Any], kind: str) -> dt.timedelta:
    if getattr(settings, "survey_delay", None) is not None:
        return dt.timedelta(seconds=float(settings.survey_delay))
    return dt.timedelta(seconds=float((cfg.get("delay") or {}).get(kind, DEFAULTS["delay"].get(kind, 86400))))


async def project_of(s: AsyncSession, project_id: int | None) -> Project | None:
    return await s.get(Project, project_id) if project_id is not None else None


# --- scheduling -----------------------------------------------------------------------------------


async def schedule(
    rt: Any, s: AsyncSession, batch: EventBatch, *, kind: str, owner_id: int, project_id: int | None,
    house_id: int | None, ticket: Ticket | None = None, now: dt.datetime | None = None,
) -> SurveyResponse | None:
    """Schedule one callback (idempotent: a pending one for the same ticket/house and kind is kept)."""
    now = now or utcnow()
    same = sa.select(SurveyResponse.id).where(SurveyResponse.kind == kind, SurveyResponse.owner_id == owner_id,
                                              SurveyResponse.status.in_(PENDING))
    if ticket is not None:
        same = same.where(SurveyResponse.ticket_id == ticket.id)
    elif house_id is not None:
        same = same.where(SurveyResponse.house_id == house_id)
    if (await s.execute(same.limit(1))).first() is not None:
        return None
    template = await template_for(s, kind, project_id)
    if template is None:
        log.warning("no active survey template for %s: callback not scheduled", kind)
        return None
    project = await project_of(s, project_id)
    row = SurveyResponse(template_id=template.id, owner_id=owner_id, ticket_id=ticket.id if ticket else None,
                         kind=kind, project_id=project_id, house_id=house_id, status="scheduled", source="bot",
                         due_at=now + delay(rt.settings, config(rt.settings, project), kind), created_at=now)
    s.add(row)
    await s.flush()
    batch.emit(events.SURVEY_SCHEDULED, survey_id=row.id, kind=kind, ticket_id=row.ticket_id,
               due_at=row.due_at.isoformat() if row.due_at else None)
    return row


@events.listen(events.TICKET_UPDATED)
async def on_ticket_event(rt: Any, s: AsyncSession, batch: EventBatch, event: DomainEvent) -> None:
    """A closed repair or complaint gets its callback; a reopened one loses the callback not yet sent."""
    change = event.data.get("kind")
    if change not in ("closed", "reopened"):
        return
    ticket = await s.get(Ticket, event.data["ticket_id"])
    if ticket is None or ticket.kind not in ("repair", "complaint"):
        return
    if change == "reopened":
        await s.execute(sa.update(SurveyResponse).where(
            SurveyResponse.ticket_id == ticket.id, SurveyResponse.status == "scheduled"
        ).values(status="cancelled", comment="工单返修，回访待返修完成后重新安排"))
        return
    if ticket.owner_id is None:
        return
    await schedule(rt, s, batch, kind=ticket.kind, owner_id=ticket.owner_id, project_id=ticket.project_id,
                   house_id=ticket.house_id, ticket=ticket, now=ticket.closed_at or utcnow())


async def schedule_handovers(rt: Any, now: dt.datetime | None = None) -> int:
    """Houses whose handover date arrived recently (and not in the future) and whose owners have no
    handover survey yet get one: whatever path set the date (import, console, demo)."""
    now = now or utcnow()
    today = now.astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    added = 0
    batch = EventBatch()
    async with rt.db.session() as s, s.begin():
        projects = {p.id: p for p in (await s.execute(sa.select(Project))).scalars()}
        lookback = max(int(config(rt.settings, p)["handover_lookback_days"]) for p in [None, *projects.values()])
        done = sa.select(SurveyResponse.id).where(SurveyResponse.kind == "handover",
                                                 SurveyResponse.house_id == House.id,
                                                 SurveyResponse.owner_id == OwnerHouse.owner_id)
        rows = (await s.execute(
            sa.select(House.id, House.handover_date, OwnerHouse.owner_id, Building.project_id)
            .join(OwnerHouse, OwnerHouse.house_id == House.id)
            .join(Building, Building.id == House.building_id)
            .where(House.handover_date.is_not(None), House.handover_date <= today,
                   House.handover_date >= today - dt.timedelta(days=lookback), ~done.exists())
            .limit(2000)
        )).all()
        for house_id, handover, owner_id, project_id in rows:
            cfg = config(rt.settings, projects.get(project_id))
            if handover < today - dt.timedelta(days=int(cfg["handover_lookback_days"])):
                continue
            if await schedule(rt, s, batch, kind="handover", owner_id=owner_id, project_id=project_id,
                              house_id=house_id, now=now):
                added += 1
    await batch.publish(rt.services.pubsub)
    return added


# --- invitations ----------------------------------------------------------------------------------


def intro(kind: str, number: str | None, n: int) -> str:
    what = {"repair": f"您的报修（单号 {number}）已处理完毕", "complaint": f"您反映的问题（单号 {number}）已处理完毕",
            "handover": "恭喜您喜迁新居", "periodic": "感谢您一直以来对我们工作的支持",
            "recheck": "关于您之前反映的问题，我们的主管已与您联系处理"}.get(kind, "感谢您的支持")
    size = "1个问题" if n == 1 else f"{n}个问题"
    return f"您好！{what}，想占用您一分钟做个回访（共{size}），您的评价对我们很重要。"


async def _sms_conversation(rt: Any, s: AsyncSession, phone: str, owner_id: int) -> Conversation:
    """The conversation an SMS reply from ``phone`` will arrive in (created like the engine would)."""
    provider = rt.settings.sms_provider
    identity = (await s.execute(sa.select(Identity).where(
        Identity.channel == "sms", Identity.account == provider, Identity.external_id == phone))).scalar_one_or_none()
    if identity is None:
        identity = Identity(channel="sms", account=provider, external_id=phone, owner_id=owner_id, bound_at=utcnow())
        s.add(identity)
        await s.flush()
    conv: Conversation = await rt.engine.current_conversation(s, identity)
    return conv


def router_of(rt: Any) -> Any:
    router = getattr(getattr(rt.engine, "policy", None), "router", None)
    if router is None:
        from actions.flows import build_router

        router = build_router()
    return router


async def invite(rt: Any, survey_id: int, now: dt.datetime | None = None) -> str:
    """Send one due invitation (idempotent: anything but a due ``scheduled`` row is left alone)."""
    from actions.flows.survey import busy, form_slots
    from actions.workflow import TicketWorkflow

    now = now or utcnow()
    batch = EventBatch()
    ids: list[int] = []
    async with rt.db.session() as s, s.begin():
        row = await s.get(SurveyResponse, survey_id, with_for_update=not rt.db.is_sqlite)
        if row is None or row.status != "scheduled" or (row.due_at is not None and row.due_at > now):
            return "skipped"
        project = await project_of(s, row.project_id)
        cfg = config(rt.settings, project)
        opens = window_opens(now, cfg.get("window") or rt.settings.sms_window)
        if opens is not None:
            row.due_at = opens  # quiet hours: the invitation waits for the window
            return "deferred"
        owner = await s.get(Owner, row.owner_id) if row.owner_id is not None else None
        template = await s.get(SurveyTemplate, row.template_id)
        ticket = await s.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
        if owner is None or template is None:
            row.status, row.comment = "cancelled", "业主或问卷已不存在"
            return "cancelled"
        conv, identity = (await TicketWorkflow(rt)._owner_chat(s, ticket)) if ticket is not None else (None, None)
        if conv is not None and await busy(conv, now):
            row.due_at = now + dt.timedelta(minutes=30)  # the owner is in the middle of something else
            return "deferred"
        number = ticket.number if ticket is not None else None
        house = await s.get(House, row.house_id) if row.house_id is not None else None
        building = await s.get(Building, house.building_id) if house is not None else None
        place = f"{building.name}栋{house.unit}单元{house.room}" if house is not None and building is not None else "—"
        full = form_slots(row, template, sms=False, number=number)
        router = router_of(rt)
        scratch: dict[str, Any] = {}
        text = router.begin(scratch, "survey", now, **full)
        told = await rt.notifier.owner(
            s, batch, text=text, kind="survey_invitation",
            params={"kind": KIND_LABELS.get(ticket.kind, "服务") if ticket else {"handover": "交付", "periodic": "居住体验"}
                    .get(row.kind, "服务"), "number": number or place},
            phone=(ticket.contact_phone if ticket else None) or owner.phone, owner_id=owner.id, identity=identity,
            conversation=conv, project_id=row.project_id, idempotency_key=f"survey:{row.id}",
            data={"survey": row.id}, now=now)
        if told.channel is None:
            # still owed (the desk phones them; it counts among the callbacks due), never invited by the bot
            row.status, row.comment = "expired", f"{UNREACHABLE}：{told.reason}"[:500]
            return "unreachable"
        if told.channel == "sms":
            target = await _sms_conversation(rt, s, told.sms.phone if told.sms else owner.phone, owner.id)
            sms = form_slots(row, template, sms=True)
            scratch = {}
            router.begin(scratch, "survey", now, **sms)
        else:
            ids = list(told.message_ids)
            message = await s.get(Message, ids[0])
            target = await s.get_one(Conversation, message.conversation_id)  # type: ignore[union-attr]
        state = dict(target.state or {})
        state["form"] = scratch["form"]
        state.pop("resume", None)
        target.state = state
        row.status, row.invited_at, row.channel = "invited", now, told.channel
        batch.emit(events.SURVEY_INVITED, survey_id=row.id, channel=told.channel, conversation_id=target.id)
    await rt.engine.after_commit(batch, ids)
    return "invited"


async def invite_due(rt: Any, now: dt.datetime | None = None, limit: int = 200) -> int:
    now = now or utcnow()
    async with rt.db.session() as s:
        due = (await s.execute(
            sa.select(SurveyResponse.id).where(SurveyResponse.status == "scheduled", SurveyResponse.due_at <= now)
            .order_by(SurveyResponse.due_at).limit(limit)
        )).scalars().all()
    sent = 0
    for survey_id in due:
        try:
            sent += await invite(rt, survey_id, now) == "invited"
        except Exception:
            log.exception("survey %s: the invitation failed; trying again next minute", survey_id)
    return sent


async def expire(rt: Any, now: dt.datetime | None = None) -> int:
    """Invitations unanswered for ``expire_hours``: ``partial`` with some answers (then finished like a
    complete one: figures, recovery), else ``expired``; their form leaves the conversation."""
    now = now or utcnow()
    batch = EventBatch()
    count = 0
    async with rt.db.session() as s, s.begin():
        all_projects = (await s.execute(sa.select(Project))).scalars().all()
        shortest = min(float(config(rt.settings, p)["expire_hours"]) for p in [None, *all_projects])
        rows = (await s.execute(
            sa.select(SurveyResponse).where(SurveyResponse.status.in_(("invited", "in_progress")),
                                            SurveyResponse.invited_at < now - dt.timedelta(hours=shortest))
            .order_by(SurveyResponse.invited_at).limit(500)
        )).scalars().all()
        projects: dict[int | None, dict[str, Any]] = {}
        for row in rows:
            if row.project_id not in projects:
                projects[row.project_id] = config(rt.settings, await project_of(s, row.project_id))
            hours = float(projects[row.project_id]["expire_hours"])
            if row.invited_at is None or row.invited_at > now - dt.timedelta(hours=hours):
                continue
            await finish(rt, s, batch, row, "partial" if row.scores else "expired", now)
            await clear_forms(s, row.id)
            count += 1
    await batch.publish(rt.services.pubsub)
    return count


async def clear_forms(s: AsyncSession, survey_id: int) -> None:
    """Take survey ``survey_id``'s form out of any conversation still holding it."""
    from actions.flows.survey import FORM

    convs = (await s.execute(sa.select(Conversation).where(Conversation.mode != "closed", Conversation.state.is_not(None))
                             .order_by(Conversation.id.desc()).limit(2000))).scalars()
    for conv in convs:
        form = (conv.state or {}).get("form")
        if isinstance(form, dict) and form.get("name") == FORM and (form.get("slots") or {}).get("survey") == survey_id:
            state = dict(conv.state)
            state.pop("form", None)
            conv.state = state


async def sweep(rt: Any) -> dict[str, int]:
    """Every minute: expire unanswered invitations, send the due ones."""
    return {"expired": await expire(rt), "invited": await invite_due(rt)}


# --- completion and recovery ----------------------------------------------------------------------


async def finish(rt: Any, s: AsyncSession, batch: EventBatch, row: SurveyResponse, status: str,
                 now: dt.datetime, *, words: str = "") -> Ticket | None:
    """Close ``row`` as ``complete``/``partial``/``expired``/``declined``/``cancelled``; fill the figures'
    fields; open the recovery ticket for a low score. Returns the recovery ticket, if one was opened."""
    row.status = status
    if status in DONE:
        row.completed_at = now
        house = await s.get(House, row.house_id) if row.house_id is not None else None
        row.stage = owner_stage(house.handover_date if house else None, now)
        ticket = await s.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
        if ticket is not None:
            row.category = row.category or ticket.category
            row.engineer_id = row.engineer_id or ticket.assignee_id
            row.project_id = row.project_id or ticket.project_id
            row.house_id = row.house_id or ticket.house_id
        if row.project_id is None and house is not None:
            building = await s.get(Building, house.building_id)
            row.project_id = building.project_id if building else None
        batch.emit(events.SURVEY_COMPLETED, survey_id=row.id, kind=row.kind, status=status,
                   overall=(row.scores or {}).get("overall"), source=row.source)
        if any(isinstance(v, int) and v <= LOW for v in (row.scores or {}).values()) and row.recovery_ticket_id is None:
            return await open_recovery(rt, s, batch, row, now, words=words)
    return None


async def supervisor_for(rt: Any, s: AsyncSession, project: Project | None) -> StaffUser | None:
    """The project's duty-roster supervisor, else the first active supervisor (then admin)."""
    name = (rt.settings.duty_rosters.get(project.code) or {}).get("supervisor") if project is not None else None
    if name:
        staff = (await s.execute(sa.select(StaffUser).where(StaffUser.username == name, StaffUser.active.is_(True)))
                 ).scalar_one_or_none()
        if staff is not None:
            return staff
    return (await s.execute(sa.select(StaffUser).where(StaffUser.role.in_(("supervisor", "admin")),
                                                       StaffUser.active.is_(True))
                            .order_by((StaffUser.role == "admin"), StaffUser.id).limit(1))).scalar_one_or_none()


async def open_recovery(rt: Any, s: AsyncSession, batch: EventBatch, row: SurveyResponse, now: dt.datetime,
                        *, words: str = "") -> Ticket:
    """Service recovery (服务补救): a ``recovery`` ticket for a supervisor, linked to the original ticket
    and the survey, with the owner's own words, due within ``recovery_hours``."""
    from actions.tickets import next_number

    template = await s.get(SurveyTemplate, row.template_id)
    texts = {i["code"]: i["text"] for i in (template.items if template else [])}
    original = await s.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    project = await project_of(s, row.project_id)
    cfg = config(rt.settings, project)
    low = [(code, score) for code, score in (row.scores or {}).items() if isinstance(score, int) and score <= LOW]
    lines = [f"{texts.get(code, code)} {score}分" + (f"；业主原话：{row.answers[code]}" if (row.answers or {}).get(code) else "")
             for code, score in low]
    if words and not any(words in line for line in lines):
        lines.append(f"业主原话：{words}")
    head = f"回访低分（{original.number}）" if original is not None else f"{KIND_SURVEY.get(row.kind, '回访')}低分"
    supervisor = await supervisor_for(rt, s, project)
    ticket = Ticket(
        number=await next_number(s, "recovery", now), kind="recovery", category=row.category,
        project_id=row.project_id, house_id=row.house_id, owner_id=row.owner_id,
        conversation_id=original.conversation_id if original else None,
        contact_phone=original.contact_phone if original else None,
        description=(head + "：\n" + "\n".join(lines))[:2000], priority="serious", status="new",
        assignee_id=supervisor.id if supervisor else None, related_id=original.id if original else None,
        due_at=now + dt.timedelta(hours=float(cfg["recovery_hours"])), created_at=now,
    )
    s.add(ticket)
    await s.flush()
    row.recovery_ticket_id = ticket.id
    s.add(TicketEvent(ticket_id=ticket.id, kind="created", actor="bot", at=now,
                      data={"survey_id": row.id, "related": original.number if original else None}))
    if original is not None:
        s.add(TicketEvent(ticket_id=original.id, kind="recovery_opened", actor="bot", at=now,
                          data={"recovery": ticket.number, "scores": dict(low)}))
    batch.emit(events.TICKET_CREATED, ticket_id=ticket.id, number=ticket.number, kind="recovery",
               priority=ticket.priority, assignee_id=ticket.assignee_id)
    batch.emit(events.RECOVERY_OPENED, ticket_id=ticket.id, survey_id=row.id,
               related_id=original.id if original else None)
    return ticket


KIND_SURVEY = {"repair": "维修回访", "complaint": "投诉回访", "handover": "交付回访", "periodic": "居住体验调查",
               "recheck": "二次回访"}


async def record_recovery_outcome(rt: Any, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, outcome: str,
                                  actor: str, now: dt.datetime | None = None) -> SurveyResponse | None:
    """The supervisor's recovery call is done: its outcome goes on the recovery ticket, which closes, and
    a second short callback (``recheck``) is scheduled."""
    now = now or utcnow()
    if ticket.kind != "recovery":
        raise ValueError("只有服务补救工单可以登记补救结果")
    if ticket.status == "closed":
        raise ValueError("该补救工单已登记过结果")
    if not outcome.strip():
        raise ValueError("请填写补救回访的结果")
    previous = ticket.status
    ticket.status, ticket.closed_at, ticket.updated_at = "closed", now, now
    s.add(TicketEvent(ticket_id=ticket.id, kind="recovery_outcome", actor=actor, at=now,
                      data={"outcome": outcome.strip()[:2000]}))
    s.add(TicketEvent(ticket_id=ticket.id, kind="closed", actor=actor, at=now,
                      data={"change": "status", "previous": previous, "status": "closed"}))
    batch.emit(events.TICKET_UPDATED, ticket_id=ticket.id, number=ticket.number, kind="recovery_outcome",
               status="closed", assignee_id=ticket.assignee_id, actor=actor)
    if ticket.owner_id is None:
        return None
    return await schedule(rt, s, batch, kind="recheck", owner_id=ticket.owner_id, project_id=ticket.project_id,
                          house_id=ticket.house_id, ticket=ticket, now=now)


# --- staff-recorded callbacks ---------------------------------------------------------------------


async def record_staff_callback(
    rt: Any, s: AsyncSession, batch: EventBatch, ticket: Ticket, *, scores: dict[str, int],
    answers: dict[str, str], comment: str, recorded_by: str, channel: str = "phone", now: dt.datetime | None = None,
) -> tuple[SurveyResponse, Ticket | None]:
    """A callback made by phone and typed in by staff: the pending callback of the ticket (or a new one),
    completed exactly like the bot completes one (same table, same fields). The first complete response
    of a ticket's callback stays: a second is refused."""
    now = now or utcnow()
    kind = "recheck" if ticket.kind == "recovery" else ticket.kind
    if kind not in ("repair", "complaint", "recheck"):
        raise ValueError("该类工单不做回访")
    if not scores.get("overall"):
        raise ValueError("请至少填写总体满意度（1-5分）")
    if any(not isinstance(v, int) or not 1 <= v <= 5 for v in scores.values()):
        raise ValueError("评分须为1-5分")
    existing = (await s.execute(sa.select(SurveyResponse).where(
        SurveyResponse.ticket_id == ticket.id, SurveyResponse.kind == kind).order_by(SurveyResponse.id))).scalars().all()
    if any(r.status in DONE and r.completed_at is not None and (ticket.closed_at is None or r.completed_at >= ticket.closed_at)
           for r in existing):
        raise ValueError("该工单本次回访已完成，以第一次回访结果为准")
    row = next((r for r in existing if r.status in PENDING), None)
    if row is None:
        template = await template_for(s, kind, ticket.project_id)
        if template is None:
            raise ValueError("没有可用的回访问卷，请先在问卷模板中启用")
        row = SurveyResponse(template_id=template.id, owner_id=ticket.owner_id, ticket_id=ticket.id, kind=kind,
                             project_id=ticket.project_id, house_id=ticket.house_id, created_at=now)
        s.add(row)
    template = await s.get(SurveyTemplate, row.template_id) if row.template_id else None
    codes = {i["code"] for i in (template.items if template else [])}
    unknown = set(scores) - codes
    if unknown:
        raise ValueError(f"问卷中没有这些题目：{'、'.join(sorted(unknown))}")
    row.scores, row.answers = dict(scores), {k: v[:500] for k, v in answers.items() if v.strip()}
    row.comment = comment.strip()[:2000] or None
    row.source, row.channel, row.recorded_by = "staff", channel, recorded_by
    row.invited_at = row.invited_at or now
    await s.flush()
    recovery = await finish(rt, s, batch, row, "complete", now, words=comment.strip())
    await clear_forms(s, row.id)
    s.add(TicketEvent(ticket_id=ticket.id, kind="callback_recorded", actor=recorded_by, at=now,
                      data={"survey_id": row.id, "scores": dict(scores), "channel": channel,
                            "recovery": recovery.number if recovery else None}))
    return row, recovery


# --- what the desk sees ---------------------------------------------------------------------------


async def callbacks_board(rt: Any, s: AsyncSession, now: dt.datetime | None = None) -> dict[str, Any]:
    """Callbacks due (pending, within their deadline) and overdue (pending past ``within_days`` after the
    trigger, or expired unanswered and still needed by the required rate), rates against the targets
    over the last 30 days, and open recovery tickets."""
    now = now or utcnow()
    cfg = config(rt.settings)
    within = dt.timedelta(days=float(cfg["within_days"]))
    pending = (await s.execute(
        sa.select(SurveyResponse, Ticket).outerjoin(Ticket, Ticket.id == SurveyResponse.ticket_id)
        .where(SurveyResponse.status.in_((*PENDING, "expired", "declined")),
               SurveyResponse.created_at >= now - dt.timedelta(days=30))
        .order_by(SurveyResponse.created_at)
    )).all()
    due: list[dict[str, Any]] = []
    overdue: list[dict[str, Any]] = []
    for row, ticket in pending:
        start = ticket.closed_at if ticket is not None and ticket.closed_at else row.created_at
        deadline = start + within if start else None
        if row.status == "cancelled":
            continue  # cancelled by a rework: a new callback follows the rework
        if (row.comment or "").startswith(UNREACHABLE):
            pass  # the bot could not reach the owner: the desk phones them
        elif row.status in ("expired", "declined") and ticket is not None:
            needed = float((cfg["rates"] or {}).get(row.kind, 0)) >= 1.0
            if not needed:
                continue
        elif row.status in ("expired", "declined"):
            continue
        item = {"row": row, "ticket": ticket, "deadline": deadline}
        (overdue if deadline is not None and deadline < now else due).append(item)
    since = now - dt.timedelta(days=30)
    closed = dict((await s.execute(
        sa.select(Ticket.kind, sa.func.count()).where(Ticket.kind.in_(("repair", "complaint")), Ticket.closed_at >= since)
        .group_by(Ticket.kind))).all())
    called = dict((await s.execute(
        sa.select(Ticket.kind, sa.func.count(sa.distinct(SurveyResponse.ticket_id)))
        .join(Ticket, Ticket.id == SurveyResponse.ticket_id)
        .where(Ticket.closed_at >= since, SurveyResponse.status.in_(DONE), SurveyResponse.kind == Ticket.kind)
        .group_by(Ticket.kind))).all())
    rates = [{"kind": kind, "closed": closed.get(kind, 0), "done": called.get(kind, 0),
              "rate": (called.get(kind, 0) / closed[kind]) if closed.get(kind) else None,
              "target": float((cfg["rates"] or {}).get(kind, 0))} for kind in ("repair", "complaint")]
    recovery = (await s.execute(sa.select(Ticket).where(Ticket.kind == "recovery", Ticket.status != "closed")
                                .order_by(Ticket.due_at))).scalars().all()
    return {"due": due, "overdue": overdue, "rates": rates, "recovery": list(recovery)}


async def for_ticket(s: AsyncSession, ticket: Ticket) -> dict[str, Any]:
    """The ticket page's callback section: its responses and the template staff record against."""
    kind = "recheck" if ticket.kind == "recovery" else ticket.kind
    rows = (await s.execute(sa.select(SurveyResponse).where(SurveyResponse.ticket_id == ticket.id)
                            .order_by(SurveyResponse.id))).scalars().all()
    template = None
    if kind in ("repair", "complaint", "recheck"):
        pending = next((r for r in rows if r.status in PENDING), None)
        template = await s.get(SurveyTemplate, pending.template_id) if pending else await template_for(
            s, kind, ticket.project_id)
    texts: dict[int, dict[str, str]] = {}
    for r in rows:
        if r.template_id not in texts:
            t = await s.get(SurveyTemplate, r.template_id)
            texts[r.template_id] = {i["code"]: i["text"] for i in (t.items if t else [])}
    return {"rows": rows, "template": template, "texts": texts, "kind": kind,
            "recordable": (template is not None and ticket.status == "closed") or (ticket.kind == "recovery" and template is not None)}
