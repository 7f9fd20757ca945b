"""Diffusion-DPO (IPO, pairwise): two videos per prompt, labelled by the service."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config import ConfigError
from trainer.ipo import IPOConfig


@dataclass
class DPOConfig(IPOConfig):
    beta: float = field(default=5000.0, metadata={"help": "DPO temperature on the error differences; 5000 is "
                                                          "Diffusion-DPO's default (train.py --beta_dpo)."})
    label_by: str = field(default="compare", metadata={"help": "compare: the service's /compare endpoint; "
                                                               "scores: the higher reward wins."})
    min_margin: float = field(default=0.05, metadata={"help": "Skip pairs whose preference is weaker than this "
                                                               "(P(A>B) - P(B>A), or the reward gap)."})

    def __post_init__(self):
        super().__post_init__()
        if self.label_by not in ("compare", "scores"):
            raise ConfigError("label_by must be 'compare' or 'scores'")
        if self.batch_size % 2:
            raise ConfigError("batch_size must be even (two videos per prompt)")
