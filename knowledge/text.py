"""Turning a question into retrieval features: normalise → fold synonyms → words + character bigrams.

Chinese has no spaces, and owners' wording differs from the knowledge base's in ways a word segmenter
alone does not bridge: jieba may cut ``交物业费`` and ``物业费交`` differently, owners make typos
(``物业废``), and voice input runs sentences together. So each text yields two kinds of features:

* ``w:<word>`` — jieba words (from :func:`nlu.tokenize`, with the property-domain dictionary), which
  carry the precise meaning (``维修基金``, ``门禁卡``);
* ``b:<ab>`` — overlapping character bigrams of the Chinese text, which survive segmentation
  differences and most one-character typos.

Before either, synonyms are folded to the first word of their group (``房本``/``不动产权证`` →
``房产证``, ``管理费`` → ``物业费``) on the normalised text, on the knowledge-base side and the query
side alike, so both kinds of feature see the same canonical words. Folding is one left-to-right
pass preferring the longest match, so ``不动产权证书`` is folded as a whole and never as ``产权证``
plus leftovers, and a replacement is never folded again.

Greetings and particles (``你好``, ``请问``, ``吗``) are dropped: they say nothing about which entry is
meant, and an owner's politeness must not lower the confidence of a good match.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import add, itemgetter

import numpy as np

__all__ = [
    "KINDS",
    "STOPWORDS",
    "Analyzer",
    "Normalizer",
    "Tokenizer",
    "basic_normalizer",
    "default_normalizer",
    "default_tokenizer",
]

Tokenizer = Callable[[str], list[str]]
Normalizer = Callable[[str], str]

# Words that carry no information about *which* entry is meant. Question words (怎么, 多少, 哪里)
# are deliberately kept: "物业费多少钱" and "物业费怎么交" are different entries.
STOPWORDS = frozenset(
    """
    的 了 吗 呢 啊 吧 呀 哦 嘛 啦 哈 噢 喔 哇 呗 么 诶 欸 嗯 呃 额 哎 唉 咯 滴 地 得 着 过 又 就 都 也 还 再 很 太
    请问 问问 问下 问一下 想问 想问下 想问一下 我想问 咨询 咨询一下 请教 请教一下 打听 打听一下 一下
    你好 您好 你们好 哈喽 在吗 在不在 有人吗 谢谢 谢了 多谢 感谢 麻烦 麻烦你 麻烦您 不好意思 打扰 打扰了
    我 我们 我家 我想 想 想要 咱 咱们 你 您 你们 他 她 它 他们 那个 这个 就是 然后 那么 那 这 一个 个 请 帮 帮忙 帮我 给我
    """.split()
)

# Feature kinds, by the prefix of a feature: words, character bigrams, single characters.
KINDS = ("w", "b", "u")
_KIND_CODE = {kind: code for code, kind in enumerate(KINDS)}
_FIRST = itemgetter(0)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_PUNCT_ONLY = re.compile(r"^[\W_]+$")


def default_normalizer(text: str) -> str:
    """The project's normalisation (full/half width, Traditional → Simplified, numerals …)."""
    from nlu import normalize  # imported here so that ``knowledge.schema`` users never load jieba

    return normalize(text).text


def default_tokenizer(text: str) -> list[str]:
    """The project's word segmentation (jieba with the property-domain dictionary)."""
    from nlu import tokenize

    return tokenize(text)


def basic_normalizer(text: str) -> str:
    """Width and case folding only: for tests and tools that inject their own tokenizer."""
    return unicodedata.normalize("NFKC", text).lower()


_SHARED: dict[tuple[object, ...], Analyzer] = {}
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 4


class Analyzer:
    """Normalises, folds synonyms and extracts features; caches per text.

    The cache matters: segmentation costs ~0.1–0.2 ms per phrasing, which is most of the time of
    building an index; rebuilding after staff edit one entry then only analyses the changed texts.
    Knowledge-base texts are also *encoded* against a vocabulary (feature → integer id) that only
    grows, so cached encodings stay valid and an index is assembled from arrays without touching
    strings. Owners' questions are never added to the vocabulary (it would grow without bound).
    """

    def __init__(
        self,
        synonyms: Iterable[Sequence[str]] = (),
        *,
        tokenizer: Tokenizer | None = None,
        normalizer: Normalizer | None = None,
        stopwords: Iterable[str] = STOPWORDS,
        cache_size: int = 50_000,
    ) -> None:
        self.tokenizer: Tokenizer = tokenizer or default_tokenizer
        self.normalizer: Normalizer = normalizer or default_normalizer
        self.stopwords = frozenset(stopwords)
        # Only knowledge-base texts are cached (by :meth:`encode`); owners' questions are not, or
        # a busy day of unique questions would push the knowledge base out of the cache.
        self._encoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_size = cache_size
        self.vocabulary: dict[str, int] = {}
        self._kinds: list[int] = []
        self.lock = threading.Lock()
        """Held while an index encodes texts: the vocabulary must grow one id at a time."""
        self.canonical: dict[str, str] = {}
        for group in synonyms:
            words = [self.normalizer(w) for w in group if w.strip()]
            if not words:
                continue
            for word in words:
                self.canonical.setdefault(word, words[0])
        # Canonical words are in the pattern too (mapping to themselves) on purpose: a listed word
        # that contains a shorter synonym (车位管理费 ⊃ 管理费 → 物业费) must win the longest-match
        # race, or parking fees would be folded into property fees.
        alternatives = sorted(self.canonical, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    @classmethod
    def shared(
        cls,
        synonyms: Iterable[Sequence[str]] = (),
        *,
        tokenizer: Tokenizer | None = None,
        normalizer: Normalizer | None = None,
        stopwords: Iterable[str] = STOPWORDS,
    ) -> Analyzer:
        """An analyser for this configuration, shared by every index built with it.

        Callers that rebuild the index from scratch after each edit (``KnowledgeIndex.build`` with
        the same synonyms) thereby reuse the analysis of every unchanged text without having to
        keep the old index around. A few configurations are kept, the least recently used dropped.
        """
        key = (
            tuple(tuple(group) for group in synonyms),
            tokenizer or default_tokenizer,
            normalizer or default_normalizer,
            frozenset(stopwords),
        )
        with _SHARED_LOCK:
            analyzer = _SHARED.pop(key, None)
            if analyzer is None:
                analyzer = cls(key[0], tokenizer=key[1], normalizer=key[2], stopwords=key[3])
            _SHARED[key] = analyzer  # re-inserted last: most recently used
            while len(_SHARED) > _SHARED_MAX:
                del _SHARED[next(iter(_SHARED))]
            return analyzer

    def fold(self, normalized: str) -> str:
        """Replace every synonym in already-normalised text by its canonical form."""
        if self._pattern is None:
            return normalized
        return self._pattern.sub(lambda m: self.canonical[m.group(0)], normalized)

    def prepare(self, text: str) -> str:
        """Normalised and folded text: what the features are computed from."""
        return self.fold(self.normalizer(text))

    def words(self, text: str) -> list[str]:
        """Content words of ``text`` after folding (stopwords and punctuation removed)."""
        return [
            w
            for w in self.tokenizer(self.prepare(text))
            if w not in self.stopwords and not w.isspace() and not _PUNCT_ONLY.match(w)
        ]

    def features(self, text: str, *, segment: bool = True) -> Counter[str]:
        """Feature counts of ``text``: ``w:`` words, ``b:`` character bigrams, ``u:`` characters.

        ``segment=False`` skips word segmentation (characters only): for long texts such as
        answers, where segmentation is most of the cost of building an index.
        """
        counts: Counter[str] = Counter()
        if segment:
            words = self.words(text)
            counts.update(map("w:".__add__, words))
        else:
            words = [self.prepare(text)]
        # Bigrams over the content words joined together: stopwords between two content words do
        # not break the pair (物业费的交法 ~ 物业费交法). Single characters catch typos that break
        # both bigrams around them (物叶费 still shares 物 and 费 with 物业费).
        for run in _CJK_RUN.findall("".join(words)):
            counts.update(map("b:".__add__, map(add, run, run[1:])))
            counts.update(map("u:".__add__, run))
        return counts

    def encode(self, text: str, *, segment: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(vocabulary ids, counts)`` of a knowledge-base text's features (cached; grows the vocabulary)."""
        key = text if segment else "\x00" + text
        cached = self._encoded.get(key)
        if cached is not None:
            return cached
        features = self.features(text, segment=segment)
        ids = np.fromiter((self._term_id(t) for t in features), dtype=np.int64, count=len(features))
        counts = np.fromiter(features.values(), dtype=np.float64, count=len(features))
        if len(self._encoded) >= self._cache_size:
            self._encoded.clear()  # crude but bounded; the next build refills it in one pass
        self._encoded[key] = (ids, counts)
        return ids, counts

    def lookup(self, features: Counter[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids, counts, kinds)`` of a question's features; unknown features get id -1."""
        n = len(features)
        ids = np.fromiter(map(self.vocabulary.get, features, repeat(-1, n)), dtype=np.int64, count=n)
        counts = np.fromiter(features.values(), dtype=np.float64, count=n)
        kinds = np.fromiter(map(_KIND_CODE.__getitem__, map(_FIRST, features)), dtype=np.int64, count=n)
        return ids, counts, kinds

    def kinds(self) -> np.ndarray:
        """The kind code (index into :data:`KINDS`) of every vocabulary id."""
        return np.array(self._kinds, dtype=np.int64)

    def _term_id(self, term: str) -> int:
        term_id = self.vocabulary.get(term)
        if term_id is None:
            term_id = self.vocabulary[term] = len(self._kinds)
            self._kinds.append(_KIND_CODE[term[0]])
        return term_id
