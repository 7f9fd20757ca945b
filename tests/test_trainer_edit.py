"""InstructVideo editing against a real image-reward service (tiny CLIP, loopback): TSN frames,
the unnormalised attenuated mean, guidance and offset noise in the partial chain, the
differentiable reward path and the service path, editing model samples or given videos."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import free_port
from critic.backends.image_reward import aggregate
from trainer.config import ConfigError
from trainer.edit_config import EditConfig
from trainer.edit_trainer import EditTrainer

pytestmark = pytest.mark.timeout(900)
PROMPTS = ["a red ball moves over green grass", "a blue square moves over a grey road"]


@pytest.fixture(scope="module")
def ir_service(tiny_clip_path):
    from clients import CriticClient
    from serving import launch

    port = free_port()
    launch.start(launch.load_config(model=str(tiny_clip_path), http_port=port, grpc_port=free_port(),
                                    critic={"backend": "image-reward", "options": {"aggregate": "attenuated"}}),
                 wait_s=180)
    url = f"http://127.0.0.1:{port}"
    CriticClient(url).wait_ready(120)
    yield url
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
