"""Frame sampling: which decoded frames the critic looks at.

Four strategies, each deterministic (segmental sampling for a given seed):

- ``uniform``: N frames evenly spread over the whole clip (LiFT uses 8);
- ``fps``: one frame every 1/F seconds from the start;
- ``segments``: one frame at a seeded random offset inside each of K segments
  (InstructVideo's segmental sparse sampling), by one of two rules: ``cover`` splits the
  whole clip into K near-equal segments; ``tsn`` (VGen's, as InstructVideo trains with it)
  uses segments of span F // K from the start, so the tail F mod K frames are never drawn;
- ``all``: every decoded frame (what frame-difference metrics need).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from critic.errors import InvalidParameterError

Strategy = Literal["uniform", "fps", "segments", "all"]
SegmentRule = Literal["cover", "tsn"]
MAX_SAMPLED_FRAMES = 256


@dataclass(frozen=True)
class FrameSampling:
    strategy: Strategy = "uniform"
    frames: int = 8  # for "uniform"
    fps: float | None = None  # for "fps"
    segments: int = 4  # for "segments"
    seed: int = 0  # for "segments"
    rule: SegmentRule = "cover"  # for "segments"

    def __post_init__(self):
        if self.strategy not in ("uniform", "fps", "segments", "all"):
            raise InvalidParameterError(f"unknown frame sampling strategy {self.strategy!r}")
        if self.strategy == "uniform" and not 1 <= self.frames <= MAX_SAMPLED_FRAMES:
            raise InvalidParameterError(f"frames must be in [1, {MAX_SAMPLED_FRAMES}], got {self.frames}")
        if self.strategy == "fps" and (self.fps is None or not 0 < self.fps <= 240):
            raise InvalidParameterError(f"fps must be in (0, 240], got {self.fps}")
        if self.strategy == "segments" and not 1 <= self.segments <= MAX_SAMPLED_FRAMES:
            raise InvalidParameterError(f"segments must be in [1, {MAX_SAMPLED_FRAMES}], got {self.segments}")
        if self.rule not in ("cover", "tsn"):
            raise InvalidParameterError(f"unknown segment rule {self.rule!r}; use 'cover' or 'tsn'")

    @classmethod
    def uniform(cls, frames: int = 8) -> "FrameSampling":
        return cls("uniform", frames=frames)

    @classmethod
    def at_fps(cls, fps: float) -> "FrameSampling":
        return cls("fps", fps=fps)

    @classmethod
    def segmental(cls, segments: int = 4, seed: int = 0, rule: SegmentRule = "cover") -> "FrameSampling":
        return cls("segments", segments=segments, seed=seed, rule=rule)

    @classmethod
    def every_frame(cls) -> "FrameSampling":
        return cls("all")

    def describe(self) -> dict:
        keep = {"uniform": ("frames",), "fps": ("fps",), "segments": ("segments", "seed"), "all": ()}[self.strategy]
        if self.strategy == "segments" and self.rule != "cover":  # the default rule stays implicit
            keep = (*keep, "rule")
        d = asdict(self)
        return {"strategy": self.strategy, **{k: d[k] for k in keep}}

    def indices(self, num_frames: int, video_fps: float) -> list[int]:
        """Sorted, distinct frame indices into a clip of ``num_frames`` at ``video_fps``."""
        if num_frames <= 0:
            raise InvalidParameterError("cannot sample frames from an empty video")
        if self.strategy == "all":
            if num_frames > MAX_SAMPLED_FRAMES:
                raise InvalidParameterError(
                    f"'all' sampling would take {num_frames} frames; at most {MAX_SAMPLED_FRAMES} are allowed"
                )
            return list(range(num_frames))
        if self.strategy == "uniform":
            if self.frames >= num_frames:
                return list(range(num_frames))
            # midpoints of N equal spans: symmetric, and never two picks of one frame
            pos = (np.arange(self.frames) + 0.5) * num_frames / self.frames
            return [int(i) for i in np.floor(pos)]
        if self.strategy == "fps":
            step = video_fps / self.fps
            idx = sorted({int(round(k * step)) for k in range(int(np.ceil(num_frames / step)) + 1)})
            idx = [i for i in idx if i < num_frames]
            if len(idx) > MAX_SAMPLED_FRAMES:
                raise InvalidParameterError(
                    f"fps={self.fps} would take {len(idx)} frames; at most {MAX_SAMPLED_FRAMES} are allowed"
                )
            return idx
        # segments
        if self.segments > num_frames:
            raise InvalidParameterError(
                f"cannot take {self.segments} segments from a video of {num_frames} frames"
            )
        rng = np.random.default_rng(self.seed)
        if self.rule == "tsn":
            span = num_frames // self.segments
            return [int(k * span + rng.integers(span)) for k in range(self.segments)]
        bounds = np.linspace(0, num_frames, self.segments + 1)
        starts, ends = np.ceil(bounds[:-1]).astype(int), np.ceil(bounds[1:]).astype(int)
        return [int(rng.integers(s, max(e, s + 1))) for s, e in zip(starts, ends)]
