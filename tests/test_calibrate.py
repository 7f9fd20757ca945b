"""Temperature scaling of a critic's label probabilities (critic/train/calibrate.py, ``lift-critic calibrate``):
the temperature keeps every label and only spreads or sharpens the probabilities; the fit moves an
over-confident critic's temperature above 1 and an under-confident one's below; the CLI writes the fitted
temperatures into a real checkpoint's critic_config.json, and loading it applies exactly them; a checkpoint
with a broken temperature is refused at load, and a critic without a checkpoint cannot be calibrated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as _cli  # the CLI as a user runs it

from contract.errors import ModelLoadError
from contract.sampling import FrameSampling
from critic.base import dimension_result, prepare_input, temper
from critic.data.ratings import read_ratings, video_path
from critic.data.synthetic import generate
from critic.rubrics import get_rubric
from critic.train.calibrate import fit_temperature, nll
from critic.vlm import VLMCritic

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lift-critic-tiny"
LABELS = ["Good", "Normal", "Bad"]


def test_a_temperature_keeps_the_label_and_only_spreads_or_sharpens():
    rubric = get_rubric("lift")
    p = np.array([0.7, 0.2, 0.1])
    plain = dimension_result(rubric, p, None)
    assert dimension_result(rubric, p, None, 1.0) == plain
    for t in (0.5, 2.0, 5.0):
        got = dimension_result(rubric, p, None, t)
        assert got.label == plain.label
        want = np.exp(np.log(p) / t) / np.exp(np.log(p) / t).sum()  # softmax(log p / T)
        assert [got.probabilities[lab] for lab in LABELS] == pytest.approx(want, abs=1e-12)
        assert (got.probabilities["Good"] < plain.probabilities["Good"]) == (t > 1)
        assert temper(p[None], t)[0] == pytest.approx(want, abs=1e-12)


def _confident(n: int, sure: float, right: float, seed: int = 0):
    """``n`` rows that put ``sure`` on one label, the true one with frequency ``right``."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < right, truth, (truth + rng.integers(1, 3, n)) % 3)
    probs = np.full((n, 3), (1 - sure) / 2)
    probs[np.arange(n), pred] = sure
    return probs, truth


def test_the_fit_cools_an_over_confident_critic_and_warms_an_under_confident_one():
    over, truth = _confident(3000, sure=0.97, right=0.7)
    t = fit_temperature(over, truth)
    assert t > 1.5 and nll(temper(over, t), truth) < nll(over, truth) - 0.1
    # calibrated after: confidence near accuracy
    assert temper(over, t).max(axis=1).mean() == pytest.approx(0.7, abs=0.03)
    under, truth = _confident(3000, sure=0.5, right=0.9)
    t = fit_temperature(under, truth)
    assert t < 0.8 and nll(temper(under, t), truth) < nll(under, truth) - 0.05
    fair, truth = _confident(3000, sure=0.8, right=0.8)
    assert fit_temperature(fair, truth) == pytest.approx(1.0, abs=0.1)


def test_calibrate_writes_the_temperatures_and_loading_applies_them(tmp_path):
    model = shutil.copytree(SHIPPED, tmp_path / "critic")
    data = generate(tmp_path / "val", 40, seed=21, domain="random")
    before = json.loads((model / "critic_config.json").read_text())
    before.pop("label_temperature", None)
    (model / "critic_config.json").write_text(json.dumps(before))

    dry = _cli("calibrate", "--model", str(model), "--data", str(data), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads((model / "critic_config.json").read_text()) == before  # a dry run writes nothing
    p = _cli("calibrate", "--model", str(model), "--data", str(data))
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert json.loads(dry.stdout)["dimensions"] == report["dimensions"]
    saved = json.loads((model / "critic_config.json").read_text())
    assert {k: v for k, v in saved.items() if k != "label_temperature"} == before  # the rest is kept
    temps = saved["label_temperature"]
    assert temps == {d: m["temperature"] for d, m in report["dimensions"].items()}
    assert set(temps) == {"semantic_consistency", "fidelity", "motion"}
    for m in report["dimensions"].values():
        assert m["nll"][1] <= m["nll"][0] + 1e-9  # the fit never loses likelihood on the set it fits
    assert any(abs(t - 1) > 0.05 for t in temps.values())  # something to apply

    # loading applies exactly the stored temperatures to the model's own probabilities, labels unchanged
    raw, tuned = VLMCritic(SHIPPED, rationale_tokens=0), VLMCritic(model, rationale_tokens=0)
    raw.label_temperature = {}
    row = read_ratings(data)[0]
    item = prepare_input(video_path(row.video, str(data)), row.prompt, "lift-paraphrase", FrameSampling.uniform(8))
    a, b = raw.score([item])[0], tuned.score([item])[0]
    for d, t in temps.items():
        p_raw = np.array([a.dimensions[d].probabilities[lab] for lab in LABELS])
        assert [b.dimensions[d].probabilities[lab] for lab in LABELS] == pytest.approx(temper(p_raw[None], t)[0], abs=1e-6)
        assert b.dimensions[d].label == a.dimensions[d].label


@pytest.mark.parametrize("bad", [0, -1.5, "warm", True, None, {"x": 1}, float("inf")])
def test_a_broken_temperature_is_refused_at_load(tmp_path, bad):
    model = shutil.copytree(SHIPPED, tmp_path / "critic")
    config = json.loads((model / "critic_config.json").read_text())
    config["label_temperature"] = {"fidelity": bad}
    (model / "critic_config.json").write_text(json.dumps(config).replace("Infinity", "1e999"))
    with pytest.raises(ModelLoadError, match="label_temperature"):
        VLMCritic(model, rationale_tokens=0)


def test_only_a_checkpoint_can_be_calibrated(tmp_path):
    data = generate(tmp_path / "val", 4, seed=1)
    p = _cli("calibrate", "--model", "model-free", "--data", str(data))
    assert p.returncode == 2 and "invalid_parameter" in p.stderr, p.stderr
