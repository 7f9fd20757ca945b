"""Typed settings of the service: one source of truth, filled from the Serve YAML's ``args``
(the critic and the ingress) and the Critic deployment's ``user_config`` (batching).
Deployment options (replicas, resources, queue bounds) live only in the YAML's ``deployments``."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from critic.loading import DEFAULT_CRITIC
from critic.video import VideoLimits


class CriticSettings(BaseModel):
    """What the critic deployment loads and how it batches (hot settings: ``user_config``)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(DEFAULT_CRITIC, description="VLM checkpoint folder or hub id, or 'model-free'; default: "
                       "the shipped trained critic (models/lift-critic-tiny), as for `lift-critic score`.")
    device: str | None = Field(None, description="torch device; default cuda when available, else cpu.")
    dtype: str | None = Field(None, description="torch dtype name, e.g. 'bfloat16'; default: the checkpoint's.")
    rationale_tokens: int = Field(32, ge=0, le=512, description="Bound on rationale length; 0 switches it off.")
    adapters: dict[str, str] = Field(default_factory=dict, description="Critic adapters (name -> peft adapter "
                                     "folder from `lift-critic train`); requests pick one by name (multiplexed).")
    torch_threads: int | None = Field(None, ge=1, le=256, description="torch intra-op threads on CPU "
                                      "(Ray sets OMP_NUM_THREADS from num_cpus, i.e. 1 for fractional CPUs).")
    load_delay_s: float = Field(0.0, ge=0, le=600, description="Sleep before loading (to exercise readiness).")

    @field_validator("model", mode="before")
    @classmethod
    def _none_is_model_free(cls, value):
        return "model-free" if value is None else value  # `model: null` / model=None: no checkpoint


class BatchSettings(BaseModel):
    """Dynamic batching of the critic deployment: its ``user_config`` (hot-reloadable). The
    size bounds both the Serve batch and the batches the model runs."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(8, ge=1, le=256, description="Largest batch sent to the model.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10, description="Longest wait to fill a batch.")


class IngressSettings(BaseModel):
    """Validation, limits and protection applied by the ingress."""

    model_config = ConfigDict(extra="forbid")
    api_keys: list[str] = Field(default_factory=list, description="Bearer tokens; empty: no auth. "
                                "LIFT_CRITIC_API_KEYS (comma-separated) adds more. Never logged.")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    # the video limits' defaults are the decoder's (critic.video.VideoLimits): one set
    max_video_bytes: int = Field(VideoLimits.max_bytes, ge=1024, description="Larger videos get 413.")
    max_duration_s: float = Field(VideoLimits.max_duration_s, gt=0, description="Longer videos get 413.")
    max_frames: int = Field(VideoLimits.max_frames, ge=1, description="Videos with more frames get 413.")
    max_pixels: int = Field(VideoLimits.max_pixels, ge=1, description="Larger frames (width x height) get 413.")
    allowed_dirs: list[str] = Field(default_factory=list, description="Directories 'video_path' may point into.")
    request_timeout_s: float = Field(120.0, gt=0, le=3600, description="Per-request deadline (504 past it).")
    retry_after_s: float = Field(1.0, gt=0, le=600, description="Retry-After sent with 503.")
    idempotency_cache_size: int = Field(10000, ge=0, description="Results remembered by request id.")

    def video_limits(self) -> VideoLimits:
        return VideoLimits(max_bytes=self.max_video_bytes, max_duration_s=self.max_duration_s,
                           max_frames=self.max_frames, max_pixels=self.max_pixels)

    @model_validator(mode="after")
    def _env_keys(self):
        extra = [k.strip() for k in os.environ.get("LIFT_CRITIC_API_KEYS", "").split(",") if k.strip()]
        self.api_keys = sorted(set(self.api_keys) | set(extra))
        return self


class AppSettings(BaseModel):
    """The application's ``args`` in the Serve YAML."""

    model_config = ConfigDict(extra="forbid")
    critic: CriticSettings = Field(default_factory=CriticSettings)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
