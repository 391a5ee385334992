"""``knowledge.cli`` through typer's CliRunner: ask, validate, evaluate on files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from knowledge import DEMO_KB, DEMO_SYNONYMS
from knowledge.cli import app

runner = CliRunner()


def test_ask_prints_answers_with_scores() -> None:
    result = runner.invoke(app, ["ask", "房本去哪领 要带啥", "--project", "demo", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert "decision: answered" in result.output
    assert "1. [cert-collect] score=" in result.output and "2. [" in result.output
    assert "3. [" not in result.output
    assert "客服中心领取" in result.output


def test_ask_json_and_unknown() -> None:
    result = runner.invoke(app, ["ask", "明天会下雨吗", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["decision"] == "unknown" and payload["project"] == "demo"


def test_validate(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(DEMO_KB)])
    assert result.exit_code == 0, result.output
    assert "OK, 55 entries" in result.output
    result = runner.invoke(app, ["validate", str(DEMO_SYNONYMS)])
    assert result.exit_code == 0 and "synonym groups" in result.output

    bad = tmp_path / "bad.yml"
    bad.write_text("entries:\n  - id: a\n    question: 问题\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "entry #1 (id 'a') at line 2: field 'answer'" in result.output


def test_evaluate(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--min-top1", "0.9"])
    assert result.exit_code == 0, result.output
    assert "top-1 accuracy:" in result.output and "out-of-scope rejected:" in result.output

    small = tmp_path / "set.yml"
    small.write_text(
        "project: demo\nquestions:\n  - {text: 门卡丢了, expect: access-card}\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["evaluate", str(small), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["top1"] == 1.0
    result = runner.invoke(app, ["evaluate", str(small), "--threshold", "0.99", "--min-top1", "1.01"])
    assert result.exit_code == 1
