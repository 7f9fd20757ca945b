"""The CLI as a user runs it: a subprocess, JSON on stdout, one line on stderr for bad input."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "critic.cli", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_score_with_the_tiny_vlm(tiny_vlm_path, clips):
    p = run("score", clips["clean"], "--prompt", "a red ball", "--model", tiny_vlm_path, "--segments", "4", "--seed", "2")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["rubric"] == "lift" and out["sampling"] == {"strategy": "segments", "segments": 4, "seed": 2}
    assert len(out["frame_indices"]) == 4 and set(out["dimensions"]) == {"semantic_consistency", "fidelity", "motion"}
    assert out["model"] == "tiny-idefics3" and 0.05 <= out["reward"] <= 0.9


def test_score_model_free(clips):
    p = run("score", clips["flicker"], "--prompt", "a red ball", "--model", "model-free")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["model"] == "model-free" and out["rubric"] == "signal"


def test_compare(clips):
    p = run("compare", clips["clean"], clips["flicker"], "--prompt", "a red ball")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    o = out["overall"]
    assert o["p_a_better"] + o["p_b_better"] + o["p_tie"] == pytest.approx(1.0)
    assert o["p_a_better"] > o["p_b_better"]


@pytest.mark.parametrize(
    "args, code",
    [
        (["score", "{garbage}", "--prompt", "x"], "invalid_video"),
        (["score", "{missing}", "--prompt", "x"], "invalid_video"),
        (["score", "{clean}", "--prompt", "x", "--rubric", "nope"], "unknown_rubric"),
        (["score", "{clean}", "--prompt", "x", "--segments", "99"], "invalid_parameter"),
        (["score", "{clean}", "--prompt", "x", "--frames", "0"], "invalid_parameter"),
        (["score", "{clean}", "--prompt", "x", "--model", "{missing}"], "model_load_error"),
        (["synth", "{out}", "--n", "2", "--undirected", "2"], "invalid_parameter"),
        (["synth", "{out}", "--n", "2", "--renderer", "eval", "--undirected", "0.5"], "invalid_parameter"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(tmp_path, clips, args, code):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    fill = {"garbage": garbage, "missing": tmp_path / "missing.mp4", "clean": clips["clean"], "out": tmp_path / "set"}
    p = run(*[a.format(**fill) for a in args])
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and code in lines[0] and "Traceback" not in p.stderr


def test_sample_writes_a_decodable_clip(tmp_path):
    out = tmp_path / "s.mp4"
    p = run("sample", out, "--defect", "freeze", "--num-frames", "9")
    assert p.returncode == 0, p.stderr
    from contract.video import decode_video

    assert decode_video(out).num_frames == 9
