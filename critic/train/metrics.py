"""Evaluation metrics of a critic against rated videos, in plain numpy (checked by hand in tests)."""

from __future__ import annotations

from collections import Counter

import numpy as np


def accuracy(true: list[str], pred: list[str]) -> float:
    return float(np.mean([t == p for t, p in zip(true, pred)])) if true else 0.0


def macro_f1(true: list[str], pred: list[str], labels: list[str]) -> float:
    """Mean F1 over the labels that occur in ``true`` or ``pred``."""
    scores = []
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(true, pred))
        fp = sum(t != lab and p == lab for t, p in zip(true, pred))
        fn = sum(t == lab and p != lab for t, p in zip(true, pred))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for v in np.unique(x):
        idx = x == v
        ranks[idx] = ranks[idx].mean()
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    a, b = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def expected_calibration_error(confidence: list[float], correct: list[bool], bins: int = 10) -> float:
    """ECE: sum over confidence bins of |accuracy - mean confidence| weighted by bin share."""
    conf, corr = np.asarray(confidence, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if idx.any():
            ece += idx.mean() * abs(corr[idx].mean() - conf[idx].mean())
    return float(ece)


def pairwise_accuracy(true_values: list[float], scores: list[float]) -> float:
    """Over all pairs whose true values differ: the share the scores order the same way (ties count half)."""
    t, s = np.asarray(true_values, float), np.asarray(scores, float)
    dt = np.sign(t[:, None] - t[None, :])
    ds = np.sign(s[:, None] - s[None, :])
    mask = np.triu(dt != 0, 1)
    if not mask.any():
        return 0.0
    agree = (dt == ds)[mask].sum() + 0.5 * (ds == 0)[mask].sum()
    return float(agree / mask.sum())


def confusion(true: list[str], pred: list[str], labels: list[str]) -> dict[str, dict[str, int]]:
    """rows: true label; columns: predicted label."""
    c = Counter(zip(true, pred))
    return {t: {p: c[(t, p)] for p in labels} for t in labels}


def majority_baseline(train_labels: list[str], test_labels: list[str]) -> tuple[str, float]:
    label = Counter(train_labels).most_common(1)[0][0]
    return label, accuracy(test_labels, [label] * len(test_labels))


def format_confusion(table: dict[str, dict[str, int]]) -> str:
    labels = list(table)
    width = max(8, *(len(lab) + 2 for lab in labels))
    head = "true \\ pred".ljust(12) + "".join(lab.rjust(width) for lab in labels)
    rows = [t.ljust(12) + "".join(str(table[t][p]).rjust(width) for p in labels) for t in labels]
    return "\n".join([head, *rows])
