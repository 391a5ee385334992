"""Retrieval over the knowledge base: BM25 on words and characters, scoped by project.

How an owner's question is matched (docs/KNOWLEDGE.md has the why and the measured figures):

1. Features are jieba words, character bigrams and single characters of the normalised text after
   synonym folding (:mod:`knowledge.text`), each kind with its own weight.
2. Every phrasing of an entry (the question and each alternative) is a small BM25 document, and an
   entry first scores as its best-matching phrasing: each phrasing is one complete way of asking.
   To that are added, with lower weights, BM25 scores against the whole entry (all phrasings and
   tags as one bag — an owner may combine words from two alternatives) and against the answer
   (its vocabulary covers what the alternatives forgot: 支付宝, 刷脸 …).
3. Inverse document frequencies are counted over *entries*, not phrasings, so a word that eight
   alternatives of one entry repeat is not mistaken for a common word.

Confidence: a raw BM25 score means nothing on its own (it grows with the length of the question).
So a hit's score is divided by the query's *self-score* — what the query would score against a
document identical to itself, in every field, with words the index does not know weighted as the
rarest word. The ratio (clipped to 0..1; a question typed exactly like a stored phrasing gets about
1) says how much of what the owner wrote the entry explains; an out-of-scope question ("明天会下雨吗")
is mostly unknown words and scores low however the best entry happens to rank. The answer's
confidence then discounts the top hit's by how close the runner-up is: two entries that explain the
question equally well mean we do not know which one was meant.

Decision (:meth:`KnowledgeIndex.answer`): ``answered`` when the confidence reaches the threshold;
``choices`` when the best hit is plausible but the confidence is short of it (offer it and up to two
runners-up as numbered questions); ``unknown`` otherwise — the caller records the question for the
staff. The defaults were chosen on the development paraphrase set (``data/paraphrases_dev.yml``).
"""

from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from knowledge.schema import KnowledgeItem, load_synonyms, load_yaml
from knowledge.text import STOPWORDS, Analyzer, Normalizer, Tokenizer

__all__ = ["Answer", "Decision", "Hit", "KnowledgeIndex", "RetrievalConfig"]

Decision = Literal["answered", "choices", "unknown"]

_EMPTY = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


@dataclass(frozen=True)
class RetrievalConfig:
    """Tuning knobs; the defaults are chosen on the demo paraphrase set (docs/KNOWLEDGE.md)."""

    k1: float = 1.2
    b: float = 0.5
    """Length normalisation; phrasings are short and alike, so half strength does best."""
    word_weight: float = 1.0
    bigram_weight: float = 0.5
    unigram_weight: float = 0.5
    union_weight: float = 0.7
    """Weight of the whole entry (all phrasings and tags as one bag of features)."""
    answer_weight: float = 0.5
    segment_answers: bool = True
    """Segment answers into words (False: characters only; a third less first-build time, less accurate)."""
    threshold: float = 0.3
    """Minimum confidence for ``answered``."""
    choice_floor: float = 0.25
    """Minimum confidence of a hit to be offered as a numbered choice; below it: ``unknown``."""
    choice_ratio: float = 0.8
    """A runner-up scoring at least this share of the best score is "close" (lowers confidence)."""
    tie_discount: float = 1.0
    """How much of the confidence a tie with the runner-up takes away (1.0: all of it)."""
    choice_keep: float = 0.5
    """Runners-up scoring at least this share of the best score are offered with it."""
    max_choices: int = 3

    def feature_weights(self) -> tuple[float, float, float]:
        """Weight per feature kind, in the order of :data:`knowledge.text.KINDS` (w, b, u)."""
        return (self.word_weight, self.bigram_weight, self.unigram_weight)


@dataclass(frozen=True)
class Hit:
    """One candidate entry for a question."""

    item_id: str
    question: str
    answer: str
    score: float
    """Raw BM25 score (comparable only within one query)."""
    confidence: float
    """Share of the query this entry explains, 0..1 (score / query self-score)."""
    matched: str = ""
    """The phrasing (question or alternative) that matched best."""


_CHOICE_RE = re.compile(
    r"^\s*(?:选|选择|第)?\s*([1-9一二三四五六七八九])\s*(?:个|条|项|号)?\s*[.。、,，!！]*\s*$"
)
_CHOICE_DIGITS = {c: i for i, c in enumerate("一二三四五六七八九", 1)}


@dataclass(frozen=True)
class Answer:
    """What the knowledge base can say about one question."""

    query: str
    project: str | None
    decision: Decision
    confidence: float
    hits: tuple[Hit, ...] = ()
    """The best candidates, best first (at most ``k``), whatever the decision."""
    choices: tuple[Hit, ...] = ()
    """For ``choices``: the candidates to offer, in the order they are numbered (1, 2, 3)."""
    elapsed_ms: float = 0.0

    @property
    def best(self) -> Hit | None:
        return self.hits[0] if self.hits else None

    @property
    def answered(self) -> bool:
        return self.decision == "answered"

    def render(self) -> str:
        """The reply text for the owner (Chinese). For ``unknown`` the caller adds the hand-over."""
        if self.decision == "answered" and self.hits:
            return self.hits[0].answer
        if self.decision == "choices" and len(self.choices) == 1:
            return f"您是想咨询「{self.choices[0].question}」吗？回复 1 查看答案。"
        if self.decision == "choices":
            lines = ["您想咨询的是下面哪个问题？请回复序号："]
            lines += [f"{n}. {hit.question}" for n, hit in enumerate(self.choices, 1)]
            return "\n".join(lines)
        return "抱歉，这个问题我暂时没有找到准确的答案。"

    def pick(self, reply: str) -> Hit | None:
        """The choice an owner's reply selects ("2", "第二个", "②"), or ``None``."""
        # NFKC turns full-width and circled digits (２, ②) into ASCII ones.
        match = _CHOICE_RE.match(unicodedata.normalize("NFKC", reply))
        if not match or not self.choices:
            return None
        digit = match.group(1)
        number = _CHOICE_DIGITS[digit] if digit in _CHOICE_DIGITS else int(digit)
        return self.choices[number - 1] if number <= len(self.choices) else None


@dataclass(frozen=True)
class _Field:
    """One field's BM25 weights in compressed-row form: term id → (document indices, weights).

    Document indices are phrasing documents for the phrasing field and item numbers for the
    whole-entry and answer fields.
    """

    weight: float
    indptr: np.ndarray
    docs: np.ndarray
    weights: np.ndarray

    @classmethod
    def build(
        cls,
        weight: float,
        docs: Sequence[tuple[np.ndarray, np.ndarray]],
        idf: np.ndarray,
        kind_weight: np.ndarray,
        config: RetrievalConfig,
    ) -> tuple[_Field, float]:
        """The field over ``docs`` (``(ids, counts)`` per document) and its average length."""
        vocabulary_size = len(idf)
        lengths = np.fromiter((len(ids) for ids, _ in docs), dtype=np.int64, count=len(docs))
        if lengths.sum() == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(weight, np.zeros(vocabulary_size + 1, dtype=np.int64), empty, empty.astype(float)), 1.0
        ids = np.concatenate([d[0] for d in docs])
        tf = np.concatenate([d[1] for d in docs]) * kind_weight[ids]
        doc = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        keep = tf > 0  # features of a kind weighted 0 (e.g. unigrams switched off)
        ids, tf, doc = ids[keep], tf[keep], doc[keep]
        doc_len = np.bincount(doc, weights=tf, minlength=len(docs))
        avgdl = float(doc_len.mean()) or 1.0
        norm = config.k1 * (1.0 - config.b + config.b * doc_len[doc] / avgdl)
        weights = idf[ids] * tf * (config.k1 + 1.0) / (tf + norm)
        order = np.argsort(ids, kind="stable")
        indptr = np.zeros(vocabulary_size + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.bincount(ids, minlength=vocabulary_size))
        return cls(weight, indptr, doc[order], weights[order]), avgdl



@dataclass(frozen=True)
class _Postings:
    """All fields' postings in one compressed-row table, so that a query is scored in a few array
    operations whatever its number of terms (one numpy call per term and field cost ~3 µs each).

    A posting is a slot, its field's weight and its BM25 weight. Slots ``0 .. n_docs-1`` are phrasing
    documents; slot ``n_docs + i`` is item ``i``, which the whole-entry and answer fields add into.
    Within a term the postings run field by field in the index's field order, so every slot sums its
    contributions in query-term order, then field order: the same additions, in the same order, as
    adding field by field term by term. Term ids run to the vocabulary size inclusive: the last one
    has no postings and stands for every term the index does not know.
    """

    starts: np.ndarray
    lengths: np.ndarray
    slots: np.ndarray
    field_weights: np.ndarray
    weights: np.ndarray
    size: int

    @classmethod
    def combine(cls, fields: Sequence[tuple[_Field, int]], size: int) -> _Postings:
        """``fields`` as ``(field, first slot)`` pairs, in scoring order; ``size`` slots in all."""
        terms = np.concatenate([np.repeat(np.arange(len(f.indptr) - 1), np.diff(f.indptr)) for f, _ in fields])
        order = np.argsort(terms, kind="stable")  # by term; within a term, by field, then as built
        indptr = np.sum([f.indptr for f, _ in fields], axis=0)
        return cls(
            starts=indptr,  # indptr[-1] (past the last posting) is where the unknown term's none start
            lengths=np.append(np.diff(indptr), 0),
            slots=np.concatenate([f.docs + first for f, first in fields])[order],
            field_weights=np.concatenate([np.full(len(f.docs), f.weight) for f, _ in fields])[order],
            weights=np.concatenate([f.weights for f, _ in fields])[order],
            size=size,
        )

    def scores(self, term_ids: np.ndarray, query_weights: np.ndarray) -> np.ndarray:
        """Per slot the sum of field weight × query weight × BM25 weight over the query's terms."""
        starts = self.starts[term_ids]
        lengths = self.lengths[term_ids]
        ends = np.cumsum(lengths)
        # Positions of every posting of every query term, term by term in query order.
        positions = np.arange(int(ends[-1])) + np.repeat(starts - ends + lengths, lengths)
        values = self.field_weights[positions] * np.repeat(query_weights, lengths) * self.weights[positions]
        # bincount adds in the order of ``positions``: per slot, term by term (then field by field).
        return np.bincount(self.slots[positions], weights=values, minlength=self.size)


@dataclass
class KnowledgeIndex:
    """A search index over knowledge items; build with :meth:`build`, never mutate (rebuild instead).

    Safe to query from several threads; an index is replaced as a whole when entries change.
    """

    items: tuple[KnowledgeItem, ...]
    analyzer: Analyzer
    config: RetrievalConfig
    _idf: np.ndarray
    """Per term id of the vocabulary, then one more: the weight of a term the index does not know."""
    _kind_weight: np.ndarray
    _avgdl: float
    _postings: _Postings
    _self_factor: float
    """What "fully explained" scores: 1 + the weights of the fields added to the phrasing score."""
    _doc_text: tuple[str, ...]
    _item_starts: np.ndarray
    _masks: dict[str | None, np.ndarray] = field(default_factory=dict)
    build_seconds: float = 0.0

    # -----------------------------------------------------------------------------------------------
    # Building

    @classmethod
    def build(
        cls,
        items: Iterable[KnowledgeItem],
        synonyms: Iterable[Sequence[str]] = (),
        tokenizer: Tokenizer | None = None,
        *,
        normalizer: Normalizer | None = None,
        stopwords: Iterable[str] = STOPWORDS,
        config: RetrievalConfig | None = None,
        analyzer: Analyzer | None = None,
    ) -> KnowledgeIndex:
        """Index ``items``.

        ``tokenizer`` defaults to :func:`nlu.tokenize` and ``normalizer`` to :func:`nlu.normalize`;
        inject others for tests or tools. Indexes built with the same synonyms, tokenizer,
        normalizer and stopwords share one :class:`Analyzer` (:meth:`Analyzer.shared`), so building
        again after an edit only analyses the changed texts; pass ``analyzer`` to use another.
        """
        started = time.perf_counter()
        if analyzer is None:
            analyzer = Analyzer.shared(
                synonyms, tokenizer=tokenizer, normalizer=normalizer, stopwords=stopwords
            )
        config = config or RetrievalConfig()
        items = tuple(items)
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate knowledge ids: {', '.join(duplicates)}")

        # Analyse every text once (or take it from the analyser's cache) into vocabulary ids.
        phrasing_docs: list[tuple[np.ndarray, np.ndarray]] = []
        union_docs: list[tuple[np.ndarray, np.ndarray]] = []
        answer_docs: list[tuple[np.ndarray, np.ndarray]] = []
        doc_text: list[str] = []
        item_starts: list[int] = []
        with analyzer.lock:
            for item in items:
                item_starts.append(len(phrasing_docs))
                encoded = [analyzer.encode(text) for text in item.phrasings]
                phrasing_docs.extend(encoded)
                doc_text.extend(item.phrasings)
                # The whole entry: how many of its phrasings and tags carry each feature.
                bag = np.concatenate([e[0] for e in encoded] + [analyzer.encode(t)[0] for t in item.tags])
                terms, counts = np.unique(bag, return_counts=True)
                union_docs.append((terms, counts.astype(np.float64)))
                answer_docs.append(
                    analyzer.encode(item.answer, segment=config.segment_answers)
                    if config.answer_weight > 0
                    else _EMPTY
                )
            kind_weight = np.array(config.feature_weights(), dtype=np.float64)[analyzer.kinds()]

        # Document frequency over entries (not phrasings): in how many entries does a term occur?
        vocabulary_size = len(kind_weight)
        df = np.zeros(vocabulary_size, dtype=np.float64)
        for terms, _ in union_docs:
            df[terms] += 1.0
        for number, (terms, _) in enumerate(answer_docs):
            only_in_answer = np.setdiff1d(terms, union_docs[number][0], assume_unique=True)
            df[only_in_answer] += 1.0
        n_items = max(len(items), 1)
        # BM25's idf with +1 inside the log, so it is positive even for a word in every entry; a term
        # in none (df 0) gets the same weight as a word never seen, which is what it is here.
        idf = np.log1p((n_items - df + 0.5) / (df + 0.5))
        idf_unknown = math.log1p((n_items + 0.5) / 0.5)

        phrasings, avgdl = _Field.build(1.0, phrasing_docs, idf, kind_weight, config)
        fields = tuple(
            _Field.build(weight, docs, idf, kind_weight, config)[0]
            for weight, docs in ((config.union_weight, union_docs), (config.answer_weight, answer_docs))
            if weight > 0 and docs
        )
        n_docs = len(phrasing_docs)
        postings = _Postings.combine(
            [(phrasings, 0), *((fld, n_docs) for fld in fields)], size=n_docs + len(items)
        )
        index = cls(
            items=items,
            analyzer=analyzer,
            config=config,
            _idf=np.append(idf, idf_unknown),
            _kind_weight=np.array(config.feature_weights(), dtype=np.float64),
            _avgdl=avgdl,
            _postings=postings,
            _self_factor=1.0 + sum(fld.weight for fld in fields),
            _doc_text=tuple(doc_text),
            _item_starts=np.array(item_starts, dtype=np.int64),
        )
        index.build_seconds = time.perf_counter() - started
        return index

    def rebuild(self, items: Iterable[KnowledgeItem]) -> KnowledgeIndex:
        """A new index over ``items`` with the same analyser (and its cache) and configuration."""
        return type(self).build(items, analyzer=self.analyzer, config=self.config)

    def with_config(self, **changes: float | bool | int) -> KnowledgeIndex:
        """The same items indexed with some configuration values changed (for tuning)."""
        config = replace(self.config, **changes)  # type: ignore[arg-type]
        return type(self).build(self.items, analyzer=self.analyzer, config=config)

    @classmethod
    def from_files(
        cls,
        kb_path: str | Path,
        synonyms_path: str | Path | None = None,
        tokenizer: Tokenizer | None = None,
        *,
        normalizer: Normalizer | None = None,
        config: RetrievalConfig | None = None,
    ) -> KnowledgeIndex:
        """Index a knowledge-base YAML file (and a synonym file) directly."""
        synonyms = load_synonyms(synonyms_path) if synonyms_path else []
        return cls.build(load_yaml(kb_path), synonyms, tokenizer, normalizer=normalizer, config=config)

    # -----------------------------------------------------------------------------------------------
    # Querying

    def __len__(self) -> int:
        return len(self.items)

    def _mask(self, project: str | None) -> np.ndarray:
        mask = self._masks.get(project)
        if mask is None:
            mask = np.array([item.applies_to(project) for item in self.items], dtype=bool)
            self._masks[project] = mask
        return mask

    def _score(self, text: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Per item the ranking score, per phrasing its score, and the query's self-score.

        The self-score is the query's score against a document identical to itself, with words
        this index does not know weighted as the rarest word (see the module docstring).
        """
        cfg = self.config
        ids, counts, kinds = self.analyzer.lookup(self.analyzer.features(text))
        tf = counts * self._kind_weight[kinds]
        if min(cfg.feature_weights()) <= 0:  # drop the features of a kind weighted 0 (e.g. unigrams off)
            keep = tf > 0
            ids, counts, tf = ids[keep], counts[keep], tf[keep]
        n_docs = len(self._doc_text)
        if not len(ids) or not len(self.items):
            return np.zeros(len(self.items)), np.zeros(n_docs), 0.0
        # A word repeated in a run-on voice message should count a little more, not linearly more.
        query_weight = np.where(counts > 1, 1.0 + np.log(np.maximum(counts, 1.0)), 1.0)
        # Terms this index does not know (-1, or added to the shared vocabulary after it was built)
        # all take the last id: no postings, the unknown word's idf.
        unknown = len(self._idf) - 1
        terms = np.where((ids >= 0) & (ids < unknown), ids, unknown)
        scores = self._postings.scores(terms, query_weight)
        doc_scores, field_scores = scores[:n_docs], scores[n_docs:]
        idf = self._idf[terms]
        norm = cfg.k1 * (1.0 - cfg.b + cfg.b * tf.sum() / self._avgdl)
        self_score = float(np.sum(query_weight * idf * tf * (cfg.k1 + 1.0) / (tf + norm)))
        # The fields add to the phrasing score; a question identical to a phrasing scores about
        # (1 + field weights) × its self-score, so that is what "fully explained" means (≈ 1.0).
        self_score *= self._self_factor
        item_scores = np.maximum.reduceat(doc_scores, self._item_starts) + field_scores
        return item_scores, doc_scores, self_score

    def _best_phrasing(self, item_number: int, doc_scores: np.ndarray) -> str:
        """The phrasing of an item that matched best, to show why it was found."""
        start = int(self._item_starts[item_number])
        end = (
            int(self._item_starts[item_number + 1]) if item_number + 1 < len(self.items) else len(doc_scores)
        )
        return self._doc_text[start + int(np.argmax(doc_scores[start:end]))]

    def search(self, text: str, project: str | None = None, k: int = 3) -> list[Hit]:
        """The ``k`` best entries for ``text`` that apply to ``project``, best first.

        An entry with a non-empty ``projects`` list is only returned for one of those projects; with
        ``project=None`` (owner's project unknown) only entries for all projects are.
        """
        scores, doc_scores, self_score = self._score(text)
        if self_score <= 0:
            return []
        scores = np.where(self._mask(project), scores, -1.0)
        k = max(1, min(k, len(self.items)))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = []
        for item_number in top.tolist():
            score = float(scores[item_number])
            if score <= 0.0:
                break
            item = self.items[item_number]
            hits.append(
                Hit(
                    item_id=item.id,
                    question=item.question,
                    answer=item.answer,
                    score=round(score, 4),
                    confidence=round(min(1.0, score / self_score), 4),
                    matched=self._best_phrasing(item_number, doc_scores),
                )
            )
        return hits

    def answer(
        self, text: str, project: str | None = None, *, k: int = 3, threshold: float | None = None
    ) -> Answer:
        """Decide what to tell the owner: an answer, numbered choices, or "unknown" (see module doc)."""
        started = time.perf_counter()
        cfg = self.config
        threshold = cfg.threshold if threshold is None else threshold
        hits = tuple(self.search(text, project, k=max(k, cfg.max_choices)))
        confidence = _answer_confidence(hits, cfg.choice_ratio, cfg.tie_discount)
        decision: Decision = "unknown"
        choices: tuple[Hit, ...] = ()
        if hits and confidence >= threshold:
            decision = "answered"
        elif hits and hits[0].confidence >= cfg.choice_floor:
            # Plausible but not sure: let the owner pick. The best hit is always offered; others
            # only if they are plausible on their own and not far behind it.
            decision = "choices"
            choices = tuple(
                h
                for h in hits[: cfg.max_choices]
                if h is hits[0]
                or (h.confidence >= cfg.choice_floor and h.score >= cfg.choice_keep * hits[0].score)
            )
        return Answer(
            query=text,
            project=project,
            decision=decision,
            confidence=round(confidence, 4),
            hits=hits[:k],
            choices=choices,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
        )


def _answer_confidence(hits: Sequence[Hit], choice_ratio: float, tie_discount: float) -> float:
    """Top coverage, discounted when the runner-up is close (we cannot tell which was meant).

    The margin factor is 1 when the runner-up scores at most ``choice_ratio`` of the best, and falls
    linearly to ``1 - tie_discount`` when the two tie.
    """
    if not hits:
        return 0.0
    top = hits[0]
    if len(hits) == 1 or top.score <= 0:
        return top.confidence
    ratio = hits[1].score / top.score
    closeness = max(0.0, (ratio - choice_ratio) / (1.0 - choice_ratio))
    return top.confidence * (1.0 - tie_discount * closeness)
