"""Reward normalisations for RWR: a plain dict name -> function(rewards, prompts, state) -> weights."""

from __future__ import annotations

import math


def none(rewards, prompts, state, cfg):
    return list(rewards)  # as published: no normalisation, no baseline


def batch_z(rewards, prompts, state, cfg):
    n = len(rewards)
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n) or 1.0
    return [(r - mean) / std for r in rewards]


def per_prompt(rewards, prompts, state, cfg):
    """Advantage against each prompt's running mean / std (kept in ``state``, checkpointed)."""
    stats = state.setdefault("per_prompt", {})
    out = []
    for r, p in zip(rewards, prompts):
        mean, var = stats.get(p, (r, 0.0))
        out.append((r - mean) / (math.sqrt(var) + 1e-6) if var > 0 else 0.0)
        m = cfg.momentum
        new_mean = m * mean + (1 - m) * r
        stats[p] = (new_mean, m * var + (1 - m) * (r - mean) * (r - new_mean))
    return out


def softmax(rewards, prompts, state, cfg):
    """Weights summing to the batch size: exp(r / T) normalised."""
    top = max(rewards)
    e = [math.exp((r - top) / cfg.temperature) for r in rewards]
    total = sum(e)
    return [len(rewards) * x / total for x in e]


NORMALIZERS = {"none": none, "batch_z": batch_z, "per_prompt": per_prompt, "softmax": softmax}
