"""The signed collection record (签收) of property certificates: the counter, the reminders, the register.

DOMAIN.md "Certificate collection": each house is notified (how, when), the owner may acknowledge, and at
the counter staff record who collected — the owner, or a proxy (代领) with the owner's power of attorney
(委托书) and both ID cards — when, and checked by whom. Owners who have not collected get reminders. The
batch's record is kept as the signed collection register.

* :func:`record_collection` — the counter: validates the desk's rules (a proxy without 委托书 and ID check
  is refused with the reason), makes the :class:`CertificateRecord` collected (or mailed), and writes the
  audit log, all in the caller's transaction.
* :func:`remind_uncollected` — the daily job (``bot/jobs/schedule.py``): a ``ready`` certificate not
  collected N days after the owner was last told (the last certificate notice's delivery, else the last
  reminder, else the day it became ready) gets a reminder through the notifier (opt-outs, quiet hours and
  caps apply there), keyed per record and reminder number so a job that runs twice sends once.
* :func:`register` / :func:`register_xlsx` — the register of a batch: house, owners (phones masked),
  how and when each was notified (the deliveries of ``certificate_collection`` campaigns), acknowledged,
  who collected, relation, 委托书, ID checked, when, and the staff member.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from actions.flows.context import mask_phone
from actions.labels import CERT_LABELS, CHANNEL_LABELS, COLLECTOR_RELATION_LABELS
from actions.workflow import CHINA
from bot.events import EventBatch
from bot.store.models import (
    AuditLog,
    Building,
    Campaign,
    CertificateRecord,
    Delivery,
    House,
    Owner,
    OwnerHouse,
    Project,
    utcnow,
)

log = logging.getLogger("yezhu.collection")

CAMPAIGN_KIND = "certificate_collection"
REMINDER_KIND = "certificate_reminder"
"""The notifier's message kind of a reminder (its SMS template in the catalogue, ``sms.templates``)."""
NOTIFIED = ("sent", "delivered", "acknowledged")
"""Delivery statuses that mean the owner was told."""
RELATIONS = ("owner", "proxy", "mail")


class CollectionRefused(Exception):
    """The counter's rules refuse this record; ``str(exc)`` is the reason in words for staff."""


@dataclass(frozen=True, slots=True)
class Collection:
    """What staff at the counter fill in."""

    relation: str
    """``owner`` | ``proxy`` (代领) | ``mail``."""
    collector_name: str = ""
    proxy_letter: bool = False
    id_checked: bool = False


def _clean(value: str | None, limit: int = 50) -> str:
    return " ".join((value or "").split())[:limit]


async def house_owners(s: AsyncSession, house_ids: Iterable[int]) -> dict[int, list[Owner]]:
    ids = list(set(house_ids))
    result: dict[int, list[Owner]] = {h: [] for h in ids}
    if not ids:
        return result
    rows = (await s.execute(
        sa.select(OwnerHouse.house_id, Owner).join(Owner, Owner.id == OwnerHouse.owner_id)
        .where(OwnerHouse.house_id.in_(ids)).order_by(Owner.id)
    )).all()
    for house_id, owner in rows:
        result[house_id].append(owner)
    return result


async def record_collection(
    s: AsyncSession, record_id: int, what: Collection, *, staff: str, at: dt.datetime | None = None,
) -> CertificateRecord:
    """Record who collected certificate ``record_id`` at the counter, checked by ``staff`` (a username).

    Raises :class:`CollectionRefused` (nothing changed) when the desk's rules are not met: the
    certificate is not ready or already collected, a proxy came without the owner's 委托书 or without
    both ID cards checked, the owner's ID was not checked, or the collector has no name."""
    at = at or utcnow()
    record = (await s.execute(
        sa.select(CertificateRecord).where(CertificateRecord.id == record_id)
        .options(selectinload(CertificateRecord.house).selectinload(House.building)).with_for_update()
    )).scalar_one_or_none()
    if record is None:
        raise CollectionRefused("没有这条办证记录，请刷新页面后重试。")
    if record.status in ("collected", "mailed"):
        when = record.collected_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if record.collected_at else ""
        who = record.collector_name or record.collected_by or "业主"
        raise CollectionRefused(f"该证书已于{when}由{who}领取，不能重复登记。")
    if record.status != "ready":
        raise CollectionRefused(f"该证书目前为“{CERT_LABELS.get(record.status, record.status)}”，还不能领取。")
    if what.relation not in RELATIONS:
        raise CollectionRefused("请选择领取方式：业主本人、代领或邮寄。")
    name = _clean(what.collector_name)
    if what.relation == "owner":
        if not name:
            owners = (await house_owners(s, [record.house_id]))[record.house_id]
            name = owners[0].name if owners else ""
        if not name:
            raise CollectionRefused("请填写领取人姓名。")
        if not what.id_checked:
            raise CollectionRefused("请先核验业主本人的身份证原件，再登记领取。")
    elif what.relation == "proxy":
        missing = [word for ok, word in ((what.proxy_letter, "业主签字的委托书"),
                                         (what.id_checked, "核验业主和代领人双方的身份证")) if not ok]
        if missing:
            raise CollectionRefused("代领须" + "并".join(missing) + "，缺少时不能办理代领。")
        if not name:
            raise CollectionRefused("请填写代领人姓名。")
    elif not name:
        raise CollectionRefused("请填写邮寄收件人姓名。")
    record.status = "mailed" if what.relation == "mail" else "collected"
    record.collector_relation = what.relation
    record.collector_name = name
    record.collected_by = name
    record.proxy_letter = what.relation == "proxy" and what.proxy_letter
    record.id_checked = what.id_checked
    record.collected_at = at
    record.handed_over_by = staff
    s.add(AuditLog(actor=staff, action="certificate.collect", target=f"certificate:{record.id}", at=utcnow(), data={
        "house": record.house.label, "batch": record.batch, "relation": what.relation, "name": name,
        "proxy_letter": record.proxy_letter, "id_checked": record.id_checked, "at": local_text(at),
    }))
    await s.flush()
    return record


# --- reminders -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    after_days: int
    """Days after the last notice (or reminder) before the next reminder; 0 = no reminders."""
    max_count: int


def reminder_policy(settings: Any, project: Project | None) -> ReminderPolicy:
    """The project's rule: ``Project.settings["certificate_collection"]["reminder_days"|"reminder_max"]``,
    else the YAML config's ``certificate_reminders: {<project code>: {after_days, max}}``, else
    ``YEZHU_CERTIFICATE_REMINDER_DAYS`` / ``YEZHU_CERTIFICATE_REMINDER_MAX``."""
    days, most = int(settings.certificate_reminder_days), int(settings.certificate_reminder_max)
    if project is not None:
        yaml_rule = ((settings.file_config.get("certificate_reminders") or {}).get(project.code) or {})
        days = int(yaml_rule.get("after_days", days))
        most = int(yaml_rule.get("max", most))
        own = ((project.settings or {}).get("certificate_collection") or {})
        days = int(own.get("reminder_days", days))
        most = int(own.get("reminder_max", most))
    return ReminderPolicy(max(0, days), max(0, most))


async def last_notices(s: AsyncSession, house_ids: list[int]) -> dict[int, dt.datetime]:
    """Per house: when a certificate notice last reached it (sent, delivered or acknowledged)."""
    if not house_ids:
        return {}
    rows = (await s.execute(
        sa.select(Delivery.house_id, sa.func.max(sa.func.coalesce(Delivery.sent_at, Delivery.created_at)))
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Campaign.kind == CAMPAIGN_KIND, Delivery.status.in_(NOTIFIED), Delivery.house_id.in_(house_ids))
        .group_by(Delivery.house_id)
    )).all()
    return {h: _aware(at) for h, at in rows if at is not None and h is not None}


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def collection_details(record: CertificateRecord, project: Project | None) -> dict[str, str]:
    """Place and hours for this house: the record's own win over the project's."""
    own = ((project.settings if project else None) or {}).get("certificate_collection") or {}
    return {"house": record.house.label, "place": record.collect_place or str(own.get("place") or "客服中心"),
            "hours": record.collect_hours or str(own.get("hours") or "工作时间")}


async def remind_uncollected(runtime: Any, now: dt.datetime | None = None, *, limit: int = 500) -> int:
    """Send the reminders that are due (the daily job); returns how many records were reminded."""
    now = now or utcnow()
    batch = EventBatch()
    message_ids: list[int] = []
    reminded = 0
    async with runtime.db.session() as s, s.begin():
        records = list((await s.execute(
            sa.select(CertificateRecord).where(CertificateRecord.status == "ready",
                                               CertificateRecord.collected_at.is_(None))
            .options(selectinload(CertificateRecord.house).selectinload(House.building)
                     .selectinload(Building.project))
            .order_by(CertificateRecord.id).limit(limit)
        )).scalars())
        notices = await last_notices(s, [r.house_id for r in records])
        owners = await house_owners(s, [r.house_id for r in records])
        for record in records:
            project = record.house.building.project
            policy = reminder_policy(runtime.settings, project)
            if policy.after_days <= 0 or record.reminder_count >= policy.max_count:
                continue
            # The owner was last told by a notice or a reminder; never told: counted from the day it was ready.
            told = [_aware(t) for t in (notices.get(record.house_id), record.reminded_at) if t is not None]
            last = max(told) if told else (_aware(record.ready_at) if record.ready_at else None)
            if last is None or now - last < dt.timedelta(days=policy.after_days):
                continue
            number = record.reminder_count + 1
            details = collection_details(record, project)
            text = (f"温馨提示：您{details['house']}的不动产权证书已可领取，尚未办理领取。"
                    f"请携带身份证原件于{details['hours']}到{details['place']}领取；"
                    "委托他人代领请带业主签字的委托书及双方身份证。如已领取请忽略。")
            for owner in owners.get(record.house_id, []):
                notice = await runtime.notifier.owner(
                    s, batch, text=text, kind=REMINDER_KIND, params=details, phone=owner.phone,
                    owner_id=owner.id, project_id=project.id if project else None,
                    idempotency_key=f"cert-reminder:{record.id}:{number}:{owner.id}", now=now)
                message_ids += notice.message_ids
                if notice.channel is None:
                    log.info("certificate %s: reminder %s not sent to owner %s: %s",
                             record.id, number, owner.id, notice.reason)
            record.reminder_count = number
            record.reminded_at = now
            reminded += 1
    await runtime.engine.after_commit(batch, message_ids)
    return reminded


# --- the register ----------------------------------------------------------------------------------


@dataclass(slots=True)
class RegisterRow:
    record: CertificateRecord
    house: str
    owners: list[str]
    phones: list[str]
    notified: list[str] = field(default_factory=list)
    """How and when: ``微信 2026-12-01 10:00（已送达）``."""
    acknowledged_at: dt.datetime | None = None


DELIVERY_WORDS = {"sent": "已发送", "delivered": "已送达", "acknowledged": "已确认"}


def _mask(phone: str | None) -> str:
    return mask_phone(phone)


def local_text(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return _aware(value).astimezone(CHINA).strftime(fmt) if value is not None else ""


async def batches(s: AsyncSession) -> list[dict[str, Any]]:
    """Every batch with its counts: ready, collected (or mailed), total."""
    done = sa.func.sum(sa.case((CertificateRecord.status.in_(("collected", "mailed")), 1), else_=0))
    ready = sa.func.sum(sa.case((CertificateRecord.status == "ready", 1), else_=0))
    rows = (await s.execute(
        sa.select(CertificateRecord.batch, sa.func.count(), ready, done)
        .group_by(CertificateRecord.batch).order_by(CertificateRecord.batch.desc())
    )).all()
    return [{"batch": b or "", "total": int(t), "ready": int(r or 0), "done": int(d or 0)} for b, t, r, d in rows]


async def register(
    s: AsyncSession, *, batch: str | None = None, house_ids: list[int] | None = None, mask: bool = True,
) -> list[RegisterRow]:
    """The register of ``batch`` (or of the given houses), one row per certificate, by building/unit/room."""
    query = (sa.select(CertificateRecord).join(House, House.id == CertificateRecord.house_id)
             .join(Building, Building.id == House.building_id)
             .options(selectinload(CertificateRecord.house).selectinload(House.building)))
    if batch is not None:
        query = query.where(CertificateRecord.batch == batch) if batch else query.where(
            CertificateRecord.batch.is_(None))
    if house_ids is not None:
        query = query.where(CertificateRecord.house_id.in_(house_ids or [-1]))
    records = list((await s.execute(query.order_by(Building.name, House.unit, House.room).limit(5000))).scalars())
    ids = [r.house_id for r in records]
    owners = await house_owners(s, ids)
    deliveries: dict[int, list[Delivery]] = {h: [] for h in ids}
    if ids:
        for d in (await s.execute(
            sa.select(Delivery).join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(Campaign.kind == CAMPAIGN_KIND, Delivery.house_id.in_(ids), Delivery.status.in_(NOTIFIED))
            .order_by(Delivery.id)
        )).scalars():
            deliveries[d.house_id or 0].append(d)
    rows = []
    for r in records:
        people = owners.get(r.house_id, [])
        told = deliveries.get(r.house_id, [])
        acks = [_aware(d.acknowledged_at) for d in told if d.acknowledged_at is not None]
        rows.append(RegisterRow(
            record=r, house=r.house.label, owners=[o.name for o in people],
            phones=[_mask(o.phone) if mask else (o.phone or "") for o in people],
            notified=[f"{CHANNEL_LABELS.get(d.channel, d.channel)} {local_text(d.sent_at or d.created_at)}"
                      f"（{DELIVERY_WORDS.get(d.status, d.status)}）" for d in told],
            acknowledged_at=min(acks) if acks else None,
        ))
    return rows


REGISTER_COLUMNS = ("房屋", "业主", "手机", "通知方式及时间", "业主确认", "状态", "领取人", "关系", "委托书",
                    "核验身份证", "领取时间", "经办人", "催领次数")


def register_xlsx(rows: list[RegisterRow], *, title: str, names: dict[str, str] | None = None) -> bytes:
    """The signed collection register as an xlsx workbook (one sheet, a header row, one row per house)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None  # a new workbook always has its sheet
    ws.title = "签收登记"
    ws.append([f"不动产权证书领取签收登记表 · {title}"])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append(list(REGISTER_COLUMNS))
    for cell in ws[2]:
        cell.font = Font(bold=True)
    for row in rows:
        r = row.record
        relation = COLLECTOR_RELATION_LABELS.get(r.collector_relation or "", "")
        done = r.status in ("collected", "mailed")
        staff = (names or {}).get(r.handed_over_by or "", r.handed_over_by or "")
        ws.append([
            row.house, "、".join(row.owners), "、".join(row.phones), "\n".join(row.notified) or "未通知",
            local_text(row.acknowledged_at) or "", CERT_LABELS.get(r.status, r.status),
            r.collector_name or "", relation, ("有" if r.proxy_letter else "无") if r.collector_relation == "proxy" else "",
            ("是" if r.id_checked else "否") if done else "", local_text(r.collected_at), staff, r.reminder_count or 0,
        ])
    widths = (16, 14, 16, 30, 17, 8, 10, 8, 7, 9, 17, 12, 8)
    for i, width in enumerate(widths):
        ws.column_dimensions[chr(ord("A") + i)].width = width
    for cells in ws.iter_rows(min_row=3):
        cells[3].alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A3"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
