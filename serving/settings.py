"""Typed settings of the service: one source of truth, filled from the Serve YAML's ``args``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CriticSettings(BaseModel):
    """What the critic deployment loads and how it batches (hot settings: ``user_config``)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="VLM checkpoint folder or hub id; none: the model-free critic.")
    device: str | None = Field(None, description="torch device; default cuda when available, else cpu.")
    dtype: str | None = Field(None, description="torch dtype name, e.g. 'bfloat16'; default: the checkpoint's.")
    rationale_tokens: int = Field(32, ge=0, le=512, description="Bound on rationale length; 0 switches it off.")
    adapters: dict[str, str] = Field(default_factory=dict, description="Critic adapters (name -> peft adapter "
                                     "folder from `lift-critic train`); requests pick one by name (multiplexed).")
    torch_threads: int | None = Field(None, ge=1, le=256, description="torch intra-op threads on CPU "
                                      "(Ray sets OMP_NUM_THREADS from num_cpus, i.e. 1 for fractional CPUs).")
    load_delay_s: float = Field(0.0, ge=0, le=600, description="Sleep before loading (to exercise readiness).")


class BatchSettings(BaseModel):
    """Dynamic batching of the critic deployment; hot-reloadable through ``user_config``."""

    model_config = ConfigDict(extra="forbid")
    max_batch_size: int = Field(8, ge=1, le=256, description="Largest batch sent to the model.")
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10, description="Longest wait to fill a batch.")


class IngressSettings(BaseModel):
    """Validation, limits and protection applied by the ingress."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # never echo a key into a log
    api_key_digests: list[Annotated[str, Field(pattern="^[0-9a-f]{64}$")]] = Field(
        default_factory=list, description="Hex SHA-256 digests of the accepted bearer keys; empty: no auth. "
        "Filled at launch from --api-keys-file / LIFT_CRITIC_API_KEYS_FILE / LIFT_CRITIC_API_KEYS (serving/auth.py).")
    api_keys: list[str] = Field(default_factory=list, description="Must stay empty: keys written here would be "
                                "logged by Ray. Use a keys file or the environment at launch.")
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    max_video_bytes: int = Field(48 * 1024 * 1024, ge=1024, description="Larger videos get 413.")
    max_duration_s: float = Field(60.0, gt=0)
    max_frames: int = Field(1800, ge=1)
    max_pixels: int = Field(1920 * 1080, ge=1, description="Largest frame (width x height) accepted.")
    max_sampled_pixels: int = Field(32 * 1920 * 1080, ge=1, description="Pixels of all sampled frames of one "
                                    "video together, after downscaling to the critic's input side (3 bytes each).")
    max_decode_s: float = Field(60.0, gt=0, le=3600, description="Wall-clock bound on decoding one video (413).")
    decode_threads: int = Field(2, ge=1, le=16, description="Codec threads per decode.")
    max_concurrent_decodes: int = Field(4, ge=1, le=64, description="Decodes running at once per ingress replica "
                                        "(the rest queue): decode memory stays under max_concurrent_decodes x "
                                        "VideoLimits.memory_bound_bytes() (~1 GB with the defaults).")
    allowed_dirs: list[str] = Field(default_factory=list, description="Directories 'video_path' may point into.")
    request_timeout_s: float = Field(120.0, gt=0, le=3600, description="Per-request deadline (504 past it).")
    retry_after_s: float = Field(1.0, gt=0, le=600, description="Retry-After sent with 503.")
    idempotency_cache_bytes: int = Field(256 * 1024 * 1024, ge=0, description="Bytes of answers remembered by "
                                         "(caller, request id), shared by all ingress replicas; 0: none.")
    body_timeout_s: float = Field(60.0, gt=0, le=3600, description="A request body must arrive within this (408).")
    body_min_bytes_per_s: float = Field(16 * 1024, ge=0, description="After a 2 s grace a body slower than this on "
                                        "average is cut off (408), so trickling clients cannot hold the ingress.")

    @model_validator(mode="after")
    def _no_plaintext_keys(self):
        if self.api_keys:
            raise ValueError("ingress.api_keys must be empty: keys in a Serve config end up in Ray's logs; pass "
                             "--api-keys-file, LIFT_CRITIC_API_KEYS_FILE or LIFT_CRITIC_API_KEYS at launch")
        return self


class AppSettings(BaseModel):
    """The application's ``args`` in the Serve YAML."""

    model_config = ConfigDict(extra="forbid")
    critic: CriticSettings = Field(default_factory=CriticSettings)
    batching: BatchSettings = Field(default_factory=BatchSettings)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
