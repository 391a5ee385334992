"""Intent classification with the SHIPPED model: held-out quality, courtesy, calibration, safety."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from nlu.classifier import JSON_NAME, MODEL_DIR, NPZ_NAME
from nlu.data_io import TEST_FILE, load_examples, load_training_data
from nlu.evaluate import CORE_INTENTS, evaluate
from nlu.pipeline import Interpreter
from nlu.types import INTENTS


def test_held_out_macro_f1_over_core_intents(interpreter: Interpreter) -> None:
    examples = load_examples(TEST_FILE)
    counts = {intent: sum(1 for ex in examples if ex.intent == intent) for intent in CORE_INTENTS}
    assert min(counts.values()) >= 40, counts
    result = evaluate(examples, interpreter)
    core = result.report["core macro avg"]
    assert core["f1-score"] >= 0.95, json.dumps(result.report, ensure_ascii=False, indent=1)
    for intent in CORE_INTENTS:
        assert result.report[intent]["f1-score"] >= 0.9, (intent, result.report[intent])


def test_test_set_is_disjoint_from_training_data() -> None:
    train = {ex.text for ex in load_training_data()}
    overlap = [ex.text for ex in load_examples(TEST_FILE) if ex.text in train]
    assert overlap == []


def test_training_data_has_hundreds_of_examples_per_core_intent() -> None:
    examples = load_training_data()
    for intent in ("repair", "complaint", "inquiry", "certificate"):
        assert sum(1 for ex in examples if ex.intent == intent) >= 250
    assert {ex.intent for ex in examples} == set(INTENTS)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("你好，我家卫生间漏水了，谢谢", "repair"),
        ("您好！在吗？3栋电梯又坏了，麻烦尽快处理，辛苦了", "repair"),
        ("早上好物业，房产证什么时候可以领？谢谢！", "certificate"),
        ("你好，我要投诉楼上装修噪音，谢谢", "complaint"),
        ("hello，物业费怎么交？thx", "inquiry"),
        ("谢谢，另外我想问下停车卡怎么办", "inquiry"),
        ("你好你好，帮我转人工，谢谢啦", "human"),
        ("唔该，部电梯坏咗，唔该晒", "repair"),
    ],
)
def test_courtesy_never_hides_business(interpreter: Interpreter, text: str, intent: str) -> None:
    assert interpreter.parse(text).intent == intent


@pytest.mark.parametrize(
    ("text", "intent"),
    [("你好", "greet"), ("在吗", "greet"), ("谢谢", "thanks"), ("好的，谢谢", "thanks"), ("唔该晒", "thanks"),
     ("好的", "affirm"), ("不用了", "deny"), ("TD", "optout"), ("转人工", "human")],
)
def test_courtesy_alone_is_courtesy(interpreter: Interpreter, text: str, intent: str) -> None:
    assert interpreter.parse(text).intent == intent


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("三栋二单元五零一 阳台地漏返水 麻烦明天上午来一下", "repair"),
        ("我的lift坏了", "repair"),
        ("物业的service太差", "complaint"),
        ("樓上成晚好嘈，你哋管唔管㗎", "complaint"),
        ("房產證幾時可以攞", "certificate"),
        ("你好我想问一下就是我们小区的物业费是怎么收的啊是按年交还是按季度交", "inquiry"),
        ("我要头诉", "complaint"),
    ],
)
def test_registers(interpreter: Interpreter, text: str, intent: str) -> None:
    assert interpreter.parse(text).intent == intent


@pytest.mark.parametrize(
    "text",
    ["sdfjkl", "qwpeoriu zxmcnv", "锟斤拷烫烫烫", "zzzzzz", "的风格护肤好看", "蓝色的猫咪在月亮上跳舞", "ghjkl;'",
     "床前明月光疑是地上霜"],
)
def test_gibberish_gets_low_confidence(interpreter: Interpreter, text: str) -> None:
    result = interpreter.parse(text)
    assert result.confidence < 0.5, (result.intent, result.confidence)
    assert result.intent not in {"repair", "complaint", "certificate"} or result.confidence < 0.3


def test_clear_business_gets_high_confidence(interpreter: Interpreter) -> None:
    for text in ("卫生间漏水了", "我要投诉保安", "物业费怎么交", "房产证什么时候能领", "转人工"):
        assert interpreter.parse(text).confidence > 0.9, text


def test_confidence_is_calibrated_on_the_held_out_set(interpreter: Interpreter) -> None:
    # Expected calibration error: the average gap between confidence and accuracy, in 5 bins.
    preds = evaluate(load_examples(TEST_FILE), interpreter).predictions
    conf = np.array([c for _, _, c in preds])
    correct = np.array([g == p for g, p, _ in preds])
    ece = 0.0
    for lo, hi in zip(np.linspace(0, 1, 6)[:-1], np.linspace(0, 1, 6)[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    assert ece < 0.08


def test_ranking_is_a_distribution(interpreter: Interpreter) -> None:
    result = interpreter.parse("电梯坏了")
    assert {name for name, _ in result.intent_ranking} == set(INTENTS)
    assert abs(sum(p for _, p in result.intent_ranking) - 1.0) < 1e-6
    assert result.intent_ranking[0] == (result.intent, result.confidence)


def test_empty_message(interpreter: Interpreter) -> None:
    result = interpreter.parse("   ")
    assert (result.intent, result.confidence, result.entities) == ("other", 0.0, ())


def test_inferred_category_for_uncategorised_business(interpreter: Interpreter) -> None:
    result = interpreter.parse("我要报修")
    assert result.intent == "repair"
    category = result.entity("repair_category")
    assert category is not None and category.value == "other" and category.extra["inferred"] is True


def test_parse_result_api(interpreter: Interpreter, now: object) -> None:
    text = "你好，三栋二单元五零一卫生间漏水了，电话13800000001，明天下午在家"
    result = interpreter.parse(text, now)  # type: ignore[arg-type]
    assert result.text == text
    assert result.backend == "yezhu"
    assert result.normalized.startswith("你好,3栋2单元501")
    house = result.entity("house")
    assert house is not None and text[house.start:house.end] == "三栋二单元五零一"
    assert result.entity("nothing") is None
    assert [e.value for e in result.entities_of("phone")] == ["13800000001"]
    data = result.to_dict()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert set(data) >= {"text", "intent", "confidence", "entities"}
    assert 0.0 <= data["confidence"] <= 1.0
    assert all(set(e) >= {"entity", "value", "start", "end"} for e in data["entities"])
    with pytest.raises(AttributeError):
        result.intent = "other"  # type: ignore[misc]  # frozen


def test_shipped_artifact_is_plain_arrays_not_pickle() -> None:
    assert (MODEL_DIR / JSON_NAME).is_file() and (MODEL_DIR / NPZ_NAME).is_file()
    assert not list(MODEL_DIR.glob("*.pkl")) and not list(MODEL_DIR.glob("*.joblib"))
    with zipfile.ZipFile(MODEL_DIR / NPZ_NAME) as npz:
        for name in npz.namelist():
            header = npz.read(name)[:128]
            assert header.startswith(b"\x93NUMPY") and b"'descr': '|O'" not in header
    with np.load(MODEL_DIR / NPZ_NAME, allow_pickle=False) as arrays:
        assert set(arrays.files) == {"weights", "bias", "idf"}
    meta = json.loads((MODEL_DIR / JSON_NAME).read_text(encoding="utf-8"))
    assert sorted(meta["classes"]) == sorted(INTENTS)


def test_interpreter_is_cached() -> None:
    from nlu import load_interpreter

    assert load_interpreter() is load_interpreter("yezhu")
