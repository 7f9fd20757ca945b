"""Diffusion-KTO (IPO, pointwise): each video desirable or undesirable by the service's score."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config import ConfigError
from trainer.ipo import IPOConfig

BALANCE = ("class", "none")
NOISE = ("per_sample", "shared")


@dataclass
class KTOConfig(IPOConfig):
    beta: float = field(default=1000.0, metadata={"help": "KTO temperature on the implicit reward; 1000 is "
                                                          "Diffusion-KTO's default (--beta_dpo)."})
    threshold: float | None = field(default=None, metadata={"help": "Reward above which a video is desirable; "
                                                                     "none: the batch median."})
    balance: str = field(default="class", metadata={"help": "class: Diffusion-KTO's class-balanced draw, the "
                                                            "labelled batch is redrawn with replacement so that "
                                                            "desirable videos make up positive_ratio of it in "
                                                            "expectation; none: train on the batch as labelled (on the "
                                                            "model's own samples: see README, KTO)."})
    positive_ratio: float = field(default=0.8, metadata={"help": "Expected share of desirable videos in a class-"
                                                                 "balanced draw (Diffusion-KTO's example run: 0.8)."})
    noise: str = field(default="per_sample", metadata={"help": "per_sample: each row its own timestep and noise "
                                                               "(Diffusion-KTO); shared: one timestep and noise "
                                                               "for the whole batch, so that each row's implicit "
                                                               "reward is compared with the batch's at the same "
                                                               "noise level."})
    desirable_weight: float = field(default=1.0, metadata={"help": "lambda_D."})
    undesirable_weight: float = field(default=1.0, metadata={"help": "lambda_U."})

    def __post_init__(self):
        super().__post_init__()
        if self.balance not in BALANCE:
            raise ConfigError(f"balance must be one of {BALANCE}")
        if self.noise not in NOISE:
            raise ConfigError(f"noise must be one of {NOISE}")
        if not 0.0 <= self.positive_ratio <= 1.0:
            raise ConfigError("positive_ratio must be in [0, 1]")
