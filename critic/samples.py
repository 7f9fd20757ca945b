"""Procedural sample clips: a coloured shape moving over a background, with optional defects.

Seeded and deterministic. Used by `lift-critic sample`, the tests and the benchmarks, and rated as a
held-out set by `critic.data.sample_clips`; the synthetic rated-video set for critic training builds on
the same drawing code.
"""

from __future__ import annotations

import numpy as np

DEFECTS = ("flicker", "freeze", "jump", "blur", "noise")


def make_clip(
    num_frames: int = 17,
    size: int = 64,
    colour: tuple[int, int, int] = (220, 40, 40),
    background: tuple[int, int, int] = (40, 110, 50),
    radius: int | None = None,
    defect: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``(T, size, size, 3)`` uint8: a disc moving left to right along a gentle arc."""
    if defect is not None and defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; known: {DEFECTS}")
    rng = np.random.default_rng(seed)
    radius = radius or max(3, size // 8)
    yy, xx = np.mgrid[0:size, 0:size]
    start = rng.uniform(0.15, 0.3) * size
    y0 = rng.uniform(0.35, 0.65) * size
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    # a soft texture so sharpness and flicker have something to see
    texture = rng.normal(0, 6, (size, size, 1))
    for t in range(num_frames):
        step = t
        if defect == "freeze" and t >= num_frames // 3:
            step = num_frames // 3
        if defect == "jump" and t >= num_frames // 2:
            step = t + num_frames // 2
        x = start + step * (0.5 * size / max(num_frames - 1, 1))
        y = y0 + 0.1 * size * np.sin(step / max(num_frames - 1, 1) * np.pi)
        img = np.broadcast_to(np.array(background, np.float32), (size, size, 3)) + texture
        disc = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        img = np.where(disc[..., None], np.array(colour, np.float32), img)
        # washed out two frames in four: a critic reading 8 uniformly sampled frames of 16 or 17 reads only odd
        # ones (1, 3, ..., 15), which every other frame's flicker would wash out all alike: no flicker to see
        if defect == "flicker" and (t // 2) % 2 == 1:
            img = img * 0.45 + 120
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    if defect == "blur":
        frames = _box_blur(frames, 5)
    if defect == "noise":
        frames = np.clip(frames + rng.normal(0, 40, frames.shape), 0, 255).astype(np.uint8)
    return frames


def _box_blur(frames: np.ndarray, k: int) -> np.ndarray:
    f = frames.astype(np.float32)
    pad = k // 2
    p = np.pad(f, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    c = p.cumsum(1).cumsum(2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0), (0, 0)))
    h, w = frames.shape[1:3]
    s = c[:, k : k + h, k : k + w] - c[:, :h, k : k + w] - c[:, k : k + h, :w] + c[:, :h, :w]
    return (s / (k * k)).astype(np.uint8)
