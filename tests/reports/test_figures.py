"""The survey figures (reports.surveys) on hand-computed data, on SQLite and PostgreSQL.

The expected numbers are worked out from tests/reports/seed.py: October 2026 has five respondents
(R1–R5), R6 completed without an overall score and is no respondent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from actions.stages import owner_stage
from bot.store.db import Database
from reports import surveys
from reports.period import BadPeriod, Month
from reports.sql import Dialect
from tests.conftest import run_sync

CST = dt.timezone(dt.timedelta(hours=8))


def summary(url: str, month: str = "2026-10", project: int | None = None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        db = Database(url)
        try:
            async with db.session() as s:
                return await surveys.summary(s, Month.parse(month), project)
        finally:
            await db.close()

    return run_sync(go())


def by(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows}


def test_satisfaction_loyalty_and_response_rates(seeded: tuple[str, dict[str, Any]]) -> None:
    url, ids = seeded
    f = summary(url)
    # Respondents R1..R5; overall 5, 4, 2, 5, 3 → three satisfied.
    assert (f["responses"], f["satisfied"], f["satisfaction_rate"]) == (5, 3, 0.6)
    # Loyalty among R1..R3 (the only ones asked rebuy/recommend): only R1 scored 4+ on all three.
    assert (f["loyalty_respondents"], f["loyal"], f["loyalty_rate"]) == (3, 1, 0.3333)
    # Invited or due in October: R1–R6, R8, R10, R11, R12 (R9 cancelled, R7 September) → 5 of 10 answered.
    assert (f["invited"], f["response_rate"]) == (10, 0.5)

    projects = by(f["by_project"], "name")
    assert projects["甲花园"]["responses"] == 4 and projects["甲花园"]["satisfaction_rate"] == 0.75
    assert projects["甲花园"]["invited"] == 8 and projects["甲花园"]["response_rate"] == 0.5
    assert projects["乙花园"]["satisfaction_rate"] == 0.0 and projects["乙花园"]["response_rate"] == 0.5

    # Stages: R1 computed 磨合期 (handover 2025-10-15, five days short of a year), R5 磨合期 (2026-03-01),
    # R2 老业主 (2024-02-29), R3 准业主 (no handover), R4 stored 稳定期 (stored wins over the computed 老业主).
    stages = by(f["by_stage"], "stage")
    assert [stages[s]["responses"] for s in ("准业主", "磨合期", "稳定期", "老业主")] == [1, 2, 1, 1]
    assert stages["磨合期"]["satisfaction_rate"] == 0.5 and stages["准业主"]["satisfaction_rate"] == 0.0

    areas = by(f["by_area"], "area")
    assert (areas["客户服务"]["scores"], areas["客户服务"]["satisfaction_rate"]) == (5, 0.8)
    assert (areas["销售服务"]["scores"], areas["销售服务"]["satisfaction_rate"]) == (3, 0.6667)
    assert (areas["规划设计"]["scores"], areas["规划设计"]["satisfaction_rate"]) == (3, 1.0)
    assert (areas["工程质量"]["scores"], areas["工程质量"]["satisfaction_rate"]) == (4, 0.5)
    assert (areas["物业管理"]["scores"], areas["物业管理"]["satisfaction_rate"]) == (5, 0.6)
    assert areas["规划设计"]["loyalty_rate"] == 0.3333 and areas["物业管理"]["loyalty_rate"] is None

    assert by(f["by_category"], "name")["给排水/漏水"]["satisfaction_rate"] == 0.5
    engineers = by(f["by_engineer"], "name")
    assert engineers["王工"]["satisfaction_rate"] == 1.0 and engineers["李工"]["satisfaction_rate"] == 0.0
    months = by(f["by_month"], "month")
    assert months["2026-09"]["responses"] == 1 and months["2026-09"]["loyalty_rate"] == 1.0
    assert months["2026-10"]["responses"] == 5 and list(months)[-1] == "2026-10"

    one = summary(url, project=ids["b"])
    assert (one["responses"], one["satisfaction_rate"], one["invited"]) == (1, 0.0, 2)


BOUNDARIES = [
    (None, "2026-10-10 10:00"),
    (dt.date(2026, 10, 11), "2026-10-10 10:00"),     # handover tomorrow: 准业主
    (dt.date(2026, 10, 10), "2026-10-10 10:00"),     # handover day: 磨合期
    (dt.date(2025, 10, 10), "2026-10-09 23:59"),     # the day before the first anniversary
    (dt.date(2025, 10, 10), "2026-10-10 00:00"),     # the first anniversary: 稳定期
    (dt.date(2024, 10, 10), "2026-10-10 23:59"),     # the second anniversary: still 稳定期
    (dt.date(2024, 10, 10), "2026-10-11 00:00"),     # over two years: 老业主
    (dt.date(2024, 2, 29), "2025-02-28 12:00"),      # 29 February: anniversary on 1 March
    (dt.date(2024, 2, 29), "2025-03-01 00:00"),
    (dt.date(2024, 2, 29), "2026-03-01 20:00"),
    (dt.date(2024, 2, 29), "2026-03-02 00:00"),
    (dt.date(2025, 10, 10), "2026-10-09 16:30Z"),    # 00:30 on the anniversary in China: 稳定期
]


def test_owner_stage_in_sql_matches_the_rule_at_its_boundaries(seeded: tuple[str, dict[str, Any]]) -> None:
    url, _ = seeded

    def moment(text: str) -> dt.datetime:
        if text.endswith("Z"):
            return dt.datetime.strptime(text[:-1], "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=CST)

    async def go() -> list[str]:
        db = Database(url)
        try:
            async with db.session() as s:
                d = Dialect.of(s)
                from bot.store.models import UTCDateTime
                out = []
                for handover, when in BOUNDARIES:
                    h = sa.literal(handover, sa.Date) if handover else sa.cast(sa.null(), sa.Date)
                    stage = d.stage(h, sa.literal(moment(when), UTCDateTime()))
                    out.append((await s.execute(sa.select(stage))).scalar_one())
                return out
        finally:
            await db.close()

    expected = [owner_stage(h, moment(w)) for h, w in BOUNDARIES]
    assert expected[4] == "稳定期" and expected[6] == "老业主" and expected[8] == "稳定期"
    assert run_sync(go()) == expected


def test_months_are_read_strictly() -> None:
    assert Month.parse("2026-02").end == dt.datetime(2026, 2, 28, 16, tzinfo=dt.UTC)
    for bad in ("2026-13", "2026/10", "26-10", "", "2026-00", "２０２６-10"):
        with pytest.raises(BadPeriod):
            Month.parse(bad)
