"""What Diffusion-DPO and Diffusion-KTO share: the v-prediction error of the policy (LoRA on)
and of the frozen reference (the same network with the adapter disabled), at one shared t and noise."""

from __future__ import annotations

import torch

from trainer.rwr_trainer import embed


def prediction_errors(pipe, x0: torch.Tensor, prompts: list[str], generator: torch.Generator):
    """Per-sample MSE of the predicted velocity for the policy and for the reference."""
    sched = pipe.scheduler
    b = x0.shape[0]
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    xt = sched.add_noise(x0, noise, t)
    target = sched.get_velocity(x0, noise, t)
    emb = embed(pipe, prompts)
    rope = None
    if pipe.transformer.config.use_rotary_positional_embeddings:
        s = pipe.vae_scale_factor_spatial
        rope = pipe._prepare_rotary_positional_embeddings(x0.shape[-2] * s, x0.shape[-1] * s, x0.shape[1], x0.device)

    def err(v):
        return ((v.float() - target.float()) ** 2).mean(dim=(1, 2, 3, 4))

    kw = dict(hidden_states=xt, encoder_hidden_states=emb, timestep=t, image_rotary_emb=rope, return_dict=False)
    policy = err(pipe.transformer(**kw)[0])
    pipe.transformer.disable_adapters()
    try:
        with torch.no_grad():
            reference = err(pipe.transformer(**kw)[0])
    finally:
        pipe.transformer.enable_adapters()
    return policy, reference
