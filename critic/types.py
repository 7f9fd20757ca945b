"""What goes into a critic: a decoded, sampled video with its prompt and rubric.

What comes out (``CriticResult``, ``CompareResult``) is part of the wire contract: ``contract.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.sampling import FrameSampling
from critic.rubrics import Rubric


@dataclass
class ScoreInput:
    """One video, already decoded and sampled, with its prompt and the rubric to apply."""

    frames: np.ndarray  # (N, H, W, 3) uint8: the sampled frames, in order
    prompt: str
    rubric: Rubric
    frame_indices: list[int]
    sampling: FrameSampling
    decode_s: float = 0.0  # time spent decoding + sampling, reported in timings
    adapter: str | None = None  # critic adapter to score with (None: the base critic)
    video_frames: int = 0  # frames in the whole decoded video (0: unknown)
    aggregate: str | None = None  # image-reward: how frame scores become the reward (None: the critic's default)
    attenuation_lambda: float = 1.0  # image-reward: lambda of the temporal attenuation
