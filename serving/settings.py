"""Typed settings of the service: one source of truth, filled from the Serve YAML's ``args``."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CriticSettings(BaseModel):
    """What the critic deployment loads and how it batches (hot settings: ``user_config``)."""

    model_config = ConfigDict(extra="forbid")
    backend: str | None = Field(None, description="Critic backend (critic/backends: transformers, model-free, "
                                "image-reward, vllm); default: transformers with a model, model-free without.")
    model: str | None = Field(None, description="Checkpoint folder or hub id; none: the model-free critic.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options, validated by the backend "
                                    "(e.g. dtype, rationale_tokens for VLMs; aggregate for image-reward).")
    device: str | None = Field(None, description="Shorthand for options.device (torch device), for backends "
                               "that have it.")
    dtype: str | None = Field(None, description="Shorthand for options.dtype, e.g. 'bfloat16', for backends that "
                              "have it.")
    rationale_tokens: int | None = Field(None, ge=0, le=512, description="Shorthand for options.rationale_tokens, "
                                         "for backends that have it.")
    adapters: dict[str, str] = Field(default_factory=dict, description="Critic adapters (name -> peft adapter "
                                     "folder from `lift-critic train`); requests pick one by name (multiplexed).")
    torch_threads: int | None = Field(None, ge=1, le=256, description="torch intra-op threads on CPU "
                                      "(Ray sets OMP_NUM_THREADS from num_cpus, i.e. 1 for fractional CPUs).")
    load_delay_s: float = Field(0.0, ge=0, le=600, description="Sleep before loading (to exercise readiness).")

    def shorthands(self) -> dict[str, Any]:
        """The shorthand fields that are set (each applies to the backends that have that option)."""
        return {k: getattr(self, k) for k in ("device", "dtype", "rationale_tokens") if getattr(self, k) is not None}


class BatchSettings(BaseModel):
    """Dynamic batching of the critic deployment; hot-reloadable through ``user_config``."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(8, ge=1, le=256, description="Largest batch sent to the model.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10, description="Longest wait to fill a batch.")


class IngressSettings(BaseModel):
    """Validation, limits and protection applied by the ingress."""

    model_config = ConfigDict(extra="forbid")
    api_keys: list[str] = Field(default_factory=list, description="Bearer tokens; empty: no auth. "
                                "LIFT_CRITIC_API_KEYS (comma-separated) adds more. Never logged.")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    max_video_bytes: int = Field(48 * 1024 * 1024, ge=1024, description="Larger videos get 413.")
    max_duration_s: float = Field(60.0, gt=0)
    max_frames: int = Field(1800, ge=1)
    max_pixels: int = Field(1920 * 1080, ge=1)
    allowed_dirs: list[str] = Field(default_factory=list, description="Directories 'video_path' may point into.")
    request_timeout_s: float = Field(120.0, gt=0, le=3600, description="Per-request deadline (504 past it).")
    retry_after_s: float = Field(1.0, gt=0, le=600, description="Retry-After sent with 503.")
    idempotency_cache_size: int = Field(10000, ge=0, description="Results remembered by request id.")

    @model_validator(mode="after")
    def _env_keys(self):
        extra = [k.strip() for k in os.environ.get("LIFT_CRITIC_API_KEYS", "").split(",") if k.strip()]
        self.api_keys = sorted(set(self.api_keys) | set(extra))
        return self


class AppSettings(BaseModel):
    """The application's ``args`` in the Serve YAML."""

    model_config = ConfigDict(extra="forbid")
    critic: CriticSettings = Field(default_factory=CriticSettings)
    batching: BatchSettings = Field(default_factory=BatchSettings)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
