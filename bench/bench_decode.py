"""Decode + sample: the streaming decoder against decoding every frame, side by side in one run.

For each clip, each path runs in its own subprocess (so peak memory is that path's alone)
and samples 8 frames uniformly, as LiFT does:

- ``decode-all``: what the critic did before: every frame to RGB, stacked, then indexed;
- ``streaming, T thread(s)``: ``contract.video.decode_sampled`` (only the sampled frames
  are converted; T codec threads).

Clips: a 49-frame 480x720 clip with texture and motion (CogVideoX's output shape), and a
long, highly compressible 1080p clip (flat frames: a few KB per minute, the bomb class).
decode-all on the long clip is run on its first ``--all-frames-cap`` frames only, since
every frame costs ~6 MB of RGB (plus a stacked copy) and all 1,790 would need ~21 GB.

    .venv/bin/python bench/bench_decode.py [--long-frames 1790] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CHILD = r"""
import json, resource, sys, time
import av, numpy as np
from contract.sampling import FrameSampling
from contract.video import VideoLimits, decode_sampled
path, mode, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
sampling = FrameSampling.uniform(8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "all":  # the previous path, as it was: every frame to RGB, stack, index
    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    video = np.stack(frames)
    kept = video[sampling.indices(len(frames), 30.0)]
else:
    kept = decode_sampled(path, sampling.indices, VideoLimits(decode_threads=threads)).frames
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024, "kept": list(kept.shape)}))
"""


def encode(frames, path: Path, fps: int = 30, **opts) -> Path:
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"preset": "ultrafast", **opts}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def textured_clip(n: int, h: int, w: int) -> list[np.ndarray]:
    """A noisy gradient with a moving square: costs what real content costs to decode."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 128)], -1).astype(np.int16)
    out = []
    for i in range(n):
        f = base + rng.integers(-20, 20, base.shape, dtype=np.int16)
        x = (i * 11) % (w - 80)
        f[100:180, x:x + 80] = (230, 40, 40)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


def run(path: Path, mode: str, threads: int, runs: int) -> dict:
    rows = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(threads)], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout))
    return {"wall_s": statistics.median(r["wall_s"] for r in rows), "growth_mb": max(r["growth_mb"] for r in rows),
            "peak_mb": max(r["peak_mb"] for r in rows), "kept": rows[0]["kept"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long-frames", type=int, default=1790, help="frames of the long 1080p clip (30 fps)")
    ap.add_argument("--all-frames-cap", type=int, default=240, help="decode-all runs on this many of them")
    ap.add_argument("--runs", type=int, default=5, help="runs per path on the short clip (median); long clip: 1")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-decode-"))
    short = encode(textured_clip(49, 480, 720), tmp / "short-480x720.mp4", fps=8, crf="23")
    flat = np.full((1080, 1920, 3), 90, np.uint8)
    long_ = encode([flat] * args.long_frames, tmp / "long-1080p.mp4", crf="40", g="600")
    capped = encode([flat] * args.all_frames_cap, tmp / "capped-1080p.mp4", crf="40", g="600")

    cases = [
        ("49 x 480x720", short, "all", 1, args.runs), ("49 x 480x720", short, "stream", 1, args.runs),
        ("49 x 480x720", short, "stream", 2, args.runs),
        (f"{args.all_frames_cap} x 1080p flat", capped, "all", 1, 1),
        (f"{args.all_frames_cap} x 1080p flat", capped, "stream", 1, 1),
        (f"{args.long_frames} x 1080p flat", long_, "stream", 1, 1),
        (f"{args.long_frames} x 1080p flat", long_, "stream", 2, 1),
    ]
    results = {}
    print(f"8 frames sampled uniformly; files: short {short.stat().st_size // 1024} KB, "
          f"long {long_.stat().st_size // 1024} KB ({args.long_frames} frames), capped {capped.stat().st_size // 1024} KB")
    print("peak RSS: the whole child process (Python, numpy, PyAV: ~110 MB before decoding); growth: above that")
    print(f"{'clip':<22}{'path':<24}{'decode+sample s':>16}{'peak RSS MB':>13}{'growth MB':>11}")
    for clip, path, mode, threads, runs in cases:
        r = results[(clip, mode, threads)] = run(path, mode, threads, runs)
        name = "decode-all (before)" if mode == "all" else f"streaming, {threads} thread{'s' * (threads > 1)}"
        print(f"{clip:<22}{name:<24}{r['wall_s']:>16.3f}{r['peak_mb']:>13.0f}{r['growth_mb']:>11.1f}")
    s_all, s_new = results[("49 x 480x720", "all", 1)], results[("49 x 480x720", "stream", 2)]
    c = f"{args.all_frames_cap} x 1080p flat"
    l_all, l_new = results[(c, "all", 1)], results[(c, "stream", 1)]
    print(f"480x720: decode-all / streaming (2 threads): time {s_all['wall_s'] / s_new['wall_s']:.2f}x, "
          f"peak RSS {s_all['peak_mb'] / s_new['peak_mb']:.2f}x")
    print(f"1080p ({args.all_frames_cap} frames): decode-all / streaming: time {l_all['wall_s'] / l_new['wall_s']:.2f}x, "
          f"peak RSS {l_all['peak_mb'] / l_new['peak_mb']:.1f}x")
    print("streaming threads 1 / 2: 480x720 "
          f"{results[('49 x 480x720', 'stream', 1)]['wall_s'] / s_new['wall_s']:.2f}x, long 1080p "
          f"{results[(f'{args.long_frames} x 1080p flat', 'stream', 1)]['wall_s'] / results[(f'{args.long_frames} x 1080p flat', 'stream', 2)]['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
