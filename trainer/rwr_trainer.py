"""RWR (LiFT): per-sample denoising loss on generated videos, weighted by the (normalised) reward."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from clients.media import read_frames
from trainer.loop import AlignmentLoop, Sample
from trainer.normalize import NORMALIZERS
from trainer.rwr_config import RWRConfig


def denoising_loss(pipe, x0: torch.Tensor, prompt_embeds: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample ``mean((1 / (1 - abar_t)) * (x0_pred - x0)^2)`` with t uniform and v-prediction -> x0."""
    sched = pipe.scheduler
    b = x0.shape[0]
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    xt = sched.add_noise(x0, noise, t)
    rope = None
    if pipe.transformer.config.use_rotary_positional_embeddings:
        h = x0.shape[-2] * pipe.vae_scale_factor_spatial
        w = x0.shape[-1] * pipe.vae_scale_factor_spatial
        rope = pipe._prepare_rotary_positional_embeddings(h, w, x0.shape[1], x0.device)
    v = pipe.transformer(hidden_states=xt, encoder_hidden_states=prompt_embeds, timestep=t,
                         image_rotary_emb=rope, return_dict=False)[0]
    abar = sched.alphas_cumprod.to(x0.device)[t].view(b, 1, 1, 1, 1).to(x0.dtype)
    x0_pred = abar.sqrt() * xt - (1 - abar).sqrt() * v
    return ((x0_pred - x0) ** 2).mean(dim=(1, 2, 3, 4)) / (1 - abar.view(b))


def embed(pipe, prompts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return pipe.encode_prompt(prompts, do_classifier_free_guidance=False,
                                  max_sequence_length=pipe.transformer.config.max_text_seq_length)[0]


class RWRTrainer(AlignmentLoop):
    method = "rwr"

    def __init__(self, config: RWRConfig):
        super().__init__(config)
        self.real = read_real_videos(config.real_videos) if config.real_videos else []

    def real_samples(self, step: int) -> list[Sample]:
        """The step's real videos (cycled, in file order), encoded by the VAE: regularisation as in LiFT."""
        c, out = self.config, []
        for k in range(c.real_per_step if self.real else 0):
            path, prompt = self.real[(step * c.real_per_step + k) % len(self.real)]
            frames, _ = read_frames(path)
            if frames.shape[0] < c.num_frames or frames.shape[1:3] != (c.height, c.width):
                raise ValueError(f"real video {path} is {frames.shape[0]}x{frames.shape[1]}x{frames.shape[2]}; "
                                 f"it needs >= {c.num_frames} frames of {c.height}x{c.width}")
            x = torch.from_numpy(frames[: c.num_frames]).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
            with torch.no_grad():
                dist = self.pipe.vae.encode(x.to(self.device, self.pipe.vae.dtype)).latent_dist
                z = dist.sample(torch.Generator().manual_seed(c.seed + step)) * self.pipe.vae.config.scaling_factor
            out.append(Sample(prompt, -1, z.permute(0, 2, 1, 3, 4)[0], frames, Path(path)))
        return out

    def update(self, samples: list[Sample], step: int) -> dict:
        c = self.config
        rewards = [s.result["reward"] for s in samples]
        weights = NORMALIZERS[c.normalization](rewards, [s.prompt for s in samples], self.state, c)
        real = self.real_samples(step)
        loss = weighted_loss(self, samples + real, list(weights) + [c.real_weight] * len(real), step)
        return {"loss": self.optimize(loss), "real": len(real)}


def read_real_videos(jsonl: str) -> list[tuple[str, str]]:
    base = Path(jsonl).parent
    rows = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{jsonl} lists no real videos")
    return [(str(base / r["video"]), r["prompt"]) for r in rows]


def weighted_loss(loop: AlignmentLoop, samples: list[Sample], weights: list[float], step: int) -> torch.Tensor:
    """Mean over samples of weight x per-sample denoising loss (the step's t and noise are seeded)."""
    x0 = torch.stack([s.latents for s in samples]).to(loop.device)
    gen = torch.Generator().manual_seed(loop.config.seed * 7_919 + step)
    per = denoising_loss(loop.pipe, x0, embed(loop.pipe, [s.prompt for s in samples]), gen)
    return (per * torch.tensor(weights, dtype=per.dtype, device=per.device)).mean()
