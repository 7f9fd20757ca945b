"""What Diffusion-DPO and Diffusion-KTO share: the v-prediction error of the policy (LoRA on)
and of the frozen reference (the same network with the adapter disabled), and the two losses
on those errors, written as the authors' code computes them.

Originals (cited by commit, file and line):
- Diffusion-DPO: SalesforceAIResearch/DiffusionDPO @5233e75, train.py. Winner and loser of a pair share
  the timestep and the noise (L1053-1055: ``timesteps.chunk(2)[0].repeat(2)``, same for the noise);
  loss L1125-1145: ``-logsigmoid(-0.5 * beta * ((err_w - err_l) - (ref_w - ref_l))).mean()``;
  beta 5000 by default (L344).
- Diffusion-KTO: jacklishufan/diffusion-kto @226bbd0, train_kto_sd_v1.5.py. Implicit reward
  ``g = ref_err - err`` (L1451-1453), reference point ``kl = mean(g).clamp(min=0)`` detached (L1459, L1469-1472),
  ``loss = w_y * (1 - sigmoid(sign_y * beta * (g - kl)))`` (L1457, L1473-1475, L1488-1492, L1509); beta 1000 (L387-391);
  class-balanced sampling of desirable / undesirable examples with ``positive_ratio`` (L724-753, L1186-1190;
  0.8 in exps/example.sh).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.diffusion import NoiseDraw, draw_noise, embed, predict_velocity, rotary


def prediction_errors(pipe, x0: torch.Tensor, prompts: list[str], generator: torch.Generator | None,
                      paired: bool = False, shared: bool = False, draw: NoiseDraw | None = None):
    """Per-sample MSE of the predicted velocity for the policy and for the reference (no gradient), at one t and
    noise per row, per (winner, loser) pair when ``paired``, or for the whole batch when ``shared``
    (see ``trainer.diffusion.draw_noise``); or at a given ``draw``."""
    sched = pipe.scheduler
    d = draw or draw_noise(sched, x0, generator, paired=paired, shared=shared)
    target = sched.get_velocity(x0, d.noise, d.t).float()
    emb, rope = embed(pipe, prompts), rotary(pipe, x0)

    def err():
        v = predict_velocity(pipe, d.xt, emb, d.t, rope).float()
        return ((v - target) ** 2).mean(dim=tuple(range(1, v.dim())))

    policy = err()
    pipe.transformer.disable_adapters()
    try:
        with torch.no_grad():
            reference = err()
    finally:
        pipe.transformer.enable_adapters()
    return policy, reference


def dpo_loss(policy: torch.Tensor, reference: torch.Tensor, beta: float) -> torch.Tensor:
    """Diffusion-DPO on errors laid out ``[winners..., losers...]``; an identical pair gives log 2 exactly."""
    policy_w, policy_l = policy.chunk(2)
    reference_w, reference_l = reference.detach().chunk(2)
    inside = -0.5 * beta * ((policy_w - policy_l) - (reference_w - reference_l))
    return -F.logsigmoid(inside).mean()


def kto_loss(policy: torch.Tensor, reference: torch.Tensor, desirable: torch.Tensor, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
             batch_mean: torch.Tensor | None = None) -> torch.Tensor:
    """Diffusion-KTO (sigmoid value function, batch reference point clamped at 0). ``batch_mean``: the
    implicit reward's mean over all processes when data-parallel (the original all-reduces it, L1470);
    default, this batch's mean."""
    implicit = reference.detach() - policy  # > 0: the policy explains this video better than the reference
    z0 = (implicit.detach().mean() if batch_mean is None else batch_mean.detach()).clamp(min=0)
    sign = desirable.to(implicit.dtype) * 2 - 1
    weight = torch.where(desirable, desirable_weight, undesirable_weight).to(implicit.dtype)
    return (weight * (1 - torch.sigmoid(sign * beta * (implicit - z0)))).mean()


def balanced_draw(desirable: torch.Tensor, positive_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Row indices (with replacement, as many as rows) drawn so that desirable rows make up ``positive_ratio``
    of the draw in expectation: Diffusion-KTO's class weights ``N / count[c]`` times the ratio (or 1 - ratio)."""
    if not 0.0 <= positive_ratio <= 1.0:
        raise ValueError(f"positive_ratio must be in [0, 1], got {positive_ratio}")
    n = desirable.numel()
    n_pos = int(desirable.sum())
    w_pos = n / (n_pos + 1e-9) * positive_ratio
    w_neg = n / (n - n_pos + 1e-9) * (1 - positive_ratio)
    weights = torch.where(desirable, w_pos, w_neg).double()
    if float(weights.sum()) <= 0:  # every row in a class whose ratio is 0: nothing to rebalance toward
        weights = torch.ones(n, dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=generator)
