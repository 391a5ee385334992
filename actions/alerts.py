"""Staff alerts outside the console: emergencies, serious and group complaints, overdue emergencies.

Overdue emergency tickets get one alert of their own (``overdue``, the same cron job).

Who is alerted: the project's duty roster for today's weekday (``duty:`` in the YAML config: staff
usernames per ``mon``…``sun``), else every active staff member marked on duty. How: an SMS to each
(``duty_alert``, a staff template: no quiet hours) and, where configured, a message to the WeCom group
robot (企业微信群机器人 webhook, markdown with the location, owner and ticket link) sent after the commit.
An emergency alert nobody acknowledged (the ticket is still ``new`` and unassigned, its conversation not
claimed) is repeated to the roster's supervisor after ``repeat_after_minutes`` (the ``alert_escalation``
cron job, every minute).

An emergency (an urgent repair) pages the same way whoever opened the ticket: the bot in a chat
(actions/flows/emergency.py) or the desk logging a phoned-in one in the console (bot/console/intake.py);
both call :func:`raise_emergency`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot import events
from bot.conversation import STAFF
from bot.events import EventBatch
from bot.store.models import Conversation, House, Owner, Project, StaffAlert, StaffUser, Ticket, utcnow
from channels.sms.base import CHINA

log = logging.getLogger("yezhu.alerts")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LEVEL_LABELS = {"emergency": "紧急报修", "serious": "重要投诉", "group": "群体投诉", "overdue": "紧急工单超时"}


def roster(runtime: Any, project_code: str | None) -> dict[str, Any]:
    return dict((runtime.settings.duty_rosters or {}).get(project_code or "", {}) or {})


async def on_duty(s: AsyncSession, runtime: Any, project_code: str | None, now: dt.datetime) -> list[StaffUser]:
    """Today's duty people of the project (the roster), else the staff marked on duty."""
    names = (roster(runtime, project_code).get("weekdays") or {}).get(WEEKDAYS[now.astimezone(CHINA).weekday()])
    q = sa.select(StaffUser).where(StaffUser.active.is_(True))
    q = q.where(StaffUser.username.in_(list(names))) if names else q.where(StaffUser.on_duty.is_(True))
    return list((await s.execute(q.order_by(StaffUser.id))).scalars())


async def supervisor(s: AsyncSession, runtime: Any, project_code: str | None) -> StaffUser | None:
    name = roster(runtime, project_code).get("supervisor")
    q = sa.select(StaffUser).where(StaffUser.active.is_(True))
    q = q.where(StaffUser.username == name) if name else q.where(StaffUser.role == "supervisor")
    return (await s.execute(q.order_by(StaffUser.id).limit(1))).scalar_one_or_none()


async def where(s: AsyncSession, ticket: Ticket) -> str:
    """Where a repeat or overdue alert sends the duty: the ticket's spot, else its house (3栋2单元501)."""
    if ticket.location:
        return ticket.location
    if ticket.house_id is not None:
        house = (await s.execute(sa.select(House).where(House.id == ticket.house_id)
                                 .options(selectinload(House.building)))).scalar_one_or_none()
        if house is not None:
            return house.label
    return "见工单"


def ticket_link(runtime: Any, ticket: Ticket) -> str:
    base = (runtime.settings.file_config.get("console_url") or "/console").rstrip("/")
    return f"{base}/tickets/{ticket.id}"


async def alert(
    s: AsyncSession, batch: EventBatch, runtime: Any, *, level: str, ticket: Ticket, summary: str, location: str,
    now: dt.datetime | None = None, key_suffix: str = "",
) -> StaffAlert:
    """Alert the people on duty about ``ticket`` (once per ticket and level, plus ``key_suffix`` for a
    later update of the same matter: the idempotency key)."""
    now = now or utcnow()
    key = f"{level}:{ticket.id}{key_suffix}"
    existing = (await s.execute(sa.select(StaffAlert).where(StaffAlert.idempotency_key == key))).scalar_one_or_none()
    if existing is not None:
        return existing
    project = await s.get(Project, ticket.project_id) if ticket.project_id is not None else None
    code = project.code if project else None
    people = await on_duty(s, runtime, code, now)
    row = StaffAlert(idempotency_key=key, level=level, ticket_id=ticket.id, project_id=ticket.project_id,
                     summary=summary[:200], recipients=[p.username for p in people], created_at=now)
    s.add(row)
    await s.flush()
    await _send(s, batch, runtime, row, people, ticket, summary, location, code, round_=1)
    return row


async def raise_emergency(
    s: AsyncSession, batch: EventBatch, runtime: Any, *, ticket: Ticket, what: str, location: str,
    now: dt.datetime | None = None, conversation_id: int | None = None, update: str = "", key_suffix: str = "",
) -> StaffAlert:
    """Page the people on duty about an emergency (``what``: 燃气泄漏, 有人被困电梯 …) at ``location``, and
    show it on the console's live screens. ``update`` is later news of the same emergency (a location
    given afterwards): a second alert, keyed by ``key_suffix``. The first alert is the one repeated to
    the supervisor when nobody takes the ticket (:func:`escalate`)."""
    row = await alert(s, batch, runtime, level="emergency_update" if update else "emergency", ticket=ticket,
                      summary=("位置更新·" if update else "") + what, location=location or "位置待确认", now=now,
                      key_suffix=key_suffix)
    batch.emit(events.STAFF_ALERT, level="emergency", ticket_id=ticket.id, number=ticket.number,
               recipients=list(row.recipients), conversation_id=conversation_id,
               summary=f"紧急：{what}" + (f"（{location}）" if location else ""), update=update or None)
    return row


async def _send(
    s: AsyncSession, batch: EventBatch, runtime: Any, row: StaffAlert, people: list[StaffUser], ticket: Ticket,
    summary: str, location: str, project_code: str | None, *, round_: int,
) -> None:
    for person in people:
        if person.phone:
            await runtime.notifier.sms(
                s, batch, phone=person.phone, kind="duty_alert", project_id=ticket.project_id,
                params={"summary": summary, "location": location, "number": ticket.number},
                idempotency_key=f"alert:{row.id}:{round_}:{person.username}",
            )
    webhook = roster(runtime, project_code).get("wecom_webhook") or runtime.settings.wecom_webhook
    if webhook:
        owner = await s.get(Owner, ticket.owner_id) if ticket.owner_id is not None else None
        who = f"{owner.name}（{owner.phone[:3]}****{owner.phone[-4:]}）" if owner else "未绑定业主"
        heading = "再次提醒（无人确认）" if round_ > 1 else LEVEL_LABELS.get(row.level, "值班提醒")
        content = (f"### <font color=\"warning\">{heading}</font>\n> {summary}\n> 位置：{location}\n> 业主：{who}\n"
                   f"> 工单：[{ticket.number}]({ticket_link(runtime, ticket)})\n> 值班：{'、'.join(p.display_name for p in people) or '无'}")
        async def robot() -> None:
            await post_wecom(webhook, content)

        batch.after_commit(robot)


async def post_wecom(webhook: str, markdown: str) -> bool:
    """Send a markdown message to a WeCom group robot; answers ``{"errcode": 0, "errmsg": "ok"}``."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, http.post(
            webhook, json={"msgtype": "markdown", "markdown": {"content": markdown[:4096]}}
        ) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("WeCom robot: %s", exc)
        return False
    if not isinstance(body, dict) or body.get("errcode") != 0:
        log.warning("WeCom robot refused the alert: %s", body)
        return False
    return True


async def acknowledged(s: AsyncSession, row: StaffAlert) -> bool:
    """Someone took it: the ticket moved or got a person, or its conversation was claimed."""
    if row.acknowledged_at is not None:
        return True
    ticket = await s.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    if ticket is None:
        return True
    if ticket.status != "new" or ticket.assignee_id is not None:
        return True
    if ticket.conversation_id is not None:
        conv = await s.get(Conversation, ticket.conversation_id)
        if conv is not None and conv.mode == STAFF:
            return True
    return False


async def overdue(runtime: Any, now: dt.datetime | None = None) -> int:
    """Alert the people on duty, once per ticket, about emergency tickets past their due time that the
    desk still has to act on (DOMAIN.md: emergencies are handled at once, day or night)."""
    from actions.workflow import DESK_TURN

    now = now or utcnow()
    batch = EventBatch()
    alerted = 0
    async with runtime.db.session() as s, s.begin():
        already = sa.select(StaffAlert.ticket_id).where(StaffAlert.level == "overdue")
        tickets = (await s.execute(sa.select(Ticket).where(
            Ticket.kind == "repair", Ticket.priority == "urgent", Ticket.status.in_(DESK_TURN),
            Ticket.due_at.is_not(None), Ticket.due_at < now, Ticket.id.not_in(already),
        ).order_by(Ticket.id).limit(50))).scalars().all()
        for ticket in tickets:
            late = max(1, round((now - ticket.due_at).total_seconds() / 60)) if ticket.due_at else 0
            await alert(s, batch, runtime, level="overdue", ticket=ticket, summary=f"紧急工单已超时{late}分钟未完成",
                        location=await where(s, ticket), now=now)
            alerted += 1
    await batch.publish(runtime.services.pubsub)
    return alerted


async def escalate(runtime: Any, now: dt.datetime | None = None) -> int:
    """Repeat unacknowledged emergency alerts to the supervisor (once); returns how many."""
    now = now or utcnow()
    repeated = 0
    batch = EventBatch()
    async with runtime.db.session() as s, s.begin():
        rows = (await s.execute(sa.select(StaffAlert).where(
            StaffAlert.level == "emergency", StaffAlert.acknowledged_at.is_(None), StaffAlert.escalated_at.is_(None),
        ).order_by(StaffAlert.id).limit(100))).scalars().all()
        for row in rows:
            project = await s.get(Project, row.project_id) if row.project_id is not None else None
            code = project.code if project else None
            minutes = float(roster(runtime, code).get("repeat_after_minutes") or runtime.settings.alert_repeat_minutes)
            if now - row.created_at < dt.timedelta(minutes=minutes):
                continue
            if await acknowledged(s, row):
                row.acknowledged_at = now
                continue
            boss = await supervisor(s, runtime, code)
            ticket = await s.get_one(Ticket, row.ticket_id)
            row.escalated_at = now
            if boss is not None:
                await _send(s, batch, runtime, row, [boss], ticket, "无人确认：" + row.summary,
                            await where(s, ticket), code, round_=2)
                repeated += 1
    await batch.publish(runtime.services.pubsub)
    return repeated
