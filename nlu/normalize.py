"""Text normalisation for owner messages (归一化).

This module owns the one canonical form of an owner's text that everything downstream (the intent
classifier, the entity extractors, the knowledge base's BM25 tokens) works on:

* full-width → half-width, ASCII lower-cased (``ＡＢＣ１２３`` → ``abc123``);
* Traditional → Simplified, character by character, from OpenCC's own table;
* Chinese punctuation → ASCII, emoji and WeChat emoticon codes (``[微笑]``) → space, runs of
  punctuation collapsed;
* Chinese numerals → Arabic where they are numbers (``三栋二单元五零一`` → ``3栋2单元501``,
  ``十二楼`` → ``12楼``) but not in words (``一下``, ``一直``, ``万一``, ``十分``, ``周一``);
* filler words of voice input (``嗯``, ``呃``, ``那个那个``) removed; spaces inside Chinese text removed.

The original text is kept: :class:`Normalized` maps every normalised character back to its span in
the original, so entities found in the normalised text carry offsets into what the owner wrote.
Everything is table look-ups and a handful of regexes: it runs in tens of microseconds.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["Normalized", "chinese_to_int", "normalize"]

CJK = "\u3400-\u4dbf\u4e00-\u9fff"


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalised text and the way back to the original.

    ``offsets[i]`` is the index in ``original`` where normalised character ``i`` starts; ``ends[i]`` is
    where it ends (exclusive). Several normalised characters may share one original span (``十二`` →
    ``12``: both digits map to the two original characters).
    """

    original: str
    text: str
    offsets: list[int]
    ends: list[int] = field(default_factory=list)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``(start, end)`` of the normalised slice ``text[start:end]``."""
        if not self.text:
            return 0, 0
        if end <= start:
            pos = self.offsets[start] if start < len(self.offsets) else len(self.original)
            return pos, pos
        ends = self.ends or [o + 1 for o in self.offsets]
        return self.offsets[start], ends[end - 1]


# ---------------------------------------------------------------------------------------------------
# Character table: full-width, punctuation, case, emoji, Traditional → Simplified. All mappings are one
# character to one character (deletions become a space that the final clean-up removes), so this step
# keeps the identity offset map and can use str.translate.

_PUNCT = {
    "，": ",", "。": ".", "！": "!", "？": "?", "：": ":", "；": ";", "、": ",", "“": '"', "”": '"',
    "‘": "'", "’": "'", "（": "(", "）": ")", "【": "[", "】": "]", "《": '"', "》": '"', "〈": '"',
    "〉": '"', "「": '"', "」": '"', "『": '"', "』": '"', "～": "~", "…": ".", "—": "-", "–": "-",
    "―": "-", "‐": "-", "‑": "-", "‒": "-", "·": " ", "•": " ", "﹐": ",", "﹒": ".", "﹔": ";",
    "﹕": ":", "﹖": "?", "﹗": "!", "\u3000": " ", "\t": " ", "\r": " ", "\n": " ", "\u00a0": " ",
    "\u200b": " ", "\u200d": " ", "\ufe0f": " ", "\ufe0e": " ", "\u2028": " ", "\u2029": " ",
}

_EMOJI_RANGES = (
    (0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x2300, 0x23FF), (0x1F1E6, 0x1F1FF),
)


def _opencc_dictionary_dir() -> Path | None:
    spec = importlib.util.find_spec("opencc")
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "dictionary"
    return directory if directory.is_dir() else None


def _read_char_table(path: Path, table: dict[str, str]) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 2:
            continue
        source, target = parts[0], parts[1].split(" ")[0]
        # Only single code points: the character pass must stay one-to-one to keep offsets exact.
        if len(source) == 1 and len(target) == 1:
            table.setdefault(source, target)


@lru_cache(maxsize=1)
def _char_table() -> dict[int, str]:
    trad: dict[str, str] = {}
    directory = _opencc_dictionary_dir()
    if directory is not None:
        # TSCharacters only: OpenCC's *VariantsRev tables map standard characters to regional forms
        # (么 → 幺, 著 → 着) and would corrupt Simplified text that passes through them.
        _read_char_table(directory / "TSCharacters.txt", trad)
    table: dict[int, str] = {ord(k): v for k, v in trad.items() if k != v}
    for code in range(0xFF01, 0xFF5F):  # full-width ASCII block
        table[code] = chr(code - 0xFEE0)
    for src, dst in _PUNCT.items():
        table[ord(src)] = dst
    for lo, hi in _EMOJI_RANGES:
        for code in range(lo, hi + 1):
            table[code] = " "
    # Lower-case last, so that full-width letters are lower-cased too.
    for code, dst in list(table.items()):
        if len(dst) == 1 and "A" <= dst <= "Z":
            table[code] = dst.lower()
    for code in range(ord("A"), ord("Z") + 1):
        table[code] = chr(code).lower()
    # 幺 (yāo) is how "1" is spoken in phone and room numbers; keep it, the numeral pass handles it.
    return table


# ---------------------------------------------------------------------------------------------------
# Offset-preserving rewrite.

def _rewrite(
    text: str,
    starts: list[int],
    ends: list[int],
    pattern: re.Pattern[str],
    repl: Callable[[re.Match[str]], str | None],
) -> tuple[str, list[int], list[int]]:
    """Apply ``repl`` to every match of ``pattern`` and carry the offset map along.

    A replacement of the same length keeps the per-character map; otherwise every replacement
    character maps to the whole matched span (so an entity covering any of it covers all of it).
    ``repl`` returning ``None`` keeps the match unchanged.
    """
    pieces: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    pos = 0
    changed = False
    for match in pattern.finditer(text):
        a, b = match.span()
        if a == b:
            continue
        replacement = repl(match)
        if replacement is None or replacement == match.group(0):
            continue
        changed = True
        pieces.append(text[pos:a])
        new_starts.extend(starts[pos:a])
        new_ends.extend(ends[pos:a])
        if len(replacement) == b - a:
            new_starts.extend(starts[a:b])
            new_ends.extend(ends[a:b])
        else:
            new_starts.extend([starts[a]] * len(replacement))
            new_ends.extend([ends[b - 1]] * len(replacement))
        pieces.append(replacement)
        pos = b
    if not changed:
        return text, starts, ends
    pieces.append(text[pos:])
    new_starts.extend(starts[pos:])
    new_ends.extend(ends[pos:])
    return "".join(pieces), new_starts, new_ends


# ---------------------------------------------------------------------------------------------------
# Chinese numerals.

_DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
           "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_NUM_CHARS = "零〇一幺二两三四五六七八九十百千万"
_NUM_RUN = re.compile(f"[{_NUM_CHARS}]+")


def chinese_to_int(run: str) -> int | None:
    """Value of a Chinese numeral (``二十五`` → 25, ``一千二百零三`` → 1203, ``三百五`` → 350).

    Returns ``None`` for strings that are not a well-formed number (``十十``, ``万万``).
    """
    if not run:
        return None
    if all(ch in _DIGITS for ch in run):
        value = 0
        for ch in run:
            value = value * 10 + _DIGITS[ch]
        return value
    total = 0          # completed 万 groups
    section = 0        # current group below 万
    digit: int | None = None
    last_unit = 0
    for ch in run:
        if ch in _DIGITS:
            if digit is not None and _DIGITS[ch] != 0:
                return None  # two digits in a row inside a positional numeral
            digit = _DIGITS[ch] if _DIGITS[ch] != 0 else None
            if _DIGITS[ch] == 0:
                last_unit = 0  # 一百零五: after 零 the trailing digit is units
        elif ch in _UNITS:
            unit = _UNITS[ch]
            if last_unit and unit >= last_unit:
                return None
            section += (digit if digit is not None else 1) * unit
            digit = None
            last_unit = unit
        elif ch == "万":
            if section == 0 and digit is None:
                return None
            total += (section + (digit or 0)) * 10_000
            section, digit, last_unit = 0, None, 10_000
        else:
            return None
    if digit is not None:
        # Colloquial 三百五 = 350, 一千二 = 1200: a bare trailing digit counts one unit down.
        section += digit * (last_unit // 10 if last_unit >= 100 else 1)
    return total + section


# A numeral directly followed by one of these is a quantity, a floor, a date … and becomes digits.
_UNIT_AFTER = re.compile(
    r"(?:号楼|号|栋|幢|座|单元|楼|层|室|户|期|区|排|月|日|天|年|个|次|遍|元|块|毛|岁|分钟|小时|钟头|"
    r"周年|平米|平方|平|米|公分|厘米|台|部|间|辆|位|张|份|本|套|把|扇|根|处|家|点|多|栋楼|倍|人|cm|m)"
)
# Words whose numeral is not a number.
_NOT_NUMBER_AFTER = re.compile(r"(?:下|直|起|定|样|些|般|切|向|再|旦|会儿|会|边|共|律|致|番|心|丝|毫|味|口气|概)")
_TIME_OF_DAY = re.compile(r"(?:上午|下午|中午|晚上|早上|凌晨|傍晚|夜里|半夜|早晨|今晚|明早|晚|早)$")
_WEEKDAY_PREFIX = re.compile(r"(?:周|星期|礼拜)$")
_IDIOMS = ("三番五次", "七上八下", "乱七八糟", "一五一十", "千万", "万一", "十分", "百分之", "一一",
           "三三两两", "一模一样", "千方百计", "五花八门", "四面八方", "七七八八", "一清二楚", "独一无二",
           "唯一", "统一", "一楼一底")


def _numeral(match: re.Match[str]) -> str | None:
    run = match.group(0)
    text = match.string
    a, b = match.span()
    before = text[max(0, a - 3):a]
    after = text[b:b + 4]
    around = text[max(0, a - 2):b + 3]
    if any(idiom in around and run in idiom for idiom in _IDIOMS):
        # 十分钟 is a duration even though 十分 is "very".
        if not (run.endswith("十") and after.startswith("分钟")):
            return None
    if _WEEKDAY_PREFIX.search(before) and len(run) == 1:
        return None  # 周一, 星期三, 礼拜六
    has_positional = any(ch in "十百千万" for ch in run)
    if not has_positional and len(run) >= 3:
        return _digit_string(run)  # 五零一, 幺三八…, 一二零三
    if not has_positional and len(run) == 2 and ("零" in run or "〇" in run or "幺" in run):
        return _digit_string(run)
    unit = _UNIT_AFTER.match(after)
    if unit is None:
        # A bare positional numeral (二十五, 一百二十) is a number in any context; a bare digit is not
        # (一 in 一下, 三 in 三只松鼠). 二十/三十 before 多 or 几 is handled via the unit list.
        if has_positional and len(run) >= 2 and not _NOT_NUMBER_AFTER.match(after):
            value = chinese_to_int(run)
            return None if value is None else str(value)
        if run == "十" and (after[:1].isdigit() or before[-1:].isdigit()):
            return None
        return None
    if _NOT_NUMBER_AFTER.match(after) and not unit:
        return None
    if len(run) == 2 and not has_positional:
        return None  # 三四天, 七八个: an approximate range, not 34 or 78
    word = unit.group(0)
    if word == "点" and run in {"一", "两"} and not _TIME_OF_DAY.search(before) and not after.startswith(
        ("点钟", "点半", "点多", "点左右", "点前", "点以前", "点之前", "点后", "点以后", "点到")
    ):
        return None  # 一点 / 两点 = "a little" unless it reads as a time
    if word == "多" and not has_positional:
        return None  # 一多 is not Chinese; 二十多 is
    if word == "天" and run == "一" and text[b + 1:b + 3] == "到晚":
        return None
    if word == "个" and run == "一" and text[b + 1:b + 2] in {"劲", "样"}:
        return None
    value = chinese_to_int(run)
    return None if value is None else str(value)


def _digit_string(run: str) -> str | None:
    if any(ch in "十百千万" for ch in run):
        return None
    return "".join(str(_DIGITS[ch]) for ch in run)


# ---------------------------------------------------------------------------------------------------
# Voice-input fillers and clean-up.

_FILLER = re.compile(
    r"(?:嗯+|呃+|额+(?=[\s,.!?~]|$)|(?:(?<=^)|(?<=[\s,.!?]))额+|emm+|(?<![a-z])um+(?![a-z])|"
    r"(那个|这个|就是|然后|就是说|怎么说呢)(?:[\s,]*\1)+)"
)
_WECHAT_EMOTICON = re.compile(rf"\[[{CJK}a-z]{{1,4}}\]")
_REPEAT_PUNCT = re.compile(r"([!?.,~;:\-])[\s!?.,~;:\-]*")
_INNER_SPACES = re.compile(rf"(?<=[{CJK}\d]) +(?=[{CJK}])|(?<=[{CJK}]) +(?=\d)")
_MULTI_SPACES = re.compile(r" {2,}")


def _collapse_punct(match: re.Match[str]) -> str:
    # "!!!", "？？", "。。。" → one mark; a question mark wins because it changes the meaning.
    return "?" if "?" in match.group(0) else match.group(0)[0]


# One message is normalised several times on its way through (the NLU, the survey's score reader, the
# knowledge base's analyser, which normalises the query and then segments it with ``tokenize``, which
# normalises what it is given). ``normalize`` is a pure function of the text and its result is never
# modified, so the last few short texts are remembered. Long letters are not: they are rare, and their
# offset lists are what would take memory.
_CACHE_SIZE = 256
_CACHE_MAX_LEN = 200


def normalize(text: str) -> Normalized:
    """Normalise an owner's message; see the module docstring for what changes and why.

    The result is shared between callers that normalise the same text: treat it as read-only."""
    if len(text) <= _CACHE_MAX_LEN:
        return _normalize_cached(text)
    return _normalize(text)


def _normalize(text: str) -> Normalized:
    original = text
    table = _char_table()
    mapped = original.translate(table)
    starts = list(range(len(original)))
    ends = [i + 1 for i in starts]
    # The table is one-to-one, so the offsets are still the identity here.
    mapped, starts, ends = _rewrite(mapped, starts, ends, _WECHAT_EMOTICON, lambda m: " ")
    mapped, starts, ends = _rewrite(mapped, starts, ends, _NUM_RUN, _numeral)
    without_fillers = _rewrite(mapped, starts, ends, _FILLER, lambda m: " ")
    if without_fillers[0].strip(" ,.!?~"):
        # Only drop fillers when something is left: a lone "嗯" is an answer (affirm), not noise.
        mapped, starts, ends = without_fillers
    mapped, starts, ends = _rewrite(mapped, starts, ends, _REPEAT_PUNCT, _collapse_punct)
    # Spaces inside Chinese text are typing or voice artefacts ("3 栋 2 单元"); between two numbers
    # or around Latin words they separate things and stay (one of them).
    mapped, starts, ends = _rewrite(mapped, starts, ends, _INNER_SPACES, lambda m: "")
    mapped, starts, ends = _rewrite(mapped, starts, ends, _MULTI_SPACES, lambda m: " ")
    # Strip leading/trailing spaces and separators.
    lo, hi = 0, len(mapped)
    while lo < hi and mapped[lo] in " ,.;:":
        lo += 1
    while hi > lo and mapped[hi - 1] == " ":
        hi -= 1
    return Normalized(original=original, text=mapped[lo:hi], offsets=starts[lo:hi], ends=ends[lo:hi])


_normalize_cached = lru_cache(maxsize=_CACHE_SIZE)(_normalize)
