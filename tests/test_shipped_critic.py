"""The shipped critic (models/lift-critic-tiny, the embedded default of the service and the
demo, rebuilt by `make critic` on the randomised domain plus a share of the fixed one): the held-out
figures recorded beside it (eval.json, one report per set: the fixed synthetic domain, the randomised
domain, the independent evaluation renderer and the sample clips rated, the last two never trained on) are
what it gives on those sets regenerated here; on the fixed domain and on the evaluation renderer it clearly beats the majority
label on every dimension, every dimension answers all three labels on every set, and every
dimension's soft scores rank clips on every set. Issue 12's bar (0.85 per dimension on both
renderers, ECE at most 0.1) is checked as an expected failure: motion on the randomised domain and
semantic consistency and fidelity on the evaluation renderer stay below it (README, "The shipped
critic"). The label temperatures the checkpoint carries were fitted on the validation split."""

import json
import re
from pathlib import Path

import pytest

from critic.data.eval_renderer import generate_eval
from critic.data.sample_clips import generate_sample_clips
from critic.data.synthetic import generate
from critic.train.evaluate import evaluate
from critic.vlm import VLMCritic

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lift-critic-tiny"
DIMENSIONS = {"semantic_consistency", "fidelity", "motion"}
# `make critic`'s held-out sets: name -> how to regenerate one of n clips under a folder
SETS = {
    "fixed": lambda out, n: generate(out, n, seed=3),
    "random": lambda out, n: generate(out, n, seed=13, domain="random"),
    "eval": lambda out, n: generate_eval(out, n, seed=4),
    "samples": lambda out, n: generate_sample_clips(out, n, seed=6),
}


@pytest.fixture(scope="module")
def recorded():
    return json.loads((SHIPPED / "eval.json").read_text())


@pytest.fixture(scope="module")
def reports(recorded, tmp_path_factory):
    critic = VLMCritic(SHIPPED, rationale_tokens=0)
    fresh = {}
    for name, make in SETS.items():
        data = make(tmp_path_factory.mktemp(name), recorded["sets"][name]["n"])
        fresh[name] = evaluate(critic, str(data), frames=8)
    return fresh


def _make_critic() -> str:
    """The Makefile's `critic` target (the recipe of the shipped critic)."""
    return re.search(r"^critic:.*?(?=^\S)", (SHIPPED.parents[1] / "Makefile").read_text(), re.M | re.S).group(0)


def test_eval_json_holds_every_set_with_its_majority_baseline(recorded):
    assert set(recorded["sets"]) == set(SETS)
    for name, report in recorded["sets"].items():
        assert set(report["dimensions"]) == DIMENSIONS, name
        for dim, m in report["dimensions"].items():
            assert {"accuracy", "macro_f1", "spearman", "ece"} <= set(m), (name, dim)
            assert m["majority_baseline"]["label"] in ("Good", "Normal", "Bad"), (name, dim)


def test_recorded_held_out_figures_reproduce(recorded, reports):
    for name, rec in recorded["sets"].items():
        assert set(reports[name]["dimensions"]) == set(rec["dimensions"]) == DIMENSIONS
        for dim, m in rec["dimensions"].items():
            fresh = reports[name]["dimensions"][dim]
            assert fresh["accuracy"] == pytest.approx(m["accuracy"], abs=0.01), (name, dim)
            assert fresh["ece"] == pytest.approx(m["ece"], abs=0.01), (name, dim)  # at the shipped temperatures
            assert fresh["majority_baseline"]["label"] == m["majority_baseline"]["label"], (name, dim)
            assert fresh["majority_baseline"]["accuracy"] == pytest.approx(m["majority_baseline"]["accuracy"]), (name, dim)


def test_the_label_temperatures_were_fitted_on_the_validation_split():
    """`make critic` calibrates (critic/train/calibrate.py) on val.jsonl, which no held-out figure uses, and the
    shipped checkpoint carries exactly the temperatures that fit reported."""
    fitted = json.loads((SHIPPED / "calibration.json").read_text())
    assert Path(fitted["data"]).name == "val.jsonl" and fitted["n"] == 100
    trained = json.loads((SHIPPED / "critic_config.json").read_text())
    assert trained["label_temperature"] == {d: m["temperature"] for d, m in fitted["dimensions"].items()}
    assert VLMCritic(SHIPPED, rationale_tokens=0).label_temperature == trained["label_temperature"]
    target = _make_critic()
    assert re.search(r"calibrate --model \$\(SFT\)/final --data \.cache/synth/val\.jsonl", target)
    assert target.index("calibrate --model") < target.index("lift-critic eval")


def test_clearly_beats_the_majority_label(reports):
    for name in ("fixed", "eval"):
        for dim, m in reports[name]["dimensions"].items():
            base = m["majority_baseline"]
            assert m["accuracy"] >= base["accuracy"] + 0.1, (name, dim, m["accuracy"], base)
    for name, report in reports.items():
        for dim, m in report["dimensions"].items():
            assert m["spearman"] > 0.25, (name, dim, m["spearman"])


def test_no_dimension_is_stuck_on_a_label(reports):
    """Each dimension answers every label a set holds (the critic shipped before this one never answered Good
    for semantic consistency: it read the background only); all three on every set but the sample clips,
    which hold no fidelity Bad."""
    for name, report in reports.items():
        for dim, m in report["dimensions"].items():
            assert _answered(m) >= _held(m) and len(_held(m)) >= 2, (name, dim, _answered(m), _held(m))
    assert all(_held(m) == {"Good", "Normal", "Bad"} for name in ("fixed", "random", "eval")
               for m in reports[name]["dimensions"].values())


@pytest.mark.xfail(strict=True, reason="issue 12: motion on the randomised domain, semantic consistency and fidelity on the "
                                       "evaluation renderer are below 0.85, and those two's ECE there is above 0.1 "
                                       "at the fitted temperatures (README, 'The shipped critic')")
def test_generalises_to_both_renderers(reports):
    for name in ("random", "eval"):
        for dim, m in reports[name]["dimensions"].items():
            assert m["accuracy"] >= 0.85 and m["ece"] <= 0.1, (name, dim, m["accuracy"], m["ece"])
            assert len(_answered(m)) > 1, (name, dim, _answered(m))


def test_it_is_the_default_of_the_service_yaml_and_the_cli():
    from critic.cli import build_parser, model_of
    from serving.launch import DEFAULT_CONFIG, load_config
    from serving.settings import AppSettings

    args = load_config(DEFAULT_CONFIG)["applications"][0]["args"]
    assert Path(AppSettings(**args).critic.model).resolve() == SHIPPED
    assert Path(model_of(build_parser().parse_args(["score", "x.mp4", "--prompt", "p"]))).resolve() == SHIPPED


@pytest.mark.parametrize("name", ["lift_critic_tiny_random.yaml", "lift_critic_tiny_random_continue.yaml",
                                  "lift_critic_tiny_random_continue2.yaml"])
def test_make_critic_trains_on_the_randomised_domain(name):
    from critic.train.sft_config import SFTConfig

    root = SHIPPED.parents[1]
    config = SFTConfig.from_yaml(root / "critic" / "train" / "configs" / name)
    assert Path(config.train).resolve() == root / ".cache" / "synth" / "train.jsonl"
    target = _make_critic()
    assert f"--config critic/train/configs/{name}" in target
    # the training set is the randomised domain plus a share of the fixed one, concatenated into train.jsonl
    assert re.search(r"synth \.cache/synth .*--name train_random\.jsonl.*--domain random", target)
    assert re.search(r"cat \.cache/synth/train_random\.jsonl \.cache/synth/train_fixed\.jsonl > \.cache/synth/train\.jsonl", target)
    assert "--renderer eval" in target and "--data eval=" in target  # held out, reported, never trained on


def test_the_registry_asks_the_shipped_critic_what_it_was_trained_with():
    """Through load_critic (the CLI's and the service's path), not only VLMCritic: the backend's
    options must not override the checkpoint's critic_config.json."""
    from critic.loading import load_critic

    trained = json.loads((SHIPPED / "critic_config.json").read_text())
    critic = load_critic(str(SHIPPED), rationale_tokens=0)
    assert critic.default_rubric == trained["rubric"] == "lift-paraphrase"
    assert critic.default_sampling.describe() == trained["default_sampling"]
    assert load_critic(str(SHIPPED), default_rubric="lift").default_rubric == "lift"  # an explicit choice wins


def _held(m: dict) -> set[str]:
    """The labels a set holds for a dimension (its confusion table's rows with any clips)."""
    return {lab for lab, row in m["confusion"].items() if sum(row.values())}


def _answered(m: dict) -> set[str]:
    """The labels a dimension's report shows the critic answering (its confusion table's predicted columns)."""
    return {lab for row in m["confusion"].values() for lab, count in row.items() if count}
