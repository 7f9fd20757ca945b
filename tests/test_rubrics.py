import pytest

from contract.errors import InvalidRubricError, UnknownRubricError
from critic.rubrics import RUBRICS, get_rubric


def test_lift_rubric_is_as_published():
    r = get_rubric("lift")
    assert [d.name for d in r.dimensions] == ["semantic_consistency", "fidelity", "motion"]
    assert {lab.name: lab.value for lab in r.labels} == {"Good": 0.9, "Normal": 0.2, "Bad": 0.05}
    hard = {"semantic_consistency": 0.9, "fidelity": 0.2, "motion": 0.05}
    assert r.reward(hard, {}) == round((0.9 + 0.2 + 0.05) / 3, 2)  # LiFT rounds the reward to 2 decimals


def test_unified_rubric_is_one_to_five():
    r = get_rubric("unified")
    assert [d.name for d in r.dimensions] == ["alignment", "physics", "style"]
    assert [lab.name for lab in r.labels] == ["5", "4", "3", "2", "1"]


def test_rubric_from_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nlabels: [{name: 'Yes', value: 1.0}, {name: 'No', value: 0.0}]\n"
        "dimensions: [{name: has_ball, question: 'Is there a ball?', weight: 2}, {name: is_red, question: 'Is it red?'}]\n"
    )
    r = get_rubric(str(path))
    assert r.name == "mine" and r.critic == "vlm"
    assert r.reward({"has_ball": 1.0, "is_red": 0.0}, {}) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "body, match",
    [
        ("name: x\nlabels: [{name: A, value: 1}]\ndimensions: [{name: d, question: q}]\n", "labels"),
        ("name: x\nlabels: [{name: A, value: 1}, {name: A, value: 0}]\ndimensions: [{name: d, question: q}]\n", "duplicate"),
        ("name: x\nlabels: [{name: A, value: 1}, {name: B, value: 0}]\ndimensions: [{name: d, question: q}]\nextra: 1\n", "extra"),
        ("name: x\nlabels: [{name: A, value: 1}, {name: B, value: 0}]\ndimensions: [{name: d, question: q, weight: 0}]\n", "positive"),
        ("- not a mapping\n", "mapping"),
        ("name: [unclosed\n", "YAML"),
    ],
)
def test_bad_rubric_files_are_typed_errors(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(InvalidRubricError, match=match):
        get_rubric(str(path))


def test_unknown_rubric():
    with pytest.raises(UnknownRubricError, match="registered"):
        get_rubric("nope")
    with pytest.raises(UnknownRubricError, match="cannot read"):
        get_rubric("/no/such/rubric.yaml")


def test_registry_holds_the_shipped_rubrics():
    assert {"lift", "unified", "signal", "brightness"} <= set(RUBRICS)
