"""The ``yezhu`` command line, run as a user would (typer's runner, a real SQLite file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

runner = CliRunner()


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("YEZHU_ADMIN_PASSWORD", "admin-pass")
    monkeypatch.chdir(tmp_path)  # no stray .env
    return path


def test_migrate_and_demo_are_idempotent(db_env: Path) -> None:
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, first.output
    assert "2592 houses" in first.output and "staff kefu: password" in first.output
    assert "staff admin" not in first.output  # YEZHU_ADMIN_PASSWORD chosen: nothing to show
    second = runner.invoke(app, ["demo"])
    assert second.exit_code == 0 and "nothing changed" in second.output and "password" not in second.output
    assert runner.invoke(app, ["migrate"]).exit_code == 0


def test_migrate_on_a_fresh_checkout_creates_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scripts/start` runs `yezhu migrate` first; on a fresh clone `var/` does not exist yet."""
    db = tmp_path / "fresh-checkout" / "var" / "yezhu.db"
    monkeypatch.setenv("YEZHU_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert db.exists()


def test_chat_talks_as_a_bound_owner(db_env: Path) -> None:
    assert runner.invoke(app, ["demo"]).exit_code == 0
    result = runner.invoke(app, ["chat", "--openid", "oDEMO0001"], input="我的房产证办好了吗\n")
    assert result.exit_code == 0, result.output
    assert "张三您好" in result.output and "可以领取" in result.output


def test_kb_export_import_round_trip_and_ask(db_env: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["demo"]).exit_code == 0
    out = tmp_path / "kb.yml"
    assert runner.invoke(app, ["kb", "export", str(out)]).exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("question:") >= 40
    result = runner.invoke(app, ["kb", "import", str(out)])
    assert result.exit_code == 0 and "0 created, 0 updated" in result.output
    edited = text.replace("0571-88880000", "0571-12345678", 1)
    out.write_text(edited, encoding="utf-8")
    result = runner.invoke(app, ["kb", "import", str(out)])
    assert "1 updated" in result.output
    result = runner.invoke(app, ["kb", "ask", "物业费怎么交"])
    assert result.exit_code == 0 and "decision: answered" in result.output and "微信" in result.output
    bad = tmp_path / "bad.yml"
    bad.write_text("- id: x\n  question: ''\n", encoding="utf-8")
    assert runner.invoke(app, ["kb", "import", str(bad)]).exit_code == 2


def test_nlu_parse_is_mounted(db_env: Path) -> None:
    result = runner.invoke(app, ["nlu", "parse"], input="三栋二单元五零一卫生间漏水\n")
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    assert line["intent"] == "repair"
    assert any(e["entity"] == "house" for e in line["entities"])


def test_worker_refuses_without_redis(db_env: Path) -> None:
    result = runner.invoke(app, ["worker"])
    assert result.exit_code == 2
