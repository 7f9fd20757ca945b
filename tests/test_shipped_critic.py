"""The shipped critic (models/lift-critic-tiny, the embedded default of the service and the
demo, rebuilt by `make critic`): the held-out figures recorded beside it are what it gives on
the synthetic test set, and it clearly beats the majority label on every dimension."""

import json
from pathlib import Path

import pytest

from critic.data.synthetic import generate
from critic.train.evaluate import evaluate
from critic.vlm import VLMCritic

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lift-critic-tiny"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    recorded = json.loads((SHIPPED / "eval.json").read_text())
    data = generate(tmp_path_factory.mktemp("heldout"), recorded["n"], seed=3)  # `make critic`'s test set
    return recorded, evaluate(VLMCritic(SHIPPED, rationale_tokens=0), str(data), frames=8)


def test_recorded_held_out_figures_reproduce(reports):
    recorded, fresh = reports
    assert set(fresh["dimensions"]) == set(recorded["dimensions"]) == {"semantic_consistency", "fidelity", "motion"}
    for name, m in recorded["dimensions"].items():
        assert fresh["dimensions"][name]["accuracy"] == pytest.approx(m["accuracy"], abs=0.01), name


def test_clearly_beats_the_majority_label(reports):
    _, fresh = reports
    for name, m in fresh["dimensions"].items():
        assert m["accuracy"] >= m["majority_baseline"]["accuracy"] + 0.1, (name, m["accuracy"], m["majority_baseline"])
        assert m["spearman"] > 0.3, (name, m["spearman"])


def test_it_is_the_default_of_the_service_yaml_and_the_cli():
    from critic.cli import build_parser
    from serving.launch import DEFAULT_CONFIG, load_config
    from serving.settings import AppSettings

    args = load_config(DEFAULT_CONFIG)["applications"][0]["args"]
    assert Path(AppSettings(**args).critic.model).resolve() == SHIPPED
    assert Path(build_parser().parse_args(["score", "x.mp4", "--prompt", "p"]).model).resolve() == SHIPPED
