"""The diffusion pieces every alignment method shares, in one place: prompt embedding, the
rotary position setup, seeded noise draws, the (weighted) denoising loss, latents to uint8
frames, and the memory options real CogVideoX-2B shapes need (gradient checkpointing, VAE
slicing / tiling, bf16 weights with fp32 adapters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def embed(pipe, prompts: list[str]) -> torch.Tensor:
    """T5 prompt embeddings (no guidance), padded to the transformer's text length; no gradient."""
    with torch.no_grad():
        return pipe.encode_prompt(prompts, do_classifier_free_guidance=False,
                                  max_sequence_length=pipe.transformer.config.max_text_seq_length,
                                  device=pipe.transformer.device)[0]


def rotary(pipe, latents: torch.Tensor):
    """3-D rotary embeddings for latents (B, F, C, h, w), or None when the transformer has none."""
    if not pipe.transformer.config.use_rotary_positional_embeddings:
        return None
    s = pipe.vae_scale_factor_spatial
    return pipe._prepare_rotary_positional_embeddings(latents.shape[-2] * s, latents.shape[-1] * s, latents.shape[1],
                                                      latents.device)


@dataclass
class NoiseDraw:
    """One training draw: timesteps ``t`` (B,), ``noise`` like x0, and the noised ``xt``."""

    t: torch.Tensor
    noise: torch.Tensor
    xt: torch.Tensor


def draw_noise(scheduler, x0: torch.Tensor, generator: torch.Generator, t: torch.Tensor | None = None,
               paired: bool = False, shared: bool = False) -> NoiseDraw:
    """t uniform over the training timesteps (one per row; or given) and Gaussian noise, from ``generator`` (CPU).

    Drawn on the CPU so that the same seed gives the same draw on every device. ``paired``: the batch is
    ``[winners..., losers...]`` and row i of each half gets the same t and noise (Diffusion-DPO's
    chunk-and-repeat, train.py L1053-1055); ``shared``: every row gets the same t and noise; a given ``t``
    is used as it is."""
    b = x0.shape[0]
    if paired and b % 2:
        raise ValueError(f"a paired batch needs an even number of rows, got {b}")
    n = 1 if shared else b // 2 if paired else b
    reps = b // n
    if t is None:
        t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator).repeat(reps)
    noise = torch.randn((n, *x0.shape[1:]), generator=generator, dtype=torch.float32)
    noise = noise.repeat(reps, *([1] * (x0.dim() - 1))).to(x0.device, x0.dtype)
    t = t.to(x0.device)
    return NoiseDraw(t, noise, scheduler.add_noise(x0, noise, t))


def predict_velocity(pipe, xt: torch.Tensor, prompt_embeds: torch.Tensor, t: torch.Tensor, rope=None) -> torch.Tensor:
    """The transformer's v-prediction at (xt, t)."""
    return pipe.transformer(hidden_states=xt.to(pipe.transformer.dtype),
                            encoder_hidden_states=prompt_embeds.to(pipe.transformer.dtype), timestep=t,
                            image_rotary_emb=rope, return_dict=False)[0]


def denoising_loss(pipe, x0: torch.Tensor, prompt_embeds: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample ``mean((1 / (1 - abar_t)) * (x0_pred - x0)^2)`` with t uniform and v-prediction -> x0 (LiFT's
    RWR loss), computed in float32 whatever the weights' dtype."""
    sched = pipe.scheduler
    d = draw_noise(sched, x0, generator)
    v = predict_velocity(pipe, d.xt, prompt_embeds, d.t, rotary(pipe, x0)).float()
    b = x0.shape[0]
    abar = sched.alphas_cumprod.to(x0.device)[d.t].view(b, 1, 1, 1, 1).float()
    x0_pred = abar.sqrt() * d.xt.float() - (1 - abar).sqrt() * v
    return ((x0_pred - x0.float()) ** 2).mean(dim=(1, 2, 3, 4)) / (1 - abar.view(b))


def weighted_denoising_loss(pipe, x0: torch.Tensor, prompts: list[str], weights: list[float],
                            generator: torch.Generator, denominator: int | None = None) -> torch.Tensor:
    """``sum(weight x per-sample denoising loss) / denominator`` (default: the number of samples, i.e. the mean).

    Under data parallelism each process passes the global batch size as ``denominator`` and the
    gradients are averaged x world size, so the step equals the single-process step."""
    per = denoising_loss(pipe, x0, embed(pipe, prompts), generator)
    w = torch.tensor(weights, dtype=per.dtype, device=per.device)
    return (per * w).sum() / (denominator or len(weights))


def latents_to_uint8(pipe, latents: torch.Tensor) -> np.ndarray:
    """Decode latents (1, F, C, h, w) with the VAE into (F, H, W, 3) uint8 frames."""
    with torch.no_grad():
        video = pipe.decode_latents(latents.to(pipe.vae.dtype))
    frames = pipe.video_processor.postprocess_video(video=video.float(), output_type="np")[0]
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def encode_frames(pipe, frames: np.ndarray, generator: torch.Generator) -> torch.Tensor:
    """(F, H, W, 3) uint8 frames -> latents (F', C, h, w) in the diffusion space (a seeded VAE draw)."""
    x = torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        dist = pipe.vae.encode(x.to(pipe.vae.device, pipe.vae.dtype)).latent_dist
        z = dist.sample(generator) * pipe.vae.config.scaling_factor
    return z.permute(0, 2, 1, 3, 4)[0]


def decode_frames(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Latents (1, F', C, h, w) -> frames (F, 3, H, W) in [0, 1], differentiable in the latents."""
    z = latents.permute(0, 2, 1, 3, 4) / pipe.vae.config.scaling_factor
    video = pipe.vae.decode(z.to(pipe.vae.dtype)).sample  # (1, 3, F, H, W) in [-1, 1]
    return (video[0].permute(1, 0, 2, 3).float() / 2 + 0.5).clamp(0, 1)


def configure_memory(pipe, gradient_checkpointing: bool = False, vae_slicing: bool = False,
                     vae_tiling: bool = False) -> None:
    """The memory options CogVideoX-2B needs at 480x720x49 on one device."""
    if gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()


def trainable_to_float32(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Adapter weights train in float32 even when the frozen weights are bf16 / fp16; returns them."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    return params
