"""Diffusion-DPO: the policy lowers its error on the preferred video relative to the reference."""

from __future__ import annotations

import torch

from trainer.dpo_config import DPOConfig
from trainer.ipo import IPOLoop
from trainer.loop import RewardError, Sample
from trainer.preference import dpo_loss, prediction_errors


class DPOTrainer(IPOLoop):
    method = "dpo"
    group_size = 2

    def __init__(self, config: DPOConfig):
        super().__init__(config)

    def batch_prompts(self, step: int) -> list[str]:
        n = self.config.batch_size // 2
        prompts = [self.prompts[(step * n + i) % len(self.prompts)] for i in range(n)]
        return [p for p in prompts for _ in (0, 1)]  # two videos (two seeds) per prompt

    def label(self, a: Sample, b: Sample) -> float:
        """Preference margin in [-1, 1]: > 0 when A is better."""
        if self.config.label_by == "scores":
            return a.result["reward"] - b.result["reward"]
        fut = self.service.submit_compare(a.video.read_bytes(), b.video.read_bytes(), a.prompt, self.request_kwargs())
        try:
            overall = fut.result()["result"]["overall"]
        except Exception as e:
            raise RewardError(f"no comparison for {a.video.name} vs {b.video.name}: {e}") from e
        return overall["p_a_better"] - overall["p_b_better"]

    def update(self, samples: list[Sample], step: int) -> dict:
        c = self.config
        winners, losers, margins = [], [], []
        for a, b in zip(samples[0::2], samples[1::2]):
            m = self.label(a, b)
            margins.append(m)
            if abs(m) >= c.min_margin:
                w, lo = (a, b) if m > 0 else (b, a)
                winners.append(w), losers.append(lo)
        self.state["round"] = step // c.steps_per_round
        extra = {"journal": {"pair_margins": margins}}
        if not winners:
            return {"loss": self.optimize(None), "pairs": 0, **extra}  # still joins the ranks' gradient average
        x0 = torch.stack([s.latents for s in winners + losers]).to(self.device)
        gen = self.loss_generator(step)
        # rows [winners..., losers...]: paired=True gives row i and row n + i the same t and noise
        policy, reference = prediction_errors(self.pipe, x0, [s.prompt for s in winners + losers], gen, paired=True)
        loss = dpo_loss(policy, reference, c.beta)
        return {"loss": self.optimize(loss), "pairs": len(winners), **extra}
