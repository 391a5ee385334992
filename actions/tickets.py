"""Opening tickets: human-friendly numbers, the warranty verdict, due times, the first timeline entry.

The ticket workflow after creation (dispatch, statuses, acceptance, rework) lives in
``actions/workflow.py``; this module only opens tickets the way the desk's procedures require.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from actions.workflow import sla_hours
from bot.store.models import House, Project, Ticket, TicketCounter, TicketEvent, utcnow

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
"""China has one time zone and no daylight saving; a fixed offset needs no tz database."""

PREFIX = {"repair": "BX", "complaint": "TS", "inquiry": "ZX", "certificate": "BZ", "recovery": "HF"}

KIND_LABEL = {"repair": "报修", "complaint": "投诉", "inquiry": "咨询", "certificate": "办证"}

# Which warranty item (DOMAIN.md) a repair category falls under. Leaks need a closer look: water
# through a roof, wet-room floor or exterior wall is a waterproofing defect (5 years); a burst or
# dripping pipe is plumbing (2 years).
CATEGORY_WARRANTY = {
    "plumbing": "plumbing",
    "drainage": "plumbing",
    "electrical": "electrical",
    "gas": "equipment",
    "door_window": "door_window",
    "wall_floor": "decoration",
    "hvac": "hvac",
}
PUBLIC_CATEGORIES = {"elevator", "intercom", "public_facility", "fire"}
PIPE_CUES = ("水管", "管道", "管子", "龙头", "阀门", "接头", "水表", "软管", "爆管")
"""A leak from a pipe or fitting is plumbing (2 years), not waterproofing."""
WATERPROOF_CUES = ("渗水", "漏水", "渗漏", "返潮", "发霉", "外墙", "屋顶", "楼顶", "天花板", "防水", "水渍", "滴水")


# Problems caused by use are not defects of the house (DOMAIN.md "Defect or usage"): blockages by
# foreign objects, damage by the occupant or their renovation, consumables, appliances the owner
# installed. A project overrides or extends these in ``Project.settings["warranty_usage"]``
# (``{"categories": [...], "cues": {"blockage": [...], ...}}``).
DEFAULT_USAGE: dict[str, Any] = {
    "categories": ["drainage"],
    "cues": {
        "blockage": ["堵", "不通", "下水慢", "下不去", "反水", "冒水", "返水", "疏通"],
        "damage": ["摔", "砸", "撞", "碰坏", "弄坏", "踢坏", "孩子", "小孩", "宠物", "狗", "猫", "装修时", "装修工人",
                   "装修队", "自己装", "改造"],
        "consumable": ["灯泡", "灯管", "电池", "垫片", "密封圈", "滤芯", "花洒", "软管", "保险丝"],
        "appliance": ["空调", "热水器", "油烟机", "洗衣机", "冰箱", "净水器", "燃气灶", "浴霸", "马桶盖", "智能锁"],
    },
}
USAGE_REASON = {
    "blockage": ("下水堵塞多由使用原因（如异物堵塞）引起，一般不在保修范围内，物业可提供有偿疏通，上门后先报价、经您同意再施工；"
                 "如工程师现场判断是管道本身的质量问题，则按保修处理。"),
    "damage": "人为损坏或装修造成的损坏不在保修范围内，物业可提供有偿维修，上门后先报价、经您同意再施工；具体由工程师现场判断。",
    "consumable": "灯泡、电池、密封圈等易耗品属于日常损耗，不在保修范围内，物业可提供有偿更换，上门后先报价、经您同意再施工。",
    "appliance": ("空调、热水器等业主自行购买安装的电器不在房屋保修范围内，建议联系电器售后；"
                  "如属于交房时开发商安装的设备，由工程师现场查看后确定是否保修。"),
}


def usage_problem(category: str | None, description: str, usage: dict[str, Any] | None) -> str | None:
    """Which kind of usage problem this is (blockage, damage, consumable, appliance), if any."""
    rules = dict(DEFAULT_USAGE)
    if usage:
        rules = {"categories": usage.get("categories", rules["categories"]),
                 "cues": {**rules["cues"], **(usage.get("cues") or {})}}
    for kind, words in rules["cues"].items():
        if any(w in description for w in words):
            return str(kind)
    if category in rules["categories"]:
        return "blockage" if category == "drainage" else "damage"
    return None


def cn_date(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def local_now(now: dt.datetime | None = None) -> dt.datetime:
    return (now or utcnow()).astimezone(CHINA)


async def next_number(s: AsyncSession, kind: str, now: dt.datetime | None = None) -> str:
    """``BX20261123-0007``: a per-day, per-kind sequence, safe under concurrency on both databases."""
    prefix = f"{PREFIX[kind]}{local_now(now):%Y%m%d}"
    for _ in range(5):
        value = await s.scalar(
            sa.update(TicketCounter)
            .where(TicketCounter.prefix == prefix)
            .values(value=TicketCounter.value + 1)
            .returning(TicketCounter.value)
        )
        if value is not None:
            return f"{prefix}-{value:04d}"
        try:
            async with s.begin_nested():
                s.add(TicketCounter(prefix=prefix, value=1))
            return f"{prefix}-0001"
        except IntegrityError:
            continue  # another transaction created today's counter first: increment it
    raise RuntimeError("could not allocate a ticket number")


@dataclass(frozen=True, slots=True)
class WarrantyVerdict:
    covered: bool | None
    """True: free repair by the developer; False: paid repair; None: public area / not applicable."""
    item: str | None
    label: str | None
    period: str | None
    until: dt.date | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "covered": self.covered,
            "item": self.item,
            "label": self.label,
            "period": self.period,
            "until": self.until.isoformat() if self.until else None,
            "reason": self.reason,
        }


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def warranty_verdict(
    category: str | None, description: str, handover: dt.date | None, table: dict[str, Any], today: dt.date,
    *, usage: dict[str, Any] | None = None,
) -> WarrantyVerdict:
    """The warranty verdict, told plainly (DOMAIN.md): never promise a free repair the rules do not give.

    A usage problem (blockage, damage, consumable, owner's appliance) is not a defect: paid, or judged on
    site; an uncertain category is judged on site; only a defect inside its period is free, and even
    then "after the engineer confirms it is a quality problem"."""
    if category in PUBLIC_CATEGORIES:
        return WarrantyVerdict(None, None, None, None, None, "公共区域设施由物业公司负责维修，不涉及保修期。")
    kind = usage_problem(category, description, usage)
    if kind is not None:
        return WarrantyVerdict(False if kind == "consumable" else None, f"usage:{kind}", None, None, None,
                               USAGE_REASON[kind])
    item = CATEGORY_WARRANTY.get(category or "")
    if category in ("plumbing", "wall_floor", None, "other") and any(c in description for c in WATERPROOF_CUES) \
            and not any(c in description for c in PIPE_CUES):
        item = "waterproofing"
    if item is None or item not in table:
        return WarrantyVerdict(None, None, None, None, None,
                               "是否在保修范围内需工程师现场查看后确定，我们会如实告知您。")
    rule = table[item]
    label = rule.get("label", item)
    if handover is None:
        return WarrantyVerdict(None, item, label, None, None, "您的房屋尚未登记交付日期，保修情况将由工程师核实后告知您。")
    if "seasons" in rule:  # a heating/cooling season a year: two seasons ≈ two years from handover
        until = _add_years(handover, int(rule["seasons"]))
        period = f"{rule['seasons']}个采暖/供冷期"
    else:
        until = _add_years(handover, int(rule["years"]))
        period = f"{rule['years']}年"
    if today < until:
        return WarrantyVerdict(True, item, label, period, until,
                               f"{label}保修期为{period}，自交房之日起算，至{cn_date(until)}止；"
                               "您的房屋仍在保修期内，经工程师上门确认属于质量问题的，由开发商免费维修。")
    return WarrantyVerdict(False, item, label, period, until,
                           f"{label}保修期为{period}，已于{cn_date(until)}届满；"
                           "物业可提供有偿维修，上门后先报价，经您同意再施工。")


async def open_ticket(
    s: AsyncSession,
    *,
    kind: str,
    project: Project | None,
    description: str,
    category: str | None = None,
    house: House | None = None,
    location: str | None = None,
    owner_id: int | None = None,
    conversation_id: int | None = None,
    contact_phone: str | None = None,
    priority: str = "normal",
    visit_time: str | None = None,
    warranty: dict[str, Any] | None = None,
    media: list[Any] | None = None,
    actor: str = "bot",
    now: dt.datetime | None = None,
) -> Ticket:
    now = now or utcnow()
    ticket = Ticket(
        number=await next_number(s, kind, now),
        kind=kind,
        category=category,
        project_id=project.id if project else None,
        house_id=house.id if house else None,
        location=location,
        owner_id=owner_id,
        conversation_id=conversation_id,
        contact_phone=contact_phone,
        description=description,
        priority=priority,
        status="new",
        visit_time=visit_time,
        warranty=warranty,
        media=media or [],
        due_at=now + dt.timedelta(hours=sla_hours(kind, priority, project.settings if project else None)),
        created_at=now,
    )
    s.add(ticket)
    await s.flush()
    s.add(TicketEvent(ticket_id=ticket.id, kind="created", actor=actor, at=now,
                      data={"priority": priority, "category": category, "channel_conversation": conversation_id}))
    return ticket


async def attach_owner_photo(
    s: AsyncSession, conversation_id: int, owner_id: int | None, message_id: int, media: dict[str, Any],
    now: dt.datetime | None = None,
) -> Ticket | None:
    """An owner's image outside a form goes on their newest open repair (this chat's, else the owner's).

    The photo itself stays where WeChat keeps it (``pic_url``); the console fetches it once for its
    thumbnail (``bot/console/repairs.py``). Returns the ticket, or None when no repair is open.
    """
    now = now or utcnow()
    cond: Any = Ticket.conversation_id == conversation_id
    if owner_id is not None:
        cond = sa.or_(cond, Ticket.owner_id == owner_id)
    ticket = (await s.execute(
        sa.select(Ticket).where(cond, Ticket.kind == "repair", Ticket.status != "closed")
        .order_by((Ticket.conversation_id == conversation_id).desc(), Ticket.id.desc()).limit(1)
    )).scalar_one_or_none()
    if ticket is None:
        return None
    entry = {"kind": "owner", "message_id": message_id, "pic_url": media.get("pic_url"),
             "media_id": media.get("media_id"), "at": now.isoformat()}
    ticket.media = [*(ticket.media or []), entry]  # replaced whole: the JSON column is not mutation-tracked
    ticket.updated_at = now
    s.add(TicketEvent(ticket_id=ticket.id, kind="photo", actor="owner", at=now,
                      data={"kind": "owner", "message_id": message_id}))
    return ticket
