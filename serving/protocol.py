"""Request and response schemas for every transport. Pydantic only: no torch, no Ray."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_STRICT = ConfigDict(extra="forbid")
Aggregate = Literal["mean", "attenuated", "attenuated_normalized"]
_AGGREGATE = ("image-reward critics: how per-frame scores become the reward: 'mean', 'attenuated' (VGen: mean of "
              "exp(-lambda*|i - F//2|) * score) or 'attenuated_normalized' (divided by the weights' sum); "
              "default: the critic's.")
_LAMBDA = "image-reward critics: lambda of the temporal attenuation."


class Sampling(BaseModel):
    """Which frames the critic looks at; absent fields take the critic's default."""

    model_config = _STRICT
    strategy: Literal["uniform", "fps", "segments", "all"] = Field("uniform", description="Sampling strategy.")
    frames: int = Field(8, ge=1, le=256, description="uniform: number of frames.")
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

    model_config = _STRICT
    prompt: str = Field(min_length=1, max_length=4000, description="The text the video was generated from.")
    video_b64: str | None = Field(None, description="The video file, base64-encoded (JSON requests).")
    video_path: str | None = Field(None, description="A file under one of the service's allowed directories.")
    rubric: str | None = Field(None, max_length=200, description="Registered rubric name; default: the critic's.")
    sampling: Sampling | None = Field(None, description="Frame sampling; default: the critic's.")
    request_id: str | None = Field(None, max_length=200, description="Idempotency key: a retry with the same id "
                                   "returns the first result instead of scoring again.")
    adapter: str | None = Field(None, max_length=200, description="Critic adapter to use (multiplexed critics).")
    aggregate: Aggregate | None = Field(None, description=_AGGREGATE)
    attenuation_lambda: float = Field(1.0, ge=0, le=1000, description=_LAMBDA)


class BatchScoreRequest(BaseModel):
    model_config = _STRICT
    items: list[ScoreRequest] = Field(min_length=1, max_length=256)


class CompareRequest(BaseModel):
    model_config = _STRICT
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


class ScoreResponse(BaseModel):
    request_id: str
    result: dict[str, Any] = Field(description="The critic's full result (see critic.types.CriticResult).")
    timings: dict[str, float]


class BatchItem(BaseModel):
    request_id: str
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class BatchScoreResponse(BaseModel):
    items: list[BatchItem]


class CompareResponse(BaseModel):
    request_id: str
    result: dict[str, Any]
    timings: dict[str, float]


class ModelInfo(BaseModel):
    name: str
    version: str
    kind: str
    default_rubric: str
    default_sampling: dict[str, Any]
    rubrics: list[str]
    adapters: list[str] = []
