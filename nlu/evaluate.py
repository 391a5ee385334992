"""Evaluation on a Rasa NLU YAML file, reported the way ``rasa test nlu`` does.

This module owns the report files written to the output directory (default ``reports/nlu/``):

* ``intent_report.json`` — per intent ``precision``, ``recall``, ``f1-score``, ``support`` and
  ``confused_with``; plus ``accuracy``, ``macro avg``, ``weighted avg`` (Rasa's keys) and ``core
  macro avg`` over the five intents Yezhu's quality goal is stated for;
* ``intent_confusion_matrix.png`` — the confusion matrix (matplotlib, Agg backend: no display needed);
* ``intent_errors.json`` — every misclassified example, in Rasa's shape
  ``{"text", "intent", "intent_prediction": {"name", "confidence"}}``;
* ``intent_histogram.png`` — confidence of correct and wrong predictions.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlu.data_io import Example
from nlu.pipeline import Interpreter

__all__ = ["CORE_INTENTS", "EvaluationResult", "evaluate", "format_table", "write_report"]

CORE_INTENTS: tuple[str, ...] = ("repair", "complaint", "inquiry", "certificate", "human")


@dataclass
class EvaluationResult:
    report: dict[str, Any]
    labels: list[str]
    matrix: list[list[int]]
    errors: list[dict[str, Any]]
    predictions: list[tuple[str, str, float]]  # (gold, predicted, confidence)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def evaluate(examples: list[Example], interpreter: Interpreter) -> EvaluationResult:
    """Parse every example with the own model and compute Rasa-style intent metrics."""
    predictions: list[tuple[str, str, float]] = []
    errors: list[dict[str, Any]] = []
    for ex in examples:
        result = interpreter.parse(ex.text)
        predictions.append((ex.intent, result.intent, result.confidence))
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
    return EvaluationResult(report, labels, matrix, errors, predictions)


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
    return [report_path, errors_path, matrix_path, histogram_path]


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
