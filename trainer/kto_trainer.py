"""Diffusion-KTO: desirable videos gain implicit reward over the reference, undesirable ones lose it."""

from __future__ import annotations

import statistics

import torch

from trainer.diffusion import draw_noise
from trainer.kto_config import KTOConfig
from trainer.ipo import IPOLoop
from trainer.loop import Sample
from trainer.preference import balanced_draw, kto_loss, prediction_errors


class KTOTrainer(IPOLoop):
    method = "kto"

    def __init__(self, config: KTOConfig):
        super().__init__(config)

    def update(self, samples: list[Sample], step: int) -> dict:
        c = self.config
        rewards = self.batch_rewards()[0]  # the whole batch's, on every rank
        threshold = c.threshold if c.threshold is not None else statistics.median(rewards)
        desirable = torch.tensor([s.result["reward"] > threshold for s in samples])
        self.state["round"] = step // c.steps_per_round
        gen = self.loss_generator(step)
        rows = list(range(len(samples)))
        if c.balance == "class":
            rows = balanced_draw(desirable, c.positive_ratio, gen).tolist()
        x0 = torch.stack([samples[i].latents for i in rows]).to(self.device)
        shared = c.noise == "shared"
        # shared: one t and noise for the whole batch, every rank's rows included (the same draw on every rank)
        draw = draw_noise(self.pipe.scheduler, x0, self.loss_generator(step, per_rank=False) if shared else gen,
                          shared=shared)
        policy, reference = prediction_errors(self.pipe, x0, [samples[i].prompt for i in rows], None, draw=draw)
        labels = desirable[rows].to(self.device)
        implicit = (reference - policy).detach()
        # the reference point: the implicit reward's mean over every rank's rows (the original all-reduces it, L1470)
        batch_mean = torch.tensor(statistics.fmean(self.ranks.gather([float(implicit.mean())])), device=self.device)
        loss = kto_loss(policy, reference, labels, c.beta, c.desirable_weight, c.undesirable_weight, batch_mean)
        return {"loss": self.optimize(loss), "desirable": int(desirable.sum()), "kl": float(batch_mean.clamp(min=0)),
                "implicit_desirable": float(implicit[labels].mean()) if labels.any() else 0.0,
                "implicit_undesirable": float(implicit[~labels].mean()) if (~labels).any() else 0.0,
                "journal": {"threshold": threshold, "drawn": rows, "timesteps": draw.t.tolist()}}
