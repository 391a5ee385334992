"""Evaluation of retrieval on a held-out paraphrase set (``data/paraphrases.yml``).

The set is written independently of the knowledge base's ``alternatives`` and is never indexed, so
the figures measure how well the bot understands owners who word things their own way. The file::

    project: demo                      # the project the questions are asked in
    questions:
      - {text: 物业废怎么交, expect: fee-payment}
    out_of_scope:                      # questions the knowledge base must not answer
      - 明天会下雨吗

Reported: top-1 and top-3 accuracy (is the expected entry ranked first / among the first three,
whatever the decision), how the decisions split (answered correctly, answered wrongly, offered as a
choice, unknown), the out-of-scope rejection rate (decision ``unknown``) and query latency.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from knowledge.retrieval import Answer, KnowledgeIndex
from knowledge.schema import KnowledgeFormatError, read_text

__all__ = ["EvalReport", "Miss", "ParaphraseSet", "evaluate", "load_paraphrases"]


@dataclass(frozen=True)
class ParaphraseSet:
    project: str | None
    questions: tuple[tuple[str, str], ...]
    """(text, expected entry id) pairs."""
    out_of_scope: tuple[str, ...]


@dataclass(frozen=True)
class Miss:
    """A question whose expected entry was not ranked first, or an out-of-scope question answered."""

    text: str
    expected: str | None
    got: str | None
    decision: str
    confidence: float


@dataclass
class EvalReport:
    n: int = 0
    top1: float = 0.0
    top3: float = 0.0
    answered_correct: float = 0.0
    """Share of in-scope questions answered (decision ``answered``) with the expected entry."""
    answered_wrong: float = 0.0
    """Share of in-scope questions answered with another entry: the costly error."""
    offered_choice: float = 0.0
    """Share of in-scope questions answered with numbered choices that include the expected entry."""
    unknown: float = 0.0
    n_out_of_scope: int = 0
    rejection: float = 0.0
    """Share of out-of-scope questions with decision ``unknown``."""
    oos_answered: float = 0.0
    """Share of out-of-scope questions answered outright (the embarrassing error)."""
    mean_ms: float = 0.0
    p95_ms: float = 0.0
    cpu_mean_ms: float = 0.0
    """Mean CPU time per question (wall time above suffers when the machine is busy)."""
    misses: list[Miss] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "misses"}
        data["misses"] = [m.__dict__ for m in self.misses]
        return data

    def format(self) -> str:
        """A human-readable summary, misses included."""
        lines = [
            f"in-scope questions:      {self.n}",
            f"top-1 accuracy:          {self.top1:.1%}",
            f"top-3 accuracy:          {self.top3:.1%}",
            f"answered correctly:      {self.answered_correct:.1%}",
            f"answered wrongly:        {self.answered_wrong:.1%}",
            f"offered as a choice:     {self.offered_choice:.1%}",
            f"unknown:                 {self.unknown:.1%}",
            f"out-of-scope questions:  {self.n_out_of_scope}",
            f"out-of-scope rejected:   {self.rejection:.1%}",
            f"out-of-scope answered:   {self.oos_answered:.1%}",
            f"query time:              mean {self.mean_ms:.2f} ms, p95 {self.p95_ms:.2f} ms (wall); "
            f"mean {self.cpu_mean_ms:.2f} ms (CPU)",
        ]
        if self.misses:
            lines.append("misses:")
            for m in self.misses:
                lines.append(
                    f"  {m.text}  expected={m.expected or '-'} got={m.got or '-'} "
                    f"decision={m.decision} confidence={m.confidence:.2f}"
                )
        return "\n".join(lines)


def load_paraphrases(path_or_text: str | Path) -> ParaphraseSet:
    """Load a paraphrase test file (format in the module docstring)."""
    text, source = read_text(path_or_text)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise KnowledgeFormatError([f"not valid YAML: {exc}"], source) from exc
    if not isinstance(data, dict):
        raise KnowledgeFormatError(["must be a mapping with 'questions' and 'out_of_scope'"], source)
    errors: list[str] = []
    questions: list[tuple[str, str]] = []
    for number, entry in enumerate(data.get("questions") or [], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str) or not entry.get("expect"):
            errors.append(f"question #{number}: needs 'text' and 'expect'")
            continue
        questions.append((entry["text"], str(entry["expect"])))
    oos = data.get("out_of_scope") or []
    if not all(isinstance(q, str) for q in oos):
        errors.append("out_of_scope: must be a list of strings")
    if errors:
        raise KnowledgeFormatError(errors, source)
    project = data.get("project")
    return ParaphraseSet(
        project=str(project) if project else None, questions=tuple(questions), out_of_scope=tuple(oos)
    )


def evaluate(
    index: KnowledgeIndex,
    path: str | Path | ParaphraseSet,
    *,
    project: str | None = None,
    threshold: float | None = None,
) -> EvalReport:
    """Run every question of the set through ``index.answer`` and summarise (see module docstring).

    ``project`` overrides the file's project. Expected ids missing from the index are an error: a
    renamed entry must not silently turn into a "miss".
    """
    data = path if isinstance(path, ParaphraseSet) else load_paraphrases(path)
    project = project if project is not None else data.project
    known = {item.id for item in index.items}
    unknown_ids = sorted({expected for _, expected in data.questions} - known)
    if unknown_ids:
        raise ValueError(f"paraphrase set expects entries the index lacks: {', '.join(unknown_ids)}")

    report = EvalReport(n=len(data.questions), n_out_of_scope=len(data.out_of_scope))
    timings: list[float] = []
    cpu: list[float] = []

    def ask(text: str) -> Answer:
        started, cpu_started = time.perf_counter(), time.thread_time()
        result = index.answer(text, project, k=3, threshold=threshold)
        timings.append((time.perf_counter() - started) * 1000.0)
        cpu.append((time.thread_time() - cpu_started) * 1000.0)
        return result

    counts = {"top1": 0, "top3": 0, "ok": 0, "wrong": 0, "choice": 0, "unknown": 0}
    for text, expected in data.questions:
        result = ask(text)
        ranked = [hit.item_id for hit in result.hits]
        got = ranked[0] if ranked else None
        counts["top1"] += got == expected
        counts["top3"] += expected in ranked[:3]
        if result.decision == "answered":
            counts["ok" if got == expected else "wrong"] += 1
        elif result.decision == "choices":
            counts["choice"] += expected in [hit.item_id for hit in result.choices]
        else:
            counts["unknown"] += 1
        if got != expected:
            report.misses.append(Miss(text, expected, got, result.decision, result.confidence))

    rejected = answered = 0
    for text in data.out_of_scope:
        result = ask(text)
        rejected += result.decision == "unknown"
        if result.decision != "unknown":
            answered += result.decision == "answered"
            report.misses.append(
                Miss(
                    text,
                    None,
                    result.best.item_id if result.best else None,
                    result.decision,
                    result.confidence,
                )
            )

    n = max(report.n, 1)
    report.top1 = counts["top1"] / n
    report.top3 = counts["top3"] / n
    report.answered_correct = counts["ok"] / n
    report.answered_wrong = counts["wrong"] / n
    report.offered_choice = counts["choice"] / n
    report.unknown = counts["unknown"] / n
    m = max(report.n_out_of_scope, 1)
    report.rejection = rejected / m
    report.oos_answered = answered / m
    if timings:
        report.mean_ms = statistics.fmean(timings)
        report.p95_ms = sorted(timings)[max(0, int(len(timings) * 0.95) - 1)]
        report.cpu_mean_ms = statistics.fmean(cpu)
    return report
