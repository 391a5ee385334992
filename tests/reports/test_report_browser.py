"""The console's report page in Chromium: a supervisor picks a month, sees the charts, downloads the PDF."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import PASSWORD, set_password
from tests.console.live import SCREENSHOTS, Live, new_page, screenshot
from tests.reports.seed import seed

pytestmark = pytest.mark.browser


async def test_supervisor_reads_the_monthly_report_and_downloads_it(live: Live, browser: Any) -> None:
    async with live.rt.db.session() as s, s.begin():
        await seed(s)
    await set_password(live.client, "zhuguan")
    page = await new_page(browser, live, "zhuguan", PASSWORD)
    await page.goto(f"{live.base}/console/reports?month=2026-10")
    await page.get_by_role("link", name="月报").wait_for()
    await page.select_option("select[name=project]", "a")
    await page.get_by_role("button", name="查看").click()
    await page.wait_for_url("**/console/reports?month=2026-10&project=a")
    assert "客服月报 2026年10月（甲花园）" in await page.locator("h1").inner_text()
    satisfaction = page.locator("#satisfaction")
    assert "75.0%" in await satisfaction.locator(".kpis").inner_text()  # 3 of 甲花园's 4 respondents
    assert await satisfaction.locator("svg.chart").count() == 3
    assert await page.locator("#volumes svg.chart rect").count() > 4
    link = page.get_by_role("link", name="提议入案例库")
    assert "/console/cases/new?" in (await link.get_attribute("href") or "")
    if SCREENSHOTS:
        await screenshot(page, "report")
    async with page.expect_download() as info:
        await page.get_by_role("link", name="下载 PDF").click()
    download = await info.value
    assert download.suggested_filename == "客服月报-2026-10-a.pdf"
    assert (await asyncio.to_thread(Path(await download.path()).read_bytes))[:5] == b"%PDF-"
