"""Evaluate a critic on rated videos: per-dimension accuracy, macro-F1, majority baseline,
Spearman of soft scores with label values, expected calibration error, pairwise accuracy,
and a confusion table. ``lift-critic eval --model PATH --data ratings.jsonl``."""

from __future__ import annotations

from contract.protocol import CriticResult
from contract.sampling import FrameSampling
from critic.base import Critic, prepare_input
from critic.data.ratings import RatedVideo, read_ratings, video_path
from critic.rubrics import Rubric, get_rubric
from critic.train import metrics


def score_rows(critic: Critic, rows: list[RatedVideo], jsonl: str, rubric: Rubric, frames: int = 8,
               batch_size: int = 16) -> list[CriticResult]:
    """The critic's result for every row (its video, ``frames`` sampled uniformly, and its prompt), in order."""
    sampling = FrameSampling.uniform(frames)
    results = []
    for start in range(0, len(rows), batch_size):
        items = [prepare_input(video_path(r.video, jsonl), r.prompt, rubric, sampling) for r in rows[start : start + batch_size]]
        results.extend(critic.score(items))
    return results


def evaluate_rows(critic: Critic, rows: list[RatedVideo], jsonl: str, rubric: str | None = None, frames: int = 8,
                  baseline_rows: list[RatedVideo] | None = None, batch_size: int = 16) -> dict:
    """``rubric``: default, the critic's (the questions it was trained with)."""
    rub = get_rubric(rubric or critic.default_rubric)
    labels = [lab.name for lab in rub.labels]
    value = {lab.name: lab.value for lab in rub.labels}
    results = score_rows(critic, rows, jsonl, rub, frames, batch_size)
    report = {"n": len(rows), "rubric": rub.name, "dimensions": {}}
    for d in rub.dimensions:
        true = [r.ratings[d.name].label for r in rows]
        pred = [res.dimensions[d.name].label for res in results]
        soft = [res.dimensions[d.name].score for res in results]
        conf = [max(res.dimensions[d.name].probabilities.values()) for res in results]
        base_label, base_acc = metrics.majority_baseline(
            [r.ratings[d.name].label for r in (baseline_rows or rows)], true)
        report["dimensions"][d.name] = {
            "accuracy": metrics.accuracy(true, pred),
            "majority_baseline": {"label": base_label, "accuracy": base_acc},
            "macro_f1": metrics.macro_f1(true, pred, labels),
            "spearman": metrics.spearman(soft, [value[t] for t in true]),
            "ece": metrics.expected_calibration_error(conf, [t == p for t, p in zip(true, pred)]),
            "pairwise_accuracy": metrics.pairwise_accuracy([value[t] for t in true], soft),
            "confusion": metrics.confusion(true, pred, labels),
        }
    return report


def evaluate(critic: Critic, data: str, rubric: str | None = None, frames: int = 8, baseline: str | None = None) -> dict:
    rows = read_ratings(data)
    return evaluate_rows(critic, rows, data, rubric, frames, read_ratings(baseline) if baseline else None)
