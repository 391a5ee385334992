"""``yezhu nlu`` commands through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from nlu.cli import app
from nlu.data_io import TEST_FILE, load_examples

runner = CliRunner()


def test_parse_json_lines() -> None:
    stdin = "三栋二单元五零一卫生间漏水了，明天下午在家\n我要投诉保安\n\n房產證幾時可以攞\n"
    result = runner.invoke(app, ["parse", "--now", "2025-11-20T10:00:00+08:00"], input=stdin)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip("\n").split("\n")
    assert len(lines) == 4
    rows = [json.loads(line) for line in lines]
    assert [r["intent"] for r in rows] == ["repair", "complaint", "other", "certificate"]
    first = rows[0]
    assert first["text"] == "三栋二单元五零一卫生间漏水了，明天下午在家"
    assert 0.0 <= first["confidence"] <= 1.0
    by_name = {e["entity"]: e for e in first["entities"]}
    assert first["text"][by_name["house"]["start"]:by_name["house"]["end"]] == "三栋二单元五零一"
    assert by_name["time"]["value"] == "2025-11-21T14:00:00+08:00"
    assert rows[2]["confidence"] == 0.0


def test_parse_rejects_unknown_backend() -> None:
    result = runner.invoke(app, ["parse", "--backend", "spacy"], input="你好\n")
    assert result.exit_code != 0


def test_test_command_writes_a_rasa_like_report(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    result = runner.invoke(app, ["test", str(TEST_FILE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "core macro avg" in result.stdout and "repair" in result.stdout
    report = json.loads((out / "intent_report.json").read_text(encoding="utf-8"))
    for intent in ("repair", "complaint", "inquiry", "certificate", "human"):
        assert 0.0 <= report[intent]["f1-score"] <= 1.0
        assert {"precision", "recall", "support"} <= set(report[intent])
    assert {"accuracy", "macro avg", "weighted avg"} <= set(report)
    assert sum(report[i]["support"] for i in report if isinstance(report[i], dict) and "confused_with" in report[i]) \
        == len(load_examples(TEST_FILE))
    errors = json.loads((out / "intent_errors.json").read_text(encoding="utf-8"))
    for error in errors:
        assert {"text", "intent", "intent_prediction"} <= set(error)
        assert error["intent"] != error["intent_prediction"]["name"]
        assert 0.0 <= error["intent_prediction"]["confidence"] <= 1.0
    png = (out / "intent_confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_export_rasa(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export-rasa", str(tmp_path / "rasa")])
    assert result.exit_code == 0, result.output
    project = tmp_path / "rasa"
    config = yaml.safe_load((project / "config.yml").read_text(encoding="utf-8"))
    assert config["language"] == "zh"
    assert config["pipeline"][0]["name"] == "JiebaTokenizer"
    dict_dir = project / config["pipeline"][0]["dictionary_path"]
    assert "地漏" in (dict_dir / "domain_dict.txt").read_text(encoding="utf-8")
    domain = yaml.safe_load((project / "domain.yml").read_text(encoding="utf-8"))
    assert set(domain["intents"]) == {"repair", "complaint", "inquiry", "certificate", "human", "greet", "thanks",
                                      "affirm", "deny", "optout", "other"}
    nlu = yaml.safe_load((project / "data" / "nlu.yml").read_text(encoding="utf-8"))
    assert str(nlu["version"]) == "3.1"
    # The exported file reads back to exactly the training examples.
    from nlu.data_io import load_examples as read
    from nlu.data_io import load_training_data

    assert sorted((e.intent, e.text) for e in read(project / "data" / "nlu.yml")) == \
        sorted((e.intent, e.text) for e in load_training_data())


def test_train_command(tmp_path: Path) -> None:
    # The full training run is covered by test_train.py; here only the command's wiring, on a small file.
    data = tmp_path / "small.yml"
    data.write_text(
        'version: "3.1"\nnlu:\n'
        "- intent: repair\n  examples: |\n" + "".join(f"    - {t}\n" for t in
                                                     ["漏水了", "灯坏了", "电梯坏了", "门锁坏了", "马桶堵了"])
        + "- intent: greet\n  examples: |\n" + "".join(f"    - {t}\n" for t in
                                                     ["你好", "在吗", "哈喽", "早上好", "您好"]),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert "trained on 10 examples" in result.stdout
    assert (tmp_path / "model" / "intent_model.npz").is_file()
    parsed = runner.invoke(app, ["parse", "--model", str(tmp_path / "model")], input="水管漏水了\n")
    assert json.loads(parsed.stdout)["intent"] == "repair"
