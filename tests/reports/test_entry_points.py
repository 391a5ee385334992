"""The figures and the report through their entry points: the JSON API, the CLI and the console."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from bot.cli import app as cli
from bot.runtime import RUNTIME
from bot.store.models import StaffUser
from tests.conftest import YezhuFactory, auth, run_sync
from tests.console.conftest import login
from tests.reports.conftest import _seed
from tests.reports.seed import seed

runner = CliRunner()


async def seeded_app(yezhu: YezhuFactory, **settings: Any) -> Any:
    client = await yezhu(demo=False, **settings)
    async with client.app[RUNTIME].db.session() as s, s.begin():
        await seed(s)
    return client


async def test_survey_summary_api(yezhu: YezhuFactory) -> None:
    client = await seeded_app(yezhu)
    resp = await client.get("/api/v1/surveys/summary?month=2026-10", headers=auth())
    assert resp.status == 200
    body = await resp.json()
    assert (body["responses"], body["satisfaction_rate"], body["loyalty_rate"], body["response_rate"]) == (5, 0.6, 0.3333, 0.5)
    assert [a["area"] for a in body["by_area"]] == ["规划设计", "工程质量", "销售服务", "客户服务", "物业管理"]
    assert {s["stage"] for s in body["by_stage"]} == {"准业主", "磨合期", "稳定期", "老业主"}
    assert {"by_project", "by_category", "by_engineer", "by_month", "by_kind"} <= set(body)

    resp = await client.get("/api/v1/surveys/summary?month=2026-10&project=b", headers=auth())
    body = await resp.json()
    assert body["project"] == "b" and body["responses"] == 1 and body["satisfaction_rate"] == 0.0

    for query, parameter in (("month=2026-13", "month"), ("month=October", "month"), ("project=nope", "project")):
        resp = await client.get(f"/api/v1/surveys/summary?{query}", headers=auth())
        assert resp.status == 400, query
        err = await resp.json()
        assert err["error"] == "bad_request" and err["parameter"] == parameter
    assert "YYYY-MM" in err["detail"] or "nope" in err["detail"]
    assert (await client.get("/api/v1/surveys/summary")).status == 401


@pytest.fixture
def seeded_file(sqlite_template: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The CLI on a seeded SQLite file (the report's queries are tested on both databases elsewhere)."""
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    run_sync(_seed(f"sqlite+aiosqlite:///{path}"))
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_writes_both_formats_and_refuses_bad_input_in_one_line(seeded_file: Path) -> None:
    out = seeded_file / "oct.xlsx"
    result = runner.invoke(cli, ["report", "monthly", "--month", "2026-10", "--project", "a", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "客服月报 2026年10月（甲花园）" in result.output
    wb = load_workbook(io.BytesIO(out.read_bytes()))
    assert "满意度与忠诚度" in wb.sheetnames and wb["工单量"]._charts
    pdf = seeded_file / "oct.pdf"
    result = runner.invoke(cli, ["report", "monthly", "--month", "2026-10", "--out", str(pdf)])
    assert result.exit_code == 0 and pdf.read_bytes().startswith(b"%PDF")

    for args, words in (
        (["--month", "2026-13", "--out", "x.pdf"], "--month: month must be YYYY-MM"),
        (["--month", "2026-10", "--project", "zz", "--out", "x.pdf"], "--project: no project 'zz' (known: a, b)"),
        (["--month", "2026-10", "--out", "x.docx"], "--out must end in .xlsx or .pdf"),
        (["--month", "2026-10", "--out", "missing/x.pdf"], "the folder missing does not exist"),
        (["--out", "x.pdf"], "--month is required"),
        (["--month", "2026-10"], "--out is required"),
    ):
        result = runner.invoke(cli, ["report", "monthly", *args])
        assert result.exit_code == 2, args
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output, result.output
    assert not (seeded_file / "x.pdf").exists()


def test_cli_on_a_database_without_the_schema_says_to_migrate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["report", "monthly", "--month", "2026-10", "--out", "x.xlsx"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()] and "yezhu migrate" in result.output


async def test_console_report_page_and_downloads(yezhu: YezhuFactory) -> None:
    client = await seeded_app(yezhu)
    async with client.app[RUNTIME].db.session() as s, s.begin():
        s.add_all([StaffUser(username="zhuguan", display_name="主管", role="supervisor", password_hash="-"),
                   StaffUser(username="kefu", display_name="客服", role="agent", password_hash="-")])
    await login(client, "zhuguan")
    resp = await client.get("/console/reports?month=2026-10&project=a")
    assert resp.status == 200
    page = await resp.text()
    assert "客服月报 2026年10月（甲花园）" in page and "一、工单量" in page and "<svg" in page
    assert "/console/cases/new?" in page and "提议入案例库" in page
    assert "下载 PDF" in page and "monthly.xlsx?month=2026-10&amp;project=a" in page
    resp = await client.get("/console/reports/monthly.xlsx?month=2026-10&project=a")
    assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
    assert "满意度与忠诚度" in load_workbook(io.BytesIO(await resp.read())).sheetnames
    # (the PDF download: tests/reports/test_report_browser.py, through Chromium)
    assert (await client.get("/console/reports?month=2026-99")).status == 400

    await login(client, "kefu")  # an agent: no reports
    resp = await client.get("/console/reports?month=2026-10")
    assert resp.status == 403
