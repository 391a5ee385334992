"""``yezhu campaign …`` as staff use it (one clear line on every error), and the automatic campaigns: a
certificate import that makes houses ready drafts their collection notice; warranty reminders run daily."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from actions import campaigns
from actions.campaigns.context import today_china
from bot.cli import app
from bot.store.models import Campaign
from tests.campaigns.conftest import runtime, seed

runner = CliRunner()


@pytest.fixture
def demo_db(sqlite_demo_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "demo.db"
    shutil.copy(sqlite_demo_template, path)
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("YEZHU_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("YEZHU_SMS_WINDOW", "00:00-24:00")  # whatever the hour the test runs at
    monkeypatch.chdir(tmp_path)
    return path


def one_line_error(result: Any, code: int, words: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("yezhu campaign: ") and words in lines[0], result.output


def test_create_preview_send_and_status_on_the_command_line(demo_db: Path, tmp_path: Path) -> None:
    made = runner.invoke(app, ["campaign", "create", "--kind", "notice", "--project", "demo", "--buildings", "3",
                               "--param", "content=3栋电梯明日年检", "--as", "kefu"])
    assert made.exit_code == 0, made.output
    assert "已创建通知 1：草稿（draft）" in made.output and "将通知" in made.output and "样例（短信）" in made.output
    assert "3栋电梯明日年检" in made.output

    one_line_error(runner.invoke(app, ["campaign", "approve", "1", "--as", "kefu"]), 1, "不能审批")
    sent = runner.invoke(app, ["campaign", "send", "1", "--yes", "--quiet", "--as", "kefu"])
    assert sent.exit_code == 0, sent.output
    assert "已完成（done）" in sent.output
    status = runner.invoke(app, ["campaign", "status", "1"])
    assert status.exit_code == 0 and "已完成" in status.output and "sent" in status.output
    again = runner.invoke(app, ["campaign", "send", "1", "--yes", "--quiet"])  # nothing is sent twice
    assert again.exit_code == 0 and again.output == status.output

    one_line_error(runner.invoke(app, ["campaign", "status", "99"]), 1, "没有编号为 99 的通知")
    one_line_error(runner.invoke(app, ["campaign", "cancel", "1"]), 1, "不能取消")
    one_line_error(runner.invoke(app, ["campaign", "create", "--kind", "party", "--project", "demo"]), 1,
                   "未知的通知类型")
    one_line_error(runner.invoke(app, ["campaign", "create", "--kind", "notice", "--project", "demo",
                                       "--param", "content"]), 1, "名称=值")


def test_an_unmigrated_database_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    monkeypatch.chdir(tmp_path)
    one_line_error(runner.invoke(app, ["campaign", "status", "1"]), 2, "请先运行 yezhu migrate")
    # a fresh checkout: not even the var/ directory yet
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'var' / 'yezhu.db'}")
    one_line_error(runner.invoke(app, ["campaign", "list"]), 2, "尚未创建：请先运行 yezhu migrate")


def test_a_certificate_import_drafts_the_collection_notice_for_approval(demo_db: Path, tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["项目", "楼栋", "单元", "房号", "状态"])
    ws.append(["demo", "8", "1", "1203", "可领取"])  # 李四's certificate arrived
    ws.append(["demo", "12", "3", "1804", "办理中"])
    path = tmp_path / "batch.xlsx"
    wb.save(path)
    result = runner.invoke(app, ["certificates", "import", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "已生成办证通知 1（1 套房屋，待主管审批）" in result.output
    status = runner.invoke(app, ["campaign", "status", "1"])
    assert "待审批" in status.output
    preview = runner.invoke(app, ["campaign", "preview", "1"])
    # the demo's WeChat account has no AppID/AppSecret: 李四, a follower, is reached by SMS, not failed
    assert "将通知 1 人：微信 0，短信 1" in preview.output and "8栋1单元1203" in preview.output


async def test_warranty_reminders_are_drafted_daily_once(yezhu: Any) -> None:
    rt = runtime(await yezhu(demo=False))
    seeded = await seed(rt)
    # 庚's electrical wiring (2 years) is out of warranty 30 days from now: the day two months before.
    day = today_china() + dt.timedelta(days=30 - 61)
    made = await campaigns.warranty_reminders(rt, day)
    assert len(made) == 1
    assert await campaigns.warranty_reminders(rt, day) == []  # the next run (or another process): nothing new
    async with rt.db.session() as s:
        c = await s.get(Campaign, made[0])
        assert c is not None and c.status == "pending_approval" and c.kind == "warranty_expiry"
        assert c.audience == {"houses": [seeded.houses["2-2-301"]]} and "electrical" in c.params["item"]
    p = await campaigns.get_preview(rt, made[0])
    assert p.recipients == 1 and "电气管线" in p.samples["wechat"]["text"]
    async with rt.db.session() as s:
        assert (await s.execute(sa.select(sa.func.count()).select_from(Campaign))).scalar() == 1


def test_outages_refusals_and_times_read_as_staff_expect(demo_db: Path) -> None:
    # a sudden cut has started: no start needed; the area defaults to the buildings chosen
    made = runner.invoke(app, ["campaign", "create", "--kind", "outage", "--urgent", "--project", "demo",
                               "--buildings", "3", "--param", "utility=water", "--param", "end=2026-12-02T18:00"])
    assert made.exit_code == 0, made.output
    assert "紧急通知" in made.output and "3栋现停水，预计12月2日 18:00恢复" in made.output
    one_line_error(runner.invoke(app, ["campaign", "create", "--kind", "outage", "--project", "demo", "--buildings", "3",
                                       "--param", "utility=water", "--param", "start=2026-12-03T17:00",
                                       "--param", "end=2026-12-03T09:00"]), 1, "须晚于开始时间")
    planned = runner.invoke(app, ["campaign", "create", "--kind", "notice", "--project", "demo",
                                  "--param", "content=周六消防演练", "--as", "kefu"])
    assert planned.exit_code == 0 and "需主管审批" in planned.output, planned.output
    # refused before anything is sent: one line, no progress bar
    one_line_error(runner.invoke(app, ["campaign", "send", "2", "--yes", "--as", "kefu"]), 1, "待主管审批")
    assert runner.invoke(app, ["campaign", "approve", "2", "--as", "zhuguan"]).exit_code == 0
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    at = later.strftime("%Y-%m-%dT09:00")
    assert runner.invoke(app, ["campaign", "schedule", "2", "--at", at]).exit_code == 0
    status = runner.invoke(app, ["campaign", "status", "2"])
    assert f"定时：{at.replace('T', ' ')}" in status.output, status.output  # Beijing time, as given
    assert runner.invoke(app, ["campaign", "cancel", "2"]).exit_code == 0
    one_line_error(runner.invoke(app, ["campaign", "send", "2", "--yes"]), 1, "已取消")
    one_line_error(runner.invoke(app, ["campaign", "list", "--status", "finished"]), 1, "未知的状态 'finished'")
    assert "暂无通知" in runner.invoke(app, ["campaign", "list", "--status", "paused"]).output
    one_line_error(runner.invoke(app, ["campaign", "test", "1", "--phone", "123"]), 1, "不是有效的手机号")
