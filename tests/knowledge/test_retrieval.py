"""Retrieval: synonyms, project scoping, the confidence threshold, numbered choices, speed."""

from __future__ import annotations

import time

import pytest

from knowledge import Answer, Hit, KnowledgeIndex, KnowledgeItem, RetrievalConfig, load_yaml
from knowledge.text import Analyzer, basic_normalizer

SCOPED = load_yaml(
    """\
- id: fee-a
  question: 物业费多少钱
  alternatives: [管理费标准]
  answer: 甲项目物业费 2.5 元。
  projects: [alpha]
- id: fee-b
  question: 物业费多少钱？
  alternatives: [物管费标准是多少]
  answer: 乙项目物业费 3 元。
  projects: [beta]
- id: warranty
  question: 保修期多久
  alternatives: [漏水保修几年]
  answer: 防水 5 年。
"""
)


def chars(text: str) -> list[str]:
    """A tokenizer that needs no dictionary: one word per character."""
    return [c for c in text if not c.isspace()]


def test_synonym_finds_the_certificate_entry(demo_index: KnowledgeIndex) -> None:
    # The demo entries say 房产证 / 不动产权证; owners say 房本, 大红本, 產權證 …
    for question in ["房本多久能办下来", "大红本什么时候能拿到", "產權證多久能辦好"]:
        assert demo_index.search(question, "demo")[0].item_id == "cert-duration", question
    assert demo_index.search("管理费怎么交", "demo")[0].item_id == "fee-payment"
    assert demo_index.search("公共维修基金是什么", "demo")[0].item_id == "fund-what"


def test_synonym_folding_is_longest_match_first() -> None:
    analyzer = Analyzer(
        [["房产证", "房本", "不动产权证书", "产权证"], ["物业费", "管理费"], ["车位管理费"]],
        tokenizer=chars,
        normalizer=basic_normalizer,
    )
    assert analyzer.prepare("不动产权证书在哪领") == "房产证在哪领"
    assert analyzer.prepare("车位管理费和管理费") == "车位管理费和物业费"


def test_project_scoping() -> None:
    index = KnowledgeIndex.build(SCOPED, [["物业费", "管理费", "物管费"]])
    alpha = [h.item_id for h in index.search("物业费多少钱", "alpha")]
    beta = [h.item_id for h in index.search("物业费多少钱", "beta")]
    assert alpha[0] == "fee-a" and "fee-b" not in alpha
    assert beta[0] == "fee-b" and "fee-a" not in beta
    # Owner's project unknown (or another project): only entries for every project.
    assert all(h.item_id == "warranty" for h in index.search("物业费多少钱", None))
    assert all(h.item_id == "warranty" for h in index.search("物业费多少钱", "gamma"))
    assert index.search("漏水保修几年", "alpha")[0].item_id == "warranty"
    assert index.answer("物业费多少钱", "gamma").decision == "unknown"


def test_demo_scoping(demo_index: KnowledgeIndex) -> None:
    # Demo values (fees, phones) are scoped to the demo project; statutory rules are for all.
    assert demo_index.search("物业费多少钱一平", "demo")[0].item_id == "fee-standard"
    assert "fee-standard" not in [h.item_id for h in demo_index.search("物业费多少钱一平", "other")]
    assert demo_index.search("卫生间漏水保修几年", "other")[0].item_id == "warranty-periods"


@pytest.mark.parametrize(
    "question", ["明天会下雨吗", "推荐一只股票", "红烧肉怎么做", "世界杯谁夺冠了", "hello"]
)
def test_out_of_scope_is_unknown(demo_index: KnowledgeIndex, question: str) -> None:
    answer = demo_index.answer(question, "demo")
    assert answer.decision == "unknown", (question, answer.hits[:1])
    assert answer.confidence < demo_index.config.threshold
    assert answer.choices == ()


def test_empty_and_punctuation_only(demo_index: KnowledgeIndex) -> None:
    for text in ["", "？？？", "   ", "😀"]:
        answer = demo_index.answer(text, "demo")
        assert answer.decision == "unknown" and answer.hits == ()


def test_clear_question_is_answered(demo_index: KnowledgeIndex) -> None:
    answer = demo_index.answer("门禁卡丢了怎么补办", "demo")
    assert answer.decision == "answered"
    assert answer.best is not None and answer.best.item_id == "access-card"
    assert answer.render() == answer.best.answer
    assert 0.0 < answer.confidence <= 1.0


def test_ambiguous_question_offers_numbered_choices(demo_index: KnowledgeIndex) -> None:
    answer = demo_index.answer("停车", "demo")
    assert answer.decision == "choices"
    ids = [h.item_id for h in answer.choices]
    assert 2 <= len(ids) <= 3 and len(set(ids)) == len(ids)
    assert set(ids) <= {"parking-fees", "parking-temporary", "parking-monthly"}
    text = answer.render()
    assert "1. " in text and "2. " in text and "请回复序号" in text
    assert answer.pick("2") == answer.choices[1]
    assert answer.pick("第一个") == answer.choices[0]
    assert answer.pick("②") == answer.choices[1]
    assert answer.pick("9") is None and answer.pick("都不是") is None


def test_confidence_is_a_ratio(demo_index: KnowledgeIndex) -> None:
    # A question identical to a stored phrasing is (about) fully explained; noise lowers it.
    exact = demo_index.search("装修押金什么时候退？怎么退？", "demo")[0]
    assert exact.item_id == "reno-deposit-refund" and exact.confidence >= 0.9
    noisy = demo_index.search("装修押金什么时候退 顺便问下今天天气怎么样股票涨不涨", "demo")[0]
    assert noisy.item_id == "reno-deposit-refund" and noisy.confidence < exact.confidence
    for hit in demo_index.search("物业费", "demo", k=5):
        assert 0.0 <= hit.confidence <= 1.0


def test_threshold_is_configurable(demo_index: KnowledgeIndex) -> None:
    question = "门禁卡丢了怎么补办"
    assert demo_index.answer(question, "demo", threshold=1.01).decision != "answered"
    strict = demo_index.with_config(threshold=1.01)
    assert strict.answer(question, "demo").decision != "answered"


def test_injected_tokenizer_and_rebuild() -> None:
    calls: list[str] = []

    def tokenizer(text: str) -> list[str]:
        calls.append(text)
        return chars(text)

    index = KnowledgeIndex.build(SCOPED, [], tokenizer, normalizer=basic_normalizer)
    assert index.search("保修期多久", "alpha")[0].item_id == "warranty"
    analysed = len(calls)
    edited = [*SCOPED[:2], SCOPED[2].model_copy(update={"answer": "防水 5 年，水电 2 年。"})]
    rebuilt = index.rebuild(edited)
    # Only the changed answer is analysed again: the analyser's cache is shared.
    assert len(calls) == analysed + 1
    assert rebuilt.search("保修期多久", "alpha")[0].answer.startswith("防水 5 年，水电")


def test_duplicate_ids_are_rejected() -> None:
    item = KnowledgeItem(id="a", question="问题", answer="答案")
    with pytest.raises(ValueError, match="duplicate knowledge ids: a"):
        KnowledgeIndex.build([item, item], [], chars, normalizer=basic_normalizer)


def test_empty_index() -> None:
    index = KnowledgeIndex.build([], [], chars, normalizer=basic_normalizer)
    assert index.search("物业费", "demo") == []
    assert index.answer("物业费", "demo").decision == "unknown"


def test_answer_render() -> None:
    answer = Answer(query="x", project=None, decision="unknown", confidence=0.0)
    assert answer.best is None and "抱歉" in answer.render() and answer.pick("1") is None
    hit = Hit(item_id="a", question="物业费怎么交？", answer="答案", score=1.0, confidence=1.0)
    assert Answer(query="x", project=None, decision="answered", confidence=1.0, hits=(hit,)).answered
    single = Answer(query="x", project=None, decision="choices", confidence=0.3, hits=(hit,), choices=(hit,))
    assert single.render() == "您是想咨询「物业费怎么交？」吗？回复 1 查看答案。"
    assert single.pick("１") == hit and single.pick("2") is None


def test_speed_for_a_thousand_entries(demo_index: KnowledgeIndex) -> None:
    base = demo_index.items
    items = [
        base[n % len(base)].model_copy(
            update={
                "id": f"e{n}",
                "question": f"{base[n % len(base)].question}{n}号",
                "alternatives": tuple(f"{a}{n}号" for a in base[n % len(base)].alternatives),
            }
        )
        for n in range(1000)
    ]
    # The first build analyses every text (segmentation dominates); rebuilding after an edit reuses
    # the analysis of unchanged texts, which is what the console does.
    # CPU time of this thread, not wall time: the suite may share a busy machine.
    index = demo_index.rebuild(items)
    started = time.thread_time()
    rebuilt = index.rebuild([*items[:-1], items[-1].model_copy(update={"answer": "新的答案"})])
    assert time.thread_time() - started < 1.0
    assert len(rebuilt) == 1000
    started = time.thread_time()
    for n in range(100):
        rebuilt.answer(f"门禁卡丢了怎么补办{n}", "demo")
    assert (time.thread_time() - started) / 100 < 0.005


def test_config_defaults_are_sane() -> None:
    cfg = RetrievalConfig()
    assert 0 < cfg.choice_floor < cfg.threshold < 1
    assert cfg.max_choices == 3
