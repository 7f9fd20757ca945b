from typing import get_args

import pytest
from pydantic import ValidationError

from contract.errors import InvalidParameterError
from contract.protocol import CompareRequest, CriticResult, ModelInfo, ScoreRequest
from contract.sampling import FrameSampling


def test_uniform_spreads_over_the_whole_clip():
    idx = FrameSampling.uniform(8).indices(49, 8.0)
    assert len(idx) == 8 and idx == sorted(set(idx))
    assert idx[0] <= 49 // 8 and idx[-1] >= 49 - 49 // 8
    gaps = {b - a for a, b in zip(idx, idx[1:])}
    assert max(gaps) - min(gaps) <= 1


def test_uniform_with_fewer_frames_than_asked_takes_each_once():
    assert FrameSampling.uniform(8).indices(5, 8.0) == [0, 1, 2, 3, 4]


def test_fps_steps_by_time():
    assert FrameSampling.at_fps(2).indices(49, 8.0) == list(range(0, 49, 4))
    assert FrameSampling.at_fps(8).indices(10, 8.0) == list(range(10))
    # asking for more than the native rate does not duplicate frames
    assert FrameSampling.at_fps(30).indices(10, 8.0) == list(range(10))


def test_segments_one_frame_per_segment_and_deterministic():
    s = FrameSampling.segmental(4, seed=7)
    idx = s.indices(49, 8.0)
    assert idx == s.indices(49, 8.0)
    bounds = [0, 13, 25, 37, 49]  # ceil of linspace(0, 49, 5)
    for i, (lo, hi) in zip(idx, zip(bounds, bounds[1:])):
        assert lo <= i < hi
    others = {tuple(FrameSampling.segmental(4, seed=k).indices(49, 8.0)) for k in range(10)}
    assert len(others) > 1  # the seed matters


def test_all_takes_every_frame():
    assert FrameSampling.every_frame().indices(9, 8.0) == list(range(9))


@pytest.mark.parametrize(
    "make",
    [
        lambda: FrameSampling.uniform(0),
        lambda: FrameSampling.at_fps(0),
        lambda: FrameSampling.segmental(0),
        lambda: FrameSampling(strategy="bogus"),
        lambda: FrameSampling(strategy="fps"),
        lambda: FrameSampling(frames=8, unknown=1),
    ],
)
def test_bad_parameters_fail_the_schema(make):
    """The spec's bounds are its schema: every entry point (HTTP, gRPC, the CLI) reports the same failure."""
    with pytest.raises(ValidationError):
        make()


def test_more_segments_than_frames_is_an_error():
    with pytest.raises(InvalidParameterError, match="segments"):
        FrameSampling.segmental(10).indices(5, 8.0)


def test_describe_names_only_the_relevant_fields():
    assert FrameSampling.segmental(4, seed=3).describe() == {"strategy": "segments", "segments": 4, "seed": 3}
    assert FrameSampling.uniform(8).describe() == {"strategy": "uniform", "frames": 8}


def test_tsn_segments_never_draw_the_tail():
    """VGen's rule: span = F // K from frame 0, one seeded offset inside each span."""
    s = FrameSampling.segmental(4, seed=7, rule="tsn")
    idx = s.indices(50, 8.0)  # span 12: segments [0,12) [12,24) [24,36) [36,48); frames 48, 49 never
    assert idx == s.indices(50, 8.0) and len(idx) == 4
    for k, i in enumerate(idx):
        assert 12 * k <= i < 12 * (k + 1)
    seen = {i for seed in range(200) for i in FrameSampling.segmental(4, seed=seed, rule="tsn").indices(50, 8.0)}
    assert seen == set(range(48))  # every frame of the spans is reachable, the tail is not
    cover = {i for seed in range(200) for i in FrameSampling.segmental(4, seed=seed).indices(50, 8.0)}
    assert 49 in cover
    assert s.describe() == {"strategy": "segments", "segments": 4, "seed": 7, "rule": "tsn"}
    with pytest.raises(InvalidParameterError, match="segments"):
        FrameSampling.segmental(6, rule="tsn").indices(5, 8.0)
    with pytest.raises(ValidationError, match="rule"):
        FrameSampling(strategy="segments", rule="middle")


@pytest.mark.parametrize("spec", [FrameSampling.uniform(5), FrameSampling.linspace(8), FrameSampling.at_fps(2.5),
                                  FrameSampling.segmental(3, seed=9, rule="tsn"), FrameSampling.every_frame()])
def test_one_spec_for_requests_results_and_cards(spec):
    """Requests, results and the model's card carry the one spec, serialized to what its strategy reads."""
    for model in (ScoreRequest, CompareRequest, CriticResult, ModelInfo):
        annotation = model.model_fields["default_sampling" if model is ModelInfo else "sampling"].annotation
        assert FrameSampling in (annotation, *get_args(annotation))
    wire = ScoreRequest(prompt="p", sampling=spec.describe()).model_dump(mode="json")["sampling"]
    assert wire == spec.describe() and FrameSampling.model_validate(wire) == spec
    assert FrameSampling.model_validate_json(spec.model_dump_json()) == spec
