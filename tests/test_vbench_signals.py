"""VBench's temporal signals on DIS flow: the rules as VBench states them, and the orderings the
default model-free reward must give (frozen vs moving, flickering / noisy vs clean)."""

import numpy as np
import pytest

from contract.sampling import FrameSampling
from contract.video import encode_video
from critic import prepare_input
from critic.modelfree import ModelFreeCritic, temporal_flickering, temporal_flickering_dis
from critic.motion import FlowField, dynamic_degree_dis, is_static, motion_smoothness_dis, normalise
from critic.samples import make_clip


def _texture(h, w, seed=0):
    """A smooth random texture bigger than the frame, so shifted crops stay inside it."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 8 + 20, w // 8 + 20, 3))
    big = np.kron(coarse, np.ones((8, 8, 1)))
    k = np.ones(9) / 9  # soften the blocks: DIS needs gradients, not only edges
    big = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 0, big)
    big = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, big)
    return big


def _panning(n, h, w, steps):
    """n frames of a texture panned horizontally by steps[i] pixels between frame i and i + 1."""
    tex = _texture(h, w)
    xs = np.concatenate([[0], np.cumsum(steps)]).astype(int)
    assert len(xs) == n and xs[-1] + w <= tex.shape[1]
    return np.stack([tex[40:40 + h, x:x + w] for x in xs]).clip(0, 255).astype(np.uint8)


def _reward(frames, rubric="signal"):
    item = prepare_input(encode_video(frames, fps=8), "a red ball", rubric, FrameSampling.every_frame())
    return ModelFreeCritic().score([item])[0]


def test_normalisation_is_vbenchs():
    # scripts/constant.py L67-68
    assert normalise("motion_smoothness", 0.706) == 0.0 and normalise("motion_smoothness", 0.9975) == 1.0
    assert normalise("temporal_flickering", 0.6293) == 0.0 and normalise("temporal_flickering", 1.0) == 1.0
    assert normalise("motion_smoothness", 0.5) == 0.0 and normalise("motion_smoothness", 1.0) == 1.0  # clipped


def test_dynamic_degree_threshold_scales_with_resolution_and_counts_steps():
    # 256 px short side: threshold 6 px; 17 frames: round(4 * 17 / 16) = 4 moving steps needed
    assert dynamic_degree_dis(_panning(17, 256, 320, [10] * 16))[0] == 1.0
    assert dynamic_degree_dis(_panning(17, 256, 320, [3] * 16))[0] == 0.0
    assert dynamic_degree_dis(_panning(17, 256, 320, [10] * 4 + [0] * 12))[0] == 1.0
    score, why = dynamic_degree_dis(_panning(17, 256, 320, [10] * 3 + [0] * 13))
    assert score == 0.0 and why.startswith("3 of 16 steps") and "4 needed" in why
    # 128 px: threshold 3 px, so a 4-pixel pan moves
    assert dynamic_degree_dis(_panning(17, 128, 160, [4] * 16))[0] == 1.0


def test_static_filter_and_flickering_on_static_clips_only():
    frozen = np.repeat(_panning(1, 128, 160, [])[:1], 17, axis=0)
    assert is_static(frozen)[0]
    assert not is_static(_panning(17, 128, 160, [6] * 16))[0]
    # a static scene whose brightness flickers: the static filter passes it, flickering is scored
    flicker = frozen.astype(np.float32)
    flicker[1::2] = flicker[1::2] * 0.7 + 40
    flicker = flicker.clip(0, 255).astype(np.uint8)
    assert is_static(flicker)[0]
    raw = temporal_flickering(flicker)[0]
    assert temporal_flickering_dis(flicker)[0] == pytest.approx(normalise("temporal_flickering", raw))
    assert normalise("temporal_flickering", raw) < 0.9
    # a clip that moves is not scored on flickering (VBench drops it from the dimension)
    score, why = temporal_flickering_dis(_panning(17, 128, 160, [6] * 16))
    assert score == 1.0 and why.startswith("moves")


def test_motion_smoothness_predicts_odd_frames_from_even_ones():
    # a steady pan is predicted almost exactly; repeating every other frame (a stutter) is not
    steady = _panning(17, 128, 160, [4] * 16)
    stutter = steady.copy()
    stutter[1::2] = steady[0:-1:2]
    smooth_score, why = motion_smoothness_dis(steady)
    assert smooth_score > 0.95 and "over 8 frames" in why
    assert motion_smoothness_dis(stutter)[0] < smooth_score - 0.2
    frozen = np.repeat(steady[:1], 9, axis=0)
    assert motion_smoothness_dis(frozen)[0] == 1.0


def test_flows_are_computed_once_per_pair():
    frames = _panning(9, 128, 160, [4] * 8)
    flows = FlowField(frames)
    dynamic_degree_dis(frames, flows), is_static(frames, flows), motion_smoothness_dis(frames, flows)
    # consecutive pairs (shared by dynamic degree and the static filter), first <-> last, even pairs both ways
    assert len(flows._flows) == 8 + 2 + 2 * 4


@pytest.mark.parametrize("size", [64, 128])
def test_a_frozen_clip_does_not_beat_a_smoothly_moving_one(size):
    moving = make_clip(17, size)
    frozen = np.repeat(moving[:1], 17, axis=0)
    m, f = _reward(moving), _reward(frozen)
    assert m.dimensions["dynamic_degree_dis"].score == 1.0 and f.dimensions["dynamic_degree_dis"].score == 0.0
    assert f.reward < m.reward
    # the old failure: VBench's raw flickering formula alone prefers the frozen clip
    assert f.dimensions["temporal_flickering"].score > m.dimensions["temporal_flickering"].score


@pytest.mark.parametrize("frames", [17, 49])
@pytest.mark.parametrize("defect", ["flicker", "noise"])
def test_flickering_and_noisy_clips_lose_on_smoothness(frames, defect):
    clean = _reward(make_clip(frames, 64)).dimensions["motion_smoothness_dis"].score
    bad = _reward(make_clip(frames, 64, defect=defect)).dimensions["motion_smoothness_dis"].score
    assert bad < clean - 0.2
