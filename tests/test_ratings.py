import json

import pytest

from critic.data.ratings import (
    RatingsFormatError,
    from_lift_conversations,
    parse_answer,
    read_preferences,
    read_ratings,
    to_lift_conversations,
    write_jsonl,
)
from critic.data.synthetic import Scene, generate, render

GOOD_ROW = {
    "video": "v.mp4", "prompt": "a red ball", "annotator": "a1",
    "ratings": {"semantic_consistency": {"label": "Good", "rationale": "It is a red ball."},
                "fidelity": {"label": "Bad", "rationale": "Heavy noise."},
                "motion": {"label": "Normal", "rationale": "One jump."}},
}


def _write(tmp_path, rows):
    p = tmp_path / "r.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p


def test_valid_rows_read(tmp_path):
    (row,) = read_ratings(_write(tmp_path, [GOOD_ROW]))
    assert row.ratings["fidelity"].label == "Bad" and row.rubric == "lift"


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: r["ratings"]["motion"].update(label="Great"), r"r.jsonl:2: .*ratings.motion.label 'Great'"),
        (lambda r: r["ratings"].pop("motion"), "cover exactly"),
        (lambda r: r.pop("prompt"), "prompt"),
        (lambda r: r.update(extra=1), "extra"),
        (lambda r: r.update(rubric="nope"), "unknown rubric"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, mutate, match):
    bad = json.loads(json.dumps(GOOD_ROW))
    mutate(bad)
    with pytest.raises(RatingsFormatError, match=match):
        read_ratings(_write(tmp_path, [GOOD_ROW, bad]))


def test_not_json_and_empty(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text("{not json\n")
    with pytest.raises(RatingsFormatError, match="x.jsonl:1"):
        read_ratings(p)
    p.write_text("\n")
    with pytest.raises(RatingsFormatError, match="no rows"):
        read_ratings(p)


def test_round_trip_through_lift_conversations(tmp_path):
    rows = read_ratings(generate(tmp_path, 6, seed=4))
    convs = to_lift_conversations(rows)
    assert len(convs) == 18
    human, gpt = convs[0]["conversations"][0]["value"], convs[0]["conversations"][1]["value"]
    assert human.startswith("<video>\n" + rows[0].prompt + " ") and gpt.split(".")[0] in ("Good", "Normal", "Bad")
    back = from_lift_conversations(json.loads(json.dumps(convs)))
    # LiFT's conversation format has no place for who rated a clip or what a synthetic clip shows, and where
    gone = {"annotator": None, "shown": None, "track": None}
    assert [r.model_dump() for r in back] == [r.model_dump(exclude=set(gone)) | gone for r in rows]


def test_pairwise_rows(tmp_path):
    p = tmp_path / "p.jsonl"
    row = {"video_a": "a.mp4", "video_b": "b.mp4", "prompt": "x",
           "winners": {"semantic_consistency": "a", "fidelity": "tie", "motion": "b"}}
    p.write_text(json.dumps(row) + "\n" + json.dumps({**row, "winners": {**row["winners"], "motion": "c"}}) + "\n")
    with pytest.raises(RatingsFormatError, match="p.jsonl:2"):
        read_preferences(p)
    p.write_text(json.dumps(row) + "\n")
    assert read_preferences(p)[0].winners["fidelity"] == "tie"


def test_parse_answer_is_anchored():
    assert parse_answer("Bad. The crane's eyes were not generated.", ["Good", "Normal", "Bad"]) == (
        "Bad", "The crane's eyes were not generated.")
    assert parse_answer("Good. nothing bad", ["Good", "Normal", "Bad"])[0] == "Good"  # LiFT would say Bad
    with pytest.raises(ValueError):
        parse_answer("It is Bad.", ["Good", "Normal", "Bad"])


def test_synthetic_set_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", 5, seed=9)
    b = generate(tmp_path / "b", 5, seed=9)
    assert a.read_text() == b.read_text()
    for ra, rb in zip(read_ratings(a), read_ratings(b)):  # byte for byte
        assert (a.parent / ra.video).read_bytes() == (b.parent / rb.video).read_bytes()
    assert generate(tmp_path / "c", 5, seed=10).read_text() != a.read_text()


def _signal(frames, dim):
    from contract.sampling import FrameSampling
    from contract.video import encode_video
    from critic import prepare_input
    from critic.modelfree import ModelFreeCritic

    item = prepare_input(encode_video(frames), "x", "signal", FrameSampling.every_frame())
    return ModelFreeCritic().score([item])[0].dimensions[dim].score


def test_injected_defects_change_what_they_should():
    clean = Scene("red", "ball", 1, "green grass")
    base = render(clean, seed=5)
    # motion defects, checked by the model-free critic
    assert _signal(render(Scene("red", "ball", 1, "green grass", motion="flicker"), seed=5), "temporal_flickering") < \
        _signal(base, "temporal_flickering") - 0.05
    assert _signal(render(Scene("red", "ball", 1, "green grass", motion="freeze"), seed=5), "motion_magnitude") < \
        0.6 * _signal(base, "motion_magnitude")
    # fidelity defects change sharpness; the objects and background stay
    assert _signal(render(Scene("red", "ball", 1, "green grass", fidelity="blur"), seed=5), "sharpness") < \
        _signal(base, "sharpness")
    # semantic defects change the clip, not the prompt
    wrong = Scene("red", "ball", 1, "green grass", semantic="colour", alt="blue")
    assert wrong.prompt() == clean.prompt()
    shown = render(wrong, seed=5)
    assert shown[..., 2].mean() > base[..., 2].mean() and shown[..., 0].mean() < base[..., 0].mean()
    assert wrong.ratings()["semantic_consistency"].label == "Bad"
    assert Scene("red", "ball", 1, "green grass", semantic="background", alt="yellow sand").ratings()[
        "semantic_consistency"].label == "Normal"
    # reversed motion plays the clean clip backwards
    rev = render(Scene("red", "ball", 1, "green grass", motion="reversed"), seed=5)
    assert abs(rev[0].astype(int) - base[-1].astype(int)).mean() < 1.0


def test_write_jsonl_round_trip(tmp_path):
    rows = read_ratings(_write(tmp_path, [GOOD_ROW]))
    out = tmp_path / "out.jsonl"
    write_jsonl(out, rows)
    assert read_ratings(out)[0] == rows[0]


def test_prompt_variants_reuse_the_clip_and_relabel_only_semantics(tmp_path):
    import numpy as np

    plain = read_ratings(generate(tmp_path / "p", 6, seed=7))
    rows = read_ratings(generate(tmp_path / "v", 6, seed=7, prompt_variants=2))
    assert len(rows) == 18 and rows[0] == plain[0]  # the first row of each clip is the plain set's
    for k in range(0, 18, 3):
        a, *variants = rows[k : k + 3]
        for v in variants:
            assert v.video == a.video and v.prompt != a.prompt and v.shown == a.shown  # the same clip shows the same
            assert v.ratings["fidelity"] == a.ratings["fidelity"] and v.ratings["motion"] == a.ratings["motion"]
        for r in rows[k : k + 3]:  # `shown` is what the clip shows: the prompt's words where it matches them
            s, label = r.shown, r.ratings["semantic_consistency"].label
            assert set(s) == {"colour", "shape", "count", "background", "fidelity"}
            if label == "Good":
                assert f" {s['colour']} {s['shape']}" in r.prompt and r.prompt.endswith(s["background"])
            elif label == "Normal":
                assert not r.prompt.endswith(s["background"]) and f" {s['colour']} {s['shape']}" in r.prompt
    # a variant renders exactly the clip it is paired with, whatever its prompt asks for
    rng = np.random.default_rng(0)
    scene = Scene("red", "ball", 2, "green grass", semantic="count", motion="jump")
    for defect, label in [("none", "Good"), ("colour", "Bad"), ("shape", "Bad"), ("count", "Bad"),
                          ("background", "Normal")]:
        v = scene.variant(defect, rng)
        assert np.array_equal(render(v, seed=3), render(scene, seed=3))
        assert v.ratings()["semantic_consistency"].label == label and v.ratings()["motion"].label == "Normal"


def test_synthetic_set_rejects_bad_sizes(tmp_path):
    from contract.errors import InvalidParameterError

    for n, k in [(0, 0), (3, -1)]:
        with pytest.raises(InvalidParameterError, match="synthetic set"):
            generate(tmp_path, n, prompt_variants=k)
    assert not (tmp_path / "ratings.jsonl").exists()
