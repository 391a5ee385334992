"""The case library (客服案例库): tickets and conversations written up so design, engineering and
service learn from them (DOMAIN.md, "The desk's own records").

A case (``CaseEntry``) has a title, a business area (:data:`actions.stages.AREAS`), a ticket category
(the repair and complaint categories of :mod:`actions.labels`), what happened, what was learned, for
whom (``design`` | ``engineering`` | ``service``), and where it came from (project, ticket,
conversation). This module holds the queries the console and the export share:

* :func:`validate` — a form's values as a case's columns, or :class:`CaseError` (Chinese, for staff);
* :class:`CaseFilter` and :func:`search` / :func:`count` — words in the title, what happened and what was
  learned (every word must match; a word that names a category or area matches those too), area,
  category, audience, project; plain ``LIKE`` on lower-cased text, so it runs the same on SQLite and
  PostgreSQL (the library holds hundreds of cases, not millions);
* :func:`prefill` — a new case's form from a ticket, a conversation, or the monthly report's
  candidate link ``/console/cases/new?ticket=ID&category=CODE&building=ID&project=ID&title=TEXT``: the
  ticket's description, and the building's recurring tickets of that category summarised into
  "what happened";
* :func:`export_xlsx` — the cases as a spreadsheet (openpyxl), text never turned into formulas.

Deviation from DESIGN.md's import table (``knowledge/`` imports only ``nlu``): the case library lives
in the database, so this module reads ``bot.store.models`` and the label tables of ``actions``.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from actions.labels import (
    CASE_AUDIENCE_LABELS,
    COMPLAINT_CATEGORY_LABELS,
    KIND_LABELS,
    REPAIR_CATEGORY_LABELS,
    STATUS_LABELS,
    label,
)
from actions.stages import AREAS, CHINA_TZ
from bot.params import parse_id
from bot.store.models import (
    Building,
    CaseEntry,
    Conversation,
    House,
    Message,
    OwnerHouse,
    Project,
    Ticket,
    utcnow,
)

AUDIENCES: tuple[str, ...] = tuple(CASE_AUDIENCE_LABELS)
CATEGORY_LABELS: dict[str, str] = {
    **{k: v for k, v in REPAIR_CATEGORY_LABELS.items() if k != "other"},
    **{k: v for k, v in COMPLAINT_CATEGORY_LABELS.items() if k != "other"},
    "other": "其他",
}
"""The categories a case may carry: every repair and complaint category of a ticket."""
CATEGORY_AREA: dict[str, str] = {
    **{code: "工程质量" for code in REPAIR_CATEGORY_LABELS},
    "elevator": "物业管理", "public_facility": "物业管理", "fire": "物业管理", "intercom": "物业管理",
    "noise": "物业管理", "fees": "物业管理", "parking": "物业管理", "hygiene": "物业管理", "security": "物业管理",
    "staff_attitude": "客户服务", "no_show": "客户服务", "sales_promise": "销售服务",
    "construction_quality": "工程质量", "other": "客户服务",
}
"""A first guess of a category's business area (staff change it on the form)."""
AREA_AUDIENCE: dict[str, tuple[str, ...]] = {
    "规划设计": ("design",), "工程质量": ("engineering",), "销售服务": ("service",), "客户服务": ("service",),
    "物业管理": ("service",),
}
RECURRING_DAYS = 180
"""A building's tickets of one category within this many days count as its recurring issue."""
RECURRING_LISTED = 10
TRANSCRIPT_MESSAGES = 20
MAX_TITLE, MAX_TEXT = 100, 10_000
PAGE_SIZE = 50


class CaseError(ValueError):
    """A form value a case cannot take; the message is shown to staff as is."""


# --- values --------------------------------------------------------------------------------------


def _text(value: str | None, limit: int) -> str:
    return (value or "").replace("\r\n", "\n").strip()[:limit]


def _id(value: Any) -> int | None:
    return parse_id(str(value)) if value not in (None, "") else None


def validate(data: Mapping[str, Any], audience: Sequence[str]) -> dict[str, Any]:
    """A form's values (``audience`` the checked boxes) as a case's columns."""
    title = _text(data.get("title"), 1000)
    if not title:
        raise CaseError("请填写案例标题")
    if len(title) > MAX_TITLE:
        raise CaseError(f"案例标题请控制在{MAX_TITLE}字以内")
    area = _text(data.get("area"), 20)
    if area not in AREAS:
        raise CaseError(f"请选择业务领域（{'、'.join(AREAS)}）")
    category = _text(data.get("category"), 30) or None
    if category is not None and category not in CATEGORY_LABELS:
        raise CaseError("请选择工单类别")
    happened, learned = _text(data.get("happened"), MAX_TEXT + 1), _text(data.get("learned"), MAX_TEXT + 1)
    if not happened:
        raise CaseError("请填写事情经过")
    if not learned:
        raise CaseError("请填写经验教训（今后怎么做）")
    if len(happened) > MAX_TEXT or len(learned) > MAX_TEXT:
        raise CaseError(f"事情经过和经验教训各请控制在{MAX_TEXT}字以内")
    chosen = [a for a in AUDIENCES if a in set(audience)]
    if not chosen or len(chosen) != len(set(audience)):
        raise CaseError("请选择案例的适用对象（设计、工程、服务）")
    return {"title": title, "area": area, "category": category, "happened": happened, "learned": learned,
            "audience": chosen, "project_id": _id(data.get("project_id"))}


# --- search --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseFilter:
    q: str = ""
    area: str = ""
    category: str = ""
    audience: str = ""
    project_id: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> CaseFilter:
        """Filters from a query string; a value the library does not know is ignored, not an error."""
        area, category, audience = query.get("area", ""), query.get("category", ""), query.get("audience", "")
        return cls(q=query.get("q", "").strip()[:100], area=area if area in AREAS else "",
                   category=category if category in CATEGORY_LABELS else "",
                   audience=audience if audience in AUDIENCES else "", project_id=_id(query.get("project")))

    def where(self) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        for word in self.q.split()[:8]:
            low = word.lower()
            either: list[sa.ColumnElement[bool]] = [
                sa.func.lower(col).contains(low, autoescape=True)
                for col in (CaseEntry.title, CaseEntry.happened, CaseEntry.learned)
            ]
            codes = [code for code, name in CATEGORY_LABELS.items() if word in name]
            if codes:
                either.append(CaseEntry.category.in_(codes))
            areas = [a for a in AREAS if word in a]
            if areas:
                either.append(CaseEntry.area.in_(areas))
            conds.append(sa.or_(*either))
        if self.area:
            conds.append(CaseEntry.area == self.area)
        if self.category:
            conds.append(CaseEntry.category == self.category)
        if self.audience:  # a JSON list: its text holds the code in quotes on both databases
            conds.append(sa.cast(CaseEntry.audience, sa.Text).contains(f'"{self.audience}"'))
        if self.project_id is not None:
            conds.append(CaseEntry.project_id == self.project_id)
        return conds

    def any(self) -> bool:
        return bool(self.q or self.area or self.category or self.audience or self.project_id is not None)


async def search(s: AsyncSession, f: CaseFilter, *, limit: int = PAGE_SIZE, offset: int = 0) -> list[CaseEntry]:
    """Cases matching ``f``, newest first."""
    query = sa.select(CaseEntry).where(*f.where()).order_by(CaseEntry.id.desc()).offset(offset).limit(limit)
    return list((await s.execute(query)).scalars())


async def count(s: AsyncSession, f: CaseFilter) -> int:
    return int((await s.execute(sa.select(sa.func.count()).select_from(CaseEntry).where(*f.where()))).scalar_one())


async def cases_of_ticket(s: AsyncSession, ticket_id: int) -> list[tuple[int, str]]:
    """The cases written up from a ticket (id, title), for its page."""
    rows = await s.execute(sa.select(CaseEntry.id, CaseEntry.title).where(CaseEntry.ticket_id == ticket_id)
                           .order_by(CaseEntry.id))
    return [(cid, title) for cid, title in rows]


async def project_names(s: AsyncSession) -> dict[int, str]:
    return {pid: name for pid, name in (await s.execute(sa.select(Project.id, Project.name).order_by(Project.id)))}


# --- a new case's form ----------------------------------------------------------------------------


def _day(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    local = value.astimezone(CHINA_TZ)
    return f"{local.year}年{local.month}月{local.day}日"


def _place(t: Ticket) -> str:
    return t.house.label if t.house is not None else (t.location or "")


def _ticket_line(t: Ticket) -> str:
    head = " · ".join(x for x in (KIND_LABELS.get(t.kind, "工单"), _place(t), _day(t.created_at)) if x)
    return f"工单 {t.number}（{head}）：{(t.description or '').strip()}"


async def recurring(s: AsyncSession, building_id: int, category: str | None, *, exclude: int | None = None,
                    since: dt.datetime | None = None) -> tuple[int, str]:
    """How many tickets of ``category`` the building had since ``since`` (default: :data:`RECURRING_DAYS`
    days ago), and a summary of them (newest first) for "what happened"."""
    building = await s.get(Building, building_id)
    if building is None:
        return 0, ""
    since = since or utcnow() - dt.timedelta(days=RECURRING_DAYS)
    query = (sa.select(Ticket).join(House, House.id == Ticket.house_id)
             .where(House.building_id == building_id, Ticket.created_at >= since)
             .options(selectinload(Ticket.house).selectinload(House.building)))
    if category:
        query = query.where(Ticket.category == category)
    if exclude is not None:
        query = query.where(Ticket.id != exclude)
    total = int((await s.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one())
    if not total:
        return 0, ""
    rows = list((await s.execute(query.order_by(Ticket.created_at.desc(), Ticket.id.desc())
                                 .limit(RECURRING_LISTED))).scalars())
    what = f"同类（{label(CATEGORY_LABELS, category)}）" if category else ""
    head = (f"{building.name}栋{_day(since)}以来{what}工单共 {total} 张"
            f"{'，最近' + str(len(rows)) + '张' if total > len(rows) else ''}：")
    lines = [f"- {t.number} {_place(t)} {_day(t.created_at)} {STATUS_LABELS.get(t.status, '')}："
             f"{(t.description or '').strip()[:60]}" for t in rows]
    return total, "\n".join([head, *lines])


async def _transcript(s: AsyncSession, conv: Conversation) -> str:
    msgs = list((await s.execute(
        sa.select(Message).where(Message.conversation_id == conv.id, Message.direction.in_(("in", "out")),
                                 Message.text.is_not(None), Message.text != "")
        .order_by(Message.id.desc()).limit(TRANSCRIPT_MESSAGES)
    )).scalars())
    lines = []
    for m in reversed(msgs):
        who = "业主" if m.direction == "in" else ("机器人" if m.author == "bot" else "客服")
        lines.append(f"{who} {m.at.astimezone(CHINA_TZ):%m-%d %H:%M}：{(m.text or '').strip()}")
    return "\n".join(lines)


async def prefill(
    s: AsyncSession, *, ticket_id: int | None = None, conversation_id: int | None = None,
    category: str = "", building_id: int | None = None, project_id: int | None = None, title: str = "",
) -> dict[str, Any]:
    """The new-case form's values from where the case comes from (every argument optional)."""
    values: dict[str, Any] = {"title": _text(title, MAX_TITLE), "category": category if category in CATEGORY_LABELS else "",
                              "project_id": project_id, "ticket_id": None, "conversation_id": None, "happened": "",
                              "learned": "", "area": "", "audience": []}
    parts: list[str] = []
    ticket = None
    if ticket_id is not None:
        ticket = (await s.execute(sa.select(Ticket).where(Ticket.id == ticket_id).options(
            selectinload(Ticket.house).selectinload(House.building)))).scalar_one_or_none()
    if ticket is not None:
        values["ticket_id"] = ticket.id
        if not values["category"] and ticket.category in CATEGORY_LABELS:
            values["category"] = ticket.category
        values["project_id"] = values["project_id"] or ticket.project_id
        if ticket.conversation_id is not None:
            values["conversation_id"] = ticket.conversation_id
        parts.append(_ticket_line(ticket))
        if not values["title"]:
            desc = (ticket.description or "").strip()
            values["title"] = (f"{_place(ticket)} " if ticket.house else "") + (desc[:40] or ticket.number)
        if building_id is None and ticket.house is not None:
            building_id = ticket.house.building_id
    conv = await s.get(Conversation, conversation_id) if conversation_id is not None else None
    if conv is not None:
        values["conversation_id"] = conv.id
        transcript = await _transcript(s, conv)
        if transcript:
            parts.append("会话记录：\n" + transcript)
        if not values["title"]:
            first = (await s.execute(sa.select(Message.text).where(
                Message.conversation_id == conv.id, Message.direction == "in", Message.text.is_not(None))
                .order_by(Message.id).limit(1))).scalar_one_or_none()
            values["title"] = _text(first, 40)
        if values["project_id"] is None and conv.owner_id is not None:
            values["project_id"] = (await s.execute(
                sa.select(Building.project_id).join(House, House.building_id == Building.id)
                .join(OwnerHouse, OwnerHouse.house_id == House.id).where(OwnerHouse.owner_id == conv.owner_id)
                .limit(1))).scalar_one_or_none()
    if building_id is not None:
        # the building's history up to now, from RECURRING_DAYS before the ticket (a case proposed
        # from an old month's report still sees that month's neighbours)
        anchor = min(ticket.created_at, utcnow()) if ticket is not None and ticket.created_at else utcnow()
        _count, summary = await recurring(s, building_id, values["category"] or None,
                                          exclude=ticket.id if ticket is not None else None,
                                          since=anchor - dt.timedelta(days=RECURRING_DAYS))
        if summary:
            parts.append(summary)
        if values["project_id"] is None:
            building = await s.get(Building, building_id)
            values["project_id"] = building.project_id if building else None
    values["happened"] = "\n\n".join(parts)[:MAX_TEXT]
    area = CATEGORY_AREA.get(values["category"] or "")
    if area is None and ticket is not None:
        area = "工程质量" if ticket.kind == "repair" else "客户服务"
    values["area"] = area or ""
    values["audience"] = list(AREA_AUDIENCE.get(values["area"], ()))
    return values


# --- export --------------------------------------------------------------------------------------

EXPORT_COLUMNS = ("编号", "标题", "业务领域", "类别", "楼盘", "事情经过", "经验教训", "适用对象", "来源工单", "来源会话",
                  "创建人", "创建时间", "更新时间")


def _cell_text(value: str) -> str:
    return ILLEGAL_CHARACTERS_RE.sub("", value)


def export_xlsx(cases: Sequence[CaseEntry], *, projects: Mapping[int, str], tickets: Mapping[int, str]) -> bytes:
    """The cases as an .xlsx workbook (one sheet, a header row, wrapped text); ``tickets`` maps a
    ticket id to its number."""
    wb = Workbook()
    ws = wb.active
    ws.title = "客服案例库"
    ws.append(EXPORT_COLUMNS)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for c in cases:
        row = [
            c.id, c.title, c.area or "", label(CATEGORY_LABELS, c.category), projects.get(c.project_id or 0, ""),
            c.happened, c.learned, "、".join(CASE_AUDIENCE_LABELS.get(a, a) for a in c.audience or []),
            tickets.get(c.ticket_id or 0, ""), c.conversation_id or "", c.created_by or "",
            c.created_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if c.created_at else "",
            c.updated_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if c.updated_at else "",
        ]
        ws.append([_cell_text(v) if isinstance(v, str) else v for v in row])
        for cell in ws[ws.max_row]:
            if cell.data_type == "f":  # owners' words starting with "=" stay words, never formulas
                cell.data_type = "s"
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    for letter, width in zip("ABCDEFGHIJKLM", (6, 30, 10, 14, 14, 60, 50, 14, 18, 10, 10, 17, 17), strict=True):
        ws.column_dimensions[letter].width = width
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
