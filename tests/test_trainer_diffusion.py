"""The shared diffusion helpers on the tiny CogVideoX (CPU): the memory options change memory, not results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.diffusion import (configure_memory, latents_to_uint8, trainable_to_float32,
                               weighted_denoising_loss)
from trainer.generator import add_lora, load_pipeline

PROMPTS = ["a red ball moves over green grass", "a blue square moves over a grey road"]


def _pipe(path, dtype=torch.float32, **memory):
    pipe = load_pipeline(path, device="cpu", dtype=dtype)
    configure_memory(pipe, **memory)
    torch.manual_seed(0)
    add_lora(pipe, rank=4)
    for name, p in pipe.transformer.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))  # a non-zero adapter
    return pipe, trainable_to_float32(pipe.transformer)


def _loss_and_grads(pipe, params, x0):
    loss = weighted_denoising_loss(pipe, x0, PROMPTS, [1.0, -0.5], torch.Generator().manual_seed(3))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_pipeline):
    x0 = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    plain, plain_params = _pipe(tiny_pipeline)
    ck, ck_params = _pipe(tiny_pipeline, gradient_checkpointing=True)
    assert ck.transformer.gradient_checkpointing and not plain.transformer.gradient_checkpointing
    ck.transformer.train()  # diffusers checkpoints only in training mode with grad enabled
    l1, g1 = _loss_and_grads(plain, plain_params, x0)
    l2, g2 = _loss_and_grads(ck, ck_params, x0)
    assert torch.allclose(l1, l2, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2)) and any(a.abs().sum() > 0 for a in g1)


def test_weighted_loss_is_sum_over_denominator(tiny_pipeline):
    pipe, _ = _pipe(tiny_pipeline)
    x0 = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    mean = weighted_denoising_loss(pipe, x0, PROMPTS, [1.0, 2.0], torch.Generator().manual_seed(3))
    half = weighted_denoising_loss(pipe, x0, PROMPTS, [1.0, 2.0], torch.Generator().manual_seed(3), denominator=4)
    assert torch.allclose(mean, 2 * half)


def test_bf16_weights_train_a_float32_adapter(tiny_pipeline):
    pipe, params = _pipe(tiny_pipeline, dtype=torch.bfloat16)
    assert pipe.transformer.dtype == torch.bfloat16 or any(p.dtype == torch.bfloat16
                                                          for p in pipe.transformer.parameters())
    assert params and all(p.dtype == torch.float32 for p in params)
    x0 = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    loss, grads = _loss_and_grads(pipe, params, x0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("memory", [{}, {"vae_slicing": True}, {"vae_tiling": True}])
def test_latents_to_uint8(tiny_pipeline, memory):
    pipe, _ = _pipe(tiny_pipeline, **memory)
    if memory.get("vae_tiling"):  # the tiny VAE's default tiles (32 px, overlap 1/6) do not divide 64 px evenly
        pipe.vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=32, tile_overlap_factor_height=0.25,
                               tile_overlap_factor_width=0.25)
        assert pipe.vae.use_tiling
    latents = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    frames = latents_to_uint8(pipe, latents)
    assert frames.shape == (9, 64, 64, 3) and frames.dtype.name == "uint8" and frames.std() > 0
    if memory:
        plain, _ = _pipe(tiny_pipeline)
        whole = latents_to_uint8(plain, latents).astype(float)
        if memory.get("vae_slicing"):  # slicing is exact
            assert abs(frames - whole).max() <= 1
        else:  # tiling blends overlapping tiles decoded apart: the same picture, not the same pixels
            assert np.corrcoef(frames.astype(float).ravel(), whole.ravel())[0, 1] > 0.9
