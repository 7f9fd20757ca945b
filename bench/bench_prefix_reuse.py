"""Shared-prefix scoring vs LiFT-style per-question passes, side by side in one run.

LiFT asks each question in a separate pass: decode the video, sample, encode frames and
prompt, answer; three times for its three dimensions. Our critic decodes once, encodes
the frames + prompt once, and asks every question on a copy of that KV cache.
Both paths here use the same model, videos, frames and rationale length, and the script
checks that they give the same labels and probabilities.

    .venv/bin/python bench/bench_prefix_reuse.py [--model PATH] [--videos 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from contract.sampling import FrameSampling
from contract.video import encode_video
from critic import get_rubric, prepare_input
from critic.rubrics import Rubric
from critic.samples import make_clip
from critic.tiny import build_tiny_idefics3
from critic.vlm import VLMCritic

PROMPT = "a red ball rolls across the grass"


def lift_style(critic: VLMCritic, path: Path, rubric: Rubric, sampling: FrameSampling):
    """One full pass per dimension: re-decode, re-sample, re-encode, answer."""
    dims, decode_s = {}, 0.0
    for d in rubric.dimensions:
        single = rubric.model_copy(update={"dimensions": (d,), "name": f"{rubric.name}:{d.name}"})
        item = prepare_input(path, PROMPT, single, sampling)
        decode_s += item.decode_s
        dims.update(critic.score([item])[0].dimensions)
    return dims, decode_s


def shared(critic: VLMCritic, path: Path, rubric: Rubric, sampling: FrameSampling):
    item = prepare_input(path, PROMPT, rubric, sampling)
    return critic.score([item])[0].dimensions, item.decode_s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=".cache/models/small-idefics3")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rationale-tokens", type=int, nargs="+", default=[0, 16, 32],
                    help="rationale length bounds to measure (0: labels only)")
    ap.add_argument("--size", type=int, default=256, help="video side in pixels")
    args = ap.parse_args(argv)

    if not (Path(args.model) / "config.json").exists():
        print(f"building the 'small' tiny model at {args.model}")
        build_tiny_idefics3(args.model, preset="small")
    critic = VLMCritic(args.model)
    rubric, sampling = get_rubric("lift"), FrameSampling.uniform(args.frames)
    tmp = Path(tempfile.mkdtemp())
    paths = []
    for i in range(args.videos):
        p = tmp / f"v{i}.mp4"
        p.write_bytes(encode_video(make_clip(49, args.size, seed=i), fps=8))
        paths.append(p)

    n_params = sum(p.numel() for p in critic.model.parameters())
    print(f"model {args.model} ({n_params / 1e6:.1f}M params), {args.videos} videos of 49 frames "
          f"{args.size}x{args.size}, {args.frames} frames sampled, rubric lift (3 dimensions), {args.rounds} rounds, "
          f"batch size 1 (as LiFT)")
    print(f"{'rationale':>10} | {'shared prefix (ours)':>22} | {'LiFT-style passes':>22} | {'speed-up':>8} | same answers")
    print(f"{'tokens':>10} | {'s/video  (decode s)':>22} | {'s/video  (decode s)':>22} |")
    for tokens in args.rationale_tokens:
        critic.rationale_tokens = tokens
        shared(critic, paths[0], rubric, sampling)  # warm-up
        lift_style(critic, paths[0], rubric, sampling)
        t_shared, t_lift, dec_shared, dec_lift, max_diff, same = [], [], [], [], 0.0, True
        for _ in range(args.rounds):
            for p in paths:
                t0 = time.perf_counter()
                a, da = shared(critic, p, rubric, sampling)
                t1 = time.perf_counter()
                b, db = lift_style(critic, p, rubric, sampling)
                t2 = time.perf_counter()
                t_shared.append(t1 - t0), t_lift.append(t2 - t1), dec_shared.append(da), dec_lift.append(db)
                for name in a:
                    same &= a[name].label == b[name].label and a[name].rationale == b[name].rationale
                    pa = np.array(list(a[name].probabilities.values()))
                    pb = np.array(list(b[name].probabilities.values()))
                    max_diff = max(max_diff, float(np.abs(pa - pb).max()))
        med = statistics.median
        print(f"{tokens:>10} | {med(t_shared):>9.4f} ({med(dec_shared):.4f}) {'':>3} | "
              f"{med(t_lift):>9.4f} ({med(dec_lift):.4f}) {'':>3} | {med(t_lift) / med(t_shared):>7.2f}x | "
              f"{same} (max |dp| {max_diff:.1e})")
    print("target: >= 2.5x for the three LiFT dimensions with 8 frames")


if __name__ == "__main__":
    main()
