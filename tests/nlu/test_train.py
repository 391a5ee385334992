"""Training from scratch: fast, deterministic enough, and the result parses."""

from __future__ import annotations

import time
from pathlib import Path

from nlu.classifier import IntentClassifier
from nlu.pipeline import Interpreter


def test_training_from_scratch(tmp_path: Path) -> None:
    from nlu.train import train

    started = time.perf_counter()
    report = train(out_dir=tmp_path)
    elapsed = time.perf_counter() - started
    assert elapsed < 30, elapsed
    assert report.examples > 1500
    assert report.cv_macro_f1 > 0.8
    assert report.cv_ece_calibrated < report.cv_ece_raw
    assert (tmp_path / "intent_model.npz").is_file() and (tmp_path / "intent_model.json").is_file()

    interpreter = Interpreter(IntentClassifier.load(tmp_path))
    for text, intent in [("卫生间漏水了", "repair"), ("我要投诉物业", "complaint"), ("物业费怎么交", "inquiry"),
                         ("房产证什么时候能领", "certificate"), ("转人工", "human"), ("你好", "greet")]:
        assert interpreter.parse(text).intent == intent, text


def test_training_on_a_single_file(tmp_path: Path) -> None:
    from nlu.train import train

    data = tmp_path / "tiny.yml"
    data.write_text(
        'version: "3.1"\nnlu:\n'
        "- intent: repair\n  examples: |\n    - 漏水了\n    - 灯坏了\n    - [电梯](location)坏了\n"
        "- intent: greet\n  examples: |\n    - 你好\n    - 在吗\n    - 哈喽\n",
        encoding="utf-8",
    )
    report = train(data, tmp_path / "model", calibrate=False)
    assert report.examples == 6
    assert Interpreter(IntentClassifier.load(tmp_path / "model")).parse("水管漏水了").intent == "repair"
