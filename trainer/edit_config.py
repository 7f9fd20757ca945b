"""Reward fine-tuning as editing (InstructVideo), with VGen's choices as the defaults: partial
DDIM chains (12 of 20 steps) with guidance 3.0 inside them, temporal offset noise 0.1, TSN
segments (span F // K, one seeded offset per span), the unnormalised attenuated mean."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config import ConfigError, LoopConfig

SOURCES = ("samples", "videos")
REWARDS = ("differentiable", "service")


@dataclass
class EditConfig(LoopConfig):
    source: str = field(default="samples", metadata={"help": "What is edited: samples (the reference model's own "
                                                             "videos of the prompts) | videos (given videos, the "
                                                             "paper's setting: see `videos`)."})
    videos: str | None = field(default=None, metadata={"help": "source=videos: JSONL of {video, prompt} (paths "
                                                               "relative to it), num_frames x height x width."})
    holdout_videos: str | None = field(default=None, metadata={"help": "source=videos: JSONL of held-out videos; "
                                                                       "none: edit model samples of "
                                                                       "holdout_prompts."})
    edit_steps: int = field(default=20, metadata={"help": "DDIM schedule length of the editing chain (VGen: 20)."})
    edit_strength: float = field(default=0.6, metadata={"help": "Share of the chain that is re-run: the video is "
                                                                 "noised to this level and denoised from there "
                                                                 "(VGen: 12 of 20 steps, 0.6; the step count is "
                                                                 "truncated, int(edit_steps x edit_strength))."})
    edit_guidance: float = field(default=3.0, metadata={"help": "Classifier-free guidance inside the partial chain "
                                                                 "(VGen: 3.0; 1: off)."})
    offset_noise: float = field(default=0.1, metadata={"help": "Temporal offset noise: a per-frame, per-channel "
                                                               "constant of this scale added to the edit's noise "
                                                               "(VGen: 0.1)."})
    segments: int = field(default=4, metadata={"help": "K: frames scored, one per TSN segment of span F // K "
                                                       "(InstructVideo: 4)."})
    attenuation: float = field(default=1.0, metadata={"help": "lambda in exp(-lambda * |i - F // 2|)."})
    aggregate: str = field(default="attenuated", metadata={"help": "attenuated (VGen: unnormalised mean of weight x "
                                                                   "score) | attenuated_normalized | mean."})
    reward: str = field(default="differentiable", metadata={"help": "differentiable: back-propagate 1 - reward "
                                                                    "through the last grad_steps denoising steps "
                                                                    "with the in-process image-reward model "
                                                                    "(InstructVideo); service: the service's "
                                                                    "reward, reinforced RWR-style (no gradient "
                                                                    "through the reward)."})
    reward_model: str | None = field(default=None, metadata={"help": "reward=differentiable: the image-text model "
                                                                     "(CLIP / SigLIP / PickScore folder)."})
    grad_steps: int = field(default=1, metadata={"help": "Last denoising steps the reward's gradient flows through "
                                                         "(VGen: 1)."})
    normalization: str = field(default="softmax", metadata={"help": "reward=service: reward weighting of the "
                                                                    "denoising loss (none | batch_z | per_prompt "
                                                                    "| softmax)."})
    temperature: float = field(default=0.1, metadata={"help": "softmax weighting: reward temperature."})
    momentum: float = field(default=0.9, metadata={"help": "per_prompt weighting: running-statistics momentum."})

    def __post_init__(self):
        super().__post_init__()
        from critic.backends.image_reward import AGGREGATES
        from trainer.normalize import NORMALIZERS

        checks = [
            (0 < self.edit_strength <= 1, "edit_strength must be in (0, 1]"),
            (1 <= self.segments <= self.num_frames, "segments must be in [1, num_frames]"),
            (self.source in SOURCES, f"source must be one of {SOURCES}"),
            (self.source != "videos" or bool(self.videos), "source=videos needs `videos` (a JSONL)"),
            (self.reward in REWARDS, f"reward must be one of {REWARDS}"),
            (self.reward != "differentiable" or bool(self.reward_model), "reward=differentiable needs reward_model"),
            (self.aggregate in AGGREGATES, f"aggregate must be one of {AGGREGATES}"),
            (int(self.edit_steps * self.edit_strength) >= 1, "edit_strength x edit_steps must leave >= 1 step"),
            (1 <= self.grad_steps <= max(1, int(self.edit_steps * self.edit_strength)),
             "grad_steps must be in [1, the steps of the partial chain]"),
            (self.normalization in NORMALIZERS, f"normalization must be one of {sorted(NORMALIZERS)}"),
            (self.offset_noise >= 0 and self.attenuation >= 0, "offset_noise and attenuation must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"EditConfig: {msg}")
