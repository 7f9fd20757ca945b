"""InstructVideo editing against a real image-reward service (tiny CLIP, loopback): TSN frames,
the unnormalised attenuated mean, guidance and offset noise in the partial chain, the
differentiable reward path and the service path, editing model samples or given videos."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import start_service
from critic.backends.image_reward import aggregate
from trainer.config import ConfigError
from trainer.edit_config import EditConfig
from trainer.edit_trainer import EditTrainer

pytestmark = pytest.mark.timeout(900)
PROMPTS = ["a red ball moves over green grass", "a blue square moves over a grey road"]


@pytest.fixture(scope="module")
def ir_service(tiny_clip_path):
    from serving import launch

    yield start_service(model=str(tiny_clip_path),
                        critic={"backend": "image-reward", "options": {"aggregate": "attenuated"}}).url
    launch.shutdown()


def _config(tmp_path, pipeline, service, clip, name, **kw):
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS) + "\n")
    return EditConfig(**{**dict(pipeline=str(pipeline), prompts=str(tmp_path / "p.txt"),
                                output_dir=str(tmp_path / name), service_url=service, reward_model=str(clip),
                                steps=2, batch_size=2, inference_steps=2, edit_steps=10, lr=1e-2,
                                checkpoint_every=2, seed=4, tensorboard=False, gradient_checkpointing=True), **kw})


def _train(t):
    before = {n: p.detach().clone() for n, p in t.pipe.transformer.named_parameters()}
    t.connect()
    try:
        t.train()
    finally:
        t.close()
    changed = {n for n, p in t.pipe.transformer.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora" in n for n in changed)
    return [json.loads(line) for line in open(t.journal)]


def _check_rewards(rows, num_frames=9):
    for r in rows:
        idx = r["frame_indices"]
        span = num_frames // 4
        assert len(idx) == 4 and all(k * span <= i < (k + 1) * span for k, i in enumerate(idx))  # TSN
        assert r["aggregation"] == {"method": "attenuated", "attenuation_lambda": 1.0, "num_frames": num_frames}
        scores = torch.tensor(next(iter(r["frame_scores"].values())), dtype=torch.float64)
        weights = torch.exp(-(torch.tensor(idx, dtype=torch.float64) - num_frames // 2).abs())
        assert r["reward"] == pytest.approx(float((weights * scores).mean()), abs=1e-9)  # VGen: unnormalised mean
        assert r["reward"] == pytest.approx(float(aggregate(scores, idx, num_frames, "attenuated")), abs=1e-9)


def test_differentiable_reward_trains_through_the_last_steps(tmp_path, tiny_pipeline, tiny_clip_path, ir_service):
    t = EditTrainer(_config(tmp_path, tiny_pipeline, ir_service, tiny_clip_path, "diff"))
    rows = _train(t)
    assert len(rows) == 4
    _check_rewards(rows)
    import csv

    logged = list(csv.DictReader(open(t.out / "log.csv")))
    # the in-process reward (differentiable frames) tracks the service's reward of the same edited videos
    for row, pair in zip(logged, (rows[:2], rows[2:])):
        assert float(row["inproc_reward"]) == pytest.approx(sum(r["reward"] for r in pair) / 2, abs=0.05)


def test_reward_gradient_reaches_the_adapter_only_through_the_tail(tmp_path, tiny_pipeline, tiny_clip_path):
    t = EditTrainer(_config(tmp_path, tiny_pipeline, "http://127.0.0.1:1", tiny_clip_path, "grad", grad_steps=2,
                            gradient_checkpointing=False))
    for name, p in t.pipe.transformer.named_parameters():  # a non-zero adapter so every LoRA factor gets gradient
        if "lora_B" in name:
            p.data.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    latents, frames = t.generate(PROMPTS[0], 7)
    assert frames.shape == (9, 64, 64, 3) and 7 in t._tails
    from trainer.diffusion import decode_frames

    tail = t.chain()[-2:]
    out = t.run_steps(t._tails[7], tail, PROMPTS[0], grad=True)
    assert torch.allclose(out[0], latents, atol=1e-5)  # the tail re-run with gradient is the same edit
    idx = t.frame_indices(7)
    reward = aggregate(t.scorer.frame_scores(decode_frames(t.pipe, out)[idx], PROMPTS[0]), idx, 9, "attenuated")
    (1 - reward).backward()
    grads = [p.grad for p in t.params]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    t2 = EditTrainer(_config(tmp_path, tiny_pipeline, "http://127.0.0.1:1", tiny_clip_path, "ck", grad_steps=2))
    t2.pipe.transformer.load_state_dict(t.pipe.transformer.state_dict())
    t2.generate(PROMPTS[0], 7)
    out2 = t2.run_steps(t2._tails[7], t2.chain()[-2:], PROMPTS[0], grad=True)  # with checkpointing
    reward2 = aggregate(t2.scorer.frame_scores(decode_frames(t2.pipe, out2)[idx], PROMPTS[0]), idx, 9, "attenuated")
    (1 - reward2).backward()
    assert all(torch.allclose(a.grad, b, atol=1e-6) for a, b in zip(t2.params, grads))


def test_service_path_edits_given_videos(tmp_path, tiny_pipeline, tiny_clip_path, ir_service):
    from contract.video import encode_video
    from critic.samples import make_clip

    (tmp_path / "v").mkdir()
    lines = []
    for k, defect in enumerate((None, "flicker", None)):
        (tmp_path / "v" / f"{k}.mp4").write_bytes(encode_video(make_clip(9, 64, defect=defect), fps=8))
        lines.append(json.dumps({"video": f"{k}.mp4", "prompt": PROMPTS[k % 2]}))
    (tmp_path / "v" / "set.jsonl").write_text("\n".join(lines) + "\n")
    t = EditTrainer(_config(tmp_path, tiny_pipeline, ir_service, tiny_clip_path, "svc", reward="service",
                            reward_model=None, source="videos", videos=str(tmp_path / "v" / "set.jsonl")))
    rows = _train(t)
    assert [r["prompt"] for r in rows] == [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0]]  # the videos' prompts
    _check_rewards(rows)


def test_edit_config_checks():
    base = dict(pipeline="p", prompts="q", output_dir="o")
    with pytest.raises(ConfigError, match="reward_model"):
        EditConfig(**base)
    with pytest.raises(ConfigError, match="videos"):
        EditConfig(**base, reward="service", source="videos")
    with pytest.raises(ConfigError, match="aggregate"):
        EditConfig(**base, reward="service", aggregate="median")
    c = EditConfig(**base, reward_model="clip")
    assert (c.edit_steps, c.edit_strength, c.edit_guidance, c.offset_noise, c.segments, c.aggregate, c.grad_steps) == \
        (20, 0.6, 3.0, 0.1, 4, "attenuated", 1)


# ---- VGen's partial chain and temporal offset noise, transcribed (ali-vilab/VGen @4014d1f) ------------------------

VGEN_DDIM = 20  # configs/instructvideo/train/reward_webvid_ani45_20_..._ddim20.yaml L78-79


def _vgen_steps(num_timesteps=1000, ddim_timesteps=VGEN_DDIM):
    # tools/modules/diffusions/diffusion_ddim.py L528
    return (1 + torch.arange(0, num_timesteps, num_timesteps // ddim_timesteps)).clamp(0, num_timesteps - 1).flip(0)


def _vgen_partial(starting_partial, trunc_backprop_timestep):
    """(t_round, the chain's steps, the steps run without gradient): train_t2v_instructvideo_entrance.py L319 and
    diffusion_ddim.py L528-530, L539."""
    ddim_steps = _vgen_steps().tolist()
    t_round = ddim_steps[-int(starting_partial * VGEN_DDIM)]
    steps = _vgen_steps()
    starting_step = int(len(steps) * starting_partial)
    steps = steps[-starting_step:]
    no_grad = [int(s) for s in steps if s > steps[-trunc_backprop_timestep]]
    return t_round, steps.tolist(), no_grad


def _vgen_spaced_scheduler(**kw):
    """A DDIM schedule spaced as VGen's ("leading", offset 1: 951, 901, ..., 1; its last step goes to abar[0])."""
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, **kw)


@pytest.mark.parametrize("strength", [0.6, 0.55, 0.63, 0.3, 0.05, 1.0])
def test_partial_chain_is_vgens(strength):
    from trainer.edit_trainer import partial_chain

    sched = _vgen_spaced_scheduler()
    sched.set_timesteps(VGEN_DDIM)
    assert sched.timesteps.tolist() == _vgen_steps().tolist()
    ours = partial_chain(sched.timesteps, strength).tolist()
    for trunc in range(1, len(ours) + 1):
        t_round, steps, no_grad = _vgen_partial(strength, trunc)
        assert ours == steps and ours[0] == t_round  # noised to the chain's first step, then the chain runs
        assert ours[: len(ours) - trunc] == no_grad  # grad_steps = trunc_backprop_timestep
    if strength == 0.63:  # 12.6 steps: VGen truncates to 12 (rounding the skipped share gave 13)
        assert len(ours) == 12
    with pytest.raises(ValueError, match="no step"):  # VGen's steps[-0:] would silently run the whole chain
        partial_chain(sched.timesteps, 0.04)


def test_temporal_offset_noise_is_vgens():
    from trainer.edit_trainer import temporal_offset_noise

    shape = (2, 3, 4, 5, 6)  # ours (B, F, C, h, w); VGen's video_data is (B, C, F, h, w)
    ours = temporal_offset_noise(torch.Size(shape), 0.1, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    draws = iter([torch.randn(shape, generator=g).transpose(1, 2), torch.randn((2, 3, 4, 1, 1), generator=g)
                  .transpose(1, 2)])  # the same Gaussian draws, in VGen's layout

    def vgen(video_data, strength):
        # tools/train/train_t2v_instructvideo_entrance.py L338-341 (torch.randn -> the draws above)
        noise = next(draws)
        b, c, f, h, w = video_data.shape
        offset_noise = next(draws)
        assert offset_noise.shape == (b, c, f, 1, 1)
        return noise + strength * offset_noise

    assert torch.equal(ours, vgen(torch.zeros(2, 4, 3, 5, 6), 0.1).transpose(1, 2))
    big = temporal_offset_noise(torch.Size((4, 13, 16, 8, 8)), 0.1, torch.Generator().manual_seed(0))
    base = torch.randn((4, 13, 16, 8, 8), generator=torch.Generator().manual_seed(0))
    offset = big - base  # one constant per (video, frame, channel), of scale 0.1
    assert torch.allclose(offset, offset[..., :1, :1].expand_as(offset), atol=1e-6)
    assert 0.08 < float(offset[..., 0, 0].std()) < 0.12


def test_guided_ddim_step_is_vgens(tmp_path, tiny_pipeline):
    from trainer.diffusion import embed, predict_velocity, rotary

    t = EditTrainer(_config(tmp_path, tiny_pipeline, "http://127.0.0.1:1", None, "step", reward="service",
                            reward_model=None, edit_steps=VGEN_DDIM))
    t.pipe.scheduler = _vgen_spaced_scheduler(**{k: v for k, v in t.pipe.scheduler.config.items()
                                                 if k not in ("timestep_spacing", "steps_offset", "set_alpha_to_one")
                                                 and not k.startswith("_")})
    abar = t.pipe.scheduler.alphas_cumprod.double()
    cfg = t.pipe.transformer.config
    xt = torch.randn((1, 3, cfg.in_channels, 8, 8), generator=torch.Generator().manual_seed(1))
    cond, uncond, rope = embed(t.pipe, [PROMPTS[0]]), embed(t.pipe, [""]), rotary(t.pipe, xt)
    chain = t.chain()
    assert chain.tolist() == _vgen_partial(0.6, 1)[1]
    stride = 1000 // VGEN_DDIM
    for step in (chain[0], chain[len(chain) // 2], chain[-1]):  # the last one goes to abar[0]
        with torch.no_grad():
            ours = t.denoise(xt, step, cond, uncond, rope).double()
            y_out = predict_velocity(t.pipe, xt, cond, step.expand(1), rope).double()
            u_out = predict_velocity(t.pipe, xt, uncond, step.expand(1), rope).double()
        # diffusion_ddim.py L161 (guidance), L194-196 (mean_type 'v'), L572-590 (DDIM, eta 0)
        out = u_out + 3.0 * (y_out - u_out)
        x = xt.double()
        x0 = abar[step].sqrt() * x - (1 - abar[step]).sqrt() * out
        eps = ((1 / abar[step]).sqrt() * x - x0) / (1 / abar[step] - 1).sqrt()
        alphas_prev = abar[(step - stride).clamp(0)]
        vgen = alphas_prev.sqrt() * x0 + (1 - alphas_prev).sqrt() * eps
        assert torch.allclose(ours, vgen, atol=1e-4), (int(step), float((ours - vgen).abs().max()))
