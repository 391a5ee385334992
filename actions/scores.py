"""Reading an owner's answer to a survey item (回访评分): a 1–5 score, a skip, a refusal, or "still broken".

Owners answer a callback the way they talk, so this reads the *class* of answer, not a list of
phrasings. The text is first put in the one canonical form (``nlu.normalize``: Traditional → Simplified,
full-width → half-width, punctuation), after emoji were counted (normalisation drops them); then:

1. **still broken** (还没修好, 又漏了, 问题还在 …): the work failed; the flow reopens the ticket (返修);
2. **refusal** (不想答, 别问了, 没空 …) and **skip** (跳过, 下一个, 不清楚 …);
3. **a number the owner gives** — a digit, a Chinese numeral read by ``cn2an`` (五, 两, 十), with or
   without a unit (4分, 打个五星, 给十分 on a ten-point habit is halved), 满分/零分, or a bare digit in a
   short message ("5", "就4吧");
4. **stars and emoji**: ⭐ ★ 🌟 counted (⭐⭐⭐⭐ = 4), 👍 💯 👏 ❤ = 5, 😊 🙂 = 4, 😐 = 3, 😞 = 2, 😡 👎 💩 = 1;
5. **words**, by degree × polarity: a satisfaction word (满意, 好, 不错, 棒 …) or a dissatisfaction word
   (差, 烂, 糟糕 …), graded by its intensifier (非常/很/特别 → 5 or 1) and flipped by a negation (不满意,
   不太好 → 2; 很不满意 → 1); middle words (一般, 还行, 凑合, 马马虎虎) are 3. When a sentence holds both
   praise and blame ("态度很好 就是修得太慢"), the lower score counts: service recovery must hear it.

Common input-method slips of the key word (满易, 瞒意, 蛮意) are read as the word meant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import cn2an

from nlu.normalize import normalize

Kind = Literal["score", "skip", "decline", "still_broken"]


@dataclass(frozen=True, slots=True)
class Answer:
    kind: Kind
    score: int | None = None


STILL_BROKEN = re.compile(
    r"(?:还|仍|仍然|依然|还是|又|照样|照旧|根本)(?:没|没有)(?:修好|弄好|解决|处理好|搞好|修)"
    r"|没(?:有)?(?:修好|弄好|搞好|处理好)|又(?:漏|坏|堵|不亮|不行|开始漏|出问题|渗|裂|滴)|(?:还|仍|仍然|依然)(?:在|是|是在)(?:漏|渗|滴|堵|坏|不亮|不行)"
    r"|还漏|修了又|问题(?:还在|依旧|依然|没解决)|老样子|跟没修一样|白修|没修|还没好|又犯了"
)
DECLINE = re.compile(
    r"不想(?:答|回答|评|评价|打分|做|填|参加)|不(?:答|评|参加|打分)了|别(?:问|发|烦|再问|打扰)|不要(?:再)?(?:问|发|打扰)"
    r"|没(?:空|时间)|懒得(?:答|评|理)|拒绝|烦不烦|不做了|不评价|退出(?:调查|回访)?|免了|不用了"
)
SKIP = re.compile(r"跳过|下一(?:题|个|项)|pass|不知道|不清楚|说不(?:好|清|上来)|不好说|没法(?:评|说)|不了解|没接触|不适用|略过|过$")

_CN_DIGIT = "零〇一二两三四五六七八九十"
_NUMBER = re.compile(
    rf"(?P<n>\d{{1,3}}(?:\.\d)?|[{_CN_DIGIT}]{{1,3}})\s*(?:分|星|颗星|个星|颗|星星)"
    rf"|(?:打|给|评|选|就|算)(?:个|你们|您|你)?\s*(?P<m>\d{{1,2}}|[{_CN_DIGIT}]{{1,2}})(?![\d{_CN_DIGIT}]|点|号|栋|楼|天|月)"
)
_BARE = re.compile(r"^(?:[^\d]{0,4}?)(?P<n>[1-5])(?:[^\d]{0,4})$"
                   r"|^(?:就|打|给|评)?(?P<m>[一二两三四五])(?:分|星|个|吧|啊|了|呗|[.!~\s])*$")
FULL = re.compile(r"满分|100分|一百分|五星好评|5星好评|十分满意")
ZERO = re.compile(r"零分|(?<![\d.])0分|负分|不及格")

STARS = re.compile("[⭐★🌟✨]")
EMOJI = (
    (5, re.compile("[👍💯👏❤💖💕🥰😍🤩🎉🌹]")),
    (4, re.compile("[😊🙂😀😄😁☺👌🤗]")),
    (3, re.compile("[😐😑🤔🙃]")),
    (2, re.compile("[😞😔😕🙁☹😒😩😢]")),
    (1, re.compile("[😡😠🤬😤👎💩💢😭🖕]")),
)

TYPOS = {"满易": "满意", "瞒意": "满意", "蛮意": "满意", "满忆": "满意", "满议": "满意", "慢意": "满意", "满以": "满意",
         "不粗": "不错", "不挫": "不错", "不措": "不错", "挺号": "挺好", "很号": "很好", "差经": "差劲"}
_TYPO = re.compile("|".join(map(re.escape, TYPOS)))

MIDDLE = re.compile(r"一般|还行|还可以|凑合|马马虎虎|马虎|过得去|中规中矩|普通|将就|就那样|说得过去|还凑合|勉强|及格|中等|不好不坏|一般般")
GOOD = re.compile(r"没问题|没毛病|满意|好评|不错|(?<=[挺很蛮真太常别分超较还都不极])好(?![几多像久])|^好[!.~]*$|好极了|棒|赞|优秀|完美|没得说|没话说|靠谱|给力|专业|到位|周到|很快|及时|干净|利索|认真|热情|点赞|ok|可以")
BAD = re.compile(r"差评|差劲|太差|很差|极差|真差|差|烂|糟糕|糟|垃圾|恶劣|坑|失望|离谱|气人|无语|投诉|敷衍|太慢|很慢|拖拉|脏|乱|不负责")
STRONG = re.compile(r"非常|很|特别|十分|超级|超|太|极其|极|相当|真的很|贼|巨|老|最")
NEGATION = re.compile(r"不|没|无|(?<![特区分级告])别")
WEAK_NEG = re.compile(r"不太|不怎么|不是很|不是特别|不够|不大|没那么|不算")
_END = "的了吧啊呀哈嘛呢哦~!. "


def _degree_of_good(text: str, start: int, word: str) -> int:
    """The score of a satisfaction word at ``start``, from what precedes it (negation, intensifier)."""
    before = text[max(0, start - 4):start]
    if word in ("不错",):
        return 5 if STRONG.search(before) and not NEGATION.search(before) else 4
    if WEAK_NEG.search(before):
        return 2  # 不太满意, 不是很好
    if NEGATION.search(before[-2:]) or (word == "好" and before.endswith(("不", "没"))):
        return 1 if STRONG.search(before[:-1] if before.endswith(("不", "没")) else before) else 2  # 很不满意 / 不满意
    if word in ("好评", "完美", "没得说", "没话说", "点赞", "优秀", "周到"):
        return 5
    if STRONG.search(before[-2:]):
        return 5  # 非常满意, 很好, 太棒了
    if word in ("可以", "ok", "好") and before.endswith("还"):
        return 3
    return 4


def _degree_of_bad(text: str, start: int, word: str) -> int:
    before = text[max(0, start - 3):start]
    if NEGATION.search(before[-1:]) and word not in ("差评",):
        return 4  # 不差, 不脏
    if word in ("差评", "太差", "很差", "极差", "垃圾", "恶劣", "烂", "糟糕", "投诉", "离谱", "不负责", "真差"):
        return 1
    if STRONG.search(before[-2:]):
        return 1
    return 2


def _number(text: str) -> int | None:
    m = _NUMBER.search(text)
    if m is None:
        m = _BARE.match(text) if len(text) <= 8 else None
        if m is None:
            return None
    raw = m.group("n") or m.group("m")
    try:
        value = float(raw) if raw[0].isdigit() else float(cn2an.cn2an(raw, "smart"))
    except (ValueError, KeyError):
        return None
    if value > 100:
        return None
    if value > 10:
        value = value / 20  # a hundred-point habit: 80分 → 4
    elif value > 5:
        value = value / 2  # a ten-point habit: 10分 → 5, 8分 → 4
    return max(1, min(5, round(value + 1e-9))) if value > 0 else 1


ACK = re.compile(r"^(?:好|好的|好滴|好嘞|好吧|行|行吧|嗯+|恩+|哦+|ok|okay|收到|知道了|可以|来吧|开始吧|谢谢|谢了)[的了吧啊呀!.~\s]*$")
"""An acknowledgement of the invitation, not a score: the flow asks again, with the scale."""


def read(text: str) -> Answer | None:
    """What an owner's reply to a survey item says (see the module docstring); None: not an answer."""
    raw = text.strip()
    if not raw:
        return None
    norm = normalize(raw).text.lower()
    if ACK.match(norm):
        return None
    norm = _TYPO.sub(lambda m: TYPOS[m.group(0)], norm)
    if STILL_BROKEN.search(norm):
        return Answer("still_broken")
    if DECLINE.search(norm) and len(norm) <= 16:
        return Answer("decline")
    if SKIP.search(norm) and len(norm) <= 12:
        return Answer("skip")
    if FULL.search(norm):
        return Answer("score", 5)
    if ZERO.search(norm):
        return Answer("score", 1)
    number = _number(norm)
    if number is not None:
        return Answer("score", number)
    stars = len(STARS.findall(raw))
    if stars:
        return Answer("score", max(1, min(5, stars)))
    for score, pattern in EMOJI:
        if pattern.search(raw):
            return Answer("score", score)
    return _words(norm)


def _words(norm: str) -> Answer | None:
    if len(norm) > 40 or "?" in norm or re.search(r"怎么|如何|哪里|在哪|多少|吗$|什么时候|能不能|可不可以", norm):
        return None  # a question mid-survey, answered by the normal dialogue
    found: list[int] = []
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= x or a >= y for x, y in taken)

    for m in MIDDLE.finditer(norm):
        if free(*m.span()):
            taken.append(m.span())
            before = norm[max(0, m.start() - 2):m.start()]
            found.append(2 if NEGATION.search(before[-1:]) and m.group(0) != "不好不坏" else 3)
    for m in BAD.finditer(norm):
        if free(*m.span()):
            taken.append(m.span())
            found.append(_degree_of_bad(norm, m.start(), m.group(0)))
    for m in GOOD.finditer(norm):
        if free(*m.span()):
            taken.append(m.span())
            found.append(_degree_of_good(norm, m.start(), m.group(0)))
    if not found:
        return None
    return Answer("score", min(found))


__all__ = ["Answer", "read"]
