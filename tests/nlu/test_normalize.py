"""Normalisation: every rewrite keeps a way back to the original text."""

from __future__ import annotations

import pytest

from nlu import normalize, tokenize
from nlu.normalize import chinese_to_int


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("三栋二单元五零一", "3栋2单元501"),
        ("十二楼", "12楼"),
        ("我住三号楼二单元五零一室", "我住3号楼2单元501室"),
        ("十一月二十五号下午两点", "11月25号下午2点"),
        ("电话幺三八零零零零零零零一", "电话13800000001"),
        ("等了十分钟", "等了10分钟"),
        ("二十多天了", "20多天了"),
        ("打了三次电话", "打了3次电话"),
        ("两天了", "2天了"),
        # numerals inside words stay words
        ("一下子就好了", "一下子就好了"),
        ("我们一起去", "我们一起去"),
        ("十分生气", "十分生气"),
        ("周三下午", "周三下午"),
        ("万一漏电", "万一漏电"),
        ("三四天了", "三四天了"),  # a range, not 34
        ("稍微快一点", "稍微快一点"),
        ("三番五次", "三番五次"),
        # width, case, Traditional, punctuation, emoji
        ("３栋　２单元", "3栋2单元"),
        ("ＡＢＣ", "abc"),
        ("我的LIFT坏了😡😡", "我的lift坏了"),
        ("衛生間漏水，樓下都濕了！！！", "卫生间漏水,楼下都湿了!"),
        ("唔該，我嘅廁所冇水", "唔该,我嘅厕所冇水"),
        ("什么时候？？", "什么时候?"),
        ("[微笑]好的", "好的"),
        # voice fillers
        ("嗯那个那个我家厕所漏水了", "我家厕所漏水了"),
        ("呃 电梯坏了", "电梯坏了"),
        ("3 栋 2 单元 501", "3栋2单元501"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text).text == expected


def test_lone_filler_is_kept() -> None:
    # "嗯" alone is an answer (affirm), not noise.
    assert normalize("嗯").text == "嗯"
    assert normalize("嗯嗯").text == "嗯嗯"


def test_simplified_text_is_not_damaged() -> None:
    text = "什么时候能修好，著名的后面里面干净"
    assert normalize(text).text == "什么时候能修好,著名的后面里面干净"


@pytest.mark.parametrize(
    "text",
    ["三栋二单元五零一漏水", "嗯那个 我家 十二楼 電梯壞了！！", "一千二百零三室", "ＴＤ", "😡😡投诉😡", "", "  "],
)
def test_offsets_map_back_to_the_original(text: str) -> None:
    norm = normalize(text)
    assert norm.original == text
    assert len(norm.offsets) == len(norm.text) == len(norm.ends)
    for i in range(len(norm.text)):
        assert 0 <= norm.offsets[i] < norm.ends[i] <= len(text)
    assert norm.offsets == sorted(norm.offsets)


def test_span_of_a_converted_numeral_covers_all_of_it() -> None:
    norm = normalize("住在十二楼")
    start = norm.text.index("12楼")
    assert norm.span(start, start + 3) == (2, 5)
    assert "住在十二楼"[2:5] == "十二楼"


@pytest.mark.parametrize(
    ("run", "value"),
    [("二十五", 25), ("一千二百零三", 1203), ("三百五", 350), ("一千二", 1200), ("十", 10), ("十二", 12),
     ("一百零五", 105), ("两万", 20000), ("五零一", 501), ("十十", None)],
)
def test_chinese_to_int(run: str, value: int | None) -> None:
    assert chinese_to_int(run) == value


def test_tokenize_uses_the_domain_dictionary() -> None:
    tokens = tokenize("三栋二单元的地漏返水了！请问維修基金和不动产权证书怎么办")
    for word in ("3", "栋", "2", "单元", "地漏", "返水", "维修基金", "不动产权证书"):
        assert word in tokens
    assert "!" not in tokens and "," not in tokens
    assert tokenize("可视对讲坏了，入户门锁也打不开")[:1] == ["可视对讲"]
    assert "入户门" in tokenize("可视对讲坏了，入户门锁也打不开")
    assert tokenize("") == []
