"""The held-out paraphrase set: top-1 accuracy ≥ 90 % is part of the contract (docs/KNOWLEDGE.md)."""

from __future__ import annotations

import pytest

from knowledge import DEMO_KB, DEMO_PARAPHRASES, KnowledgeIndex, load_paraphrases, load_yaml
from knowledge.evaluate import evaluate
from knowledge.schema import KnowledgeFormatError


def test_paraphrase_set_is_big_enough_and_held_out() -> None:
    data = load_paraphrases(DEMO_PARAPHRASES)
    assert len(data.questions) >= 120
    assert len(data.out_of_scope) >= 20
    phrasings = {p for item in load_yaml(DEMO_KB) for p in item.phrasings}
    # Held out: no test question is one of the indexed phrasings.
    assert not [text for text, _ in data.questions if text in phrasings]


def test_held_out_accuracy(demo_index: KnowledgeIndex) -> None:
    report = evaluate(demo_index, DEMO_PARAPHRASES)
    assert report.top1 >= 0.90, report.format()
    assert report.top3 >= 0.97, report.format()
    assert report.answered_wrong <= 0.03, report.format()
    assert report.rejection >= 0.80, report.format()
    assert report.oos_answered <= 0.05, report.format()


def test_unknown_expected_id_is_an_error(demo_index: KnowledgeIndex) -> None:
    with pytest.raises(ValueError, match="no-such-entry"):
        evaluate(demo_index, "project: demo\nquestions:\n  - {text: 物业费, expect: no-such-entry}\n")


def test_malformed_set() -> None:
    with pytest.raises(KnowledgeFormatError, match="question #1"):
        load_paraphrases("questions:\n  - {text: 物业费}\n")
