"""Domain randomisation for the synthetic set: ``lift-critic synth --domain random``.

The scenes, labels and rationales are ``critic.data.synthetic``'s (its docstring's table says
what every label means); what varies is everything a label does not depend on, so a critic
trained here has to learn the concepts rather than one renderer's look:

- clip: size (48 to 96 pixels a side, square or not), 10 to 32 frames, 6 to 24 fps, H.264 quantiser;
- scene: the wider vocabulary (more colours, backgrounds, a triangle, three objects, verbs and the
  four directions the prompt names), object size, start, lanes, speed and easing;
- look: flat, gradient, blotchy or striped background textures; gain, offset, tint and vignette;
- defects, each with several implementations and strengths: Gaussian, box or motion blur;
  Gaussian, salt-and-pepper or compression noise (mild) and strong Gaussian, salt-and-pepper or
  both (heavy); blocks of 4 to 16 pixels by mean, by corner sample or with colour errors;
  random-dark, bright-flash, colour-cast or periodic flicker; freezes and jumps at any point.

Flicker, freezes and jumps are placed so that the 8 uniformly sampled frames a critic reads
(``FrameSampling.uniform(8)``) show them; the label never depends on frames a critic skips.
"""

from __future__ import annotations

import numpy as np

from contract.sampling import FrameSampling
from contract.video import encode_video
from critic.data.synthetic import FIDELITY, MOTION, SEMANTIC, WIDE, Scene, _other, _pick, track_point

SIZES = ((48, 48), (64, 64), (64, 64), (80, 80), (96, 96), (64, 96), (96, 64), (72, 96))
RATES = (6, 8, 10, 12, 15, 24)
AXES = {"left to right": (1, 1), "right to left": (1, -1), "top to bottom": (0, 1), "bottom to top": (0, -1)}
VIEW = FrameSampling.uniform(8)


def sample_scene(rng: np.random.Generator) -> Scene:
    """A scene over the wide vocabulary; object and background colours always stand apart."""
    colour = _other(list(WIDE.colours), None, rng)
    background = _other([b for b in WIDE.backgrounds if _contrast(WIDE.colours[colour], WIDE.backgrounds[b])], None, rng)
    shape = _other(list(WIDE.shapes), None, rng)
    count = int(rng.choice(WIDE.counts, p=[0.45, 0.35, 0.2]))
    semantic = _pick(SEMANTIC, rng)
    alt = None
    if semantic == "colour":
        alt = _other([c for c in WIDE.colours if _contrast(WIDE.colours[c], WIDE.backgrounds[background])], colour, rng)
    elif semantic == "background":
        alt = _other([b for b in WIDE.backgrounds if _contrast(WIDE.colours[colour], WIDE.backgrounds[b])], background, rng)
    elif semantic == "shape":
        alt = _other(list(WIDE.shapes), shape, rng)
    elif semantic == "count":
        alt = _other([str(c) for c in WIDE.counts], str(count), rng)
    return Scene(colour=colour, shape=shape, count=count, background=background, semantic=semantic,
                 fidelity=_pick(FIDELITY, rng), motion=_pick(MOTION, rng), alt=alt,
                 verb=_other(list(WIDE.verbs), None, rng), direction=_other(list(WIDE.directions), None, rng))


def _contrast(a, b) -> bool:
    return float(np.abs(np.subtract(a, b, dtype=np.float32)).sum()) > 120


def clip(scene: Scene, seed: int) -> tuple[bytes, list[tuple[float, float]]]:
    """The mp4 of ``scene`` in a style drawn from ``seed``, and its objects' track (``render``)."""
    rng = np.random.default_rng(seed)
    frames, fps, track = render(scene, rng)
    return encode_video(frames, fps=fps, qp=int(rng.integers(12, 27))), track


def render(scene: Scene, rng: np.random.Generator,
           objects: bool = True) -> tuple[np.ndarray, int, list[tuple[float, float]]]:
    """``(T, H, W, 3)`` uint8 frames of the clip ``scene`` describes, their frame rate, and where the
    objects are in each frame (the mean of their centres, ``synthetic.track_point``; ``objects=False``:
    the same clip with the objects left out, its empty plate, and where they would be)."""
    shown = scene.shown()
    h, w = SIZES[rng.integers(len(SIZES))]
    t = int(rng.integers(10, 33))
    fps = int(RATES[rng.integers(len(RATES))])
    view = VIEW.indices(t, fps)
    progress = _progress(scene.motion, t, view, np.random.default_rng(rng.integers(2**63)))
    frames, track = _draw(shown, progress, h, w, rng, objects)
    frames = _light(frames, rng)
    if scene.motion == "flicker":
        frames = _flicker(frames, view, rng)
    frames = _degrade(frames, scene.fidelity, rng)
    return np.clip(frames, 0, 255).astype(np.uint8), fps, track


# ---- motion -------------------------------------------------------------------------------

def _progress(motion: str, t: int, view: list[int], rng: np.random.Generator) -> np.ndarray:
    """Where along its path (0 = start, 1 = end, in the prompt's direction) each frame's objects are."""
    s = np.linspace(0, 1, t)
    ease = rng.uniform(0, 0.5)
    p = (1 - ease) * s + ease * s * s * (3 - 2 * s)
    if motion == "reversed":
        return p[::-1].copy()
    if motion == "freeze":
        # the objects stop at a viewed frame and stay there over at least four viewed frames (three
        # gaps of the view, more than a third of the clip): to the end, or then move on (a stall)
        k = len(view)
        first = int(rng.integers(1, k - 3))
        last = first + int(rng.integers(3, k - first))
        a, b = view[first], (t - 1 if last == k - 1 else view[last])
        out = p.copy()
        out[a : b + 1] = p[a]
        if b < t - 1:
            out[b + 1 :] = p[a] + (p[b + 1 :] - p[b]) * (1 - p[a]) / (1 - p[b])
        return out
    if motion == "jump":
        # one skip forward between two viewed frames, several times a normal step
        k = len(view)
        j = view[int(rng.integers(k // 3, k - k // 3 + 1))]
        skip = rng.uniform(0.22, 0.4)
        return np.where(np.arange(t) >= j, p + skip, p) / (1 + skip)
    return p


def _draw(shown: Scene, progress: np.ndarray, h: int, w: int, rng: np.random.Generator,
          objects: bool) -> tuple[np.ndarray, list[tuple[float, float]]]:
    axis, sign = AXES[shown.direction]
    along, across = (w, h) if axis == 1 else (h, w)
    gap = across / shown.count  # one lane per object, objects at least about two radii apart
    r = min(min(h, w) * rng.uniform(0.07, 0.14), gap / 2.6)
    start = r + rng.uniform(0.03, 0.18) * along
    travel = rng.uniform(0.6, 1.0) * (along - r - start)
    lanes = [gap * (i + 0.5 + rng.uniform(-0.08, 0.08)) for i in range(shown.count)]
    wobble = rng.uniform(0, 0.04) * across * (rng.random() < 0.4)
    colour = np.array(WIDE.colours[shown.colour], np.float32) + rng.uniform(-12, 12, 3)
    bg = _background(WIDE.backgrounds[shown.background], h, w, rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    soft = rng.uniform(0.3, 1.2)
    frames = np.empty((len(progress), h, w, 3), np.float32)
    track = []
    for i, p in enumerate(progress):
        pos = start + p * travel
        pos = pos if sign > 0 else along - pos
        sway = wobble * np.sin(2 * np.pi * p)
        mid = float(np.mean(lanes)) + sway
        track.append(track_point(*((pos, mid) if axis == 1 else (mid, pos)), w, h))
        img = bg.copy()
        for lane in lanes if objects else ():
            cx, cy = (pos, lane + sway) if axis == 1 else (lane + sway, pos)
            cover = _shape(shown.shape, xx - cx, yy - cy, r, soft)
            img = img * (1 - cover[..., None]) + colour * cover[..., None]
        frames[i] = img
    return frames, track


def _shape(shape: str, dx: np.ndarray, dy: np.ndarray, r: float, soft: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape of half-size ``r`` centred at the origin, edges ``soft`` pixels wide."""
    if shape == "ball":
        d = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        d = np.maximum(np.abs(dx), np.abs(dy)) - r
    else:  # triangle, apex (0, -r) up, base at dy = 0.8 r from dx = -r to r
        d = np.maximum(dy - 0.8 * r, (np.abs(dx) - (dy + r) / 1.8) / np.hypot(1, 1 / 1.8))
    return np.clip(0.5 - d / soft, 0, 1)


def _background(rgb, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = np.broadcast_to(np.array(rgb, np.float32), (h, w, 3)).copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(4)
    if kind == 1:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * np.pi)
        g = (np.cos(a) * xx / w + np.sin(a) * yy / h - 0.5) * rng.uniform(20, 60)
        base += g[..., None]
    elif kind == 2:  # blotches: a coarse random field, bilinearly enlarged
        n = int(rng.integers(3, 8))
        coarse = rng.normal(0, 1, (n, n))
        iy, ix = np.linspace(0, n - 1, h), np.linspace(0, n - 1, w)
        rows = np.array([np.interp(ix, np.arange(n), row) for row in coarse])
        field = np.array([np.interp(iy, np.arange(n), col) for col in rows.T]).T
        base += (field * rng.uniform(6, 16))[..., None]
    elif kind == 3:  # stripes
        a, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        base += (np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period) * rng.uniform(4, 12))[..., None]
    return base + rng.normal(0, rng.uniform(0, 6), (h, w, 1))  # fine static texture


def _light(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Constant lighting: gain, offset, tint and, sometimes, a vignette."""
    _, h, w, _ = frames.shape
    gain = (rng.uniform(0.75, 1.2) * rng.uniform(0.92, 1.08, 3)).astype(np.float32)
    out = frames * gain + np.float32(rng.uniform(-15, 15))
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5
        out = out * (1 - rng.uniform(0.15, 0.4) * d)[..., None].astype(np.float32)
    return out


def _flicker(frames: np.ndarray, view: list[int], rng: np.random.Generator) -> np.ndarray:
    """A brightness or colour pattern over time; at least two viewed frames are hit and two are not."""
    t = len(frames)
    kind = rng.integers(4)
    if kind == 3:  # periodic
        hit = np.sin(2 * np.pi * np.arange(t) / rng.uniform(2, 4.5) + rng.uniform(0, 6.3)) > 0
    else:
        hit = rng.random(t) < rng.uniform(0.3, 0.6)
    order = rng.permutation(view)
    hit[order[:2]], hit[order[2:4]] = True, False
    strength = rng.uniform(0.7, 1.0)
    if kind == 0 or kind == 3:  # dark frames
        changed = frames * rng.uniform(0.25, 0.5) + rng.uniform(0, 10)
    elif kind == 1:  # bright flashes
        changed = frames * (1 - 0.5 * strength) + strength * rng.uniform(110, 150)
    else:  # colour cast: one channel up, another down
        changed = frames + strength * rng.permutation([rng.uniform(60, 90), -rng.uniform(40, 60), 0])
    return np.where(hit[:, None, None, None], changed, frames)


# ---- fidelity -----------------------------------------------------------------------------

def _degrade(frames: np.ndarray, defect: str, rng: np.random.Generator) -> np.ndarray:
    scale = min(frames.shape[1:3]) / 64
    kind = rng.integers(3)
    if defect == "blur":
        if kind == 0:
            return _gaussian(frames, rng.uniform(1.0, 1.7) * scale)
        if kind == 1:
            k = 2 * int(round(rng.uniform(1.0, 2.4) * scale)) + 1
            return _box(_box(frames, k, 1), k, 2)
        return _box(frames, 2 * int(round(rng.uniform(2.5, 4.5) * scale)) + 1, int(rng.integers(1, 3)))
    if defect == "mild_noise":
        if kind == 0:
            return frames + rng.normal(0, rng.uniform(12, 26), frames.shape)
        if kind == 1:
            return _salt_pepper(frames, rng.uniform(0.015, 0.04), rng)
        return _ringing(frames, rng.uniform(25, 45), rng) + rng.normal(0, 6, frames.shape)
    if defect == "heavy_noise":
        if kind == 0:
            return frames + rng.normal(0, rng.uniform(45, 75), frames.shape)
        if kind == 1:
            return _salt_pepper(frames, rng.uniform(0.18, 0.35), rng)
        return _salt_pepper(frames + rng.normal(0, rng.uniform(35, 50), frames.shape), 0.1, rng)
    if defect == "blocky":
        b = int(rng.choice([4, 6, 8, 12, 16])) if scale >= 1 else int(rng.choice([4, 6, 8]))
        return _blocks(frames, max(b, int(round(4 * scale))), kind, rng)
    return frames


def _gaussian(frames: np.ndarray, sigma: float) -> np.ndarray:
    k = np.arange(-int(3 * sigma) - 1, int(3 * sigma) + 2)
    g = np.exp(-0.5 * (k / sigma) ** 2)
    return _separable(_separable(frames, g / g.sum(), 1), g / g.sum(), 2)


def _box(frames: np.ndarray, k: int, axis: int) -> np.ndarray:
    return _separable(frames, np.full(k, 1.0 / k), axis)


def _separable(frames: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Convolve along image axis 1 (rows) or 2 (columns), edges repeated."""
    pad = len(kernel) // 2
    widths = [(0, 0)] * 4
    widths[axis] = (pad, pad)
    p = np.pad(frames, widths, mode="edge")
    n = frames.shape[axis]
    out = np.zeros_like(frames, dtype=np.float32)
    for i, wgt in enumerate(kernel):
        out += wgt * np.take(p, np.arange(i, i + n), axis=axis)
    return out


def _salt_pepper(frames: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(frames.shape[:3]) < share
    value = np.where(rng.random(frames.shape[:3]) < 0.5, 0.0, 255.0)
    return np.where(hit[..., None], value[..., None], frames)


_DCT = np.array([[np.sqrt((1 if i == 0 else 2) / 8) * np.cos((2 * j + 1) * i * np.pi / 16) for j in range(8)]
                 for i in range(8)], np.float32)


def _ringing(frames: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    """Compression noise: 8x8 DCT blocks keep their mean exactly; the other coefficients are
    quantised with a per-frame random offset, so the ringing changes frame to frame."""
    t, h, w, c = frames.shape
    hp, wp = -h % 8, -w % 8
    p = np.pad(frames, ((0, 0), (0, hp), (0, wp), (0, 0)), mode="edge")
    blocks = p.reshape(t, (h + hp) // 8, 8, (w + wp) // 8, 8, c).transpose(0, 1, 3, 5, 2, 4)  # (..., 8, 8)
    coef = _DCT @ blocks @ _DCT.T
    offset = rng.uniform(0, 1, (t, 1, 1, 1, 1, 1))
    q = (np.floor(coef / step + offset) + 0.5 - offset) * step
    q[..., 0, 0] = coef[..., 0, 0]
    back = (_DCT.T @ q @ _DCT).transpose(0, 1, 4, 2, 5, 3).reshape(p.shape)
    return back[:, :h, :w]


def _blocks(frames: np.ndarray, b: int, kind: int, rng: np.random.Generator) -> np.ndarray:
    """Blocks of ``b`` pixels: their mean (0), their corner pixel (1), or their mean with colour errors (2)."""
    t, h, w, c = frames.shape
    hp, wp = -h % b, -w % b
    p = np.pad(frames, ((0, 0), (0, hp), (0, wp), (0, 0)), mode="edge")
    grid = p.reshape(t, (h + hp) // b, b, (w + wp) // b, b, c)
    small = grid[:, :, 0, :, 0] if kind == 1 else grid.mean(axis=(2, 4))
    if kind == 2:
        small = small + rng.normal(0, rng.uniform(10, 25), small.shape)
    return np.repeat(np.repeat(small, b, axis=1), b, axis=2)[:, :h, :w]
