"""Frame sampling: which decoded frames the critic looks at. The one spec and its index rules.

Five strategies, each deterministic (segmental sampling for a given seed):

- ``uniform``: N frames at the midpoints of N equal spans of the clip;
- ``linspace``: LiFT's rule, ``np.linspace(0, n - 1, N, dtype=int)``: the first and last frames and
  N - 2 between (49 frames, N = 8: 0, 6, 13, 20, 27, 34, 41, 48);
- ``fps``: one frame every 1/F seconds from the start;
- ``segments``: one frame at a seeded random offset inside each of K segments
  (InstructVideo's segmental sparse sampling), by one of two rules: ``cover`` splits the
  whole clip into K near-equal segments; ``tsn`` (VGen's, as InstructVideo trains with it)
  uses segments of span F // K from the start, so the tail F mod K frames are never drawn;
- ``all``: every decoded frame (what frame-difference metrics need).

The same model is the request's ``sampling`` field (HTTP, gRPC, the CLI's flags), a rubric's
and a critic's default, and the ``sampling`` every result reports. It serializes to the fields
its strategy reads (``{"strategy": "uniform", "frames": 8}``), and reads back to an equal spec.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from contract.errors import InvalidParameterError

Strategy = Literal["uniform", "linspace", "fps", "segments", "all"]
SegmentRule = Literal["cover", "tsn"]
MAX_SAMPLED_FRAMES = 256

# the fields each strategy reads (a segments spec names its rule only when it is not the default)
_READS = {"uniform": ("frames",), "linspace": ("frames",), "fps": ("fps",), "segments": ("segments", "seed", "rule"),
          "all": ()}


class FrameSampling(BaseModel):
    """Which frames the critic looks at; absent fields take these defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"examples": [{"strategy": "uniform", "frames": 8}]})
    strategy: Strategy = Field("uniform", description="Sampling strategy.")
    frames: int = Field(8, ge=1, le=MAX_SAMPLED_FRAMES, description="uniform, linspace: number of frames.")
    fps: float | None = Field(None, gt=0, le=240, description="fps: frames per second to sample.")
    segments: int = Field(4, ge=1, le=MAX_SAMPLED_FRAMES, description="segments: number of segments (one frame each).")
    seed: int = Field(0, ge=0, description="segments: seed of the offsets.")
    rule: SegmentRule = Field("cover", description="segments: 'cover' spans the whole clip; 'tsn' (VGen) uses "
                              "spans of F // K frames from the start, never the tail.")

    @model_validator(mode="after")
    def _fps_needed(self):
        if self.strategy == "fps" and self.fps is None:
            raise ValueError("strategy 'fps' needs 'fps'")
        return self

    @model_serializer(mode="wrap")
    def _relevant(self, handler):
        d = handler(self)
        keep = [k for k in _READS[self.strategy] if not (k == "rule" and self.rule == "cover")]
        return {"strategy": d["strategy"], **{k: d[k] for k in keep}}

    @classmethod
    def uniform(cls, frames: int = 8) -> "FrameSampling":
        return cls(strategy="uniform", frames=frames)

    @classmethod
    def linspace(cls, frames: int = 8) -> "FrameSampling":
        return cls(strategy="linspace", frames=frames)

    @classmethod
    def at_fps(cls, fps: float) -> "FrameSampling":
        return cls(strategy="fps", fps=fps)

    @classmethod
    def segmental(cls, segments: int = 4, seed: int = 0, rule: SegmentRule = "cover") -> "FrameSampling":
        return cls(strategy="segments", segments=segments, seed=seed, rule=rule)

    @classmethod
    def every_frame(cls) -> "FrameSampling":
        return cls(strategy="all")

    def describe(self) -> dict:
        """The fields this strategy reads: what results report."""
        return self.model_dump()

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
        if self.strategy == "linspace":
            if self.frames >= num_frames:
                return list(range(num_frames))
            # LiFT-Critic/test/run_critic_13b.py L82 reads frames with VILA's opencv_extract_frames:
            # CodeGoat24/LiFT @a0d5e56 llava/mm_utils.py L56 np.linspace(0, frame_count - 1, num_frames, dtype=int),
            # every frame when the clip is shorter (L59, L71-80); distinct whenever N < n
            return [int(i) for i in np.linspace(0, num_frames - 1, self.frames, dtype=int)]
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
