"""InstructVideo's reward fine-tuning as editing, VGen's choices by default.

Each sample: a source video (the reference model's own sample of the prompt, or a given video:
``source``) is noised to ``edit_strength`` of an ``edit_steps``-step DDIM chain (plus temporal
offset noise) and the policy denoises the rest with classifier-free guidance inside the chain
(the edit). K frames are scored, one at a seeded offset in each TSN segment (span F // K), and
combined by ``critic.backends.image_reward.aggregate`` (VGen: the unnormalised attenuated mean).

``reward: differentiable`` (InstructVideo): the in-process image-reward model scores the frames
and ``1 - reward`` is back-propagated through the last ``grad_steps`` steps of the chain (the
earlier steps run without gradient; ``gradient_checkpointing`` recomputes the tail in backward).
``reward: service``: one request per video, the service samples the same TSN frames and
aggregates them; with no gradient through the reward, the edited videos are reinforced by
the denoising loss weighted by their (bounded, non-negative by default) normalised reward.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from contract.sampling import FrameSampling
from trainer.diffusion import decode_frames, embed, encode_frames, latents_to_uint8, predict_velocity, rotary
from trainer.edit_config import EditConfig
from trainer.loop import AlignmentLoop, RewardError, Sample
from trainer.normalize import NORMALIZERS
from trainer.rwr_trainer import read_clip, read_real_videos, weighted_loss


class EditTrainer(AlignmentLoop):
    method = "edit"

    def __init__(self, config: EditConfig):
        super().__init__(config)
        self.videos = read_real_videos(config.videos) if config.source == "videos" else []
        self.holdout_videos = read_real_videos(config.holdout_videos) if config.holdout_videos else []
        if self.holdout_videos:
            self.holdout = [p for _, p in self.holdout_videos]
        self.scorer = None
        if config.reward == "differentiable":
            from critic.backends.image_reward import ImageRewardScorer

            self.scorer = ImageRewardScorer(config.reward_model, device=self.device)
        self._tails: dict[int, torch.Tensor] = {}  # seed -> latents before the chain's last grad_steps steps

    # ---- what is edited -------------------------------------------------------------------------

    def batch_prompts(self, step: int) -> list[str]:
        if not self.videos:
            return super().batch_prompts(step)
        b = self.config.batch_size
        return [self.videos[(step * b + i) % len(self.videos)][1] for i in range(b)]

    def source_latents(self, prompt: str, seed: int) -> torch.Tensor:
        """x0 of the edit (1, F', C, h, w): the given video for this sample's position, else a reference sample."""
        c = self.config
        flat = seed - c.seed * 1_000_003  # = seed step x batch_size + index (see sample_seed)
        holdout = flat >= 10**6 * c.batch_size  # evaluate() draws from seed step 10**6
        pool = self.holdout_videos if holdout else self.videos
        if pool:
            path, _ = pool[(flat - 10**6 * c.batch_size if holdout else flat) % len(pool)]
            z = encode_frames(self.pipe, read_clip(path, c), torch.Generator().manual_seed(seed))
            return z[None].to(self.device, self.pipe.transformer.dtype)
        self.pipe.transformer.disable_adapters()
        try:
            return self.pipe(prompt=prompt, num_frames=c.num_frames, height=c.height, width=c.width,
                             num_inference_steps=c.inference_steps, guidance_scale=1.0,
                             generator=torch.Generator().manual_seed(seed), output_type="latent").frames
        finally:
            self.pipe.transformer.enable_adapters()

    # ---- the edit -------------------------------------------------------------------------------

    def chain(self) -> torch.Tensor:
        """The partial chain's timesteps: the last ``edit_strength`` of the model's own ``edit_steps``-step schedule
        (CogVideoX's is "trailing", 999 ... 49; VGen's ModelScope schedule is "leading" + 1, 951 ... 1)."""
        self.pipe.scheduler.set_timesteps(self.config.edit_steps)
        return partial_chain(self.pipe.scheduler.timesteps, self.config.edit_strength)

    def denoise(self, latents: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                rope) -> torch.Tensor:
        """One guided DDIM step of the policy (differentiable)."""
        g = self.config.edit_guidance
        if g > 1:
            v_u, v_c = predict_velocity(self.pipe, torch.cat([latents, latents]), torch.cat([uncond, cond]),
                                        t.expand(2), rope).float().chunk(2)
            v = v_u + g * (v_c - v_u)
        else:
            v = predict_velocity(self.pipe, latents, cond, t.expand(1), rope).float()
        return self.pipe.scheduler.step(v, t, latents.float(), return_dict=False)[0]

    def run_steps(self, latents, timesteps, prompt: str, grad: bool) -> torch.Tensor:
        cond, uncond, rope = embed(self.pipe, [prompt]), embed(self.pipe, [""]), rotary(self.pipe, latents)
        for t in timesteps:
            if grad and self.config.gradient_checkpointing:
                latents = checkpoint(self.denoise, latents, t, cond, uncond, rope, use_reentrant=False)
            else:
                latents = self.denoise(latents, t, cond, uncond, rope)
        return latents

    @torch.no_grad()
    def generate(self, prompt: str, seed: int):
        c = self.config
        x0 = self.source_latents(prompt, seed)
        timesteps = self.chain()
        noise = temporal_offset_noise(x0.shape, c.offset_noise, torch.Generator().manual_seed(seed + 1))
        latents = self.pipe.scheduler.add_noise(x0.float(), noise.to(x0.device), timesteps[:1].repeat(x0.shape[0]))
        head = len(timesteps) - c.grad_steps
        latents = self.run_steps(latents, timesteps[:head], prompt, grad=False)
        self._tails[seed] = latents
        latents = self.run_steps(latents, timesteps[head:], prompt, grad=False)
        return latents[0], latents_to_uint8(self.pipe, latents)

    # ---- the reward -----------------------------------------------------------------------------

    def frame_indices(self, seed: int) -> list[int]:
        return self.frame_sampling(seed).indices(self.config.num_frames, self.config.fps)

    def frame_sampling(self, seed: int) -> FrameSampling:
        return FrameSampling.segmental(self.config.segments, seed=seed % 2**31, rule="tsn")

    def sample_request(self, sample: Sample) -> dict:
        return {**self.request_kwargs(), "sampling": self.frame_sampling(sample.seed).describe()}

    def score(self, samples: list[Sample], step: int, tag: str) -> None:
        super().score(samples, step, tag)
        if tag != "train":  # nothing trains on evaluation videos
            for s in samples:
                self._tails.pop(s.seed, None)
        want = {"method": self.config.aggregate, "attenuation_lambda": self.config.attenuation}
        for s in samples:
            got = {k: (s.result.get("aggregation") or {}).get(k) for k in want}
            if got["method"] is not None and got != want:
                raise RewardError(f"the service aggregates frame scores as {got}; this run needs {want} "
                                  "(set the service's image-reward aggregate option)")

    def update(self, samples: list[Sample], step: int) -> dict:
        c = self.config
        if c.reward == "service":
            rewards, prompts = self.batch_rewards()
            weights = NORMALIZERS[c.normalization](rewards, prompts, self.state, c)
            loss = weighted_loss(self, samples, [weights[s.index] for s in samples], step)
            self._tails.clear()
            return {"loss": self.optimize(loss)}
        from critic.backends.image_reward import aggregate

        tail = self.chain()[len(self.chain()) - c.grad_steps:]
        rewards = []
        for s in samples:
            latents = self.run_steps(self._tails.pop(s.seed), tail, s.prompt, grad=True)
            frames = decode_frames(self.pipe, latents)
            idx = self.frame_indices(s.seed)
            scores = self.scorer.frame_scores(frames[idx], s.prompt)
            rewards.append(aggregate(scores, idx, frames.shape[0], c.aggregate, c.attenuation))
        rewards = torch.stack(rewards)
        loss = (1 - rewards).mean()
        self._tails.clear()
        return {"loss": self.optimize(loss), "inproc_reward": float(rewards.detach().mean())}


def partial_chain(timesteps: torch.Tensor, strength: float) -> torch.Tensor:
    """The last ``int(len(timesteps) * strength)`` steps of a sampling schedule, where the edit starts: VGen
    (ali-vilab/VGen @4014d1f, tools/modules/diffusions/diffusion_ddim.py L528-530, ``starting_step =
    int(len(steps) * starting_partial); steps = steps[-starting_step:]``; the video is noised to the first of them,
    tools/train/train_t2v_instructvideo_entrance.py L319, ``ddim_steps[-int(starting_partial * ddim_timesteps)]``)."""
    n = int(len(timesteps) * strength)
    if n < 1:
        raise ValueError(f"edit_strength {strength} of {len(timesteps)} steps leaves no step to re-run")
    return timesteps[len(timesteps) - n:]


def temporal_offset_noise(shape: torch.Size, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise of ``shape`` (B, F, C, h, w) plus ``strength`` x a Gaussian constant per (video, frame,
    channel), drawn in that order: VGen's temporal offset noise (tools/train/train_t2v_instructvideo_entrance.py
    L337-341, ``randn_like(video) + strength * randn(b, c, f, 1, 1)`` in its (B, C, F, h, w) layout; 0.1 in
    configs/instructvideo/train/reward_webvid_ani45_20_..._ddim20.yaml L105-106)."""
    noise = torch.randn(shape, generator=generator)
    b, f, ch = shape[:3]
    return noise + strength * torch.randn((b, f, ch, 1, 1), generator=generator)
