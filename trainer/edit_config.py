"""Reward fine-tuning as editing (InstructVideo): partial denoising chains, segmental sparse
frames, temporally attenuated rewards."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config import ConfigError, LoopConfig


@dataclass
class EditConfig(LoopConfig):
    edit_steps: int = field(default=20, metadata={"help": "DDIM schedule length of the editing chain."})
    edit_strength: float = field(default=0.6, metadata={"help": "Share of the chain that is re-run: the video is "
                                                                 "noised to this level and denoised from there."})
    segments: int = field(default=4, metadata={"help": "K: one frame per segment is scored (InstructVideo: 4)."})
    attenuation: float = field(default=1.0, metadata={"help": "lambda in exp(-lambda * |i - F//2|)."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.edit_strength <= 1:
            raise ConfigError("edit_strength must be in (0, 1]")
        if self.segments < 1 or self.segments > self.num_frames:
            raise ConfigError("segments must be in [1, num_frames]")
