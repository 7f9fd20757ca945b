import pytest

from contract.errors import InvalidParameterError, InvalidRubricError
from contract.sampling import FrameSampling
from critic import prepare_input
from critic.modelfree import ModelFreeCritic, interpolate_probabilities


@pytest.fixture(scope="module")
def critic():
    return ModelFreeCritic()


def _score(critic, path, rubric="signal", sampling=None):
    item = prepare_input(path, "a red ball rolls", rubric, sampling or FrameSampling.every_frame())
    return critic.score([item])[0]


def test_flicker_lowers_temporal_flickering(critic, clips):
    clean, flicker = _score(critic, clips["clean"]), _score(critic, clips["flicker"])
    assert flicker.dimensions["temporal_flickering"].score < clean.dimensions["temporal_flickering"].score - 0.05
    assert flicker.reward < clean.reward


def test_freeze_lowers_motion(critic, clips):
    clean, frozen = _score(critic, clips["clean"]), _score(critic, clips["freeze"])
    assert frozen.dimensions["motion_magnitude"].score < 0.5 * clean.dimensions["motion_magnitude"].score
    assert "frozen" in frozen.dimensions["motion_magnitude"].rationale


def test_jump_lowers_smoothness(critic, clips):
    clean, jump = _score(critic, clips["clean"]), _score(critic, clips["jump"])
    assert jump.dimensions["motion_smoothness_dis"].score < clean.dimensions["motion_smoothness_dis"].score


def test_blur_lowers_sharpness_and_noise_raises_it(critic, clips):
    clean = _score(critic, clips["clean"]).dimensions["sharpness"].score
    assert _score(critic, clips["blur"]).dimensions["sharpness"].score < clean
    assert _score(critic, clips["noise"]).dimensions["sharpness"].score > clean


def test_probabilities_reproduce_the_score(critic, clips):
    r = _score(critic, clips["clean"])
    for d in r.dimensions.values():
        assert sum(d.probabilities.values()) == pytest.approx(1.0)
        assert 0.0 <= d.score <= 1.0
    assert interpolate_probabilities(0.75, [1.0, 0.5, 0.0]).tolist() == [0.5, 0.5, 0.0]
    assert interpolate_probabilities(0.0, [1.0, 0.5, 0.0]).tolist() == [0.0, 0.0, 1.0]


def test_brightness_rubric(critic, clips):
    r = _score(critic, clips["clean"], rubric="brightness")
    assert list(r.dimensions) == ["brightness"] and r.reward == pytest.approx(r.dimensions["brightness"].score)


def test_too_few_frames_for_temporal_metrics(critic, clips):
    with pytest.raises(InvalidParameterError, match="at least 3"):  # motion smoothness predicts a middle frame
        _score(critic, clips["clean"], sampling=FrameSampling.uniform(2))


def test_vlm_rubric_is_refused(critic, clips):
    with pytest.raises(InvalidRubricError):
        _score(critic, clips["clean"], rubric="lift")


def test_same_input_same_output(critic, clips):
    a, b = _score(critic, clips["jump"]).model_dump(), _score(critic, clips["jump"]).model_dump()
    a.pop("timings"), b.pop("timings")
    assert a == b


@pytest.mark.parametrize("defect", ["flicker", "freeze", "jump", "blur", "noise"])
def test_every_defect_lowers_the_signal_reward(critic, clips, defect):
    assert _score(critic, clips[defect]).reward < _score(critic, clips["clean"]).reward
