"""Features of the intent classifier: character n-grams (1–3) of the normalised text, whole Latin words,
the desk's cue lexicons (:mod:`nlu.cues`), optionally jieba words.

Why characters: owners' text is short, full of typos and homophones (楼水, 物也费), Cantonese and
Traditional forms (after normalisation mostly Simplified), and voice run-ons without punctuation.
Character n-grams are robust to all of these (a typo breaks one or two n-grams, not the whole word)
and need no segmenter, so the hot path stays fast and the model loads without jieba's dictionary.
Digit runs collapse to ``0`` so that 3栋2单元501 and 12#1804 look alike to the model.

This module owns the feature definition shared by training and inference; a model records which
options it was trained with.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Container
from operator import add

from nlu.cues import cue_features

__all__ = ["FeatureConfig", "coverage", "extract_features"]

_DIGIT_RUN = re.compile(r"\d+")
_LATIN_WORD = re.compile(r"[a-z]{2,}")
# Boundary markers let a message that IS a greeting (^你好$) differ from one that contains it.
BOS, EOS = "\x02", "\x03"
_SKIP_UNIGRAMS = frozenset({BOS, EOS})
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
_SPACE = re.compile(r"\s")  # the characters str.isspace() accepts


class FeatureConfig:
    """Options of the feature extractor (stored with the model)."""

    def __init__(self, ngram_min: int = 1, ngram_max: int = 3, words: bool = False, cues: bool = True) -> None:
        self.ngram_min = ngram_min
        self.ngram_max = ngram_max
        self.words = words
        self.cues = cues

    def to_dict(self) -> dict[str, object]:
        return {"ngram_min": self.ngram_min, "ngram_max": self.ngram_max, "words": self.words, "cues": self.cues}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureConfig:
        return cls(int(data.get("ngram_min", 1)), int(data.get("ngram_max", 3)),  # type: ignore[call-overload]
                   bool(data.get("words", False)), bool(data.get("cues", False)))


def extract_features(normalized_text: str, config: FeatureConfig) -> Counter[str]:
    """Feature counts of one normalised message."""
    text = _DIGIT_RUN.sub("0", normalized_text)
    padded = BOS + text + EOS
    # n-grams are built by pairwise concatenation in C (map(add, …)) and counted by Counter's C loop:
    # several times faster than slicing in a comprehension on a 1,000-character letter.
    counts: Counter[str] = Counter()
    seq: list[str] = list(padded)
    for n in range(1, config.ngram_max + 1):
        if n > 1:
            seq = list(map(add, seq, padded[n - 1:]))
        if n >= config.ngram_min:
            counts.update(seq)
    # Drop the boundary markers as unigrams and whitespace-only grams. Popping the few possible keys is
    # exact and, unlike filtering every gram, costs nothing on a 1,000-character letter.
    for key in _SKIP_UNIGRAMS:
        counts.pop(key, None)
    spaces = {ch for ch in set(text) if ch.isspace()} if _SPACE.search(text) else None
    if spaces:
        for key in _whitespace_grams(frozenset(spaces), config.ngram_max):
            counts.pop(key, None)
    for word in _LATIN_WORD.findall(text):
        counts["w:" + word] += 1
    if config.cues:
        counts.update(cue_features(text))
    if config.words:
        from nlu.tokenize import tokenize_normalized

        for word in tokenize_normalized(text):
            if len(word) > 1:
                counts["j:" + word] += 1
    return counts


@functools.lru_cache(maxsize=64)
def _whitespace_grams(spaces: frozenset[str], longest: int) -> tuple[str, ...]:
    grams = [""]
    out: list[str] = []
    for _ in range(longest):
        grams = [g + ch for g in grams for ch in sorted(spaces)]
        out += grams
    return tuple(out)


def coverage(counts: Counter[str], known: Container[str]) -> float:
    """Share of a message the model has seen: known character bigrams among its (non-Latin) bigrams,
    and known words among its Latin words. Near 0 for gibberish or another domain's vocabulary,
    around 0.7 for a typical owner message. Bigrams, not trigrams: a new phrasing of a known topic
    keeps most bigrams and loses most trigrams."""
    letters = _ASCII_LETTERS
    # Only bigrams and Latin words count; comprehensions keep the loop in fast paths for long letters.
    pairs = [gram for gram in counts
             if (len(gram) == 2 and gram[0] not in letters and gram[1] not in letters) or gram[:2] == "w:"]
    total = sum(map(counts.__getitem__, pairs))
    seen = sum(map(counts.__getitem__, filter(known.__contains__, pairs)))
    return seen / total if total else 0.0
