"""Per-clip cost of the model-free critic on CPU: the flow-based VBench signals beside the
pixel statistics, side by side in one run, from 64x64 to CogVideoX's 480x720 (49 frames).

Frames are already decoded (decoding is bench'd elsewhere); each figure is the best of
``--rounds`` runs, one OpenCV thread unless ``--threads`` says otherwise.

    .venv/bin/python bench/bench_modelfree.py [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from critic.modelfree import FLOW_METRICS, METRICS
from critic.motion import FlowField
from critic.samples import make_clip

SHAPES = [(17, 64, 64), (49, 64, 64), (49, 256, 256), (49, 480, 720)]


def clip(n: int, h: int, w: int) -> np.ndarray:
    frames = make_clip(n, max(h, w))
    return np.ascontiguousarray(np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]))


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} thread(s), best of {args.rounds}")
    print(f"{'clip':>14} {'flow signals':>13} {'pixel stats':>12} {'ms/frame':>9}")
    for n, h, w in SHAPES:
        frames = clip(n, h, w)

        def flow_signals():
            flows = FlowField(frames)
            for name in sorted(FLOW_METRICS):
                METRICS[name](frames, flows)

        def pixel_stats():
            for name in sorted(set(METRICS) - FLOW_METRICS):
                METRICS[name](frames)

        tf, tp = best(flow_signals, args.rounds), best(pixel_stats, args.rounds)
        print(f"{f'{n}x{h}x{w}':>14} {tf * 1e3:>10.0f} ms {tp * 1e3:>9.0f} ms {(tf + tp) * 1e3 / n:>9.1f}")


if __name__ == "__main__":
    main()
