"""Evaluation on a Rasa NLU YAML file, reported the way ``rasa test nlu`` does.

This module owns the report files written to the output directory (default ``reports/nlu/``):

* ``intent_report.json`` — per intent ``precision``, ``recall``, ``f1-score``, ``support`` and
  ``confused_with``; plus ``accuracy``, ``macro avg``, ``weighted avg`` (Rasa's keys) and ``core
  macro avg`` over the five intents Yezhu's quality goal is stated for;
* ``intent_confusion_matrix.png`` — the confusion matrix (matplotlib, Agg backend: no display needed);
* ``intent_errors.json`` — every misclassified example, in Rasa's shape
  ``{"text", "intent", "intent_prediction": {"name", "confidence"}}``;
* ``intent_histogram.png`` — confidence of correct and wrong predictions;
* ``topic_report.json`` — when the examples carry a topic (``metadata: {topic: …}``): topic accuracy,
  per-topic precision/recall/support and the topic errors.

:func:`evaluate_emergencies` measures the emergency detector on the emergency/near-miss sets
(``nlu/data/emergency/*.yml``): recall per kind and the false-alarm rate.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlu.data_io import Example
from nlu.pipeline import Interpreter

__all__ = [
    "CORE_INTENTS", "EmergencyResult", "EvaluationResult", "evaluate", "evaluate_emergencies", "format_confusion",
    "format_emergencies", "format_table", "format_topics", "load_emergency_set", "write_report",
]

CORE_INTENTS: tuple[str, ...] = ("repair", "complaint", "inquiry", "certificate", "human")


@dataclass
class EvaluationResult:
    report: dict[str, Any]
    labels: list[str]
    matrix: list[list[int]]
    errors: list[dict[str, Any]]
    predictions: list[tuple[str, str, float]]  # (gold, predicted, confidence)
    topic_report: dict[str, Any] | None = None


@dataclass
class EmergencyResult:
    """Recall per kind (every emergency wording must be caught) and false alarms on near misses."""

    recall: dict[str, tuple[int, int]]  # kind -> (caught, total)
    missed: list[dict[str, Any]]
    false_alarms: list[dict[str, Any]]
    near_misses: int

    @property
    def caught(self) -> int:
        return sum(c for c, _ in self.recall.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.recall.values())

    @property
    def false_alarm_rate(self) -> float:
        return len(self.false_alarms) / self.near_misses if self.near_misses else 0.0


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def evaluate(examples: list[Example], interpreter: Interpreter) -> EvaluationResult:
    """Parse every example with the own model and compute Rasa-style intent metrics."""
    predictions: list[tuple[str, str, float]] = []
    errors: list[dict[str, Any]] = []
    topics: list[tuple[str, str | None, str]] = []  # (gold, predicted, text)
    for ex in examples:
        result = interpreter.parse(ex.text)
        predictions.append((ex.intent, result.intent, result.confidence))
        if ex.topic:
            topics.append((ex.topic, result.topic, ex.text))
        if result.intent != ex.intent:
            errors.append({"text": ex.text, "intent": ex.intent,
                           "intent_prediction": {"name": result.intent,
                                                 "confidence": round(result.confidence, 4)}})
    gold_labels = sorted({g for g, _, _ in predictions})
    labels = gold_labels + sorted({p for _, p, _ in predictions} - set(gold_labels))
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for gold, pred, _ in predictions:
        matrix[index[gold]][index[pred]] += 1

    report: dict[str, Any] = {}
    total = len(predictions)
    for label in gold_labels:
        i = index[label]
        tp = matrix[i][i]
        fp = sum(matrix[r][i] for r in range(len(labels))) - tp
        fn = sum(matrix[i]) - tp
        precision, recall, f1 = _prf(tp, fp, fn)
        confused = Counter({labels[j]: n for j, n in enumerate(matrix[i]) if j != i and n})
        report[label] = {"precision": precision, "recall": recall, "f1-score": f1, "support": sum(matrix[i]),
                         "confused_with": dict(confused.most_common(3))}
    report["accuracy"] = sum(matrix[i][i] for i in range(len(labels))) / total if total else 0.0
    report["macro avg"] = _average(report, gold_labels, weighted=False)
    report["weighted avg"] = _average(report, gold_labels, weighted=True)
    core = [label for label in CORE_INTENTS if label in report]
    if core:
        report["core macro avg"] = {**_average(report, core, weighted=False), "intents": core}
    return EvaluationResult(report, labels, matrix, errors, predictions, _topic_report(topics) if topics else None)


def _topic_report(topics: list[tuple[str, str | None, str]]) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    for label in sorted({g for g, _, _ in topics}):
        tp = sum(1 for g, p, _ in topics if g == label and p == label)
        fp = sum(1 for g, p, _ in topics if g != label and p == label)
        fn = sum(1 for g, p, _ in topics if g == label and p != label)
        precision, recall, f1 = _prf(tp, fp, fn)
        per[label] = {"precision": precision, "recall": recall, "f1-score": f1, "support": tp + fn}
    correct = sum(1 for g, p, _ in topics if g == p)
    return {
        "accuracy": correct / len(topics),
        "support": len(topics),
        "topics": per,
        "errors": [{"text": t, "topic": g, "topic_prediction": p} for g, p, t in topics if g != p],
    }


def load_emergency_set(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """An emergency set: ``emergencies: {kind: [text, …]}`` and ``near_misses: [text, …]``."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    emergencies = {str(k): [str(t) for t in v or []] for k, v in (data.get("emergencies") or {}).items()}
    return emergencies, [str(t) for t in data.get("near_misses") or []]


def evaluate_emergencies(paths: list[Path], interpreter: Interpreter) -> EmergencyResult:
    """Parse every wording of the sets through the interpreter (the ``urgency`` entity is what the
    dialogue sees) and count what was caught, missed and falsely alarmed."""
    recall: dict[str, tuple[int, int]] = {}
    missed: list[dict[str, Any]] = []
    alarms: list[dict[str, Any]] = []
    near = 0
    for path in paths:
        emergencies, near_misses = load_emergency_set(path)
        for kind, texts in emergencies.items():
            for text in texts:
                found = [e.value for e in interpreter.parse(text).entities_of("urgency")]
                caught, total = recall.get(kind, (0, 0))
                hit = kind in found
                recall[kind] = (caught + hit, total + 1)
                if not hit:
                    missed.append({"text": text, "kind": kind, "found": found, "file": path.name})
        for text in near_misses:
            near += 1
            found = [e.value for e in interpreter.parse(text).entities_of("urgency")]
            if found:
                alarms.append({"text": text, "found": found, "file": path.name})
    return EmergencyResult(recall, missed, alarms, near)


def format_emergencies(result: EmergencyResult) -> str:
    lines = [f"{'emergency kind':<18}{'caught':>8}{'total':>7}{'recall':>9}"]
    for kind, (caught, total) in result.recall.items():
        lines.append(f"{kind:<18}{caught:>8}{total:>7}{caught / total if total else 0.0:>9.3f}")
    lines.append(f"{'all':<18}{result.caught:>8}{result.total:>7}{result.caught / max(result.total, 1):>9.3f}")
    lines.append(f"false alarms on near misses: {len(result.false_alarms)}/{result.near_misses} "
                 f"({result.false_alarm_rate:.1%})")
    lines += [f"  MISSED {m['kind']}: {m['text']}" for m in result.missed]
    lines += [f"  FALSE ALARM {','.join(a['found'])}: {a['text']}" for a in result.false_alarms]
    return "\n".join(lines)


def _average(report: dict[str, Any], labels: list[str], *, weighted: bool) -> dict[str, float]:
    support = sum(report[label]["support"] for label in labels)
    out: dict[str, float] = {"support": support}
    for key in ("precision", "recall", "f1-score"):
        if weighted:
            out[key] = (sum(report[label][key] * report[label]["support"] for label in labels) / support
                        if support else 0.0)
        else:
            out[key] = sum(report[label][key] for label in labels) / len(labels) if labels else 0.0
    return out


def format_table(report: dict[str, Any]) -> str:
    """A plain-text summary table (one row per intent, then the averages)."""
    lines = [f"{'intent':<16}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>9}"]
    rows = [k for k, v in report.items() if isinstance(v, dict) and "confused_with" in v]
    for name in [*rows, "macro avg", "weighted avg", "core macro avg"]:
        row = report.get(name)
        if not row:
            continue
        if name == "macro avg":
            lines.append("-" * 55)
        lines.append(f"{name:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1-score']:>10.3f}"
                     f"{int(row['support']):>9}")
    lines.append(f"{'accuracy':<16}{report.get('accuracy', 0.0):>30.3f}")
    return "\n".join(lines)


def format_confusion(result: EvaluationResult) -> str:
    """The confusion matrix as text (rows: true intent, columns: predicted)."""
    short = [label[:6] for label in result.labels]
    lines = [" " * 13 + "".join(f"{s:>7}" for s in short)]
    for label, row in zip(result.labels, result.matrix, strict=True):
        lines.append(f"{label:<13}" + "".join(f"{n:>7}" for n in row))
    return "\n".join(lines)


def format_topics(topic_report: dict[str, Any]) -> str:
    lines = [f"{'topic':<22}{'precision':>10}{'recall':>10}{'support':>9}"]
    for name, row in topic_report["topics"].items():
        lines.append(f"{name:<22}{row['precision']:>10.3f}{row['recall']:>10.3f}{int(row['support']):>9}")
    lines.append(f"{'topic accuracy':<22}{topic_report['accuracy']:>20.3f}{topic_report['support']:>9}")
    return "\n".join(lines)


def write_report(result: EvaluationResult, out_dir: Path) -> list[Path]:
    """Write the report files; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "intent_report.json"
    report_path.write_text(json.dumps(result.report, ensure_ascii=False, indent=2), encoding="utf-8")
    errors_path = out_dir / "intent_errors.json"
    errors_path.write_text(json.dumps(result.errors, ensure_ascii=False, indent=2), encoding="utf-8")
    matrix_path = out_dir / "intent_confusion_matrix.png"
    histogram_path = out_dir / "intent_histogram.png"
    _plot(result, matrix_path, histogram_path)
    paths = [report_path, errors_path, matrix_path, histogram_path]
    if result.topic_report is not None:
        topic_path = out_dir / "topic_report.json"
        topic_path.write_text(json.dumps(result.topic_report, ensure_ascii=False, indent=2), encoding="utf-8")
        paths.append(topic_path)
    return paths


def _plot(result: EvaluationResult, matrix_path: Path, histogram_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    labels = result.labels
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 1.0 + 0.6 * len(labels)))
    image = ax.imshow(result.matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("true intent")
    ax.set_title("Intent confusion matrix")
    peak = max((max(row) for row in result.matrix), default=0)
    for i, row in enumerate(result.matrix):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                        color="white" if n > peak / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(matrix_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    correct = [c for g, p, c in result.predictions if g == p]
    wrong = [c for g, p, c in result.predictions if g != p]
    bins = [i / 20 for i in range(21)]
    ax.hist([correct, wrong], bins=bins, label=["correct", "wrong"], color=["#4c9f70", "#d1495b"], stacked=True)
    ax.set_xlabel("confidence")
    ax.set_ylabel("examples")
    ax.set_title("Intent prediction confidence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(histogram_path, dpi=110)
    plt.close(fig)
