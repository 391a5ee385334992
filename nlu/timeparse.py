"""Dates and times in owners' words (明天下午, 周六上午, 下周一, 11月25号 3点半), resolved to ISO.

This module owns the resolution rules. Everything is relative to a reference datetime that the caller
passes in (``now``), interpreted in Asia/Shanghai; the result is an aware ISO-8601 value. Rules that a
service desk would apply:

* a bare weekday (周六) is the next one, today included; 下周X is that day of next week (weeks start on
  Monday); 这周/本周X is this week's day, even if past;
* a date without a year (11月25号), or a day without a month (25号), is the nearest such date, past
  or future — owners talk about the visit they want and about the day they first reported;
* a part of day gives a representative hour (上午 9:00, 下午 14:00, 晚上 19:00) plus the span in
  ``extra["from"]``/``extra["to"]``; an hour 1–6 without a part of day is afternoon (nobody books a
  repair at 3 a.m.).

Input is NORMALISED text (digits already Arabic: see :mod:`nlu.normalize`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["SHANGHAI", "TimeMatch", "find_times"]

SHANGHAI = ZoneInfo("Asia/Shanghai")

_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5,
             "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
# part of day → (representative hour, from hour, to hour)
_PARTS: dict[str, tuple[int, int, int]] = {
    "凌晨": (5, 0, 6), "清早": (7, 6, 9), "一早": (8, 7, 9), "早上": (8, 7, 10), "早晨": (8, 7, 10),
    "早": (8, 7, 10), "上午": (9, 9, 12), "中午": (12, 11, 14), "午饭后": (13, 12, 14), "下午": (14, 13, 18),
    "傍晚": (18, 17, 19), "晚上": (19, 18, 22), "晚": (19, 18, 22), "夜里": (22, 21, 24), "半夜": (0, 0, 4),
}
_PART_NAMES = {"凌晨": "early_morning", "清早": "morning", "一早": "morning", "早上": "morning",
               "早晨": "morning", "早": "morning", "上午": "morning", "中午": "noon", "午饭后": "afternoon",
               "下午": "afternoon", "傍晚": "evening", "晚上": "evening", "晚": "evening", "夜里": "night",
               "半夜": "night"}

_DAY = (
    r"(?P<rel>大后天|后天|明天|明日|明儿|今天|今日|今儿|昨天|前天|今晚|明早|明晚|今早|明天早上)"
    r"|(?P<wkpre>下下个?|下个?|这个?|本|上个?)?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天末1-7])"
    r"|(?P<nextweek>下个?(?:周|星期|礼拜))(?![一二三四五六日天末1-7])"
    r"|(?:(?P<y>\d{4})年)?(?P<m>\d{1,2})月(?:(?P<d>\d{1,2})(?:号|日)?)"
    r"|(?P<y3>\d{4})[-/.](?P<m3>\d{1,2})[-/.](?P<d3>\d{1,2})"
    r"|(?<![\d.#-])(?P<m4>\d{1,2})/(?P<d4>\d{1,2})(?![\d/])"
    r"|(?<![\d#栋幢座-])(?P<d2>\d{1,2})(?:号|日)(?![楼\d])"
)
_PART = r"(?P<part>凌晨|清早|一早|早上|早晨|上午|中午|午饭后|下午|傍晚|晚上|夜里|半夜|晚|早)"
_CLOCK = (
    r"(?<![\d.:-])(?P<h>\d{1,2})\s?(?:点钟|点|:|时)(?:(?P<half>半)|(?P<mi>\d{1,2})分?|(?P<quarter>一刻))?"
    r"(?:(?:到|至|-|~)(?P<h2>\d{1,2})\s?(?:点钟|点|:|时)?(?:(?P<half2>半)|(?P<mi2>\d{1,2})分?)?)?"
)
_REL = r"(?P<n>\d{1,3}|半)\s?个?(?P<unit>小时|钟头|天|分钟)(?:以?后|之后)"

# Every expression starts with a digit or one of these characters; the look-ahead lets the engine skip
# all other positions instead of trying the whole optional chain at each one.
_STARTS = "0-9大后明今昨前下这本上周星礼凌清一早中午傍晚夜半"
_TIME_RE = re.compile(
    rf"(?=[{_STARTS}])(?:(?:(?:{_DAY})\s?(?:的)?)?(?:{_PART}\s?)?(?:{_CLOCK})?(?:左右|前后|之前|以前|前)?|{_REL})"
)


@dataclass(frozen=True, slots=True)
class TimeMatch:
    """One time expression in normalised text."""

    start: int
    end: int
    iso: str
    grain: str
    extra: dict[str, Any] = field(default_factory=dict)


def _nearest(candidates: list[date], today: date) -> date:
    return min(candidates, key=lambda d: (abs((d - today).days), d < today))


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _resolve_day(m: re.Match[str], today: date) -> tuple[date | None, str | None]:
    """The date named by the day part of a match, and an implied part of day (今晚 → evening)."""
    rel = m.group("rel")
    if rel:
        offsets = {"大后天": 3, "后天": 2, "明天": 1, "明日": 1, "明儿": 1, "今天": 0, "今日": 0, "今儿": 0,
                   "昨天": -1, "前天": -2, "今晚": 0, "明早": 1, "明晚": 1, "今早": 0, "明天早上": 1}
        part = {"今晚": "晚上", "明早": "早上", "明晚": "晚上", "今早": "早上", "明天早上": "早上"}.get(rel)
        return today + timedelta(days=offsets[rel]), part
    if m.group("wd"):
        weekday = _WEEKDAYS[m.group("wd")]
        pre = (m.group("wkpre") or "").replace("个", "")
        monday = today - timedelta(days=today.weekday())
        if pre in {"下"}:
            return monday + timedelta(days=7 + weekday), None
        if pre == "下下":
            return monday + timedelta(days=14 + weekday), None
        if pre in {"这", "本"}:
            return monday + timedelta(days=weekday), None
        if pre == "上":
            return monday - timedelta(days=7 - weekday), None
        ahead = (weekday - today.weekday()) % 7
        return today + timedelta(days=ahead), None
    if m.group("nextweek"):
        return today - timedelta(days=today.weekday()) + timedelta(days=7), None
    if m.group("m"):
        month, day = int(m.group("m")), int(m.group("d"))
        if m.group("y"):
            return _safe_date(int(m.group("y")), month, day), None
        options = [d for y in (today.year - 1, today.year, today.year + 1) if (d := _safe_date(y, month, day))]
        return (_nearest(options, today) if options else None), None
    if m.group("y3"):
        return _safe_date(int(m.group("y3")), int(m.group("m3")), int(m.group("d3"))), None
    if m.group("m4"):
        month, day = int(m.group("m4")), int(m.group("d4"))
        options = [d for y in (today.year - 1, today.year, today.year + 1) if (d := _safe_date(y, month, day))]
        return (_nearest(options, today) if options else None), None
    if m.group("d2"):
        day = int(m.group("d2"))
        options = []
        for delta in (-1, 0, 1):
            month_index = today.month - 1 + delta
            year, month = today.year + month_index // 12, month_index % 12 + 1
            if (d := _safe_date(year, month, day)) is not None:
                options.append(d)
        return (_nearest(options, today) if options else None), None
    return None, None


def _has_day(m: re.Match[str]) -> bool:
    return any(m.group(g) for g in ("rel", "wd", "nextweek", "m", "y3", "m4", "d2"))


def find_times(text: str, now: datetime) -> list[TimeMatch]:
    """All time expressions in normalised ``text``, resolved against ``now``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=SHANGHAI)
    now = now.astimezone(SHANGHAI)
    today = now.date()
    results: list[TimeMatch] = []
    for m in _TIME_RE.finditer(text):
        if m.start() == m.end():
            continue
        if m.group("unit"):
            n = m.group("n")
            amount = 0.5 if n == "半" else float(n)
            unit = m.group("unit")
            delta = (timedelta(hours=amount) if unit in {"小时", "钟头"}
                     else timedelta(minutes=amount) if unit == "分钟" else timedelta(days=amount))
            when = (now + delta).replace(microsecond=0)
            grain = "day" if unit == "天" else "minute"
            iso = when.date().isoformat() if grain == "day" else when.isoformat()
            results.append(TimeMatch(m.start(), m.end(), iso, grain, {"iso": iso, "grain": grain, "relative": True}))
            continue
        has_day = _has_day(m)
        part = m.group("part")
        hour_text = m.group("h")
        if not has_day and not part and not hour_text:
            continue  # only a suffix like 之前 matched
        if not has_day and not hour_text and part in {"早", "晚"}:
            continue  # 早/晚 alone are adverbs (早就报修了, 太晚了), not times
        day, implied_part = _resolve_day(m, today) if has_day else (today, None)
        if day is None:
            continue
        part = part or implied_part
        extra: dict[str, Any] = {}
        if part:
            extra["part"] = _PART_NAMES[part]
        if hour_text:
            hour = int(hour_text)
            minute = 30 if m.group("half") else 15 if m.group("quarter") else int(m.group("mi") or 0)
            if hour > 24 or minute > 59:
                continue
            if part in {"下午", "傍晚", "晚上", "晚", "夜里", "午饭后"} and hour < 12:
                hour += 12
            elif part == "中午" and hour < 6:
                hour += 12
            elif not part and 1 <= hour <= 6:
                hour += 12  # "3点来" means 15:00 for a visit
            hour %= 24
            when = datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)
            if m.group("h2"):
                hour2 = int(m.group("h2"))
                minute2 = 30 if m.group("half2") else int(m.group("mi2") or 0)
                if hour >= 12 and hour2 < 12 and hour2 + 12 > hour:
                    hour2 += 12  # 下午2点到4点: the second hour shares the afternoon
                if hour2 <= 24 and minute2 <= 59:
                    extra["from"] = when.isoformat()
                    extra["to"] = datetime.combine(day, time(hour2 % 24, minute2), tzinfo=SHANGHAI).isoformat()
            iso, grain = when.isoformat(), "minute"
        elif part:
            rep, lo, hi = _PARTS[part]
            when = datetime.combine(day, time(rep), tzinfo=SHANGHAI)
            extra["from"] = datetime.combine(day, time(lo), tzinfo=SHANGHAI).isoformat()
            extra["to"] = (datetime.combine(day, time(0), tzinfo=SHANGHAI) + timedelta(hours=hi)).isoformat()
            iso, grain = when.isoformat(), "part_of_day"
        else:
            iso, grain = day.isoformat(), "week" if m.group("nextweek") else "day"
        extra["iso"] = iso
        extra["grain"] = grain
        # Trailing qualifiers (3点左右, 周五之前) are part of the span.
        results.append(TimeMatch(m.start(), m.end(), iso, grain, extra))
    return results
