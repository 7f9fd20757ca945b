"""A critic that needs no weights: measurements from the pixels, in the same result shape.

Every metric maps a clip to a score in [0, 1]. Label probabilities are the linear
split of that score between the two neighbouring label values, so the soft score
(the expectation) equals the measured score exactly and ``compare`` works as for
the VLM critic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from contract.errors import InvalidParameterError, InvalidRubricError
from contract.protocol import CriticResult
from contract.sampling import FrameSampling
from critic.base import Critic, dimension_result
from critic.motion import FlowField, dynamic_degree_dis, is_static, motion_smoothness_dis, normalise
from critic.types import ScoreInput

MetricFn = Callable[[np.ndarray], tuple[float, str]]
# metrics on optical flow: they take the clip's FlowField too, so each flow is computed once per clip
FLOW_METRICS = frozenset({"temporal_flickering_dis", "motion_smoothness_dis", "dynamic_degree_dis"})
MIN_FRAMES = {"temporal_flickering": 2, "temporal_flickering_dis": 2, "dynamic_degree_dis": 2, "motion_magnitude": 2,
              "motion_smoothness_dis": 3}


def _luma(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _need_two(frames: np.ndarray, what: str) -> None:
    if frames.shape[0] < 2:
        raise InvalidParameterError(f"{what} needs at least 2 sampled frames, got {frames.shape[0]}")


def _frame_diffs(frames: np.ndarray) -> np.ndarray:
    """Mean absolute luma difference of each consecutive pair, in [0, 1], after giving every
    frame the clip's mean contrast and zero mean: a global brightness flicker is not motion."""
    y = _luma(frames)
    mean, std = y.mean(axis=(1, 2), keepdims=True), y.std(axis=(1, 2), keepdims=True)
    z = (y - mean) / (std + 1e-6) * std.mean()
    return np.abs(np.diff(z, axis=0)).mean(axis=(1, 2)) / 255.0


def temporal_flickering(frames: np.ndarray) -> tuple[float, str]:
    """VBench: mean over consecutive pairs of (255 - mean |f_i - f_i+1|) / 255 (RGB)."""
    _need_two(frames, "temporal_flickering")
    f = frames.astype(np.float32)
    mad = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    score = float(np.mean((255.0 - mad) / 255.0))
    return score, f"mean |frame difference| {mad.mean():.2f}/255 over {len(mad)} pairs"


def temporal_flickering_dis(frames: np.ndarray, flows: FlowField | None = None) -> tuple[float, str]:
    """VBench temporal flickering as VBench reports it: only for a clip its static filter (on DIS flow
    here) passes, min-max normalised. VBench does not score flickering on a clip that moves: 1.0."""
    _need_two(frames, "temporal_flickering_dis")
    static, why = is_static(frames, flows)
    if not static:
        return 1.0, f"moves, so flickering is not scored (VBench's static filter: {why})"
    raw, _ = temporal_flickering(frames)
    return normalise("temporal_flickering", raw), f"static ({why}); VBench raw {raw:.4f}"


def motion_magnitude(frames: np.ndarray, scale: float = 0.005) -> tuple[float, str]:
    """How much changes: 1 - exp(-mean contrast-normalised luma difference / scale); 0 for a frozen clip.
    Not VBench's dynamic degree (that is ``dynamic_degree_dis``): noise and flicker raise it too."""
    _need_two(frames, "motion_magnitude")
    m = _frame_diffs(frames)
    score = float(1.0 - np.exp(-m.mean() / scale))
    frozen = int((m < 1e-3).sum())
    return score, f"mean luma change {255 * m.mean():.2f}/255 per step; {frozen} of {len(m)} steps frozen"


def sharpness(frames: np.ndarray, scale: float = 100.0) -> tuple[float, str]:
    """var(Laplacian(luma)) / (var + scale)."""
    y = _luma(frames)
    lap = 4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2] - y[:, 1:-1, 2:]
    var = float(lap.var(axis=(1, 2)).mean())
    return var / (var + scale), f"Laplacian variance {var:.1f}"


def colourfulness(frames: np.ndarray, scale: float = 110.0) -> tuple[float, str]:
    """Hasler & Suesstrunk (2003), averaged over frames, divided by ``scale`` and clipped."""
    f = frames.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    std = np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2)
    mean = np.sqrt(rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2)
    c = float((std + 0.3 * mean).mean())
    return min(c / scale, 1.0), f"colourfulness {c:.1f}"


def brightness(frames: np.ndarray) -> tuple[float, str]:
    b = float(_luma(frames).mean() / 255.0)
    return b, f"mean luma {255 * b:.1f}/255"


# name -> metric. A model-free rubric may use any of these as dimension names.
METRICS: dict[str, MetricFn] = {
    "temporal_flickering": temporal_flickering,
    "temporal_flickering_dis": temporal_flickering_dis,
    "motion_smoothness_dis": motion_smoothness_dis,
    "dynamic_degree_dis": dynamic_degree_dis,
    "motion_magnitude": motion_magnitude,
    "sharpness": sharpness,
    "colourfulness": colourfulness,
    "brightness": brightness,
}


def interpolate_probabilities(score: float, values: list[float]) -> np.ndarray:
    """Split ``score`` linearly between its two neighbouring label values (expectation = score)."""
    v = np.asarray(values, dtype=np.float64)
    probs = np.zeros(len(v))
    s = float(np.clip(score, v.min(), v.max()))
    order = np.argsort(v)
    vs = v[order]
    hi = int(np.searchsorted(vs, s))
    if hi == 0 or vs[hi] == s:
        probs[order[hi]] = 1.0
    else:
        lo = hi - 1
        w = (s - vs[lo]) / (vs[hi] - vs[lo])
        probs[order[hi]], probs[order[lo]] = w, 1.0 - w
    return probs


class ModelFreeCritic(Critic):
    """Scores clips with ``METRICS``; the honest default when no model is given."""

    kind = "model-free"
    name = "model-free"
    version = "2"  # 2: VBench signals on DIS flow (critic/motion.py)
    default_rubric = "signal"
    default_sampling = FrameSampling.every_frame()

    def check_input(self, item: ScoreInput) -> None:
        unknown = [d.name for d in item.rubric.dimensions if d.name not in METRICS]
        if unknown:
            raise InvalidRubricError(f"model-free rubric {item.rubric.name!r} names unknown metrics {unknown}; "
                                     f"known: {sorted(METRICS)}")
        need = max((MIN_FRAMES.get(d.name, 1) for d in item.rubric.dimensions), default=1)
        if len(item.frames) < need:
            raise InvalidParameterError(f"rubric {item.rubric.name!r}'s temporal metrics need at least {need} sampled "
                                        f"frames, got {len(item.frames)}")

    def _score(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        results = []
        for item in inputs:
            t0 = time.perf_counter()
            dims = {}
            flows = FlowField(item.frames) if any(d.name in FLOW_METRICS for d in item.rubric.dimensions) else None
            for d in item.rubric.dimensions:
                extra = (flows,) if d.name in FLOW_METRICS else ()
                score, why = METRICS[d.name](item.frames, *extra)
                dims[d.name] = dimension_result(item.rubric, interpolate_probabilities(score, item.rubric.label_values), why)
            results.append(self.make_result(item, dims, {"model_s": time.perf_counter() - t0}))
        return results
