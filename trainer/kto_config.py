"""Diffusion-KTO (IPO, pointwise): each video desirable or undesirable by the service's score."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config import LoopConfig


@dataclass
class KTOConfig(LoopConfig):
    beta: float = field(default=500.0, metadata={"help": "KTO temperature on the implicit reward."})
    threshold: float | None = field(default=None, metadata={"help": "Reward above which a video is desirable; "
                                                                     "none: the batch median."})
    desirable_weight: float = field(default=1.0, metadata={"help": "lambda_D."})
    undesirable_weight: float = field(default=1.0, metadata={"help": "lambda_U."})
    steps_per_round: int = field(default=5, metadata={"help": "Steps per IPO round; the adapter is saved each round."})
