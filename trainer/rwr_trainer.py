"""RWR (LiFT): per-sample denoising loss on generated videos, weighted by the (normalised) reward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from contract.video import decode_sampled
from trainer.diffusion import encode_frames, weighted_denoising_loss
from trainer.loop import AlignmentLoop, Sample
from trainer.normalize import NORMALIZERS
from trainer.rwr_config import RWRConfig


class RWRTrainer(AlignmentLoop):
    method = "rwr"

    def __init__(self, config: RWRConfig):
        super().__init__(config)
        self.real = read_real_videos(config.real_videos) if config.real_videos else []

    def real_samples(self, step: int) -> list[Sample]:
        """The step's real videos (cycled, in file order), encoded by the VAE: regularisation as in LiFT."""
        c, out = self.config, []
        for k in self.ranks.share(c.real_per_step if self.real else 0):  # each rank its share
            path, prompt = self.real[(step * c.real_per_step + k) % len(self.real)]
            frames = read_clip(path, c)
            z = encode_frames(self.pipe, frames, torch.Generator().manual_seed(c.seed + step))
            out.append(Sample(prompt, -1, z, frames, Path(path)))
        return out

    def update(self, samples: list[Sample], step: int) -> dict:
        c = self.config
        rewards, prompts = self.batch_rewards()  # normalised over the whole batch, on every rank alike
        weights = NORMALIZERS[c.normalization](rewards, prompts, self.state, c)
        real = self.real_samples(step)
        mine = [weights[s.index] for s in samples] + [c.real_weight] * len(real)
        loss = weighted_loss(self, samples + real, mine, step)
        return {"loss": self.optimize(loss), "real": len(real)}


def read_real_videos(jsonl: str) -> list[tuple[str, str]]:
    base = Path(jsonl).parent
    rows = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{jsonl} lists no real videos")
    return [(str(base / r["video"]), r["prompt"]) for r in rows]


def read_clip(path: str, c) -> np.ndarray:
    """The first ``num_frames`` frames of a given video (decoded under the default ``VideoLimits``), which
    must have the generator's size."""
    clip = decode_sampled(path, lambda n, fps: range(min(n, c.num_frames)))
    frames = clip.frames
    if clip.num_frames < c.num_frames or frames.shape[1:3] != (c.height, c.width):
        raise ValueError(f"video {path} is {clip.num_frames}x{frames.shape[1]}x{frames.shape[2]}; "
                         f"it needs >= {c.num_frames} frames of {c.height}x{c.width}")
    return frames


def weighted_loss(loop: AlignmentLoop, samples: list[Sample], weights: list[float], step: int) -> torch.Tensor:
    """Mean over samples of weight x per-sample denoising loss (the step's t and noise are seeded)."""
    x0 = torch.stack([s.latents for s in samples]).to(loop.device)
    return weighted_denoising_loss(loop.pipe, x0, [s.prompt for s in samples], weights, loop.loss_generator(step))
