"""The critic contract: load once, take a batch, return exactly one result per input.

Knows nothing of serving. ``prepare_input`` turns a video (bytes or a path) into a
``ScoreInput`` (decode + sample); ``Critic.score`` checks and scores a batch of them.

Each rule is checked once on the way in. The request's rules (rubric kind, adapter,
aggregation) are ``ModelInfo.check`` against ``Critic.info()``: ``Critic.score`` runs it for
in-process callers, the service's ingress runs it where a request arrives. The model's own
rules (``check_input``: labels that tokenise apart, a frame count the aggregation needs) run in
``Critic.score``, or in the service's model deployment before an item joins a batch, which then
scores with ``score_checked``.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from contract.errors import InvalidParameterError
from contract.protocol import (
    MAX_PROMPT_CHARS,
    CompareResult,
    CriticResult,
    DimensionComparison,
    DimensionResult,
    ModelInfo,
)
from contract.sampling import FrameSampling
from contract.video import Video, VideoLimits, decode_sampled
from critic.rubrics import RUBRICS, Rubric, get_rubric
from critic.types import ScoreInput


def check_prompt(prompt: str) -> str:
    """The prompt as a critic reads it (stripped), or ``InvalidParameterError``."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameterError("prompt must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidParameterError(f"prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt.strip()


def prepare_input(
    video: bytes | str | os.PathLike | Video,
    prompt: str,
    rubric: str | Rubric,
    sampling: FrameSampling,
    limits: VideoLimits | None = None,
    adapter: str | None = None,
    max_side: int | None = None,
    *,
    aggregate: str | None = None,
    attenuation_lambda: float = 1.0,
) -> ScoreInput:
    """Decode (unless already decoded) and sample; every failure is a typed ``CriticError``.

    Only the sampled frames are decoded to RGB (see ``contract.video``), downscaled so no side passes
    ``max_side`` when the critic declares the input size it resizes to anyway.
    """
    prompt = check_prompt(prompt)
    rubric = get_rubric(rubric)
    t0 = time.perf_counter()
    if isinstance(video, Video):
        idx = sampling.indices(video.num_frames, video.fps)
        frames, count = video.frames[idx], video.num_frames
    else:
        sampled = decode_sampled(video, sampling.indices, limits, max_side)
        idx, frames, count = sampled.indices, sampled.frames, sampled.num_frames
    return ScoreInput(
        frames=frames,
        prompt=prompt,
        rubric=rubric,
        frame_indices=idx,
        sampling=sampling,
        decode_s=time.perf_counter() - t0,
        adapter=adapter,
        video_frames=count,
        aggregate=aggregate,
        attenuation_lambda=attenuation_lambda,
    )


class Critic(ABC):
    """A reward model over videos. Subclasses implement ``_score``."""

    kind: str  # the rubric kind this critic answers ("vlm" or "model-free")
    name: str
    version: str
    default_rubric: str
    default_sampling: FrameSampling
    input_side: int | None = None  # largest frame side the model keeps; callers may downscale to it while decoding
    takes_aggregate = False  # whether requests may choose how frame scores are aggregated

    def adapters(self) -> list[str]:
        """Names of the critic adapters this critic can score with."""
        return []

    def info(self) -> ModelInfo:
        """What this critic is and takes: the rules a request is checked against."""
        return ModelInfo(
            name=self.name, version=self.version, kind=self.kind, default_rubric=self.default_rubric,
            default_sampling=self.default_sampling, rubrics=sorted(n for n, r in RUBRICS.items() if r.critic == self.kind),
            adapters=self.adapters(), input_side=self.input_side, takes_aggregate=self.takes_aggregate,
        )

    def validate(self, item: ScoreInput) -> None:
        """Raise the typed error this item would cause: the request's rules, then the model's own."""
        self.info().check(item.rubric.name, item.rubric.critic, item.adapter, item.aggregate)
        self.check_input(item)

    def check_input(self, item: ScoreInput) -> None:
        """The model's own rules for an item whose request passed ``ModelInfo.check`` (none by default)."""

    def score(self, inputs: Sequence[ScoreInput]) -> list[CriticResult]:
        """Check and score a batch; returns exactly ``len(inputs)`` results, in order."""
        inputs = list(inputs)
        for item in inputs:
            self.validate(item)
        return self.score_checked(inputs)

    def score_checked(self, inputs: Sequence[ScoreInput]) -> list[CriticResult]:
        """Score a batch whose items were checked where they came in (``validate``)."""
        inputs = list(inputs)
        if not inputs:
            return []
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


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Label probabilities (along the last axis) at ``temperature``: ``softmax(log p / T)`` (Guo et al. 2017).
    Above 1 it spreads an over-confident critic's probabilities, below 1 it sharpens them; their order, and so
    the label, never changes."""
    p = np.asarray(probs, dtype=np.float64)
    if temperature != 1.0:
        p = np.power(p / p.max(axis=-1, keepdims=True), 1.0 / temperature)
    return p / p.sum(axis=-1, keepdims=True)


def dimension_result(rubric: Rubric, probs: np.ndarray, rationale: str | None,
                     temperature: float = 1.0) -> DimensionResult:
    """Hard label, probabilities and soft score from a probability vector over the rubric's labels, at
    ``temperature`` (``temper``)."""
    probs = temper(probs, temperature)
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
    overall = DimensionComparison(**{
        f: sum(d.weight * getattr(dims[d.name], f) for d in rubric.dimensions) / total
        for f in DimensionComparison.model_fields
    })
    return CompareResult(dimensions=dims, overall=overall, a=a, b=b)
