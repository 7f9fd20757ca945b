"""The critic contract: load once, take a batch, return exactly one result per input.

Knows nothing of serving. ``prepare_input`` turns a video (bytes or a path) into a
``ScoreInput`` (decode + sample); ``Critic.score`` scores a batch of them.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from critic.errors import InvalidParameterError, InvalidRubricError, UnknownAdapterError
from critic.rubrics import Rubric, get_rubric
from critic.sampling import FrameSampling
from critic.types import CompareResult, CriticResult, DimensionComparison, DimensionResult, ScoreInput
from critic.video import Video, VideoLimits, decode_video

MAX_PROMPT_CHARS = 4000


def prepare_input(
    video: bytes | str | os.PathLike | Video,
    prompt: str,
    rubric: str | Rubric,
    sampling: FrameSampling,
    limits: VideoLimits | None = None,
    adapter: str | None = None,
) -> ScoreInput:
    """Decode (unless already decoded) and sample; every failure is a typed ``CriticError``."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameterError("prompt must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidParameterError(f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    rubric = get_rubric(rubric)
    t0 = time.perf_counter()
    decoded = video if isinstance(video, Video) else decode_video(video, limits)
    idx = sampling.indices(decoded.num_frames, decoded.fps)
    return ScoreInput(
        frames=decoded.frames[idx],
        prompt=prompt.strip(),
        rubric=rubric,
        frame_indices=idx,
        sampling=sampling.describe(),
        decode_s=time.perf_counter() - t0,
        adapter=adapter,
        video_frames=decoded.num_frames,
    )


class Critic(ABC):
    """A reward model over videos. Subclasses implement ``_score``."""

    kind: str  # the rubric kind this critic answers ("vlm" or "model-free")
    name: str
    version: str
    default_rubric: str
    default_sampling: FrameSampling
    takes_aggregate = False  # whether requests may choose how frame scores are aggregated

    def check_rubric(self, rubric: Rubric) -> None:
        if rubric.critic != self.kind:
            raise InvalidRubricError(
                f"rubric {rubric.name!r} is for the {rubric.critic} critic; this is the {self.kind} critic ({self.name})"
            )

    def adapters(self) -> list[str]:
        """Names of the critic adapters this critic can score with."""
        return []

    def validate(self, item: ScoreInput) -> None:
        """Raise the typed error this item would cause, before it joins a batch."""
        self.check_rubric(item.rubric)
        if item.adapter is not None and item.adapter not in self.adapters():
            raise UnknownAdapterError(f"adapter {item.adapter!r} is not loaded; available: {self.adapters()}")
        if item.aggregate is not None and not self.takes_aggregate:
            raise InvalidParameterError(f"the {self.kind} critic has no frame-score aggregation; drop 'aggregate'")

    def score(self, inputs: Sequence[ScoreInput]) -> list[CriticResult]:
        """Score a batch; returns exactly ``len(inputs)`` results, in order."""
        inputs = list(inputs)
        if not inputs:
            return []
        for item in inputs:
            self.validate(item)
        results = self._score(inputs)
        if len(results) != len(inputs):
            raise RuntimeError(f"{type(self).__name__} returned {len(results)} results for {len(inputs)} inputs")
        return results

    @abstractmethod
    def _score(self, inputs: list[ScoreInput]) -> list[CriticResult]: ...

    def compare(self, a: ScoreInput, b: ScoreInput) -> CompareResult:
        if a.rubric != b.rubric or a.adapter != b.adapter:
            raise InvalidParameterError("both videos of a comparison must use the same rubric and adapter")
        ra, rb = self.score([a, b])
        return compare_results(ra, rb, a.rubric)

    def make_result(self, item: ScoreInput, dims: dict[str, DimensionResult], timings: dict[str, float]) -> CriticResult:
        rubric = item.rubric
        values = {lab.name: lab.value for lab in rubric.labels}
        hard = {name: values[d.label] for name, d in dims.items()}
        soft = {name: d.score for name, d in dims.items()}
        return CriticResult(
            dimensions=dims,
            reward=rubric.reward(hard, soft),
            soft_reward=rubric.reward(hard, soft, source="score"),
            rubric=rubric.name,
            model=self.name,
            model_version=self.version,
            sampling=item.sampling,
            frame_indices=list(item.frame_indices),
            adapter=item.adapter,
            timings={"decode_s": item.decode_s, **timings},
        )


def dimension_result(rubric: Rubric, probs: np.ndarray, rationale: str | None) -> DimensionResult:
    """Hard label, probabilities and soft score from a probability vector over the rubric's labels."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()
    values = np.array(rubric.label_values)
    return DimensionResult(
        label=rubric.labels[int(np.argmax(probs))].name,
        probabilities={lab.name: float(p) for lab, p in zip(rubric.labels, probs)},
        score=float(probs @ values),
        rationale=rationale,
    )


def compare_probabilities(pa: np.ndarray, pb: np.ndarray, values: Sequence[float]) -> DimensionComparison:
    """P(A > B), P(B > A), P(tie) for independent label distributions over ``values``."""
    v = np.asarray(values, dtype=np.float64)
    joint = np.outer(pa, pb)
    gt, lt = v[:, None] > v[None, :], v[:, None] < v[None, :]
    p_a, p_b = float(joint[gt].sum()), float(joint[lt].sum())
    return DimensionComparison(p_a_better=p_a, p_b_better=p_b, p_tie=max(0.0, 1.0 - p_a - p_b))


def compare_results(a: CriticResult, b: CriticResult, rubric: Rubric) -> CompareResult:
    """Per-dimension and overall (weighted by the rubric's dimension weights) preference."""
    labels = [lab.name for lab in rubric.labels]
    dims = {}
    for d in rubric.dimensions:
        pa = np.array([a.dimensions[d.name].probabilities[lab] for lab in labels])
        pb = np.array([b.dimensions[d.name].probabilities[lab] for lab in labels])
        dims[d.name] = compare_probabilities(pa, pb, rubric.label_values)
    total = sum(d.weight for d in rubric.dimensions)
    overall = DimensionComparison(
        *(
            sum(d.weight * getattr(dims[d.name], f) for d in rubric.dimensions) / total
            for f in ("p_a_better", "p_b_better", "p_tie")
        )
    )
    return CompareResult(dimensions=dims, overall=overall, a=a, b=b)
