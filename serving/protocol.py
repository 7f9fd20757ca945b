"""Request and response schemas for every transport. Pydantic only: no torch, no Ray."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_STRICT = ConfigDict(extra="forbid")
_EXAMPLE = {"prompt": "a red ball rolls across the grass", "video_path": "/data/videos/ball.mp4",
            "sampling": {"strategy": "uniform", "frames": 8}, "request_id": "run7-step120-3"}


def _strict(*examples: dict) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


Aggregate = Literal["mean", "attenuated", "attenuated_normalized"]
_AGGREGATE = ("image-reward critics: how per-frame scores become the reward: 'mean', 'attenuated' (VGen: mean of "
              "exp(-lambda*|i - F//2|) * score) or 'attenuated_normalized' (divided by the weights' sum); "
              "default: the critic's.")
_LAMBDA = "image-reward critics: lambda of the temporal attenuation."


class Sampling(BaseModel):
    """Which frames the critic looks at; absent fields take the critic's default."""

    model_config = _STRICT
    strategy: Literal["uniform", "linspace", "fps", "segments", "all"] = Field("uniform", description="Sampling strategy.")
    frames: int = Field(8, ge=1, le=256, description="uniform, linspace: number of frames.")
    fps: float | None = Field(None, gt=0, le=240, description="fps: frames per second to sample.")
    segments: int = Field(4, ge=1, le=256, description="segments: number of segments (one frame each).")
    seed: int = Field(0, ge=0, description="segments: seed of the offsets.")
    rule: Literal["cover", "tsn"] = Field("cover", description="segments: 'cover' spans the whole clip; 'tsn' "
                                          "(VGen) uses spans of F // K frames from the start, never the tail.")

    @model_validator(mode="after")
    def _fps_needed(self):
        if self.strategy == "fps" and self.fps is None:
            raise ValueError("strategy 'fps' needs 'fps'")
        return self


class ScoreRequest(BaseModel):
    """One video and its prompt. Exactly one of ``video_b64`` / ``video_path`` (multipart carries the file)."""

    model_config = _strict(_EXAMPLE, {"prompt": "two cats play", "video_b64": "AAAAIGZ0eXBpc29t..."})
    prompt: str = Field(min_length=1, max_length=4000, description="The text the video was generated from.")
    video_b64: str | None = Field(None, description="The video file, base64-encoded (JSON requests).")
    video_path: str | None = Field(None, description="A file under one of the service's allowed directories.")
    rubric: str | None = Field(None, max_length=200, description="Registered rubric name; default: the critic's.")
    sampling: Sampling | None = Field(None, description="Frame sampling; default: the critic's.")
    request_id: str | None = Field(None, max_length=200, description="Idempotency key, scoped to the caller's "
                                   "API key: a retry with the same id and content returns the first result instead "
                                   "of scoring again; the same id with other content is a 409.")
    adapter: str | None = Field(None, max_length=200, description="Critic adapter to use (multiplexed critics).")
    aggregate: Aggregate | None = Field(None, description=_AGGREGATE)
    attenuation_lambda: float = Field(1.0, ge=0, le=1000, description=_LAMBDA)


class BatchScoreRequest(BaseModel):
    model_config = _strict({"items": [_EXAMPLE, {**_EXAMPLE, "request_id": "run7-step120-4"}]})
    items: list[ScoreRequest] = Field(min_length=1, max_length=256)


class CompareRequest(BaseModel):
    """Two videos of one prompt. Exactly one of ``*_b64`` / ``*_path`` per video (or multipart files)."""

    model_config = _strict({"prompt": _EXAMPLE["prompt"], "video_a_path": "/data/videos/a.mp4",
                            "video_b_path": "/data/videos/b.mp4"})
    prompt: str = Field(min_length=1, max_length=4000)
    video_a_b64: str | None = None
    video_a_path: str | None = None
    video_b_b64: str | None = None
    video_b_path: str | None = None
    rubric: str | None = None
    sampling: Sampling | None = None
    request_id: str | None = Field(None, max_length=200)
    adapter: str | None = Field(None, max_length=200)
    aggregate: Aggregate | None = Field(None, description=_AGGREGATE)
    attenuation_lambda: float = Field(1.0, ge=0, le=1000, description=_LAMBDA)


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. 'invalid_video'.")
    message: str
    request_id: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """The one error body every failure returns, over HTTP and (as JSON in details) gRPC."""

    error: ErrorInfo


class DimensionResult(BaseModel):
    """One rubric dimension (mirrors ``critic.types.DimensionResult``)."""

    label: str = Field(description="The hard label: argmax of probabilities.")
    probabilities: dict[str, float] = Field(description="One entry per rubric label, summing to 1.")
    score: float = Field(description="Soft score: expectation of the label values under probabilities.")
    rationale: str | None = Field(None, description="The critic's short explanation, when it gives one.")


class ScoreResult(BaseModel):
    """The critic's result for one video (mirrors ``critic.types.CriticResult``)."""

    dimensions: dict[str, DimensionResult]
    reward: float = Field(description="Reward from the hard labels, in [0, 1].")
    soft_reward: float = Field(description="Reward from the label probabilities, in [0, 1].")
    rubric: str
    model: str
    model_version: str
    sampling: dict[str, Any] = Field(description="The frame sampling that was applied.")
    frame_indices: list[int]
    adapter: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    frame_scores: dict[str, list[float]] | None = Field(None, description="image-reward critics: per dimension, "
                                                         "one score per sampled frame, in frame_indices order.")
    aggregation: dict[str, Any] | None = Field(None, description="image-reward critics: how frame_scores became the "
                                               "scores (method, attenuation_lambda, num_frames).")


class DimensionComparison(BaseModel):
    p_a_better: float
    p_b_better: float
    p_tie: float


class CompareResult(BaseModel):
    """Mirrors ``critic.types.CompareResult``."""

    dimensions: dict[str, DimensionComparison]
    overall: DimensionComparison
    a: ScoreResult
    b: ScoreResult


class ScoreResponse(BaseModel):
    request_id: str
    result: ScoreResult
    timings: dict[str, float]


class BatchItem(BaseModel):
    """Exactly one of ``result`` / ``error``."""

    request_id: str
    result: ScoreResult | None = None
    error: ErrorInfo | None = None


class BatchScoreResponse(BaseModel):
    items: list[BatchItem]


class CompareResponse(BaseModel):
    request_id: str
    result: CompareResult
    timings: dict[str, float]


class Status(BaseModel):
    status: Literal["ok", "ready"]


class ModelInfo(BaseModel):
    name: str
    version: str
    kind: str
    default_rubric: str
    default_sampling: dict[str, Any]
    rubrics: list[str]
    adapters: list[str] = []
    input_side: int | None = Field(None, description="Largest frame side the model keeps (its processor resizes "
                                   "to it anyway): the ingress downscales sampled frames to it while decoding.")
