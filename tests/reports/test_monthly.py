"""The monthly report's numbers against the hand-computed data (tests/reports/seed.py), on SQLite and
PostgreSQL, and both files opened and read back: the workbook with openpyxl (sheets, cells, native
charts), the PDF with pypdf (its text, Chinese included)."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from bot.store.db import Database
from bot.store.models import Project
from reports import monthly, pdf, xlsx
from reports.model import MonthlyReport
from reports.period import Month
from tests.conftest import run_sync

LATER = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)


def build(url: str, month: str = "2026-10", project: str | None = None,
          now: dt.datetime = LATER) -> MonthlyReport:
    async def go() -> MonthlyReport:
        db = Database(url)
        try:
            async with db.session() as s:
                found: Project | None = await monthly.find_project(s, project)
                return await monthly.build(s, Month.parse(month), found, now=now)
        finally:
            await db.close()

    return run_sync(go())


@pytest.fixture(scope="module")
def report(seeded: tuple[str, dict[str, Any]]) -> MonthlyReport:
    return build(seeded[0])


def test_the_numbers_match_the_data(report: MonthlyReport, seeded: tuple[str, dict[str, Any]]) -> None:
    d = report.data
    # T1–T6 and T8 (23:30 on 31 October in China); T9 (00:30 on 1 November) is November's; T7 September's.
    assert d["volumes"]["total"] == 7 and d["volumes"]["previous_total"] == 1
    assert d["volumes"]["kind"] == {"repair": 4, "complaint": 2, "inquiry": 1}
    assert d["volumes"]["channel"] == {"phone": 5, "wechat": 2}
    assert d["volumes"]["trend"]["2026-09"] == 1 and d["volumes"]["trend"]["2026-10"] == 7
    # First responses: repairs 1, 3, 2 h → median 2, P90 3; all 0.5, 1, 1, 2, 3 → median 1, P90 3.
    assert (d["times"]["报修"]["response_median_h"], d["times"]["报修"]["response_p90_h"]) == (2.0, 3.0)
    assert (d["times"]["合计"]["response_median_h"], d["times"]["合计"]["response_p90_h"]) == (1.0, 3.0)
    # Closed in October: T1 30 h, T3 6 h, T4 20 h, T6 1 h → median 6, P90 30.
    assert (d["times"]["合计"]["close_median_h"], d["times"]["合计"]["close_p90_h"]) == (6.0, 30.0)
    assert d["times"]["合计"]["closed"] == 4
    # Due in October: T1–T6; T3 finished 3 h late, T4 closed 16 h late, T5 never touched.
    assert d["overdue"]["due"] == 6 and sorted(d["overdue"]["numbers"]) == ["T3", "T4", "T5"]
    # Repairs completed in October: T1, T2, T3; T2 reopened once → 1/3.
    assert d["reworks"] == {"completed": 3, "reworked": 1, "rate": 0.3333, "events": 1}
    # Two complaints over five houses.
    assert d["complaints"]["per_100"] == 40.0 and d["complaints"]["listed"] == ["T4", "T5"]
    # Callbacks due in October: R4, R5, R6 (done), R11 (never made: overdue), R12 (due 10-29: not yet).
    assert {k: d["callbacks"][k] for k in ("due", "done", "overdue")} == {"due": 5, "done": 3, "overdue": 1}
    assert d["satisfaction"]["satisfaction_rate"] == 0.6 and d["satisfaction"]["loyalty_rate"] == 0.3333
    # Batch 1: three houses, two notified, one acknowledged, one collected in October (h2 in November).
    assert d["certificates"] == {"houses": 3, "notified": 2, "acknowledged": 1, "collected": 1, "collected_in_month": 1}
    assert d["notices"] == {"total": 4, "sent": 3, "delivered": 3, "acknowledged": 1, "failed": 1, "skipped": 0}
    # Three conversations in October; one handed over, one answered by staff.
    assert d["bot"] == {"conversations": 3, "with_person": 2, "bot_only": 1, "share": 0.3333}
    assert d["recurring"] == [{"building": "甲花园 1栋", "kind": "报修", "category": "给排水/漏水", "tickets": 3}]
    assert d["unanswered"][0] == {"text": "物业费能开发票吗", "count": 3}
    link = report.section("recurring").tables[0].links[0]
    assert link and link.startswith("/console/cases/new?") and "category=plumbing" in link
    assert f"building={seeded[1]['a1']}" in link and f"project={seeded[1]['a']}" in link

    one = build(seeded[0], project="a")
    assert one.data["volumes"]["total"] == 6 and one.data["complaints"]["per_100"] == 25.0
    assert one.data["unanswered"][0]["count"] == 2 and one.data["notices"]["total"] == 3


def test_a_past_month_is_the_same_whenever_it_is_run(report: MonthlyReport, seeded: tuple[str, dict[str, Any]]) -> None:
    again = build(seeded[0], now=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    assert again.data == report.data
    # While October runs (8 October, 20:00 in China) only what was due by then counts: T3 (due 10-07) and
    # T4 (due 10-08 13:00, closed only the next morning); T5 and the callbacks are not due yet.
    running = build(seeded[0], now=dt.datetime(2026, 10, 8, 12, tzinfo=dt.UTC))
    assert running.data["overdue"]["numbers"] == ["T3", "T4"] and running.data["callbacks"]["overdue"] == 0


def test_the_workbook_has_a_sheet_per_section_with_native_charts(report: MonthlyReport) -> None:
    wb = load_workbook(io.BytesIO(xlsx.render(report)))
    assert wb.sheetnames[0] == "概览" and len(wb.sheetnames) == 1 + len(report.sections)
    assert {"工单量", "响应与关闭时长", "超时工单", "返修", "投诉", "回访", "满意度与忠诚度", "办证领取进度", "通知发送",
            "机器人自助解决", "重复问题与未解答问题"} <= set(wb.sheetnames)
    cells = {name: [[c for c in row] for row in wb[name].iter_rows(values_only=True)] for name in wb.sheetnames}
    volumes = cells["工单量"]
    assert ["报修", 4, 1, 3, 3.0] in [list(r[:5]) for r in volumes]
    satisfaction = [list(r[:5]) for r in cells["满意度与忠诚度"]]
    assert ["全部", 5, 0.6, 3, 0.3333] in satisfaction and ["客户服务", 5, 0.8, 5, 0.3333] in satisfaction
    assert wb["满意度与忠诚度"]["C6"].number_format == "0.0%" or any(
        c.number_format == "0.0%" for row in wb["满意度与忠诚度"].iter_rows() for c in row if c.value == 0.6)
    assert len(wb["工单量"]._charts) == 2 and len(wb["满意度与忠诚度"]._charts) == 3
    recurring = wb["重复问题与未解答问题"]
    links = [c.hyperlink.target for row in recurring.iter_rows() for c in row if c.hyperlink]
    assert links and links[0].startswith("/console/cases/new?")


def test_the_pdf_reads_back_in_chinese_with_the_numbers(report: MonthlyReport) -> None:
    reader = PdfReader(io.BytesIO(pdf.render(report)))
    assert len(reader.pages) >= len(report.sections) + 1
    text = re.sub(r"\s+", "", "".join(page.extract_text() for page in reader.pages))
    assert "客服月报2026年10月（全部楼盘）" in text
    for words in ("一、工单量", "首次响应中位数", "返修率", "每百户投诉", "满意率", "忠诚度", "办证领取进度", "机器人独立解决",
                  "物业费能开发票吗", "楼上装修噪音", "1栋·给排水/漏水", "提议入案例库"):
        assert words in text, words
    assert "满意率：60.0%" in text and "忠诚度：33.3%" in text and "每百户投诉：40.00" in text
    assert "返修率：33.3%" in text and "T5" in text
