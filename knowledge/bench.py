"""Build and query timings of the knowledge index at a given size (``knowledge.cli bench``).

The synthetic knowledge base repeats the demo entries with a distinct suffix per copy (``…17号``), so
every text is new to the analyser and nothing is served from its cache unless the step says so.
Both wall time and this thread's CPU time are reported: on a shared, busy machine wall time measures
the neighbours as much as the code.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knowledge.retrieval import KnowledgeIndex, RetrievalConfig
from knowledge.schema import KnowledgeItem
from knowledge.text import Analyzer, default_tokenizer

__all__ = ["BenchReport", "benchmark", "synthetic_items"]

QUERIES = ("物业费怎么交", "房本什么时候能领", "装修押金多少钱", "门卡丢了怎么办", "明天会下雨吗", "停车")


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall * 1000:.0f} ms wall, {self.cpu * 1000:.0f} ms CPU"


@dataclass(frozen=True)
class BenchReport:
    entries: int
    phrasings: int
    cold_build: Timing
    """First build: every text normalised and segmented (nlu), then the index assembled."""
    rebuild: Timing
    """Rebuild after one entry changed, reusing the analyser's per-text cache (what an edit costs)."""
    cold_build_char_answers: Timing
    """First build with ``segment_answers=False`` (answers indexed by characters only)."""
    query_wall_ms: tuple[float, float, float]
    """Per question (segmentation included): median, p95, max wall milliseconds."""
    query_cpu_ms: float
    """Mean CPU milliseconds per question."""

    def format(self) -> str:
        p50, p95, worst = self.query_wall_ms
        return "\n".join(
            [
                f"entries: {self.entries} ({self.phrasings} phrasings)",
                f"cold build:              {self.cold_build}",
                f"rebuild after one edit:  {self.rebuild}",
                f"cold build, answers as characters only: {self.cold_build_char_answers}",
                f"query:                   median {p50:.2f} ms, p95 {p95:.2f} ms, max {worst:.2f} ms wall; "
                f"mean {self.query_cpu_ms:.2f} ms CPU",
            ]
        )


def synthetic_items(base: Sequence[KnowledgeItem], n: int) -> list[KnowledgeItem]:
    """``n`` distinct entries made from ``base``."""
    items = []
    for number in range(n):
        item = base[number % len(base)]
        suffix = f"{number}号"
        items.append(
            item.model_copy(
                update={
                    "id": f"e{number}",
                    "question": item.question + suffix,
                    "alternatives": tuple(a + suffix for a in item.alternatives),
                    "answer": item.answer + suffix,
                }
            )
        )
    return items


def _timed(action: Callable[[], KnowledgeIndex]) -> tuple[KnowledgeIndex, Timing]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = action()
    return result, Timing(time.perf_counter() - wall, time.thread_time() - cpu)


def benchmark(
    base: Sequence[KnowledgeItem], synonyms: Sequence[Sequence[str]], n: int = 1000, rounds: int = 50
) -> BenchReport:
    """Time building an index of ``n`` entries and answering questions against it."""
    default_tokenizer("预热")  # load jieba's dictionary first: a one-off cost of the process
    items = synthetic_items(base, n)
    index, cold = _timed(lambda: KnowledgeIndex.build(items, analyzer=Analyzer(synonyms)))
    edited = [*items[:-1], items[-1].model_copy(update={"answer": "新的答案"})]
    _, rebuild = _timed(lambda: index.rebuild(edited))
    fresh = Analyzer(synonyms)  # not the shared one: nothing cached
    _, char_answers = _timed(
        lambda: KnowledgeIndex.build(items, analyzer=fresh, config=RetrievalConfig(segment_answers=False))
    )
    walls: list[float] = []
    cpu_started = time.thread_time()
    for round_number in range(rounds):
        for question in QUERIES:
            started = time.perf_counter()
            index.answer(f"{question}{round_number}", "demo")  # a new text each time: no cache
            walls.append((time.perf_counter() - started) * 1000.0)
    cpu_ms = (time.thread_time() - cpu_started) * 1000.0 / len(walls)
    walls.sort()
    return BenchReport(
        entries=len(items),
        phrasings=sum(len(i.phrasings) for i in items),
        cold_build=cold,
        rebuild=rebuild,
        cold_build_char_answers=char_answers,
        query_wall_ms=(statistics.median(walls), walls[int(len(walls) * 0.95) - 1], walls[-1]),
        query_cpu_ms=cpu_ms,
    )
