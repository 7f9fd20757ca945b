"""The image-reward backend: a tiny random CLIP / SigLIP, real mp4 files, the formulas by hand."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from contract.errors import InvalidParameterError, InvalidRubricError, ModelLoadError
from contract.protocol import Aggregation
from contract.sampling import FrameSampling
from critic import prepare_input
from critic.backends import load_critic
from critic.backends.image_reward import ImageRewardScorer, aggregate, attenuation_weights

PROMPT = "a red ball rolls across the grass"


@pytest.fixture(scope="module")
def scorer(tiny_clip_path):
    return ImageRewardScorer(str(tiny_clip_path))


@pytest.fixture(scope="module")
def critic(tiny_clip_path):
    return load_critic(tiny_clip_path, backend="image-reward")


def test_aggregations_by_hand():
    s = torch.tensor([0.2, 0.5, -0.1, 0.4], dtype=torch.float64)
    idx, n, lam = [1, 6, 9, 14], 16, 0.3
    w = [math.exp(-lam * abs(i - n // 2)) for i in idx]
    assert float(aggregate(s, idx, n, "mean")) == pytest.approx(0.25)
    assert float(aggregate(s, idx, n, "attenuated", lam)) == pytest.approx(sum(a * b for a, b in zip(w, s.tolist())) / 4)
    assert float(aggregate(s, idx, n, "attenuated_normalized", lam)) == pytest.approx(
        sum(a * b for a, b in zip(w, s.tolist())) / sum(w))
    assert attenuation_weights([8], 16, 5.0).item() == 1.0  # the middle frame keeps its whole score
    assert float(aggregate(s, idx, n, "attenuated", 0.0)) == pytest.approx(0.25)
    with pytest.raises(InvalidParameterError, match="aggregate"):
        aggregate(s, idx, n, "median")
    with pytest.raises(InvalidParameterError, match="one score per sampled frame"):
        aggregate(s, idx[:3], n, "mean")
    with pytest.raises(InvalidParameterError, match="lambda"):
        aggregate(s, idx, n, "attenuated", -1.0)


def test_frame_scores_are_differentiable_and_prompt_dependent(scorer):
    frames = torch.rand(5, 3, 40, 56, generator=torch.Generator().manual_seed(0)).requires_grad_()
    scores = scorer.frame_scores(frames, PROMPT)
    assert scores.shape == (5,) and torch.all(scores.abs() <= 1.0)
    reward = aggregate(scores, [0, 4, 8, 12, 16], 17, "attenuated")
    reward.backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    assert torch.equal(scorer.frame_scores(frames, PROMPT), scores.detach())
    assert not torch.allclose(scorer.frame_scores(frames, "three purple cars at night"), scores)
    with pytest.raises(InvalidParameterError, match=r"\(F, 3, H, W\)"):
        scorer.frame_scores(frames[0], PROMPT)


@pytest.mark.parametrize("arch", ["clip", "siglip"])
def test_torch_preprocessing_matches_the_checkpoints_processor(arch, tmp_path):
    """The differentiable resize / crop / normalise gives the embeddings the stock PIL processor gives."""
    from transformers import AutoImageProcessor

    from critic.samples import make_clip
    from critic.tiny import build_tiny_clip

    path = build_tiny_clip(tmp_path / arch, arch=arch)
    s = ImageRewardScorer(str(path))
    assert type(s.model).__name__ == {"clip": "CLIPModel", "siglip": "SiglipModel"}[arch]
    frames = make_clip(4, 64)[:, :, 8:56]  # 64 x 48: resize and crop both matter
    ref = AutoImageProcessor.from_pretrained(path)([Image.fromarray(f) for f in frames], return_tensors="pt")
    with torch.no_grad():
        theirs = torch.nn.functional.normalize(s.model.get_image_features(pixel_values=ref["pixel_values"]).pooler_output, dim=-1)
        ours = s.image_embeddings(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    assert torch.all((theirs * ours).sum(-1) > 0.999)


def test_critic_result_has_frame_scores_and_the_named_aggregation(critic, clips):
    item = prepare_input(clips["clean"], PROMPT, "image_reward", FrameSampling.segmental(4, seed=2, rule="tsn"))
    plain = critic.score([item])[0]
    assert plain.aggregation == Aggregation(method="mean", attenuation_lambda=1.0, num_frames=17)
    from dataclasses import replace

    for method in ("attenuated", "attenuated_normalized"):
        (r,) = critic.score([replace(item, aggregate=method, attenuation_lambda=0.5)])
        scores = torch.tensor(r.frame_scores["alignment"], dtype=torch.float64)
        assert r.frame_scores == plain.frame_scores and len(scores) == 4
        assert r.frame_indices == item.frame_indices and all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(r.frame_indices))
        expected = float(aggregate(scores, r.frame_indices, 17, method, 0.5))
        d = r.dimensions["alignment"]
        assert r.reward == r.soft_reward == d.score == pytest.approx(expected)
        assert sum(p * v for p, v in zip(d.probabilities.values(), (1.0, -1.0))) == pytest.approx(expected)
        assert r.aggregation.method == method
    assert plain.reward == pytest.approx(float(np.mean(plain.frame_scores["alignment"])))
    # a batch gives each item the result it gets alone
    other = prepare_input(clips["jump"], "two cats", "image_reward", FrameSampling.uniform(6))
    batch = critic.score([item, other])
    assert batch[0].frame_scores["alignment"] == pytest.approx(plain.frame_scores["alignment"], abs=1e-6) and len(batch[1].frame_scores["alignment"]) == 6
    assert batch[1].reward == pytest.approx(critic.score([other])[0].reward, abs=1e-6)


def test_typed_errors(critic, clips, tiny_vlm_path, tmp_path):
    from dataclasses import replace

    item = prepare_input(clips["clean"], PROMPT, "image_reward", FrameSampling.segmental(4))
    with pytest.raises(InvalidParameterError, match="aggregate"):
        critic.score([replace(item, aggregate="median")])
    with pytest.raises(InvalidParameterError, match="frame count"):
        critic.score([replace(item, aggregate="attenuated", video_frames=0)])
    with pytest.raises(InvalidRubricError, match="image-reward"):
        critic.score([prepare_input(clips["clean"], PROMPT, "lift", FrameSampling.uniform(4))])
    with pytest.raises(InvalidParameterError, match="no frame-score aggregation"):
        load_critic().score([replace(prepare_input(clips["clean"], PROMPT, "signal", FrameSampling.every_frame()),
                                     aggregate="mean")])
    with pytest.raises(ModelLoadError, match="dual encoder"):
        ImageRewardScorer(str(tiny_vlm_path))
    with pytest.raises(ModelLoadError):
        ImageRewardScorer(str(tmp_path / "nothing"))
    with pytest.raises(InvalidParameterError, match="aggregate"):
        load_critic(tmp_path, backend="image-reward", options={"aggregate": "median"})


def test_cli_prints_frame_scores_indices_and_reward(tiny_clip_path, clips):
    p = subprocess.run([sys.executable, "-m", "critic.cli", "score", str(clips["clean"]), "--prompt", PROMPT,
                        "--backend", "image-reward", "--model", str(tiny_clip_path), "--segments", "4",
                        "--aggregate", "attenuated"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    scores = torch.tensor(r["frame_scores"]["alignment"], dtype=torch.float64)
    assert len(r["frame_indices"]) == 4 and r["aggregation"]["method"] == "attenuated"
    assert r["reward"] == pytest.approx(float(aggregate(scores, r["frame_indices"], 17, "attenuated")))
    bad = subprocess.run([sys.executable, "-m", "critic.cli", "score", str(clips["clean"]), "--prompt", PROMPT,
                          "--backend", "image-reward", "--model", str(tiny_clip_path), "-o", "aggregate=median"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "invalid_parameter" in bad.stderr and "Traceback" not in bad.stderr
