"""How owners answer a callback item, read by ``actions.scores.read``: real phrasings, typos, Traditional
characters, full-width digits, emoji, and what is not an answer at all."""

from __future__ import annotations

import pytest

from actions.scores import read

SCORES = [
    # digits and numerals, with and without units
    ("5", 5), ("５", 5), ("4分", 4), ("3分吧", 3), ("给4分吧", 4), ("就给个2", 2), ("打个五星", 5), ("四星吧", 4),
    ("五分", 5), ("两分", 2), ("三", 3), ("就三吧", 3), ("1分都不想给", 1), ("给你们10分", 5), ("8分", 4),
    ("80分", 4), ("满分", 5), ("100分", 5), ("一百分", 5), ("零分", 1), ("五星好评", 5), ("打5分", 5),
    # words by degree
    ("非常满意", 5), ("很满意", 5), ("特别满意！！", 5), ("满意", 4), ("挺满意的", 4), ("比较满意", 4),
    ("还行", 3), ("还行吧", 3), ("一般", 3), ("一般般吧", 3), ("凑合", 3), ("马马虎虎", 3), ("还可以吧", 3),
    ("不太满意", 2), ("不是很满意", 2), ("不满意", 2), ("很不满意", 1), ("非常不满意", 1),
    ("很差", 1), ("太差了", 1), ("差评", 1), ("差", 2), ("垃圾", 1), ("不好", 2), ("不太好", 2),
    ("挺好", 4), ("挺好的", 4), ("很好", 5), ("很好很好", 5), ("太棒了", 5), ("不错", 4), ("还不错", 4),
    ("非常不错", 5), ("好评！", 5), ("没问题", 4), ("师傅人很好", 5), ("态度很好 就是来得太慢", 2),
    # emoji and stars
    ("👍", 5), ("👍👍👍", 5), ("💯", 5), ("😊", 4), ("😐", 3), ("😞", 2), ("😡", 1), ("👎", 1),
    ("⭐⭐⭐⭐", 4), ("⭐⭐⭐⭐⭐", 5), ("★★★", 3),
    # Traditional characters, typos of the input method
    ("非常滿意", 5), ("滿意", 4), ("很差勁", 1), ("爛透了", 1), ("满易", 4), ("非常瞒意", 5), ("不粗", 4),
]


@pytest.mark.parametrize(("text", "score"), SCORES)
def test_a_score_in_the_owners_words(text: str, score: int) -> None:
    answer = read(text)
    assert answer is not None and answer.kind == "score" and answer.score == score, (text, answer)


@pytest.mark.parametrize("text", ["还没修好", "又漏了", "还是在漏水", "修了又坏了", "根本没修好", "问题还在", "跟没修一样",
                                  "还在滴水", "又堵了", "灯又不亮了", "還沒修好"])
def test_still_broken(text: str) -> None:
    answer = read(text)
    assert answer is not None and answer.kind == "still_broken", text


@pytest.mark.parametrize(("text", "kind"), [
    ("跳过", "skip"), ("下一题", "skip"), ("不清楚", "skip"), ("不知道", "skip"), ("pass", "skip"), ("说不好", "skip"),
    ("不想答", "decline"), ("不想回答了", "decline"), ("别问了", "decline"), ("没空", "decline"),
    ("不评了", "decline"),
])
def test_skip_and_refusal(text: str, kind: str) -> None:
    answer = read(text)
    assert answer is not None and answer.kind == kind, text


@pytest.mark.parametrize("text", ["物业费怎么交", "停车卡在哪里办？", "你好", "好的", "嗯", "收到", "谢谢",
                                  "好几天了", "3栋2单元501", "明天下午来吧", ""])
def test_not_an_answer(text: str) -> None:
    assert read(text) is None, text
