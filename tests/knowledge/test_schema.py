"""The YAML format: validation errors name the entry, its line and the field; dump/load round-trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from knowledge import (
    DEMO_KB,
    DEMO_SYNONYMS,
    KnowledgeFormatError,
    KnowledgeItem,
    dump_yaml,
    load_synonyms,
    load_yaml,
)

VALID = """\
version: 1
entries:
  - id: fee-payment
    question: 物业费怎么交？
    alternatives: [在哪里交物业费, 可以微信交物业费吗]
    answer: |-
      第一行
      第二行
    tags: [物业费]
    projects: [demo]
  - id: warranty
    question: 保修期多久？
    answer: 五年。
"""


def test_load_valid_file() -> None:
    items = load_yaml(VALID)
    assert [i.id for i in items] == ["fee-payment", "warranty"]
    first = items[0]
    assert first.alternatives == ("在哪里交物业费", "可以微信交物业费吗")
    assert first.answer == "第一行\n第二行"
    assert first.phrasings[0] == "物业费怎么交？"
    assert items[1].projects == () and items[1].alternatives == ()


def test_bare_list_is_accepted() -> None:
    items = load_yaml("- {id: a, question: 问题, answer: 答案}\n")
    assert items == [KnowledgeItem(id="a", question="问题", answer="答案")]


def test_round_trip() -> None:
    items = load_yaml(DEMO_KB)
    text = dump_yaml(items)
    assert load_yaml(text) == items
    assert "answer: |" in text  # multi-line answers stay readable block scalars


def test_missing_and_invalid_fields_name_the_entry_and_field() -> None:
    text = """\
entries:
  - id: ok-entry
    question: 问题
    answer: 答案
  - id: Bad Id
    question: 问题二
    answer: 答案
  - id: no-answer
    question: 问题三
  - id: typo
    question: 问题四
    answer: 答案
    alternative: [拼错的字段]
"""
    with pytest.raises(KnowledgeFormatError) as info:
        load_yaml(text)
    errors = info.value.errors
    assert any("entry #2 (id 'Bad Id') at line 5" in e and "field 'id'" in e for e in errors), errors
    assert any("entry #3 (id 'no-answer') at line 8" in e and "field 'answer'" in e for e in errors), errors
    assert any("entry #4 (id 'typo')" in e and "field 'alternative'" in e for e in errors), errors
    assert len(errors) == 3


def test_empty_alternative_is_reported_with_its_position() -> None:
    with pytest.raises(KnowledgeFormatError, match=r"field 'alternatives'.*alternative #2 is empty"):
        load_yaml("- {id: a, question: 问题, answer: 答案, alternatives: [说法一, '  ']}\n")


def test_duplicate_ids_and_shared_phrasings_are_errors() -> None:
    text = """\
- {id: a, question: 物业费怎么交, answer: 一}
- {id: a, question: 别的问题, answer: 二}
- {id: b, question: 另一个, alternatives: [物业费怎么交？], answer: 三}
"""
    with pytest.raises(KnowledgeFormatError) as info:
        load_yaml(text)
    message = str(info.value)
    assert "id 'a' is used by more than one entry" in message
    assert "phrasing '物业费怎么交？' is also used by entry 'a'" in message


def test_yaml_syntax_error_and_wrong_version() -> None:
    with pytest.raises(KnowledgeFormatError, match="not valid YAML"):
        load_yaml("entries: [\n  - id: a\n")
    with pytest.raises(KnowledgeFormatError, match="unsupported version 2"):
        load_yaml("version: 2\nentries: []\n")
    with pytest.raises(KnowledgeFormatError, match="unknown top-level keys: entires"):
        load_yaml("entires: []\n")


def test_path_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "kb.yml"
    path.write_text(VALID, encoding="utf-8")
    assert len(load_yaml(path)) == 2
    assert len(load_yaml(str(path))) == 2
    with pytest.raises(FileNotFoundError):
        load_yaml(str(tmp_path / "missing.yml"))


def test_project_codes_are_checked() -> None:
    with pytest.raises(KnowledgeFormatError, match="project code '示范花园'"):
        load_yaml("- {id: a, question: 问题, answer: 答案, projects: [示范花园]}\n")


def test_synonyms() -> None:
    groups = load_synonyms(DEMO_SYNONYMS)
    certificate = next(g for g in groups if "房本" in g)
    assert certificate[0] == "房产证" and "不动产权证" in certificate
    with pytest.raises(KnowledgeFormatError, match="'门卡' is already in group #1"):
        load_synonyms("synonyms:\n  - [门禁卡, 门卡]\n  - [门卡, 卡]\n")


def test_demo_knowledge_base_meets_the_brief() -> None:
    items = load_yaml(DEMO_KB)
    assert len(items) >= 45
    for item in items:
        assert 3 <= len(item.alternatives) <= 8, item.id
        assert set(item.projects) <= {"demo"}, item.id
    answers = "\n".join(i.answer for i in items)
    # The demo values must stay consistent wherever they appear.
    assert "0571-88880000" in answers and "0571-88889999" in answers
    phones = set(re.findall(r"0571-\d{8}", answers))
    assert phones == {"0571-88880000", "0571-88889999"}
