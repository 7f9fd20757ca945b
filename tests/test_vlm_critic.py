import numpy as np
import pytest

from contract.errors import InvalidParameterError, InvalidRubricError, ModelLoadError
from contract.sampling import FrameSampling
from critic import get_rubric, prepare_input
from critic.vlm import VLMCritic

PROMPT = "a red ball rolls across the grass"


def _item(path, prompt=PROMPT, rubric="lift", sampling=None):
    return prepare_input(path, prompt, rubric, sampling or FrameSampling.uniform(8))


def test_result_shape_and_probabilities(vlm_critic, clips):
    (r,) = vlm_critic.score([_item(clips["clean"])])
    rubric = get_rubric("lift")
    assert set(r.dimensions) == {d.name for d in rubric.dimensions}
    values = {lab.name: lab.value for lab in rubric.labels}
    for d in r.dimensions.values():
        assert set(d.probabilities) == {"Good", "Normal", "Bad"}
        assert sum(d.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert d.label == max(d.probabilities, key=d.probabilities.get)
        assert d.score == pytest.approx(sum(p * values[k] for k, p in d.probabilities.items()))
        assert isinstance(d.rationale, str)
    # lift publishes LiFT's reward: the mean of the label values, rounded to 2 decimals
    assert rubric.reward_round == 2
    assert r.reward == round(float(np.mean([values[d.label] for d in r.dimensions.values()])), 2)
    assert r.soft_reward == pytest.approx(np.mean([d.score for d in r.dimensions.values()]))
    assert r.model == "tiny-idefics3" and len(r.model_version) == 12
    assert r.rubric == "lift" and r.sampling == FrameSampling.uniform(8)
    assert r.frame_indices == FrameSampling.uniform(8).indices(17, 8.0)


def test_same_input_same_output(vlm_critic, clips):
    a = vlm_critic.score([_item(clips["clean"])])[0]
    b = vlm_critic.score([_item(clips["clean"])])[0]
    assert a.dimensions == b.dimensions and a.reward == b.reward


def test_batch_gives_one_result_per_input_in_order(vlm_critic, clips):
    items = [
        _item(clips["clean"]),
        _item(clips["flicker"], prompt="a blue square spins"),
        _item(clips["freeze"], rubric="unified"),
        _item(clips["blur"], sampling=FrameSampling.segmental(4, seed=1)),
        _item(clips["noise"], prompt="two cats"),
    ]
    batch = vlm_critic.score(items)
    assert len(batch) == len(items)
    assert [r.rubric for r in batch] == ["lift", "lift", "unified", "lift", "lift"]
    assert [len(r.frame_indices) for r in batch] == [8, 8, 8, 4, 8]
    for item, r in zip(items, batch):
        (alone,) = vlm_critic.score([item])
        for name, d in r.dimensions.items():
            for label, p in d.probabilities.items():
                assert p == pytest.approx(alone.dimensions[name].probabilities[label], abs=1e-4)
            assert d.label == alone.dimensions[name].label


def test_prompt_changes_the_scores(vlm_critic, clips):
    a = vlm_critic.score([_item(clips["clean"], prompt="a red ball")])[0]
    b = vlm_critic.score([_item(clips["clean"], prompt="three purple cars drive on a road at night")])[0]
    assert a.dimensions["semantic_consistency"].probabilities != b.dimensions["semantic_consistency"].probabilities


def test_unified_and_yaml_rubrics(vlm_critic, clips, tmp_path):
    (r,) = vlm_critic.score([_item(clips["clean"], rubric="unified")])
    assert set(r.dimensions) == {"alignment", "physics", "style"}
    assert set(r.dimensions["physics"].probabilities) == {"5", "4", "3", "2", "1"}
    path = tmp_path / "yn.yaml"
    path.write_text(
        "name: yn\nlabels: [{name: 'Yes', value: 1.0}, {name: 'No', value: 0.0}]\n"
        "dimensions: [{name: red, question: 'Is the ball red?'}]\n"
    )
    (r,) = vlm_critic.score([_item(clips["clean"], rubric=str(path))])
    assert r.rubric == "yn" and sum(r.dimensions["red"].probabilities.values()) == pytest.approx(1.0)


def test_labels_sharing_a_first_token_are_rejected(vlm_critic, clips, tmp_path):
    path = tmp_path / "clash.yaml"
    path.write_text(
        "name: clash\nlabels: [{name: '1', value: 1.0}, {name: '1', value: 0.0}]\n"
        "dimensions: [{name: d, question: q}]\n"
    )
    with pytest.raises(InvalidRubricError):
        vlm_critic.score([_item(clips["clean"], rubric=str(path))])


def test_model_free_rubric_is_refused(vlm_critic, clips):
    with pytest.raises(InvalidRubricError, match="model-free"):
        vlm_critic.score([_item(clips["clean"], rubric="signal")])


def test_rationale_can_be_switched_off(tiny_vlm_path, clips):
    critic = VLMCritic(tiny_vlm_path, rationale_tokens=0)
    (r,) = critic.score([_item(clips["clean"])])
    assert all(d.rationale is None for d in r.dimensions.values())


def test_rationale_is_bounded(tiny_vlm_path, clips):
    critic = VLMCritic(tiny_vlm_path, rationale_tokens=3)
    (r,) = critic.score([_item(clips["clean"])])
    for d in r.dimensions.values():
        assert len(critic.tokenizer(d.rationale, add_special_tokens=False)["input_ids"]) <= 4


def test_empty_prompt_is_an_error(clips):
    with pytest.raises(InvalidParameterError, match="prompt"):
        _item(clips["clean"], prompt="  ")


def test_unloadable_model_is_a_typed_error(tmp_path):
    with pytest.raises(ModelLoadError):
        VLMCritic(tmp_path / "nothing-here")


def test_tiny_qwen2_5_vl_scores_through_the_same_code(tmp_path, clips):
    """No torchvision needed: the processor is built from its image processor (critic.loading)."""
    from critic.tiny import build_tiny_qwen2_5_vl

    critic = VLMCritic(build_tiny_qwen2_5_vl(tmp_path / "qwen"), rationale_tokens=4)
    (r,) = critic.score([_item(clips["clean"])])
    assert sum(r.dimensions["motion"].probabilities.values()) == pytest.approx(1.0)
    assert type(critic.processor).__name__ == "Qwen2_5_VLProcessor"
