"""What goes over the wire, typed field by field: requests, results, responses, errors, the model's card.

One definition for every side: the critic builds ``CriticResult`` / ``CompareResult``, the service
answers with them inside its responses (HTTP bodies, gRPC ``result_json``), the clients and the
trainer read the same fields. Pydantic only: no torch, no Ray.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from contract.errors import CriticError, InvalidParameterError, InvalidRubricError, UnknownAdapterError
from contract.sampling import FrameSampling

_EXAMPLE = {"prompt": "a red ball rolls across the grass", "video_path": "/data/videos/ball.mp4",
            "sampling": {"strategy": "uniform", "frames": 8}, "request_id": "run7-step120-3"}
MAX_PROMPT_CHARS = 4000


def _strict(*examples: dict) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


Aggregate = Literal["mean", "attenuated", "attenuated_normalized"]
AGGREGATES: tuple[str, ...] = get_args(Aggregate)
_AGGREGATE = ("image-reward critics: how per-frame scores become the reward: 'mean', 'attenuated' (VGen: mean of "
              "exp(-lambda*|i - F//2|) * score) or 'attenuated_normalized' (divided by the weights' sum); "
              "default: the critic's.")
_LAMBDA = "image-reward critics: lambda of the temporal attenuation."
_PROMPT = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="The text the video was generated from.")

# ---- requests ------------------------------------------------------------------------------


class ScoreRequest(BaseModel):
    """One video and its prompt. Exactly one of ``video_b64`` / ``video_path`` (multipart carries the file)."""

    model_config = _strict(_EXAMPLE, {"prompt": "two cats play", "video_b64": "AAAAIGZ0eXBpc29t..."})
    prompt: str = _PROMPT
    video_b64: str | None = Field(None, description="The video file, base64-encoded (JSON requests).")
    video_path: str | None = Field(None, description="A file under one of the service's allowed directories.")
    rubric: str | None = Field(None, max_length=200, description="Registered rubric name; default: the critic's.")
    sampling: FrameSampling | None = Field(None, description="Frame sampling; default: the rubric's, else the critic's.")
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
    prompt: str = _PROMPT
    video_a_b64: str | None = None
    video_a_path: str | None = None
    video_b_b64: str | None = None
    video_b_path: str | None = None
    rubric: str | None = Field(None, max_length=200)
    sampling: FrameSampling | None = None
    request_id: str | None = Field(None, max_length=200)
    adapter: str | None = Field(None, max_length=200)
    aggregate: Aggregate | None = Field(None, description=_AGGREGATE)
    attenuation_lambda: float = Field(1.0, ge=0, le=1000, description=_LAMBDA)


# ---- results -------------------------------------------------------------------------------


class DimensionResult(BaseModel):
    """One rubric dimension."""

    label: str = Field(description="The hard label: argmax of probabilities.")
    probabilities: dict[str, float] = Field(description="One entry per rubric label, summing to 1.")
    score: float = Field(description="Soft score: expectation of the label values under probabilities.")
    rationale: str | None = Field(None, description="The critic's short explanation, when it gives one.")


class Aggregation(BaseModel):
    """image-reward critics: how per-frame scores became the dimension scores."""

    method: Aggregate
    attenuation_lambda: float
    num_frames: int = Field(description="Frames in the whole video (the attenuation's centre is F // 2).")


class CriticResult(BaseModel):
    """The critic's result for one video: what it judged, with what, and how."""

    dimensions: dict[str, DimensionResult]
    reward: float = Field(description="Reward from the hard labels (the rubric's reward_from), in [0, 1].")
    soft_reward: float = Field(description="Reward from the label probabilities, in [0, 1].")
    rubric: str
    model: str
    model_version: str
    sampling: FrameSampling = Field(description="The frame sampling that was applied.")
    frame_indices: list[int]
    adapter: str | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    frame_scores: dict[str, list[float]] | None = Field(None, description="image-reward critics: per dimension, "
                                                         "one score per sampled frame, in frame_indices order.")
    aggregation: Aggregation | None = None


class DimensionComparison(BaseModel):
    p_a_better: float
    p_b_better: float
    p_tie: float


class CompareResult(BaseModel):
    dimensions: dict[str, DimensionComparison]
    overall: DimensionComparison
    a: CriticResult
    b: CriticResult


# ---- responses -----------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code (contract.errors.ERRORS), e.g. 'invalid_video'.")
    message: str
    request_id: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """The one error body every failure returns, over HTTP and (as JSON in details) gRPC."""

    error: ErrorInfo

    @classmethod
    def of(cls, e: CriticError, request_id: str | None = None) -> "ErrorBody":
        return cls(error=ErrorInfo(**e.to_dict(), request_id=request_id))


class ScoreResponse(BaseModel):
    request_id: str
    result: CriticResult
    timings: dict[str, float]


class BatchItem(BaseModel):
    """Exactly one of ``result`` / ``error``."""

    request_id: str
    result: CriticResult | None = None
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
    """What a critic is and what it takes: the rules a request is checked against where it enters."""

    name: str
    version: str
    kind: str = Field(description="The rubric kind it answers ('vlm', 'model-free', 'image-reward').")
    default_rubric: str
    default_sampling: FrameSampling
    rubrics: list[str]
    adapters: list[str] = []
    input_side: int | None = Field(None, description="Largest frame side the model keeps (its processor resizes "
                                   "to it anyway): the ingress downscales sampled frames to it while decoding.")
    takes_aggregate: bool = Field(False, description="Whether requests may choose how frame scores are aggregated.")

    def check(self, rubric: str, rubric_kind: str, adapter: str | None, aggregate: str | None) -> None:
        """Raise the typed error a request for ``rubric`` (of ``rubric_kind``) with ``adapter`` and
        ``aggregate`` would cause on this critic."""
        if rubric_kind != self.kind:
            raise InvalidRubricError(
                f"rubric {rubric!r} is for the {rubric_kind} critic; this is the {self.kind} critic ({self.name})")
        if adapter is not None and adapter not in self.adapters:
            raise UnknownAdapterError(f"adapter {adapter!r} is not served; available: {self.adapters}")
        if aggregate is not None and not self.takes_aggregate:
            raise InvalidParameterError(f"the {self.kind} critic has no frame-score aggregation; drop 'aggregate'")
