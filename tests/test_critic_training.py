"""Critic SFT: learning happens, only the adapter changes and is saved, and it reloads exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file

from contract.errors import InvalidParameterError, UnknownAdapterError
from contract.sampling import FrameSampling
from critic import prepare_input
from critic.train import metrics
from critic.train.sft_config import SFTConfig
from critic.vlm import VLMCritic


def test_short_lora_run_lowers_loss_and_changes_only_the_adapter(tiny_adapter):
    trainer, _ = tiny_adapter
    with torch.no_grad():
        after = trainer.loss(trainer.probe).item()
    assert after < trainer.loss_before * 0.98, (trainer.loss_before, after)  # seeded: 6.38 -> 6.13
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, trainer.before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert trainer.summary["steps"] == 8


def test_saved_keys_are_the_adapters_only(tiny_adapter):
    _, final = tiny_adapter
    keys = load_file(final / "adapter_model.safetensors").keys()
    assert keys and all("lora_" in k for k in keys)
    assert json.loads((final / "adapter_config.json").read_text())["r"] == 8
    assert not (final / "model.safetensors").exists()


def test_reloaded_adapter_reproduces_the_trained_critic(tiny_adapter, tiny_vlm_path, clips):
    trainer, final = tiny_adapter
    item = prepare_input(clips["clean"], "a red ball moves", "lift", FrameSampling.uniform(8))
    trainer.model.eval()
    in_memory = trainer.critic().score([item])[0]
    served = VLMCritic(tiny_vlm_path, rationale_tokens=0)
    base = served.score([item])[0]
    served.load_adapter("tuned", final)
    tuned = served.score([prepare_input(clips["clean"], "a red ball moves", "lift", FrameSampling.uniform(8),
                                        adapter="tuned")])[0]
    assert tuned.adapter == "tuned"
    for d in tuned.dimensions:
        for lab, p in tuned.dimensions[d].probabilities.items():
            assert p == pytest.approx(in_memory.dimensions[d].probabilities[lab], abs=1e-5)
    assert tuned.dimensions != base.dimensions
    # the base critic is still there beside the adapter
    again = served.score([item])[0]
    assert again.adapter is None and again.dimensions == base.dimensions
    # the base checkpoint's label temperatures (lift-critic calibrate) are the base's: an adapter keeps its own
    served.label_temperature = dict.fromkeys(base.dimensions, 3.0)
    warm = served.score([item])[0]
    assert all(max(warm.dimensions[d].probabilities.values()) < max(base.dimensions[d].probabilities.values())
               for d in base.dimensions)
    still = served.score([prepare_input(clips["clean"], "a red ball moves", "lift", FrameSampling.uniform(8),
                                        adapter="tuned")])[0]
    assert still.dimensions == tuned.dimensions
    with pytest.raises(UnknownAdapterError):
        served.score([prepare_input(clips["clean"], "x", "lift", FrameSampling.uniform(8), adapter="nope")])


def test_config_validation(tmp_path):
    with pytest.raises(InvalidParameterError, match="method"):
        SFTConfig(model="m", train="t", output_dir="o", method="qlora")
    p = tmp_path / "c.yaml"
    p.write_text("model: m\ntrain: data/t.jsonl\noutput_dir: o\nlearning_rate: 1\n")
    with pytest.raises(InvalidParameterError, match="unknown SFT settings"):
        SFTConfig.from_yaml(p)
    p.write_text("model: m\ntrain: data/t.jsonl\noutput_dir: o\n")
    assert SFTConfig.from_yaml(p).train == str(tmp_path / "data" / "t.jsonl")
    (tmp_path / "ckpt").mkdir()  # a local starting checkpoint is relative to the config too; hub ids are not paths
    p.write_text("model: ./ckpt\ntrain: t.jsonl\noutput_dir: o\n")
    assert SFTConfig.from_yaml(p).model == str(tmp_path / "ckpt")
    p.write_text("model: org/critic\ntrain: t.jsonl\noutput_dir: o\n")
    assert SFTConfig.from_yaml(p).model == "org/critic"


def test_metrics_on_a_hand_made_case():
    true = ["Good", "Good", "Bad", "Bad", "Normal"]
    pred = ["Good", "Bad", "Bad", "Bad", "Good"]
    assert metrics.accuracy(true, pred) == pytest.approx(3 / 5)
    # F1: Good 2*1/(2+1+1)=0.5, Bad 2*2/(4+1+0)=0.8, Normal 0 -> mean 0.4333
    assert metrics.macro_f1(true, pred, ["Good", "Normal", "Bad"]) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # two confident-and-right, two 0.6-confident with one right: |1-1|*.5 + |0.5-0.6|*.5 = 0.05
    assert metrics.expected_calibration_error([1.0, 1.0, 0.6, 0.6], [True, True, True, False]) == pytest.approx(0.05)
    # pairs with different truth: (0.9,0.05),(0.9,0.2),(0.05,0.2): scores order 2 of 3 right
    assert metrics.pairwise_accuracy([0.9, 0.05, 0.2], [0.8, 0.5, 0.3]) == pytest.approx(2 / 3)
    assert metrics.confusion(true, pred, ["Good", "Normal", "Bad"])["Good"] == {"Good": 1, "Normal": 0, "Bad": 1}
    assert metrics.majority_baseline(["Bad", "Bad", "Good"], true) == ("Bad", pytest.approx(2 / 5))


def test_train_and_eval_from_the_cli(tiny_vlm_path, synth_set, tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"model: {tiny_vlm_path}\ntrain: {synth_set}\noutput_dir: {tmp_path / 'out'}\nmethod: lora\n"
                   f"max_steps: 2\nbatch_size: 4\nmax_answer_tokens: 8\n")
    p = subprocess.run([sys.executable, "-m", "serving.cli", "train", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["steps"] == 2
    p = subprocess.run([sys.executable, "-m", "serving.cli", "eval", "--data", str(synth_set), "--model",
                        str(tiny_vlm_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert set(report["dimensions"]) == {"semantic_consistency", "fidelity", "motion"}
    assert "accuracy" in p.stderr and "true \\ pred" in p.stderr
    # without --rubric a critic is asked what it was trained with (its critic_config.json), not 'lift'
    import shutil

    trained = shutil.copytree(tiny_vlm_path, tmp_path / "trained")
    (trained / "critic_config.json").write_text(json.dumps({"rubric": "lift-paraphrase"}))
    p = subprocess.run([sys.executable, "-m", "serving.cli", "eval", "--data", str(synth_set), "--model", str(trained)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rubric"] == "lift-paraphrase"


def test_vision_warmup_trains_only_the_vision_side_and_learns(tiny_vlm_path, synth_set, tmp_path):
    from critic.train.sft_trainer import SFTTrainer

    cfg = SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path), method="full",
                    vision_warmup_steps=24, vision_warmup_lr=1e-2, batch_size=12, warmup_ratio=0.0)
    trainer = SFTTrainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    summary = trainer.warmup_vision()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert any(".connector." in n for n in changed) and any(".vision_model." in n for n in changed)
    assert all(".vision_model." in n or ".connector." in n for n in changed), changed
    losses = [h["loss"] for h in trainer.history if h.get("stage") == "vision_warmup"]
    assert len(losses) == summary["vision_warmup_steps"] == 24
    assert sum(losses[-3:]) / 3 < losses[0] * 0.9, losses  # 12 videos, 8 epochs: the head fits them


def test_freeze_vision_trains_the_language_model_only(tiny_vlm_path, synth_set, tmp_path):
    from critic.train.sft_trainer import SFTTrainer

    with pytest.raises(InvalidParameterError, match="freeze_vision needs method 'full'"):
        SFTConfig(model="m", train="t", output_dir="o", method="lora", freeze_vision=True)
    cfg = SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path), method="full",
                    freeze_vision=True, max_steps=3, batch_size=6, lr=1e-2, warmup_ratio=0.0)
    trainer = SFTTrainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and not any(".vision_model." in n or ".connector." in n for n in changed), changed
    assert any(".text_model." in n or "lm_head" in n for n in changed), changed


def test_dimension_weights_repeat_a_dimensions_conversations(tiny_vlm_path, synth_set, tmp_path):
    from critic.train.sft_trainer import SFTTrainer

    with pytest.raises(InvalidParameterError, match="dimension_weights"):
        SFTConfig(model="m", train="t", output_dir="o", dimension_weights={"motion": 0})
    with pytest.raises(InvalidParameterError, match="not dimensions of rubric"):
        SFTTrainer(SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path / "a"),
                             dimension_weights={"smoothness": 2}))
    trainer = SFTTrainer(SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path / "b"),
                                   dimension_weights={"semantic_consistency": 3}))
    dims = [d.name for d in trainer.rubric.dimensions]
    pool = trainer.epoch_pool()
    per_dim = {d: sum(dims[i % len(dims)] == d for i in pool) for d in dims}
    rows = len(trainer.train_convs) // len(dims)
    assert per_dim == {"semantic_consistency": 3 * rows, "fidelity": rows, "motion": rows}
    assert sorted(set(pool)) == list(range(len(trainer.train_convs)))  # every conversation still in the epoch


def test_attribute_code_is_one_hot_per_attribute_and_skips_rows_without_one():
    from critic.train.vision_warmup import AttributeCode

    code = AttributeCode([{"colour": "red", "count": "1"}, None, {"colour": "blue", "count": "1"}])
    assert code.values == [("colour", "blue"), ("colour", "red"), ("count", "1")] and code.width == 3
    assert code.targets.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 1]] and code.known.tolist() == [True, False, True]
    tokens = torch.zeros(3, 5, 8)
    tokens[:, :, :3] = code.targets.unsqueeze(1)
    tokens[1] = 7.0  # the row without `shown` is not in the loss, whatever its tokens
    assert code.loss(tokens, [0, 1, 2]).item() == 0.0
    tokens[0, :, 0] = 2.0  # one wrong channel in every token of one of the two rows: (2 - 0)^2 / 2
    assert code.loss(tokens, [0, 1, 2]).item() == pytest.approx(2.0)
    assert code.loss(tokens, [1]).item() == 0.0


def test_attribute_code_tracks_the_objects_in_the_frames_the_critic_reads():
    from critic.train.vision_warmup import AttributeCode

    long = [(i / 11, 0.5) for i in range(12)]  # 12 frames: the critic reads 4 of them, uniformly
    code = AttributeCode([{"colour": "red"}, {"colour": "red"}, None], [long, long[:3], long], frames=4)
    assert code.attributes == 1 and code.width == 3  # one value, then x and y
    assert code.tracked.tolist() == [True, False, True] and code.known.tolist() == [True, True, False]
    picks = FrameSampling.uniform(4).indices(12, 1.0)
    assert torch.allclose(code.track[0], torch.tensor([[2 * long[i][0] - 1, 0.0] for i in picks]))
    tokens = torch.zeros(3, 4 * 5, 8)  # 4 frames of 5 tokens
    tokens[:2, :, 0] = 1.0
    tokens[0, :, 1:3] = code.track[0].repeat_interleave(5, 0)
    tokens[2, :, 1:3] = code.track[2].repeat_interleave(5, 0)
    tokens[1, :, 1:3] = 9.0  # a clip shorter than the frames read has no track target
    tokens[2, :, 0] = 9.0  # a row without `shown` has no attribute target
    assert code.loss(tokens, [0, 1, 2]).item() == 0.0
    tokens[2, :5, 2] += 1.0  # the first frame's y off by one in the row with only a track
    assert code.loss(tokens, [0, 1, 2]).item() == pytest.approx(5 / (3 * 20))
    heavy = AttributeCode([{"colour": "red"}, {"colour": "red"}, None], [long, long[:3], long], frames=4,
                          track_weight=8.0)
    assert heavy.loss(tokens, [0, 1, 2]).item() == pytest.approx(8 * 5 / (3 * 20))  # only the track's error counts more
    tokens[0, :, 0] = 2.0  # the colour channel off by one in every token of the first row: weighted 1 either way
    assert heavy.loss(tokens, [0, 1, 2]).item() - code.loss(tokens, [0, 1, 2]).item() == pytest.approx(7 * 5 / (3 * 20))
    assert AttributeCode([{"colour": "red"}]).width == 1  # no track, no track channels
    shown = [{"colour": "red", "shape": "ball"}, {"colour": "blue", "shape": "square"}]
    held = AttributeCode(shown, [long, long], frames=4, holds=["colour"])  # the colour only: no shape, no track
    assert held.values == [("colour", "blue"), ("colour", "red")] and held.width == 2 and not held.tracked.any()
    assert AttributeCode(shown, [long, long], frames=4, holds=["shape", "track"]).width == 4
    with pytest.raises(InvalidParameterError, match="count"):
        AttributeCode(shown, holds=["colour", "count"])


def test_vision_warmup_writes_the_attribute_code_into_the_image_tokens(tiny_vlm_path, synth_set, tmp_path):
    from critic.train.sft_trainer import SFTTrainer, _stack_padded
    from critic.train.vision_warmup import AttributeCode, image_tokens

    cfg = SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path), method="full",
                    vision_warmup_steps=40, vision_warmup_lr=1e-2, vision_warmup_attributes=1.0, batch_size=12,
                    warmup_ratio=0.0)
    trainer = SFTTrainer(cfg)
    code = AttributeCode([r.shown for r in trainer.train_rows], [r.track for r in trainer.train_rows], cfg.frames)
    assert code.known.all() and code.tracked.all() and code.width >= 10  # what 12 clips show, and where
    videos = trainer.train_convs[:: len(trainer.rubric.dimensions)]

    def code_loss():
        with torch.no_grad():
            enc = {k: _stack_padded([v.pixels[k] for v in videos]) for k in videos[0].pixels}
            return code.loss(image_tokens(trainer.model, enc["pixel_values"], enc.get("pixel_attention_mask")),
                             list(range(len(videos)))).item()

    before = code_loss()
    trainer.warmup_vision()
    assert code_loss() < 0.5 * before, (before, code_loss())


def test_vision_warmup_attributes_need_rows_that_say_what_they_show(tiny_vlm_path, synth_set, tmp_path):
    from critic.train.sft_trainer import SFTTrainer

    with pytest.raises(InvalidParameterError, match="vision_warmup_attributes"):
        SFTConfig(model="m", train="t", output_dir="o", method="full", vision_warmup_attributes=-1.0)
    bare = tmp_path / "bare.jsonl"  # the same rows without `shown` and `track`, as a real rated set would come
    rows = [json.loads(line) for line in synth_set.read_text().splitlines()]
    assert all(r["shown"] and r["track"] for r in rows)
    bare.write_text("".join(json.dumps({k: v for k, v in r.items() if k not in ("shown", "track")}) + "\n"
                            for r in rows))
    (tmp_path / "videos").symlink_to(synth_set.parent / "videos")
    cfg = SFTConfig(model=str(tiny_vlm_path), train=str(bare), output_dir=str(tmp_path / "o"), method="full",
                    vision_warmup_steps=2, vision_warmup_attributes=1.0, batch_size=12)
    with pytest.raises(InvalidParameterError, match="needs training rows with `shown`"):
        SFTTrainer(cfg).warmup_vision()


def test_vision_warmup_needs_full_fine_tuning_and_a_vision_model():
    from critic.train.vision_warmup import image_tokens

    with pytest.raises(InvalidParameterError, match="vision_warmup_steps needs method 'full'"):
        SFTConfig(model="m", train="t", output_dir="o", method="lora", vision_warmup_steps=10)
    with pytest.raises(InvalidParameterError, match="no get_image_features"):
        image_tokens(torch.nn.Linear(2, 2), torch.zeros(1, 1, 3, 4, 4))


def test_cut_answers_are_counted_and_warned(tiny_vlm_path, synth_set, tmp_path):
    from critic.train.sft_trainer import SFTTrainer

    with pytest.warns(UserWarning, match="longer than max_answer_tokens=4"):
        short = SFTTrainer(SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path / "a"),
                                     max_answer_tokens=4))
    assert short.truncated == len(short.train_convs) == 36
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        long = SFTTrainer(SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path / "b"),
                                    max_answer_tokens=64))
    assert long.truncated == 0


def test_a_rerun_of_one_config_gives_the_same_weights(tiny_vlm_path, synth_set, tmp_path):
    """`make critic` reproduces the shipped critic's figures only if training is deterministic: the same config
    (warm-up with the attribute code and track, then SFT of the whole model) run twice gives bit-identical
    weights and losses; another seed does not (the check can fail)."""
    from critic.train.sft_trainer import SFTTrainer

    def run(name: str, seed: int):
        cfg = SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path / name),
                        method="full", vision_warmup_steps=6, vision_warmup_lr=1e-2, vision_warmup_attributes=1.0,
                        max_steps=6, batch_size=6, lr=1e-2, seed=seed)
        trainer = SFTTrainer(cfg)
        trainer.train()
        return load_file(tmp_path / name / "final" / "model.safetensors"), [h["loss"] for h in trainer.history]

    (first, first_losses), (again, again_losses) = run("a", 0), run("b", 0)
    assert first_losses == again_losses and len(first_losses) == 12
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    trained_with = json.loads((tmp_path / "a" / "final" / "critic_config.json").read_text())["trained_with"]
    assert trained_with["torch"] == torch.__version__  # what a rerun needs to match
    other, _ = run("c", 1)
    assert not all(torch.equal(first[k], other[k]) for k in first)
