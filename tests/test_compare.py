import numpy as np
import pytest

from contract.sampling import FrameSampling
from critic import compare_results, get_rubric, prepare_input
from critic.base import compare_probabilities
from critic.modelfree import ModelFreeCritic


def _sums_to_one(c):
    assert c.p_a_better + c.p_b_better + c.p_tie == pytest.approx(1.0, abs=1e-9)
    assert min(c.p_a_better, c.p_b_better, c.p_tie) >= 0


def test_compare_probabilities_by_hand():
    # A is Good for sure; B is Good or Bad with equal odds
    c = compare_probabilities(np.array([1.0, 0, 0]), np.array([0.5, 0, 0.5]), [0.9, 0.2, 0.05])
    assert (c.p_a_better, c.p_b_better, c.p_tie) == pytest.approx((0.5, 0.0, 0.5))


def test_vlm_compare_is_symmetric(vlm_critic, clips):
    s = FrameSampling.uniform(8)
    a = prepare_input(clips["clean"], "a red ball", "lift", s)
    b = prepare_input(clips["flicker"], "a red ball", "lift", s)
    ab, ba = vlm_critic.compare(a, b), vlm_critic.compare(b, a)
    for name in ab.dimensions:
        _sums_to_one(ab.dimensions[name])
        assert ab.dimensions[name].p_a_better == pytest.approx(ba.dimensions[name].p_b_better, abs=1e-4)
        assert ab.dimensions[name].p_tie == pytest.approx(ba.dimensions[name].p_tie, abs=1e-4)
    _sums_to_one(ab.overall)
    assert ab.overall.p_a_better == pytest.approx(ba.overall.p_b_better, abs=1e-4)


def test_model_free_compare_prefers_the_clean_clip(clips):
    critic = ModelFreeCritic()
    s = FrameSampling.every_frame()
    clean = prepare_input(clips["clean"], "a ball", "signal", s)
    flicker = prepare_input(clips["flicker"], "a ball", "signal", s)
    c = critic.compare(clean, flicker)
    _sums_to_one(c.overall)
    assert c.dimensions["temporal_flickering"].p_a_better > c.dimensions["temporal_flickering"].p_b_better
    # a video against itself: all tie mass and equal sides
    same = compare_results(c.a, c.a, get_rubric("signal"))
    assert same.overall.p_a_better == pytest.approx(same.overall.p_b_better)
