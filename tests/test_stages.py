"""Owner stages at their boundaries (DOMAIN.md: 准业主, 磨合期 < 1 year, 稳定期 1–2 years, 老业主 > 2 years)."""

from __future__ import annotations

import datetime as dt

import pytest

from actions.stages import CHINA_TZ, owner_stage

H = dt.date(2024, 3, 15)


@pytest.mark.parametrize(("handover", "at", "stage"), [
    (None, dt.date(2026, 1, 1), "准业主"),
    (H, dt.date(2024, 3, 14), "准业主"),
    (H, dt.date(2024, 3, 15), "磨合期"),
    (H, dt.date(2025, 3, 14), "磨合期"),
    (H, dt.date(2025, 3, 15), "稳定期"),
    (H, dt.date(2026, 3, 15), "稳定期"),
    (H, dt.date(2026, 3, 16), "老业主"),
    (dt.date(2024, 2, 29), dt.date(2025, 2, 28), "磨合期"),
    (dt.date(2024, 2, 29), dt.date(2025, 3, 1), "稳定期"),
])
def test_stage_boundaries(handover: dt.date | None, at: dt.date, stage: str) -> None:
    assert owner_stage(handover, at) == stage


def test_a_response_time_counts_in_china_time() -> None:
    # 2025-03-14 17:00 UTC is already the 15th in Beijing: the first anniversary, 稳定期.
    assert owner_stage(H, dt.datetime(2025, 3, 14, 17, 0, tzinfo=dt.UTC)) == "稳定期"
    assert owner_stage(H, dt.datetime(2025, 3, 14, 15, 0, tzinfo=dt.UTC)) == "磨合期"
    assert owner_stage(H, dt.datetime(2025, 3, 15, 0, 0, tzinfo=CHINA_TZ)) == "稳定期"
