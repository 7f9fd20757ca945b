"""Typed settings of the service: one source of truth, filled from the Serve YAML's ``args``
(the critic and the ingress) and the Critic deployment's ``user_config`` (batching).
Deployment options (replicas, resources, queue bounds) live only in the YAML's ``deployments``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract.video import VideoLimits
from critic.loading import DEFAULT_CRITIC


class CriticSettings(BaseModel):
    """What the critic deployment loads and how it batches (hot settings: ``user_config``)."""

    model_config = ConfigDict(extra="forbid")
    backend: str | None = Field(None, description="Critic backend (critic/backends: transformers, model-free, "
                                "image-reward, vllm); default: transformers, or model-free with model 'model-free'.")
    model: str = Field(DEFAULT_CRITIC, description="Checkpoint folder or hub id, or 'model-free'; default: the "
                       "shipped trained critic (models/lift-critic-tiny), as for `lift-critic score` (backends "
                       "that take no model default to none).")
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

    @field_validator("model", mode="before")
    @classmethod
    def _none_is_model_free(cls, value):
        return "model-free" if value is None else value  # `model: null` / model=None: no checkpoint

    @model_validator(mode="after")
    def _default_model_of_the_backend(self):
        from critic.backends import BACKENDS

        entry = BACKENDS.get(self.backend) if self.backend else None
        if entry is not None and not entry.needs_model and "model" not in self.model_fields_set:
            self.model = self.backend  # the shipped critic is a VLM: a backend without weights takes none
        return self

    def shorthands(self) -> dict[str, Any]:
        """The shorthand fields that are set (each applies to the backends that have that option)."""
        return {k: getattr(self, k) for k in ("device", "dtype", "rationale_tokens") if getattr(self, k) is not None}


class BatchSettings(BaseModel):
    """Dynamic batching of the critic deployment: its ``user_config`` (hot-reloadable). The
    size bounds both the Serve batch and the batches the model runs."""

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
    # the video limits' defaults are the decoder's (contract.video.VideoLimits): one set
    max_video_bytes: int = Field(VideoLimits.max_bytes, ge=1024, description="Larger videos get 413.")
    max_duration_s: float = Field(VideoLimits.max_duration_s, gt=0, description="Longer videos get 413.")
    max_frames: int = Field(VideoLimits.max_frames, ge=1, description="Videos with more frames get 413.")
    max_pixels: int = Field(VideoLimits.max_pixels, ge=1, description="Larger frames (width x height) get 413.")
    max_sampled_pixels: int = Field(VideoLimits.max_sampled_pixels, ge=1, description="Pixels of all sampled frames "
                                    "of one video together, after downscaling to the critic's input side (3 bytes "
                                    "each); more get 413.")
    max_decode_s: float = Field(VideoLimits.max_decode_s, gt=0, le=3600, description="Wall-clock bound on decoding "
                                "one video (413 past it).")
    decode_threads: int = Field(VideoLimits.decode_threads, ge=1, le=16, description="Codec threads per decode.")
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

    def video_limits(self) -> VideoLimits:
        return VideoLimits(max_bytes=self.max_video_bytes, max_duration_s=self.max_duration_s,
                           max_frames=self.max_frames, max_pixels=self.max_pixels,
                           max_sampled_pixels=self.max_sampled_pixels, max_decode_s=self.max_decode_s,
                           decode_threads=self.decode_threads)

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
    ingress: IngressSettings = Field(default_factory=IngressSettings)
