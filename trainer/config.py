"""What every alignment method shares: the generator, the prompts, the service, the loop."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

import yaml

from trainer.diffusion import DTYPES


PATH_KEYS = ("prompts", "holdout_prompts", "pipeline", "reward_model", "videos", "holdout_videos", "real_videos")


class ConfigError(ValueError):
    pass


@dataclass
class LoopConfig:
    pipeline: str = field(metadata={"help": "CogVideoX pipeline folder or hub id (tiny: `lift-train build-tiny`)."})
    prompts: str = field(metadata={"help": "Text file, one training prompt per line."})
    output_dir: str = field(metadata={"help": "Journal, checkpoints, logs, adapter, reward curve."})
    holdout_prompts: str | None = field(default=None, metadata={"help": "Prompts for before/after evaluation."})
    service_url: str | None = field(default=None, metadata={"help": "Critic service; none: start a local one."})
    local_critic: str = field(default="model-free", metadata={"help": "Critic of the local service (path or "
                                                                      "'model-free')."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer token for the service."})
    rubric: str | None = field(default=None, metadata={"help": "Rubric the service scores with."})
    sampling: dict | None = field(default=None, metadata={"help": "Frame sampling sent with each request."})
    steps: int = field(default=10, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=4, metadata={"help": "Videos generated and scored per step."})
    num_frames: int = field(default=9, metadata={"help": "Frames per video (8k+1)."})
    height: int = field(default=64, metadata={"help": "Video height."})
    width: int = field(default=64, metadata={"help": "Video width."})
    inference_steps: int = field(default=4, metadata={"help": "Sampling steps of the generator."})
    guidance_scale: float = field(default=1.0, metadata={"help": "Classifier-free guidance (1: off)."})
    fps: float = field(default=8.0, metadata={"help": "Frame rate of the videos sent for scoring."})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank on the transformer's attention."})
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate (LiFT: 1e-5)."})
    betas: tuple[float, float] = field(default=(0.9, 0.95), metadata={"help": "AdamW betas (LiFT: 0.9, 0.95)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    grad_clip: float = field(default=1.0, metadata={"help": "Max gradient norm."})
    eval_every: int | None = field(default=None, metadata={"help": "Also score the held-out prompts every N steps "
                                                                    "(points on the reward curve); none: before and "
                                                                    "after only."})
    tensorboard: bool = field(default=True, metadata={"help": "Write TensorBoard logs to OUTPUT_DIR/tensorboard."})
    checkpoint_every: int = field(default=5, metadata={"help": "Checkpoint every N steps (and at the end)."})
    max_concurrency: int = field(default=8, metadata={"help": "Scoring requests in flight."})
    seed: int = field(default=0, metadata={"help": "Seeds generation and the loss's noise and timesteps."})
    device: str | None = field(default=None, metadata={"help": "torch device; default cuda if available (the "
                                                               "process's own GPU under accelerate launch)."})
    dtype: str | None = field(default=None, metadata={"help": "Weights of the frozen pipeline: float32 | bfloat16 | "
                                                              "float16; default bfloat16 on GPU, float32 on CPU. "
                                                              "The adapter always trains in float32."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute the transformer's activations "
                                                                          "in backward (CogVideoX-2B at 480x720x49)."})
    vae_slicing: bool = field(default=False, metadata={"help": "Decode videos one at a time through the VAE."})
    vae_tiling: bool = field(default=False, metadata={"help": "Decode each frame in overlapping tiles (less memory)."})

    def __post_init__(self):
        self.betas = tuple(self.betas)
        checks = [
            ((self.num_frames - 1) % 8 == 0, f"num_frames must be 8k+1 (9, 17, 25, 49), got {self.num_frames}"),
            (self.steps >= 1 and self.batch_size >= 1, "steps and batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.eval_every is None or self.eval_every >= 1, "eval_every must be >= 1"),
            (self.height % 16 == 0 and self.width % 16 == 0, "height and width must be multiples of 16"),
            (self.dtype is None or self.dtype in DTYPES, f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"{type(self).__name__}: {msg}")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides):
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        known = {f.name for f in fields(cls)}
        data.pop("method", None)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{path}: unknown settings for {cls.__name__}: {sorted(unknown)}")
        base = os.path.dirname(os.path.abspath(path))
        for key in PATH_KEYS:
            v = data.get(key)
            if v and not os.path.isabs(v) and (v.startswith(".") or os.path.exists(os.path.join(base, v))):
                data[key] = os.path.join(base, v)
        data.update(overrides)  # command-line flags win over the YAML
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)
