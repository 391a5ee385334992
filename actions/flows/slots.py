"""Slot validators shared by the forms: a visit time, a contact phone.

A visit time must be a time the company can keep (DOMAIN.md "Promises"): in the future and inside the
project's visit hours (``Project.settings["visit_hours"]``, default :data:`DEFAULT_VISIT_HOURS`). A time
said without a day that is already past today ("下午" at 23:00) means the next such time; anything else
in the past, or outside the hours, is refused with the reason and an example.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from actions.flows.base import Filled, Rejected, Verdict
from actions.flows.context import Ctx
from actions.tickets import CHINA, local_now

DEFAULT_VISIT_HOURS = ("08:30", "18:00")
ANYTIME = re.compile(r"随时|都可以|都行|什么时候都|任何时间|全天|哪天都|啥时候都|都有人|一直在家|天天在家")
DAY_WORD = re.compile(r"今|明|后天|昨|前天|周|星期|礼拜|号|日|月|\d+[/.-]\d+")
WEEKDAYS = "一二三四五六日"
MAX_AHEAD = dt.timedelta(days=30)


def visit_hours(settings: dict[str, Any] | None) -> tuple[dt.time, dt.time]:
    raw = (settings or {}).get("visit_hours") or DEFAULT_VISIT_HOURS
    if isinstance(raw, dict):
        raw = (raw.get("start", DEFAULT_VISIT_HOURS[0]), raw.get("end", DEFAULT_VISIT_HOURS[1]))
    return dt.time.fromisoformat(str(raw[0])), dt.time.fromisoformat(str(raw[1]))


def hours_text(hours: tuple[dt.time, dt.time]) -> str:
    return "–".join(f"{t.hour}:{t.minute:02d}" for t in hours)


def stamp(words: str, day: dt.date, today: dt.date, explicit_day: bool) -> str:
    """The owner's words with the date they resolve to: "明天上午（12月2日 周三）"."""
    date = f"{day.month}月{day.day}日" + ("" if re.search(r"周|星期|礼拜", words) else f" 周{WEEKDAYS[day.weekday()]}")
    if not explicit_day:
        words = {0: "今天", 1: "明天", 2: "后天"}.get((day - today).days, "") + words
    return f"{words}（{date}）"


async def visit_time(ctx: Ctx, slots: dict[str, Any]) -> Verdict:
    """The visit-time validator (see the module docstring)."""
    return check_visit_time(ctx, visit_hours({"visit_hours": await ctx.setting("visit_hours")}))


def check_visit_time(ctx: Ctx, hours: tuple[dt.time, dt.time]) -> Verdict:
    text = ctx.text
    now = local_now(ctx.now)
    today = now.date()
    start, end = hours
    span = hours_text(hours)
    ent = ctx.entity("time")
    parse = getattr(ctx, "parse", None)
    if parse is not None and len(parse.entities_of("time")) > 1:
        ent = parse.entities_of("time")[-1]  # "明天上午吧 哦不对 明天要上班 后天上午": the owner's last word
    if ent is None:
        if ANYTIME.search(text):
            return Filled({"visit_time": "随时可上门（工作时间内）", "visit_iso": None})
        return None
    words = text[ent.start:ent.end]
    explicit_day = bool(DAY_WORD.search(words))
    grain = str(ent.extra.get("grain", "day"))
    if ent.extra.get("relative"):
        explicit_day = True
    try:
        when = dt.datetime.fromisoformat(ent.value)
    except ValueError:
        return Rejected("没能看懂这个时间，")
    if when.tzinfo is None:
        when = when.replace(tzinfo=CHINA) if grain in ("minute", "part_of_day") else when
    if grain in ("day", "week"):
        day = when.date()
        if day < today:
            return Rejected("这个日期已经过去了，")
        if day == today and now.time() >= end:
            return Rejected(f"今天的上门时间（{span}）已经过了，")
        if day - today > MAX_AHEAD:
            return Rejected("只能预约30天内的上门时间，")
        return Filled({"visit_time": stamp(words, day, today, True), "visit_iso": day.isoformat()})
    lo = dt.datetime.fromisoformat(ent.extra["from"]) if "from" in ent.extra else when
    hi = dt.datetime.fromisoformat(ent.extra["to"]) if "to" in ent.extra else when
    if not explicit_day and hi <= now:
        when, lo, hi = (x + dt.timedelta(days=1) for x in (when, lo, hi))  # "下午" said at night: tomorrow
    lo, hi = lo.astimezone(CHINA), hi.astimezone(CHINA)
    if hi <= now or (grain == "minute" and when <= now):
        return Rejected("这个时间已经过了，")
    day = lo.date()
    window_lo = dt.datetime.combine(day, start, CHINA)
    window_hi = dt.datetime.combine(day, end, CHINA)
    inside = (window_lo <= lo < window_hi) if grain == "minute" and lo == hi else (lo < window_hi and hi > window_lo)
    if not inside:
        return Rejected(f"师傅上门服务时间为每天{span}，这个时间安排不了，")
    if when.astimezone(CHINA).date() - today > MAX_AHEAD:
        return Rejected("只能预约30天内的上门时间，")
    return Filled({"visit_time": stamp(words, day, today, explicit_day), "visit_iso": when.isoformat()})


async def contact_phone(ctx: Ctx, slots: dict[str, Any]) -> Verdict:
    phone = ctx.phone()
    if phone is not None:
        return Filled({"contact": phone})
    digits = re.sub(r"\D", "", ctx.text)
    if 7 <= len(digits) <= 13 and len(digits) != 6:
        return Rejected("这个号码好像不完整，")
    return None
