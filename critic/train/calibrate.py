"""Temperature scaling of a trained critic's label probabilities: ``lift-critic calibrate``.

A critic's label probabilities are its confidence; a reward that uses them (the soft score, P(A > B)) is
only as honest as they are. A network trained to the labels is often more sure than right (Guo et al.,
"On Calibration of Modern Neural Networks", 2017). One number per dimension fixes most of it: the
temperature T that minimises the negative log-likelihood of held-out ratings under ``softmax(log p / T)``.
The label a critic answers never changes (the order of the probabilities stays), only how sure it says it is.

``calibrate(model_dir, data)`` scores the rated set with the checkpoint's own probabilities (any temperature
it already has switched off), fits each dimension's T on a log grid and writes them into the checkpoint's
``critic_config.json`` (``label_temperature``), which both VLM backends apply (``critic.vlm.trained_defaults``).
Fit it on a validation split, never on the set you report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from contract.errors import InvalidParameterError
from critic.base import temper
from critic.data.ratings import read_ratings
from critic.rubrics import get_rubric
from critic.train import metrics
from critic.train.evaluate import score_rows
from critic.vlm import CRITIC_CONFIG, VLMCritic

# log-spaced temperatures tried: 1/4 (sharpen four-fold) to 8 (nearly uniform over three labels)
GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 401))


def nll(probs: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels' indices ``truth``."""
    return float(-np.log(np.clip(probs[np.arange(len(truth)), truth], 1e-12, 1.0)).mean())


def fit_temperature(probs: np.ndarray, truth: np.ndarray) -> float:
    """The temperature on ``GRID`` with the least NLL of ``truth`` (ties: the one nearest 1)."""
    losses = np.array([nll(temper(probs, t), truth) for t in GRID])
    best = np.flatnonzero(losses <= losses.min() + 1e-12)
    return float(GRID[best[np.argmin(np.abs(np.log(GRID[best])))]])


def _ece(probs: np.ndarray, truth: np.ndarray) -> float:
    return metrics.expected_calibration_error(probs.max(axis=1).tolist(), (probs.argmax(axis=1) == truth).tolist())


def calibrate(critic: VLMCritic, model_dir: str | Path, data: str, frames: int = 8, write: bool = True) -> dict:
    """Fit every dimension's temperature on the rated set ``data`` and (``write``) store them in
    ``model_dir``'s critic_config.json; returns per dimension the temperature and NLL / ECE before and after."""
    config = Path(model_dir) / CRITIC_CONFIG
    if not isinstance(critic, VLMCritic) or not Path(model_dir).is_dir():
        raise InvalidParameterError(f"calibrate needs a VLM critic checkpoint directory (transformers or vllm "
                                    f"backend), got {model_dir!r}")
    rows = read_ratings(data)
    rubric = get_rubric(critic.default_rubric)
    labels = [lab.name for lab in rubric.labels]
    own, critic.label_temperature = critic.label_temperature, {}  # fit on the model's own probabilities
    try:
        results = score_rows(critic, rows, data, rubric, frames)
    finally:
        critic.label_temperature = own
    report = {"n": len(rows), "data": str(data), "rubric": rubric.name, "dimensions": {}}
    for d in rubric.dimensions:
        probs = np.array([[res.dimensions[d.name].probabilities[lab] for lab in labels] for res in results])
        truth = np.array([labels.index(r.ratings[d.name].label) for r in rows])
        t = fit_temperature(probs, truth)
        after = temper(probs, t)
        report["dimensions"][d.name] = {"temperature": round(t, 4), "nll": [nll(probs, truth), nll(after, truth)],
                                        "ece": [_ece(probs, truth), _ece(after, truth)]}
    if write:
        saved = json.loads(config.read_text()) if config.is_file() else {}
        saved["label_temperature"] = {d: m["temperature"] for d, m in report["dimensions"].items()}
        config.write_text(json.dumps(saved))
        critic.label_temperature = dict(saved["label_temperature"])
    return report
