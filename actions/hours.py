"""Staff hours and the honest hand-over message (DOMAIN.md "Hand-over to people")."""

from __future__ import annotations

import datetime as dt
from typing import Any

from actions.tickets import local_now

DEFAULT_HOURS = {"weekdays": ["09:00", "17:00"], "weekend": ["09:00", "12:00"]}
WEEKDAY_NAMES = "一二三四五六日"


def _window(day: dt.date, hours: dict[str, Any]) -> tuple[dt.time, dt.time] | None:
    span = hours.get("weekend" if day.weekday() >= 5 else "weekdays")
    if not span:
        return None
    start, end = (dt.time.fromisoformat(x) for x in span)
    return start, end


def in_staff_hours(hours: dict[str, Any] | None, now: dt.datetime | None = None) -> bool:
    local = local_now(now)
    window = _window(local.date(), hours or DEFAULT_HOURS)
    return bool(window and window[0] <= local.time() < window[1])


def next_opening(hours: dict[str, Any] | None, now: dt.datetime | None = None) -> str:
    """When a person will next be there, said the way a desk would say it: 今天14:00 / 明天9:00 / 周一9:00."""
    hours = hours or DEFAULT_HOURS
    local = local_now(now)
    for offset in range(8):
        day = local.date() + dt.timedelta(days=offset)
        window = _window(day, hours)
        if window is None:
            continue
        start = dt.datetime.combine(day, window[0], local.tzinfo)
        end = dt.datetime.combine(day, window[1], local.tzinfo)
        if offset == 0 and local >= end:
            continue
        when = "今天" if offset == 0 else "明天" if offset == 1 else f"周{WEEKDAY_NAMES[day.weekday()]}"
        return f"{when}{start.hour}:{start.minute:02d}" if local < start else "稍后"
    return "工作时间"


def describe_hours(hours: dict[str, Any] | None) -> str:
    hours = hours or DEFAULT_HOURS
    parts = []
    if hours.get("weekdays"):
        parts.append(f"工作日 {hours['weekdays'][0]}–{hours['weekdays'][1]}")
    if hours.get("weekend"):
        parts.append(f"周末 {hours['weekend'][0]}–{hours['weekend'][1]}")
    return "，".join(parts)


def _today_end(hours: dict[str, Any], local: dt.datetime) -> dt.datetime | None:
    window = _window(local.date(), hours)
    if window is None:
        return None
    return dt.datetime.combine(local.date(), window[1], local.tzinfo)


def callback_promise(hours: dict[str, Any] | None, now: dt.datetime | None, within_hours: float) -> str:
    """When a person will call back, as a promise the desk can keep (DOMAIN.md "Promises").

    Inside staff hours with enough of the day left: "在4小时内"; otherwise the next opening,
    "于明天8:30起" — never a number of hours that runs through the night.
    """
    hours = hours or DEFAULT_HOURS
    local = local_now(now)
    if in_staff_hours(hours, now):
        end = _today_end(hours, local)
        if end is not None and local + dt.timedelta(hours=within_hours) <= end:
            return f"在{within_hours:g}小时内"
        if end is not None and end - local >= dt.timedelta(minutes=30):
            return "在今天下班前"
        if end is not None:
            return f"于{next_opening(hours, end + dt.timedelta(minutes=1))}起"
    return f"于{next_opening(hours, now)}起"


def dispatch_promise(hours: dict[str, Any] | None, now: dt.datetime | None) -> str:
    """What happens next to a new repair, honestly for the hour it is filed."""
    if in_staff_hours(hours, now):
        return "客服会尽快为您安排负责的工程师，派工后会在这里通知您工程师姓名和上门安排。"
    return (f"现在是非工作时间，客服将于{next_opening(hours, now)}起为您派工，"
            "派工后会在这里通知您工程师姓名和上门安排。")
