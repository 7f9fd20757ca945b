"""Reward-weighted regression (LiFT): the published loss, with a choice of reward normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config import ConfigError, LoopConfig
from trainer.normalize import NORMALIZERS


@dataclass
class RWRConfig(LoopConfig):
    normalization: str = field(default="none", metadata={"help": "none (as published) | batch_z | per_prompt | "
                                                                 "softmax."})
    temperature: float = field(default=1.0, metadata={"help": "softmax: reward temperature."})
    momentum: float = field(default=0.9, metadata={"help": "per_prompt: running-statistics momentum."})
    real_videos: str | None = field(default=None, metadata={"help": "JSONL of real videos ({video, prompt}, paths "
                                                                    "relative to it) mixed in as regularisation."})
    real_per_step: int = field(default=1, metadata={"help": "Real videos added to each step's loss."})
    real_weight: float = field(default=1.0, metadata={"help": "Loss weight of a real-video sample."})

    def __post_init__(self):
        super().__post_init__()
        if self.normalization not in NORMALIZERS:
            raise ConfigError(f"normalization must be one of {sorted(NORMALIZERS)}, got {self.normalization!r}")
        if self.temperature <= 0:
            raise ConfigError("temperature must be > 0")
