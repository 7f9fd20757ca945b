"""The randomised synthetic domain and the independent evaluation renderer keep every label's
meaning (critic/data/synthetic.py's table), measured on the frames they draw: clean clips move
smoothly in the prompt's direction with the shown number of objects, each defect does what its
label says in the 8 frames a critic reads. Both are deterministic per seed, and training refuses
the evaluation renderer's sets."""

import numpy as np
import pytest

from contract.errors import InvalidParameterError
from contract.sampling import FrameSampling
from critic.data import eval_renderer, randomised, sample_clips, synthetic
from critic.data.ratings import (EVAL_ONLY_ANNOTATOR, SAMPLE_CLIPS_ANNOTATOR, EvaluationOnlyDataError, read_ratings,
                                 read_training_ratings)
from critic.data.synthetic import DIRECTIONS, DOMAINS, FIDELITY, MOTION, SEMANTIC, Scene, generate

SEEDS = range(6)


def _random(scene, seed, objects=True):
    return randomised.render(scene, np.random.default_rng(seed), objects)[:2]


def _eval(scene, seed, objects=True):
    return eval_renderer.paint(scene, np.random.default_rng(seed), objects)


RENDERERS = {"random": _random, "eval": _eval}


def _clip(renderer, scene, seed):
    """The viewed frames of ``scene`` and masks of its objects (pixels far from its empty plate)."""
    frames, fps = RENDERERS[renderer](scene, seed)
    plate, _ = RENDERERS[renderer](scene, seed, objects=False)
    view = FrameSampling.uniform(8).indices(len(frames), fps)
    masks = np.abs(frames.astype(np.float32) - plate).sum(-1) > 60
    return frames[view].astype(np.float32), masks[view]


def _centres(masks, direction="left to right"):
    """Object position along the prompt's direction, per frame (grows when it moves the right way)."""
    axis, sign = randomised.AXES[direction]
    return np.array([sign * np.nonzero(m)[0 if axis == 0 else 1].mean() for m in masks])


def _runs(mask_1d):
    m = np.concatenate([[False], mask_1d, [False]])
    return int((np.diff(m.astype(int)) == 1).sum())


def _scene(renderer, **kw):
    base = dict(colour="red", shape="ball", count=1, background="green grass")
    if renderer == "random":
        base.update(colour="cyan", shape="triangle", background="a brown field", verb="slides")
    return Scene(**{**base, **kw})


@pytest.mark.parametrize("renderer", RENDERERS)
def test_a_clean_clip_is_good_and_moves_the_prompts_way_with_the_shown_count(renderer):
    directions = list(DIRECTIONS) if renderer == "random" else ["left to right"]
    for seed in SEEDS:
        direction = directions[seed % len(directions)]
        for count in (1, 2):
            scene = _scene(renderer, count=count, direction=direction)
            assert {k: r.label for k, r in scene.ratings().items()} == dict.fromkeys(
                ["semantic_consistency", "fidelity", "motion"], "Good")
            _, masks = _clip(renderer, scene, seed)
            steps = np.diff(_centres(masks, direction))
            assert (steps > 0).all(), (seed, direction, steps)
            assert steps.max() < 3 * np.median(steps) + 1, (seed, steps)
            axis = randomised.AXES[direction][0]
            across = masks[4].any(axis=axis)  # lanes across the motion
            assert _runs(across) == count, (seed, count, direction)


@pytest.mark.parametrize("renderer", RENDERERS)
def test_motion_defects_show_in_the_viewed_frames(renderer):
    for seed in SEEDS:
        direction = list(DIRECTIONS)[seed % 4] if renderer == "random" else "left to right"
        views = {m: _clip(renderer, _scene(renderer, motion=m, direction=direction), seed) for m in MOTION}
        steps = {m: np.diff(_centres(masks, direction)) for m, (_, masks) in views.items() if m != "flicker"}
        assert (steps["reversed"] < 0).all(), (seed, steps["reversed"])
        held = np.abs(steps["freeze"]) < 0.5
        assert max(len(r) for r in "".join("1" if x else "0" for x in held).split("0")) >= 3, (seed, steps["freeze"])
        jump = steps["jump"]
        assert (jump > -0.5).all() and jump.max() > 2 * np.median(jump), (seed, jump)
        light = (views["flicker"][0] - views["none"][0]).mean(axis=(1, 2))  # (8 viewed frames, RGB)
        assert np.ptp(light, axis=0).max() > 25, (seed, light)


def _rms(a, b):
    return float(np.sqrt(((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean()))


def _sharpness(frames):
    """RMS of the brightness gradient. Not the mean absolute step: blurring a clean edge spreads its step over
    more pixels and keeps their sum, so a mean |step| only drops where blur averages texture or noise away."""
    f = frames.astype(np.float32).mean(-1)
    return float(np.sqrt((np.diff(f, axis=1) ** 2).mean() + (np.diff(f, axis=2) ** 2).mean()))


@pytest.mark.parametrize("renderer", RENDERERS)
def test_fidelity_defects_keep_their_strength(renderer):
    for seed in SEEDS:
        clips = {d: RENDERERS[renderer](_scene(renderer, fidelity=d), seed)[0] for d in FIDELITY}
        clean = clips["none"]
        assert _sharpness(clips["blur"]) < 0.8 * _sharpness(clean), seed
        assert _rms(clips["blur"], clean) < 25, seed
        mild, heavy = _rms(clips["mild_noise"], clean), _rms(clips["heavy_noise"], clean)
        assert 4 < mild < 32 and heavy > 40, (seed, mild, heavy)
        noise = clips["mild_noise"].astype(np.float32) - clean
        assert _rms(noise[0], noise[1]) > 3, seed  # it changes frame to frame
        assert _blockiness(clips["blocky"]) > 0.97 and _blockiness(clean) < 0.9, seed


def _blockiness(frames):
    """The largest share of pixels equal to their block's corner pixel, over block sizes 4 to 16."""
    h, w = frames.shape[1:3]
    best = 0.0
    for b in range(4, 17):
        corner = frames[:, np.arange(h) // b * b][:, :, np.arange(w) // b * b]
        best = max(best, float((corner == frames).all(-1).mean()))
    return best


def test_semantic_defects_render_what_they_say():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = randomised.sample_scene(rng)
        shown = scene.shown()
        assert SEMANTIC[scene.semantic] == scene.ratings()["semantic_consistency"].label
        differs = {k for k in ("colour", "shape", "count", "background") if getattr(scene, k) != getattr(shown, k)}
        assert differs == ({scene.semantic} - {"none"}), scene
        assert randomised._contrast(randomised.WIDE.colours[shown.colour], randomised.WIDE.backgrounds[shown.background])
        if scene.motion == "reversed":
            assert DIRECTIONS[scene.direction] in scene.ratings()["motion"].rationale
    for _ in range(100):
        scene = eval_renderer.draw_scene(rng)
        assert scene.direction == "left to right" and scene.count in (1, 2) and scene.shape in ("ball", "square")


# the documented label of each defect, by the start of its rationale (synthetic.py's table)
DOCUMENTED = {
    "semantic_consistency": {"The video shows what": "Good", "The objects match": "Normal", "The ": "Bad"},
    "fidelity": {"The frames are clean": "Good", "The frames are slightly blurry": "Normal",
                 "The frames show some noise": "Normal", "Heavy noise": "Bad", "The frames are full of blocky": "Bad"},
    "motion": {"The motion is smooth": "Good", "The object jumps": "Normal", "The video flickers": "Bad",
               "The motion freezes": "Bad", "The object moves from": "Bad"},
}


def test_both_are_deterministic_per_seed_and_write_the_documented_labels(tmp_path):
    for name, make in {"random": lambda d, s: generate(d, 12, seed=s, domain="random", prompt_variants=1),
                       "eval": lambda d, s: eval_renderer.generate_eval(d, 12, seed=s)}.items():
        a, b, c = make(tmp_path / name / "a", 5), make(tmp_path / name / "b", 5), make(tmp_path / name / "c", 6)
        assert a.read_text() == b.read_text() != c.read_text()
        for ra, rb in zip(read_ratings(a), read_ratings(b)):
            assert (a.parent / ra.video).read_bytes() == (b.parent / rb.video).read_bytes()
        for row in read_ratings(a) + read_ratings(c):
            for dim, rating in row.ratings.items():
                start = next(k for k in DOCUMENTED[dim] if rating.rationale.startswith(k))
                assert rating.label == DOCUMENTED[dim][start], (name, dim, rating)


def test_unknown_domain_is_a_typed_error(tmp_path):
    with pytest.raises(InvalidParameterError, match="unknown domain"):
        generate(tmp_path, 2, domain="photoreal")


@pytest.mark.parametrize("held_out_set, annotator", [(eval_renderer.generate_eval, EVAL_ONLY_ANNOTATOR),
                                                     (sample_clips.generate_sample_clips, SAMPLE_CLIPS_ANNOTATOR)])
def test_training_refuses_the_evaluation_only_sets(held_out_set, annotator, tmp_path, tiny_vlm_path):
    from critic.train.sft_config import SFTConfig
    from critic.train.sft_trainer import SFTTrainer

    held_out = held_out_set(tmp_path / "eval", 3, seed=1)
    assert {r.annotator for r in read_ratings(held_out)} == {annotator}  # evaluation reads it
    with pytest.raises(EvaluationOnlyDataError, match=f"only for evaluation \\(annotator '{annotator}'\\)"):
        read_training_ratings(held_out)
    mixed = tmp_path / "mixed.jsonl"  # hidden among training rows, still refused
    train = generate(tmp_path / "train", 3, seed=1)
    mixed.write_text(train.read_text() + held_out.read_text().replace("videos/", str(held_out.parent / "videos") + "/"))
    for cfg in (dict(train=str(mixed)), dict(train=str(train), val=str(held_out))):
        with pytest.raises(EvaluationOnlyDataError):
            SFTTrainer(SFTConfig(model=str(tiny_vlm_path), output_dir=str(tmp_path / "out"), method="full", **cfg))
    assert len(read_training_ratings(train)) == 3


def test_the_sample_clips_set_rates_each_defect_by_the_label_table(tmp_path):
    """critic/data/sample_clips.py: rows take their turn through make_clip's defects and carry the table's labels
    for them; the prompt names the clip (a red ball over green grass) exactly when semantic consistency is Good;
    and each defect shows in the 8 frames a critic reads of make_clip's 17 (the disc is the pixels of its colour)."""
    from critic.samples import make_clip

    rows = read_ratings(sample_clips.generate_sample_clips(tmp_path, 15, seed=1))
    own = "a red ball moves from left to right over green grass"
    for i, row in enumerate(rows):
        fidelity, motion = sample_clips.DEFECTS[list(sample_clips.DEFECTS)[i % 5]]
        assert row.ratings["fidelity"].label == FIDELITY[fidelity] and row.ratings["motion"].label == MOTION[motion], i
        assert (row.ratings["semantic_consistency"].label == "Good") == (row.prompt == own), (i, row.prompt)
    assert {r.ratings["semantic_consistency"].label for r in rows} == {"Good", "Normal", "Bad"}
    view = FrameSampling.uniform(8).indices(sample_clips.FRAMES, sample_clips.FPS)
    for seed in range(4):
        disc = synthetic.COLOURS[sample_clips.COLOUR]
        clip = {d: make_clip(sample_clips.FRAMES, sample_clips.SIZE, colour=disc, defect=d, seed=seed)[view]
                for d in sample_clips.DEFECTS}
        x = {d: np.array([np.nonzero((f == disc).all(-1))[1].mean() for f in v]) for d, v in clip.items()
             if d != "flicker"}
        steps = {d: np.diff(v) for d, v in x.items()}
        assert (steps[None] > 0).all() and steps[None].max() < 2 * np.median(steps[None]), seed
        assert (steps["freeze"][2:] == 0).all() and (steps["freeze"][:1] > 0).all(), seed  # stopped from frame 5 of 17 on
        assert sorted(steps["jump"])[-1] > 2.5 * np.median(steps["jump"]) and (steps["jump"] > 0).all(), seed
        bright = clip["flicker"].astype(np.float32).mean(axis=(1, 2, 3)) - clip[None].astype(np.float32).mean(axis=(1, 2, 3))
        assert (bright > 20).sum() >= 2 and (np.abs(bright) < 1).sum() >= 2, seed
        assert _sharpness(clip["blur"]) < 0.8 * _sharpness(clip[None]), seed


def test_eval_reports_several_named_sets_in_one_json(tmp_path, tiny_vlm_path, capsys):
    import json

    from critic.cli import main

    fixed, held_out = generate(tmp_path / "fixed", 3, seed=1), eval_renderer.generate_eval(tmp_path / "eval", 3, seed=1)
    args = ["eval", "--model", str(tiny_vlm_path), "--data", f"fixed={fixed}", "--data", f"eval={held_out}"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["sets"]) == {"fixed", "eval"} and report["rubric"] == "lift"
    assert all(r["n"] == 3 and set(r["dimensions"]) == {"semantic_consistency", "fidelity", "motion"}
               for r in report["sets"].values())
    assert main(["eval", "--model", str(tiny_vlm_path), "--data", str(fixed), "--data", str(held_out)]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x"), "--n", "2", "--renderer", "eval", "--domain", "random"]) == 2


def _centroids(masks):
    """Per frame, the (x, y) of a mask's pixels as fractions of the frame's width and height."""
    _, h, w = masks.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.array([[(xx * m).sum() / m.sum() / w, (yy * m).sum() / m.sum() / h] for m in masks])


@pytest.mark.parametrize("motion", MOTION)
def test_the_track_is_where_the_objects_are_drawn(motion):
    """A row's ``track`` (the warm-up's target, critic/train/vision_warmup.py) follows the objects as both
    training renderers draw them, motion defect included: the objects' pixels (the clip against its empty
    plate, or the object colour) centre where the track says, in every direction and count."""
    for seed, direction in enumerate(DIRECTIONS):
        scene = Scene("red", ("ball", "square", "triangle")[seed % 3], 1 + seed % 3, "blue water", motion=motion,
                      direction=direction)
        frames, _, track = randomised.render(scene, np.random.default_rng(seed))
        plate, _, plate_track = randomised.render(scene, np.random.default_rng(seed), objects=False)
        assert plate_track == track and len(track) == len(frames)
        drawn = _centroids(np.abs(frames.astype(int) - plate).sum(-1) > 30)
        assert np.abs(drawn - np.array(track)).max() < 0.04, (motion, direction)
    if motion == "flicker":
        return  # the fixed renderer's flicker darkens the object colour itself
    for seed in range(4):
        scene = Scene("red", ("ball", "square")[seed % 2], 1 + seed % 2, "blue water", motion=motion)
        frames, track = synthetic.render_with_track(scene, seed=seed)
        assert np.array_equal(frames, synthetic.render(scene, seed=seed)) and len(track) == len(frames)
        inside = np.array([0.15 < x < 0.85 for x, _ in track])  # a jump can carry the object past the edge
        drawn = _centroids((frames == synthetic.COLOURS["red"]).all(-1)[inside])
        assert np.abs(drawn - np.array(track)[inside]).max() < 0.02, motion


def test_rows_carry_the_track_and_the_fidelity_defect_for_every_prompt_of_a_clip(tmp_path):
    for domain in DOMAINS:
        rows = read_ratings(generate(tmp_path / domain, 8, seed=2, prompt_variants=1, domain=domain))
        for clip, variant in zip(rows[::2], rows[1::2]):
            assert clip.track and variant.track == clip.track and variant.shown == clip.shown
            assert FIDELITY[clip.shown["fidelity"]] == clip.ratings["fidelity"].label


def test_undirected_prompts_leave_the_direction_out_and_only_then_reversed_motion_is_good(tmp_path):
    for domain in DOMAINS:
        plain = read_ratings(generate(tmp_path / domain / "p", 40, seed=3, domain=domain, prompt_variants=1))
        rows = read_ratings(generate(tmp_path / domain / "u", 40, seed=3, domain=domain, prompt_variants=1, undirected=0.5))
        undirected = [" from " not in r.prompt for r in rows]
        assert 0.3 < np.mean(undirected) < 0.7
        for p, r, bare in zip(plain, rows, undirected):
            assert (tmp_path / domain / "p" / p.video).read_bytes() == (tmp_path / domain / "u" / r.video).read_bytes()
            if not bare:
                assert r == p  # a prompt that keeps its direction keeps its labels
                continue
            assert not any(d in r.prompt for d in DIRECTIONS) and r.prompt == p.prompt.replace(
                " from " + p.prompt.split(" from ")[1].split(" over ")[0], "")
            assert r.ratings["semantic_consistency"] == p.ratings["semantic_consistency"]
            assert r.ratings["fidelity"] == p.ratings["fidelity"]
            if p.ratings["motion"].rationale.endswith("against the described motion."):
                assert r.ratings["motion"].label == "Good"  # a direction the prompt never named cannot be reversed
            else:
                assert r.ratings["motion"] == p.ratings["motion"]
        assert any(" from " not in r.prompt and p.ratings["motion"].label == "Bad" and r.ratings["motion"].label == "Good"
                   for p, r in zip(plain, rows))
    with pytest.raises(InvalidParameterError, match="undirected"):
        generate(tmp_path / "x", 2, undirected=1.5)
