"""InstructVideo's reward fine-tuning as editing, with rewards from the critic service.

Each step: sample a video with the reference (adapter off), noise it to ``edit_strength``
of a ``edit_steps``-step DDIM chain, and run only the remaining steps with the policy (the
edit). The reward is segmental and temporally attenuated: one frame at a seeded offset in
each of K segments is scored by the service, and frame i weighs ``exp(-lambda*|i - F//2|)``.

The service's reward is not differentiable, so instead of back-propagating through the reward
(InstructVideo uses HPSv2's gradient), the edited videos are reinforced as in RWR: the denoising
loss on each edited video, weighted by its batch-normalised reward.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from clients.media import encode_video
from trainer.diffusion import embed, latents_to_uint8, predict_velocity, rotary
from trainer.edit_config import EditConfig
from trainer.loop import AlignmentLoop, RewardError, Sample
from trainer.normalize import batch_z
from trainer.rwr_trainer import weighted_loss


def segment_frames(num_frames: int, segments: int, seed: int) -> list[int]:
    """One frame at a seeded offset inside each of K equal segments."""
    bounds = np.linspace(0, num_frames, segments + 1)
    rng = np.random.default_rng(seed)
    return [int(rng.integers(math.ceil(a), max(math.ceil(b), math.ceil(a) + 1))) for a, b in zip(bounds, bounds[1:])]


def attenuated_weights(indices: list[int], num_frames: int, lam: float) -> list[float]:
    w = [math.exp(-lam * abs(i - num_frames // 2)) for i in indices]
    return [x / sum(w) for x in w]


class EditTrainer(AlignmentLoop):
    method = "edit"

    def __init__(self, config: EditConfig):
        super().__init__(config)

    @torch.no_grad()
    def generate(self, prompt: str, seed: int):
        """Reference sample, noised to ``edit_strength``, then the rest of the chain with the policy."""
        c, pipe = self.config, self.pipe
        pipe.transformer.disable_adapters()
        try:
            base = pipe(prompt=prompt, num_frames=c.num_frames, height=c.height, width=c.width,
                        num_inference_steps=c.inference_steps, guidance_scale=1.0,
                        generator=torch.Generator().manual_seed(seed), output_type="latent").frames
        finally:
            pipe.transformer.enable_adapters()
        sched = pipe.scheduler
        sched.set_timesteps(c.edit_steps)
        start = int(round((1 - c.edit_strength) * c.edit_steps))
        timesteps = sched.timesteps[start:]
        gen = torch.Generator().manual_seed(seed + 1)
        noise = torch.randn(base.shape, generator=gen).to(base.device, base.dtype)
        latents = sched.add_noise(base, noise, timesteps[:1].repeat(base.shape[0]))
        emb, rope = embed(pipe, [prompt]), rotary(pipe, latents)
        for t in timesteps:
            v = predict_velocity(pipe, latents, emb, t.expand(1), rope)
            latents = sched.step(v, t, latents, return_dict=False)[0]
        return latents[0], latents_to_uint8(pipe, latents)

    def score(self, samples: list[Sample], step: int, tag: str) -> None:
        """Score the K segment frames of each edited video and combine them with attenuated weights."""
        super().score(samples, step, tag)  # whole-video result kept for the journal
        c = self.config
        for s in samples:
            idx = segment_frames(c.num_frames, c.segments, s.seed)
            futures = [self.service.submit(video=encode_video(np.repeat(s.frames[i : i + 1], 2, axis=0), fps=c.fps),
                                           prompt=s.prompt, request_id=self.request_id(tag, step, s.index, f"-f{i}"),
                                           **self.request_kwargs()) for i in idx]
            try:
                scores = [f.result()["result"]["reward"] for f in futures]
            except Exception as e:
                raise RewardError(f"no frame reward for {s.video.name}: {e}") from e
            weights = attenuated_weights(idx, c.num_frames, c.attenuation)
            s.result = {**s.result, "reward": float(sum(w * r for w, r in zip(weights, scores))),
                        "segment_frames": idx, "frame_rewards": scores}

    def update(self, samples: list[Sample], step: int) -> dict:
        weights = batch_z(self.batch_rewards()[0], None, None, None)
        return {"loss": self.optimize(weighted_loss(self, samples, [weights[s.index] for s in samples], step))}
