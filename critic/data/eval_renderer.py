"""A second renderer of the synthetic vocabulary, for evaluation only: ``lift-critic synth --renderer eval``.

It measures whether a critic learned the concepts or the training renderer's look. Written
apart from ``critic.data.synthetic.render`` and ``critic.data.randomised``: it shares their
vocabulary, prompts, rationales and the meaning of every label (``critic.data.synthetic``'s
docstring table), nothing of their drawing or defects. Its own style: supersampled shapes with
an outline, free vertical positions and a slight slope, gradient-and-ripple or tiled
backgrounds, other sizes (56 to 104 pixels), frame counts (12 to 28) and rates (5 to 20 fps);
its own defects: tent-filter or down-and-up-sampling blur; uniform or speckle noise; nearest-
neighbour blocks with posterised colours; gamma flicker; freezes, jumps and reversal.

Its rows are marked ``annotator: "synthetic-eval-renderer"`` and the critic trainer refuses
them (``critic.data.ratings.read_training_ratings``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from contract.errors import InvalidParameterError
from contract.sampling import FrameSampling
from contract.video import encode_video
from critic.data.ratings import EVAL_ONLY_ANNOTATOR, RatedVideo, write_rated_clips
from critic.data.synthetic import BACKGROUNDS, COLOURS, COUNTS, FIDELITY, MOTION, SEMANTIC, SHAPES, Scene

FRAME_SIZES = ((56, 56), (88, 88), (104, 104), (60, 80), (80, 104), (72, 56))
FRAME_RATES = (5, 7, 9, 14, 20)


def draw_scene(rng: np.random.Generator) -> Scene:
    """A scene of the fixed vocabulary; a third of each dimension clean, the rest even over its defects."""
    def kind(table: dict) -> str:
        return str(rng.choice(list(table)[1:])) if rng.random() > 1 / 3 else "none"

    colour, background = str(rng.choice(list(COLOURS))), str(rng.choice(list(BACKGROUNDS)))
    semantic = kind(SEMANTIC)
    alt = None
    if semantic == "colour":
        alt = str(rng.choice([c for c in COLOURS if c != colour]))
    elif semantic == "background":
        alt = str(rng.choice([b for b in BACKGROUNDS if b != background]))
    return Scene(colour=colour, shape=str(rng.choice(SHAPES)), count=int(rng.choice(list(COUNTS))),
                 background=background, semantic=semantic, fidelity=kind(FIDELITY), motion=kind(MOTION), alt=alt)


def paint(scene: Scene, rng: np.random.Generator, objects: bool = True) -> tuple[np.ndarray, int]:
    """``(T, H, W, 3)`` uint8 frames of ``scene`` (its shown version, its defects) and their rate;
    ``objects=False`` leaves the objects out (the empty plate of the same clip)."""
    h, w = FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
    n = int(rng.integers(12, 29))
    fps = int(FRAME_RATES[rng.integers(len(FRAME_RATES))])
    seen = FrameSampling.uniform(8).indices(n, fps)
    x = _path(scene.motion, n, seen, np.random.default_rng(rng.integers(2**63)))
    video = _scene_frames(scene.shown(), x, h, w, rng, objects)
    if scene.motion == "flicker":
        video = _gamma_flicker(video, seen, rng)
    video = _spoil(video, scene.fidelity, rng)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8), fps


def _path(motion: str, n: int, seen: list[int], rng: np.random.Generator) -> np.ndarray:
    """Horizontal position of the objects, as a share of the way from the left start to the right end."""
    x = np.arange(n) / (n - 1)
    if motion == "reversed":
        x = 1 - x
    elif motion == "freeze":  # stops from a sampled frame on, over at least half the sampled frames
        stop = seen[int(rng.integers(1, 4))]
        x = np.minimum(x, x[stop])
    elif motion == "jump":  # leaps ahead once, by about three ordinary sampled steps
        at = seen[int(rng.integers(3, 6))]
        leap = rng.uniform(0.25, 0.45)
        x = (x + leap * (np.arange(n) >= at)) / (1 + leap)
    return x


def _scene_frames(shown: Scene, x: np.ndarray, h: int, w: int, rng: np.random.Generator, objects: bool) -> np.ndarray:
    s = 2  # supersampling factor
    H, W = h * s, w * s
    half = rng.uniform(0.09, 0.17) * min(H, W)
    slope = rng.uniform(-0.08, 0.08) * H
    margin = half + abs(slope) / 2 + 2
    rows = np.sort(rng.uniform(margin, H - margin, shown.count))
    if shown.count == 2 and rows[1] - rows[0] < 2.4 * half:
        rows = np.array([H / 2 - 1.3 * half, H / 2 + 1.3 * half])
    left, right = half + rng.uniform(0, 0.15) * W, W - half - rng.uniform(0, 0.25) * W
    fill = np.array(COLOURS[shown.colour], float)
    edge = fill * 0.55
    ground = _ground(np.array(BACKGROUNDS[shown.background], float), H, W, rng)
    Y, X = np.indices((H, W), dtype=float)
    out = np.empty((len(x), h, w, 3))
    for i, share in enumerate(x):
        cx = left + share * (right - left)
        pic = ground.copy()
        for row in rows if objects else ():
            cy = row + slope * (share - 0.5)
            if shown.shape == "ball":
                dist = np.hypot(X - cx, Y - cy)
            else:
                dist = np.maximum(abs(X - cx), abs(Y - cy))
            pic[dist <= half] = edge
            pic[dist <= half - s * 1.5] = fill
        out[i] = pic.reshape(h, s, w, s, 3).mean(axis=(1, 3))
    return out


def _ground(colour: np.ndarray, H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    Y, X = np.indices((H, W), dtype=float)
    shade = 1 + rng.uniform(0.05, 0.25) * (0.5 - Y / H)  # lighter at the top
    if rng.random() < 0.5:
        texture = rng.uniform(3, 9) * np.sin(X / rng.uniform(3, 9) + 2 * np.sin(Y / rng.uniform(5, 15)))
    else:
        tile = int(rng.integers(6, 16))
        texture = rng.uniform(3, 8) * (((X // tile + Y // tile) % 2) * 2 - 1)
    return np.clip(colour[None, None] * shade[..., None] + texture[..., None], 0, 255)


def _gamma_flicker(video: np.ndarray, seen: list[int], rng: np.random.Generator) -> np.ndarray:
    """Frames alternate at random between a darkening and a brightening gamma; both occur among the sampled frames."""
    n = len(video)
    gamma = np.where(rng.random(n) < 0.5, rng.uniform(1.8, 2.6), rng.uniform(0.35, 0.55))
    picks = rng.choice(seen, 2, replace=False)
    gamma[picks[0]], gamma[picks[1]] = 2.4, 0.45
    return 255 * (video / 255) ** gamma[:, None, None, None]


def _spoil(video: np.ndarray, fidelity: str, rng: np.random.Generator) -> np.ndarray:
    h, w = video.shape[1:3]
    if fidelity == "blur":
        if rng.random() < 0.5:
            tent = np.array([1, 2, 3, 2, 1], float) / 9
            for axis in (1, 2):
                video = np.apply_along_axis(lambda v: np.convolve(np.pad(v, 2, mode="edge"), tent, "valid"), axis, video)
            return video
        f = 2 if min(h, w) < 80 else 3  # area-average down, bilinear back up
        small = video[:, : h - h % f, : w - w % f].reshape(len(video), h // f, f, w // f, f, 3).mean(axis=(2, 4))
        return _bilinear(small, h, w)
    if fidelity == "mild_noise":
        if rng.random() < 0.5:
            return video + rng.uniform(-1, 1, video.shape) * rng.uniform(25, 40)
        return video * rng.normal(1, rng.uniform(0.1, 0.16), video.shape)
    if fidelity == "heavy_noise":
        if rng.random() < 0.5:
            return video + rng.uniform(-1, 1, video.shape) * rng.uniform(95, 130)
        return video * rng.normal(1, rng.uniform(0.5, 0.7), video.shape) + rng.normal(0, 20, video.shape)
    if fidelity == "blocky":
        f = int(rng.choice([6, 8, 11]))
        levels = int(rng.integers(4, 8))
        ys = np.minimum(np.arange(h) // f * f + f // 2, h - 1)  # each pixel takes its block's centre
        xs = np.minimum(np.arange(w) // f * f + f // 2, w - 1)
        return np.round(video[:, ys][:, :, xs] / 255 * (levels - 1)) / (levels - 1) * 255
    return video


def _bilinear(small: np.ndarray, h: int, w: int) -> np.ndarray:
    sh, sw = small.shape[1:3]
    ys, xs = np.linspace(0, sh - 1, h), np.linspace(0, sw - 1, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, sh - 1), np.minimum(x0 + 1, sw - 1)
    fy, fx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    top = small[:, y0][:, :, x0] * (1 - fx) + small[:, y0][:, :, x1] * fx
    bottom = small[:, y1][:, :, x0] * (1 - fx) + small[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def generate_eval(out_dir: str | os.PathLike, n: int, seed: int = 0, name: str = "ratings.jsonl") -> Path:
    """Write ``n`` rated clips of this renderer under ``out_dir``; returns the JSONL path."""
    if n < 1:
        raise InvalidParameterError(f"evaluation set: n must be >= 1, got {n}")
    rng = np.random.default_rng([seed, 0xE7A1])

    def clips():
        for i in range(n):
            scene = draw_scene(rng)
            frames, fps = paint(scene, np.random.default_rng([seed, i]))
            row = RatedVideo(video=f"videos/eval_{seed:03d}_{i:05d}.mp4", prompt=scene.prompt(), ratings=scene.ratings(),
                             annotator=EVAL_ONLY_ANNOTATOR)
            yield row.video, encode_video(frames, fps=fps, qp=21), [row]

    return write_rated_clips(out_dir, name, clips())
