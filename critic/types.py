"""What goes into a critic and what comes out: plain dataclasses, JSON-ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from critic.rubrics import Rubric


@dataclass
class ScoreInput:
    """One video, already decoded and sampled, with its prompt and the rubric to apply."""

    frames: np.ndarray  # (N, H, W, 3) uint8: the sampled frames, in order
    prompt: str
    rubric: Rubric
    frame_indices: list[int]
    sampling: dict
    decode_s: float = 0.0  # time spent decoding + sampling, reported in timings
    adapter: str | None = None  # critic adapter to score with (None: the base critic)
    video_frames: int = 0  # frames in the whole decoded video (0: unknown)
    aggregate: str | None = None  # image-reward: how frame scores become the reward (None: the critic's default)
    attenuation_lambda: float = 1.0  # image-reward: lambda of the temporal attenuation


@dataclass
class DimensionResult:
    label: str  # the hard label: argmax of ``probabilities``
    probabilities: dict[str, float]  # one entry per rubric label, summing to 1
    score: float  # soft score: expectation of the label values under ``probabilities``
    rationale: str | None = None


@dataclass
class CriticResult:
    dimensions: dict[str, DimensionResult]
    reward: float
    soft_reward: float
    rubric: str
    model: str
    model_version: str
    sampling: dict
    frame_indices: list[int]
    adapter: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    frame_scores: dict[str, list[float]] | None = None  # per dimension, one score per sampled frame (image-reward)
    aggregation: dict | None = None  # how frame_scores became the scores: method, attenuation_lambda, num_frames

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DimensionComparison:
    p_a_better: float
    p_b_better: float
    p_tie: float


@dataclass
class CompareResult:
    dimensions: dict[str, DimensionComparison]
    overall: DimensionComparison
    a: CriticResult
    b: CriticResult

    def to_dict(self) -> dict:
        return asdict(self)
