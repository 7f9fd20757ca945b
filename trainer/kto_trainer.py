"""Diffusion-KTO: desirable videos gain implicit reward over the reference, undesirable ones lose it."""

from __future__ import annotations

import statistics

import torch

from trainer.kto_config import KTOConfig
from trainer.loop import AlignmentLoop, Sample
from trainer.preference import prediction_errors


class KTOTrainer(AlignmentLoop):
    method = "kto"

    def __init__(self, config: KTOConfig):
        super().__init__(config)

    def update(self, samples: list[Sample], step: int) -> dict:
        c = self.config
        rewards = self.batch_rewards()[0]  # the whole batch's, on every rank
        threshold = c.threshold if c.threshold is not None else statistics.median(rewards)
        desirable = torch.tensor([s.result["reward"] > threshold for s in samples])
        self.state["round"] = step // c.steps_per_round
        x0 = torch.stack([s.latents for s in samples]).to(self.device)
        gen = self.loss_generator(step)
        policy, reference = prediction_errors(self.pipe, x0, [s.prompt for s in samples], gen)
        implicit = reference - policy  # > 0: the policy explains this video better than the reference
        z0 = implicit.detach().mean().clamp(min=0)  # reference point (batch KL estimate)
        d = 1 - torch.sigmoid(c.beta * (implicit - z0))
        u = 1 - torch.sigmoid(c.beta * (z0 - implicit))
        loss = torch.where(desirable, c.desirable_weight * d, c.undesirable_weight * u).mean()
        return {"loss": self.optimize(loss), "desirable": int(desirable.sum()), "journal": {"threshold": threshold}}
