"""Training the intent classifier from the Rasa NLU YAML data (``yezhu nlu train``).

This module owns how the shipped model is made: normalise → cut courtesy → character n-gram TF-IDF →
multinomial logistic regression (scikit-learn, only at training time) → temperature calibration on
5-fold out-of-fold predictions → arrays written as ``.npz`` + ``.json`` (see :mod:`nlu.classifier`).
Deterministic for a given data set and seed; takes a few seconds.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nlu.classifier import MODEL_DIR, IntentClassifier, fallback_distribution
from nlu.courtesy import strip_courtesy
from nlu.data_io import TRAIN_DIR, Example, load_training_data
from nlu.features import FeatureConfig, extract_features
from nlu.features import coverage as features_coverage
from nlu.letters import strip_formulae
from nlu.normalize import normalize

__all__ = ["TrainReport", "train"]

C = 10.0            # inverse regularisation; chosen by 5-fold cross-validation on the training data (docs/NLU.md)
COVERAGE_FULL = 0.4  # bigram coverage at which the model is fully trusted (see nlu.features.coverage)
FOLDS = 5


@dataclass
class TrainReport:
    examples: int
    intents: dict[str, int]
    features: int
    seconds: float
    temperature: float
    cv_accuracy: float
    cv_macro_f1: float
    cv_ece_raw: float
    cv_ece_calibrated: float
    model_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


def prepare(text: str) -> str:
    """The text the classifier sees: normalised, courtesy cut (the same at run time)."""
    return strip_courtesy(strip_formulae(normalize(text).text))


def _build_vocabulary(counts: list[Counter[str]], min_df: int = 1) -> tuple[list[str], np.ndarray]:
    df: Counter[str] = Counter()
    for c in counts:
        df.update(c.keys())
    vocab = sorted(g for g, n in df.items() if n >= min_df)
    n_docs = len(counts)
    idf = np.array([math.log((1 + n_docs) / (1 + df[g])) + 1.0 for g in vocab], dtype=np.float32)
    return vocab, idf


def _matrix(counts: list[Counter[str]], index: dict[str, int], idf: np.ndarray) -> Any:
    from scipy.sparse import csr_matrix

    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, c in enumerate(counts):
        row_cols = []
        row_vals = []
        for gram, n in c.items():
            col = index.get(gram)
            if col is not None:
                row_cols.append(col)
                row_vals.append((1.0 + math.log(n)) * float(idf[col]))
        norm = math.sqrt(sum(v * v for v in row_vals)) or 1.0
        rows.extend([r] * len(row_cols))
        cols.extend(row_cols)
        vals.extend(v / norm for v in row_vals)
    return csr_matrix((vals, (rows, cols)), shape=(len(counts), len(index)), dtype=np.float64)


def _fit(counts: list[Counter[str]], labels: np.ndarray, n_classes: int, seed: int
         ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    vocab, idf = _build_vocabulary(counts)
    index = {g: i for i, g in enumerate(vocab)}
    x = _matrix(counts, index, idf)
    # saga: a fraction of a second here, where lbfgs needs ~10 s for the same optimum.
    model = LogisticRegression(C=C, solver="saga", tol=1e-3, max_iter=2000, class_weight="balanced",
                               random_state=seed)
    with warnings.catch_warnings():
        # A fold that stops a hair short of tol is still a usable fold; never let that abort training.
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        model.fit(x, labels)
    # scikit-learn drops classes absent from a fold; put the columns back in class order.
    weights = np.zeros((len(vocab), n_classes), dtype=np.float64)
    bias = np.full(n_classes, -30.0)
    if len(model.classes_) == 2:
        # Binary problems come back as one weight vector for the second class; split it into two
        # symmetric columns, which gives the same softmax.
        low, high = model.classes_
        weights[:, high], weights[:, low] = model.coef_[0] / 2, -model.coef_[0] / 2
        bias[high], bias[low] = model.intercept_[0] / 2, -model.intercept_[0] / 2
    else:
        for j, cls in enumerate(model.classes_):
            weights[:, cls] = model.coef_[j]
            bias[cls] = model.intercept_[j]
    return vocab, idf, weights, bias


def _ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            total += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(total)


def _macro_f1(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    f1s = []
    for k in range(n_classes):
        tp = float(((pred == k) & (labels == k)).sum())
        fp = float(((pred == k) & (labels != k)).sum())
        fn = float(((pred != k) & (labels == k)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def train(data: Path | None = None, out_dir: Path | None = None, seed: int = 13,
          calibrate: bool = True) -> TrainReport:
    """Train on every ``*.yml`` under ``data`` (default ``nlu/data/nlu``) and write the model to
    ``out_dir`` (default the shipped ``nlu/model``)."""
    started = time.perf_counter()
    data = data or TRAIN_DIR
    out_dir = out_dir or MODEL_DIR
    examples: list[Example] = load_training_data(data)
    if not examples:
        raise ValueError(f"no training examples under {data}")
    config = FeatureConfig(cues=True)
    classes = sorted({ex.intent for ex in examples})
    class_index = {c: i for i, c in enumerate(classes)}
    counts = [extract_features(prepare(ex.text), config) for ex in examples]
    labels = np.array([class_index[ex.intent] for ex in examples])

    temperature = 1.0
    stats: dict[str, float] = {"cv_accuracy": float("nan"), "cv_macro_f1": float("nan"),
                               "cv_ece_raw": float("nan"), "cv_ece_calibrated": float("nan")}
    if calibrate:
        temperature, stats = _calibrate(counts, labels, classes, seed)

    vocab, idf, weights, bias = _fit(counts, labels, len(classes), seed)
    digest = hashlib.sha256("\n".join(f"{e.intent}\t{e.text}" for e in examples).encode()).hexdigest()
    elapsed = time.perf_counter() - started
    clf = IntentClassifier(
        classes=classes, vocabulary=vocab, weights=weights.astype(np.float32), bias=bias, idf=idf,
        config=config, temperature=temperature, coverage_full=COVERAGE_FULL,
        metadata={
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "examples": len(examples),
            "data_sha256": digest,
            "C": C,
            "seed": seed,
            "train_seconds": round(elapsed, 2),
            **{k: round(v, 4) for k, v in stats.items()},
        },
    )
    clf.save(out_dir)
    return TrainReport(
        examples=len(examples), intents=dict(Counter(ex.intent for ex in examples)), features=len(vocab),
        seconds=time.perf_counter() - started, temperature=temperature, model_dir=out_dir,
        cv_accuracy=stats["cv_accuracy"], cv_macro_f1=stats["cv_macro_f1"], cv_ece_raw=stats["cv_ece_raw"],
        cv_ece_calibrated=stats["cv_ece_calibrated"],
    )


def _calibrate(counts: list[Counter[str]], labels: np.ndarray, classes: list[str], seed: int
               ) -> tuple[float, dict[str, float]]:
    """Temperature that minimises the log-loss of out-of-fold predictions (with the coverage shrink
    the run-time scorer applies), and the cross-validated figures that go with it."""
    from sklearn.model_selection import StratifiedKFold

    n_classes = len(classes)
    logits = np.zeros((len(labels), n_classes))
    coverage = np.zeros(len(labels))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for train_idx, test_idx in folds.split(np.zeros(len(labels)), labels):
        vocab, idf, weights, bias = _fit([counts[i] for i in train_idx], labels[train_idx], n_classes, seed)
        index = {g: i for i, g in enumerate(vocab)}
        x = _matrix([counts[i] for i in test_idx], index, idf)
        logits[test_idx] = x @ weights + bias
        coverage[test_idx] = [features_coverage(counts[i], index) for i in test_idx]

    fallback = fallback_distribution(classes)

    def probs(t: float) -> np.ndarray:
        z = logits / t
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        trust = np.minimum(1.0, coverage / COVERAGE_FULL)[:, None]
        return trust * p + (1.0 - trust) * fallback

    def nll(t: float) -> float:
        p = probs(t)
        return float(-np.mean(np.log(p[np.arange(len(labels)), labels] + 1e-12)))

    grid = np.exp(np.linspace(math.log(0.2), math.log(5.0), 61))
    best = float(min(grid, key=nll))
    raw, cal = probs(1.0), probs(best)
    pred = cal.argmax(axis=1)
    return best, {
        "cv_accuracy": float((pred == labels).mean()),
        "cv_macro_f1": _macro_f1(pred, labels, n_classes),
        "cv_ece_raw": _ece(raw, labels),
        "cv_ece_calibrated": _ece(cal, labels),
    }
