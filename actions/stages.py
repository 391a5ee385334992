"""Owner stages and business areas: the dimensions the survey figures are reported by (DOMAIN.md).

An owner's stage is counted from the house's handover date *at the time of the response* (a survey
answered in 2025 by an owner handed over in 2024-03 stays a 磨合期 answer forever):

* 准业主 — not yet handed over (no handover date, or one after the response);
* 磨合期 — under one year since handover;
* 稳定期 — one to two years (the first anniversary counts as 稳定期, the second still does);
* 老业主 — over two years.

Anniversaries are calendar dates in China time (a 29 February handover has its anniversary on
1 March in other years). Used by the survey flow when it stores a response, by staff-recorded
callbacks, and by the figures (reports) for rows stored without a stage.
"""

from __future__ import annotations

import datetime as dt

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

PRE_OWNER, SETTLING, STABLE, VETERAN = "准业主", "磨合期", "稳定期", "老业主"
STAGES: tuple[str, ...] = (PRE_OWNER, SETTLING, STABLE, VETERAN)

AREAS: tuple[str, ...] = ("规划设计", "工程质量", "销售服务", "客户服务", "物业管理")
"""The five business areas every survey item and every case belongs to."""

LOYALTY_ITEMS: tuple[str, ...] = ("overall", "rebuy", "recommend")
"""The first three items of periodic and handover surveys; ``overall`` opens every template."""


def anniversary(day: dt.date, years: int) -> dt.date:
    """``day`` plus whole calendar years (29 February → 1 March in a common year)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


def owner_stage(handover: dt.date | None, at: dt.datetime | dt.date) -> str:
    """The owner stage on the (China-time) day of ``at`` for a house handed over on ``handover``."""
    day = at.astimezone(CHINA_TZ).date() if isinstance(at, dt.datetime) else at
    if handover is None or handover > day:
        return PRE_OWNER
    if day < anniversary(handover, 1):
        return SETTLING
    if day <= anniversary(handover, 2):
        return STABLE
    return VETERAN
