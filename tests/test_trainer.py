"""The trainer end to end on CPU against a real running service (model-free critic, loopback)."""

from __future__ import annotations

import csv
import json
import pytest
import torch

from conftest import free_port
from trainer.loop import RewardError
from trainer.rwr_config import RWRConfig
from trainer.rwr_trainer import RWRTrainer

pytestmark = pytest.mark.timeout(900)
PROMPTS = ["a red ball moves over green grass", "a blue square moves over a grey road", "two yellow balls move"]


def _prompts(tmp_path) -> str:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    return str(prompts)


def _config(tmp_path, pipeline, service, name, **kw):
    base = dict(pipeline=str(pipeline), prompts=_prompts(tmp_path), output_dir=str(tmp_path / name), service_url=service,
                rubric="brightness", sampling={"strategy": "all"}, steps=4, batch_size=2, inference_steps=2,
                lr=3e-3, checkpoint_every=2, normalization="batch_z", seed=1)
    return RWRConfig(**{**base, **kw})


def _journal(t) -> list[dict]:
    return [json.loads(line) for line in open(t.journal)]


def _run(cfg_or_trainer, stop_after=None):
    """Train against the service; returns (trainer, summary, names of the transformer parameters that changed)."""
    t = cfg_or_trainer if hasattr(cfg_or_trainer, "train") else RWRTrainer(cfg_or_trainer)
    before = {n: p.detach().clone() for n, p in t.pipe.transformer.named_parameters()}
    t.connect()
    try:
        summary = t.train(stop_after=stop_after)
    finally:
        t.close()
    changed = {n for n, p in t.pipe.transformer.named_parameters() if not torch.equal(p, before[n])}
    return t, summary, changed


def test_rwr_changes_only_the_adapter_and_saves_only_it(tmp_path, tiny_pipeline, service):
    t, summary, changed = _run(_config(tmp_path, tiny_pipeline, service, "a", steps=2))
    assert changed and all("lora" in n for n in changed)
    from safetensors.torch import load_file

    keys = load_file(t.out / "adapter" / "pytorch_lora_weights.safetensors").keys()
    assert keys and all("lora" in k for k in keys)
    rows = [json.loads(line) for line in open(t.out / "journal.jsonl")]
    assert len(rows) == 4 and {r["critic"]["model"] for r in rows} == {"model-free"}
    assert all(0 <= r["reward"] <= 1 and r["critic"]["rubric"] == "brightness" for r in rows)
    assert (t.out / "log.csv").exists() and (t.out / "reward_curve.png").exists()
    assert summary["steps"] == 2

    # the saved adapter, loaded into a fresh pipeline, reproduces the trained generator's output
    from trainer.generator import load_lora, load_pipeline

    fresh = load_pipeline(tiny_pipeline)
    load_lora(fresh, t.out / "adapter")
    gen = lambda p: p(prompt=PROMPTS[0], num_frames=9, height=64, width=64, num_inference_steps=2,  # noqa: E731
                      guidance_scale=1.0, generator=torch.Generator().manual_seed(5), output_type="latent").frames
    assert torch.allclose(gen(fresh), gen(t.pipe), atol=1e-5)
    base = load_pipeline(tiny_pipeline)
    assert not torch.allclose(gen(base), gen(t.pipe), atol=1e-5)


def test_kill_and_resume_gives_the_same_journal(tmp_path, tiny_pipeline, service):
    full, _, _ = _run(_config(tmp_path, tiny_pipeline, service, "full"))
    # "killed" after 3 steps (checkpoint at 2): step 3's lines are in the journal but not in a checkpoint
    cfg = _config(tmp_path, tiny_pipeline, service, "killed")
    first, s1, _ = _run(cfg, stop_after=3)
    assert s1["steps"] == 3 and first.journal_lines() == 6
    second, s2, _ = _run(cfg)
    assert s2["resumed"] and s2["steps"] == 4
    a, b = _journal(full), _journal(second)
    assert len(a) == len(b) == 8
    assert [r.pop("request_id") for r in a] == [f"{full.run_id}-train-{s}-0-{i}" for s in range(4) for i in range(2)]
    # the resumed run kept its run id: its requests are the ones the killed run sent
    assert [r.pop("request_id") for r in b] == [f"{first.run_id}-train-{s}-0-{i}" for s in range(4) for i in range(2)]
    assert second.run_id == first.run_id != full.run_id
    assert a == b  # same prompts, seeds, videos, rewards, in the same order: nothing lost, nothing repeated
    logged = list(csv.DictReader(open(second.out / "log.csv")))
    assert [r["step"] for r in logged] == ["1", "2", "3", "4"]  # the killed step is logged once
    from trainer.generator import lora_state_dict

    la, lb = lora_state_dict(full.pipe), lora_state_dict(second.pipe)
    assert la.keys() == lb.keys() and all(torch.allclose(la[k], lb[k], atol=1e-6) for k in la)


def test_service_errors_surface_as_errors(tmp_path, tiny_pipeline, service):
    cfg = _config(tmp_path, tiny_pipeline, service, "bad", rubric="lift")  # a VLM rubric on the model-free critic
    t = RWRTrainer(cfg)
    t.connect()
    try:
        with pytest.raises(RewardError, match="422"):
            t.train()
    finally:
        t.close()
    assert not (t.out / "journal.jsonl").exists() or t.journal_lines() == 0


def test_unreachable_service_raises_instead_of_a_default_reward(tmp_path, tiny_pipeline):
    from clients import RetryPolicy
    from trainer.loop import RewardService

    t = RWRTrainer(_config(tmp_path, tiny_pipeline, f"http://127.0.0.1:{free_port()}", "down"))
    t.service = RewardService(t.config.service_url, None, 2)
    t.service._client.retry = RetryPolicy(max_attempts=2, backoff_s=0.01)
    try:
        with pytest.raises(RewardError, match="gave up"):
            t.collect(0)
    finally:
        t.service.close()


@pytest.mark.parametrize("name", ["none", "batch_z", "per_prompt", "softmax"])
def test_normalizations(name):
    from trainer.normalize import NORMALIZERS

    cfg = RWRConfig.__new__(RWRConfig)
    cfg.temperature, cfg.momentum = 0.5, 0.9
    w = NORMALIZERS[name]([0.1, 0.5, 0.9], ["a", "a", "b"], {}, cfg)
    assert len(w) == 3
    if name == "none":
        assert w == [0.1, 0.5, 0.9]
    if name == "batch_z":
        assert sum(w) == pytest.approx(0.0, abs=1e-9) and w[0] < w[1] < w[2]
    if name == "softmax":
        assert sum(w) == pytest.approx(3.0) and w[0] < w[1] < w[2]


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_preference_methods_train_against_the_service(tmp_path, tiny_pipeline, service, method):
    from trainer.dpo_config import DPOConfig
    from trainer.dpo_trainer import DPOTrainer
    from trainer.kto_config import KTOConfig
    from trainer.kto_trainer import KTOTrainer

    common = dict(pipeline=str(tiny_pipeline), prompts=_prompts(tmp_path), output_dir=str(tmp_path / method),
                  service_url=service, rubric="brightness", sampling={"strategy": "all"}, steps=4, batch_size=4,
                  inference_steps=2, lr=3e-3, checkpoint_every=2, steps_per_round=2, beta=50.0, seed=2)
    cfg = DPOConfig(**common, label_by="compare", min_margin=0.0) if method == "dpo" else KTOConfig(**common)
    t, _, changed = _run((DPOTrainer if method == "dpo" else KTOTrainer)(cfg))
    assert changed and all("lora" in n for n in changed)
    rows = [json.loads(line) for line in open(t.journal)]
    assert len(rows) == 16 and [r["round"] for r in rows[::4]] == [0, 0, 1, 1]
    assert (t.out / "round_001" / "pytorch_lora_weights.safetensors").exists()
    assert (t.out / "round_002" / "pytorch_lora_weights.safetensors").exists()
    if method == "dpo":
        # two seeds per prompt; every pair labelled through /compare
        assert rows[0]["prompt"] == rows[1]["prompt"] and rows[0]["seed"] != rows[1]["seed"]
        assert all(len(r["pair_margins"]) == 2 for r in rows)
    else:
        assert all("threshold" in r for r in rows)


def test_real_videos_join_the_rwr_loss(tmp_path, tiny_pipeline, service):
    from contract.video import encode_video
    from critic.samples import make_clip

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "r0.mp4").write_bytes(encode_video(make_clip(9, 64), fps=8))
    (tmp_path / "real" / "real.jsonl").write_text(json.dumps({"video": "r0.mp4", "prompt": "a red ball"}) + "\n")
    cfg = _config(tmp_path, tiny_pipeline, service, "real", steps=1, real_videos=str(tmp_path / "real" / "real.jsonl"),
                  real_weight=2.0)
    t = RWRTrainer(cfg)
    (real,) = t.real_samples(0)
    assert real.latents.shape == (3, 4, 8, 8)  # (latent frames, channels, h, w), as the generator's
    _run(t)
    assert [row["real"] for row in csv.DictReader(open(t.out / "log.csv"))] == ["1"]


def test_cli_run_logs_tensorboard_and_holdout_points(tmp_path, tiny_pipeline, service):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.cli import run

    holdout = tmp_path / "holdout.txt"
    holdout.write_text("a white ball moves over yellow sand\nan orange square moves\n")
    t = RWRTrainer(_config(tmp_path, tiny_pipeline, service, "tb", steps=2, holdout_prompts=str(holdout),
                           eval_every=1))
    report = run(t)
    held = list(csv.DictReader(open(t.out / "holdout.csv")))
    assert [(r["step"], r["tag"]) for r in held] == [("0", "before"), ("1", "holdout"), ("2", "after")]
    assert float(held[0]["mean_reward"]) == pytest.approx(report["holdout_before"])
    assert float(held[-1]["mean_reward"]) == pytest.approx(report["holdout_after"])
    events = EventAccumulator(str(t.out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/mean_reward")] == [1, 2]
    assert [e.step for e in events.Scalars("holdout/mean_reward")] == [0, 1, 2]
    assert {"train/loss", "train/real"} <= set(events.Tags()["scalars"])
    assert (t.out / "reward_curve.png").stat().st_size > 0
    assert {"before_00000_000.mp4", "holdout_00001_001.mp4", "after_00002_001.mp4"} <= {
        p.name for p in (t.out / "videos").iterdir()}
    rows = [json.loads(x) for x in open(t.journal)]
    assert len(rows) == 4 and all(r["request_id"].startswith(t.run_id + "-train-") for r in rows)


def test_runs_with_the_same_folder_name_get_their_own_rewards(tmp_path, tiny_pipeline, service):
    """Two runs whose output folders share a name (different parents) on ONE service: distinct request
    ids, and each journal's rewards are its own videos' scores (no answer served from the other run)."""
    from clients import CriticClient

    runs = []
    for parent, seed in (("a", 1), ("b", 2)):
        (tmp_path / parent).mkdir()
        t, _, _ = _run(_config(tmp_path, tiny_pipeline, service, f"{parent}/run", steps=1, seed=seed))
        runs.append(t)
    assert runs[0].out.name == runs[1].out.name and runs[0].run_id != runs[1].run_id
    ids = [[r["request_id"] for r in _journal(t)] for t in runs]
    assert len(set(ids[0] + ids[1])) == 4
    client = CriticClient(service)
    for t in runs:
        for r in _journal(t):
            fresh = client.score(video=(t.out / "videos" / r["video"]).read_bytes(), prompt=r["prompt"],
                                 rubric="brightness", sampling={"strategy": "all"}, request_id=r["request_id"] + "-x")
            assert fresh["result"]["reward"] == pytest.approx(r["reward"])
    rewards = [[r["reward"] for r in _journal(t)] for t in runs]
    assert rewards[0] != rewards[1]  # different seeds, different videos: the check above can tell them apart
