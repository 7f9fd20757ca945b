"""A synthetic rated-video set: procedural clips whose defects are injected on purpose,
so the labels and rationales follow from them (LiFT's three dimensions).

- semantic consistency: the prompt's object colour, shape or count differs from the clip
  (Bad), or only its background does (Normal);
- fidelity: mild blur or noise (Normal); heavy noise or blocky artefacts (Bad);
- motion: one jump forward (Normal); flicker, a freeze or reversed motion (Bad).

Seeded and reproducible: ``generate(out_dir, n, seed)`` writes ``videos/*.mp4`` and
``ratings.jsonl`` in the ratings format (critic/data/ratings.py). With ``prompt_variants=k``
each clip also gets k rows with another prompt for the same file (``Scene.variant``): the
clip is unchanged, the prompt asks for something else, and the semantic label follows.
Such pairs only differ in how text and video agree, so a critic learns to compare the two
instead of guessing from priors (fidelity and motion stay as they were).

    lift-critic synth OUT_DIR --n 600 --seed 0 [--prompt-variants 1]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from critic.data.ratings import Rating, RatedVideo, write_jsonl
from critic.errors import InvalidParameterError
from critic.video import encode_video

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230), "yellow": (235, 215, 40), "white": (245, 245, 245),
           "purple": (150, 50, 200), "orange": (245, 140, 20)}
BACKGROUNDS = {"green grass": (40, 120, 50), "a grey road": (110, 110, 110), "blue water": (30, 70, 140),
               "yellow sand": (200, 170, 100)}
SHAPES = ("ball", "square")
COUNTS = {1: "a", 2: "two"}

SEMANTIC = {"none": "Good", "background": "Normal", "colour": "Bad", "shape": "Bad", "count": "Bad"}
FIDELITY = {"none": "Good", "blur": "Normal", "mild_noise": "Normal", "heavy_noise": "Bad", "blocky": "Bad"}
MOTION = {"none": "Good", "jump": "Normal", "flicker": "Bad", "freeze": "Bad", "reversed": "Bad"}


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    count: int
    background: str
    semantic: str = "none"
    fidelity: str = "none"
    motion: str = "none"
    alt: str | None = None  # the colour or background the clip shows instead (semantic defects)

    def prompt(self) -> str:
        """What the text asks for; a semantic defect makes the clip differ from it."""
        colour, shape, count, bg = self.colour, self.shape, self.count, self.background
        noun = shape + ("s" if count > 1 else "")
        verb = "move" if count > 1 else "moves"
        article = COUNTS[count] if count > 1 else ("an" if colour[0] in "aeiou" else "a")
        return f"{article} {colour} {noun} {verb} from left to right over {bg}"

    def shown(self) -> "Scene":
        """What the clip actually shows."""
        d = dict(colour=self.colour, shape=self.shape, count=self.count, background=self.background)
        if self.semantic == "colour":
            d["colour"] = self.alt
        elif self.semantic == "shape":
            d["shape"] = "square" if self.shape == "ball" else "ball"
        elif self.semantic == "count":
            d["count"] = 3 - self.count
        elif self.semantic == "background":
            d["background"] = self.alt
        return Scene(**d)

    def variant(self, semantic: str, rng: np.random.Generator) -> "Scene":
        """A scene that renders the same clip (same ``shown()``) under a prompt with defect ``semantic``."""
        x = self.shown()
        d = dict(colour=x.colour, shape=x.shape, count=x.count, background=x.background,
                 fidelity=self.fidelity, motion=self.motion, semantic=semantic)
        if semantic == "colour":
            d.update(colour=_other(list(COLOURS), x.colour, rng), alt=x.colour)
        elif semantic == "shape":
            d.update(shape="square" if x.shape == "ball" else "ball")
        elif semantic == "count":
            d.update(count=3 - x.count)
        elif semantic == "background":
            d.update(background=_other(list(BACKGROUNDS), x.background, rng), alt=x.background)
        scene = Scene(**d)
        assert scene.shown() == x
        return scene

    def ratings(self) -> dict[str, Rating]:
        shown = self.shown()
        sem = {
            "none": "The video shows what the text describes.",
            "background": f"The objects match, but the background is {shown.background}, not {self.background}.",
            "colour": f"The {self.shape} is {shown.colour}, but the text asks for {self.colour}.",
            "shape": f"The video shows a {shown.shape}, but the text asks for a {self.shape}.",
            "count": f"The video shows {shown.count} object(s), but the text asks for {self.count}.",
        }[self.semantic]
        fid = {
            "none": "The frames are clean and sharp.",
            "blur": "The frames are slightly blurry.",
            "mild_noise": "The frames show some noise.",
            "heavy_noise": "Heavy noise covers every frame.",
            "blocky": "The frames are full of blocky artefacts.",
        }[self.fidelity]
        mot = {
            "none": "The motion is smooth and continuous.",
            "jump": "The object jumps forward once.",
            "flicker": "The video flickers between bright and dark frames.",
            "freeze": "The motion freezes partway through.",
            "reversed": "The object moves from right to left, against the described motion.",
        }[self.motion]
        return {
            "semantic_consistency": Rating(label=SEMANTIC[self.semantic], rationale=sem),
            "fidelity": Rating(label=FIDELITY[self.fidelity], rationale=fid),
            "motion": Rating(label=MOTION[self.motion], rationale=mot),
        }


def render(scene: Scene, num_frames: int = 16, size: int = 64, seed: int = 0) -> np.ndarray:
    """Draw the clip ``scene`` describes (its shown version), then inject its defects."""
    rng = np.random.default_rng(seed)
    shown = scene.shown()
    yy, xx = np.mgrid[0:size, 0:size]
    r = size // 9
    bg = np.array(BACKGROUNDS[shown.background], np.float32)
    texture = rng.normal(0, 5, (size, size, 1)).astype(np.float32)
    lanes = [0.5] if shown.count == 1 else [0.3, 0.7]
    x0 = rng.uniform(0.12, 0.22) * size
    speed = rng.uniform(0.5, 0.65) * size / max(num_frames - 1, 1)
    frames = np.empty((num_frames, size, size, 3), np.float32)
    steps = np.arange(num_frames, dtype=np.float32)
    if scene.motion == "freeze":
        steps = np.minimum(steps, num_frames // 3)
    elif scene.motion == "jump":
        steps = np.where(steps >= num_frames // 2, steps + num_frames // 3, steps)
    elif scene.motion == "reversed":
        steps = steps[::-1]
    colour = np.array(COLOURS[shown.colour], np.float32)
    for t, step in enumerate(steps):
        img = np.broadcast_to(bg, (size, size, 3)) + texture
        x = x0 + step * speed
        for lane in lanes:
            y = lane * size
            mask = ((xx - x) ** 2 + (yy - y) ** 2 <= r * r) if shown.shape == "ball" else \
                ((np.abs(xx - x) <= r) & (np.abs(yy - y) <= r))
            img = np.where(mask[..., None], colour, img)
        frames[t] = img
    if scene.motion == "flicker":
        dark = rng.random(num_frames) < 0.5
        dark[rng.integers(num_frames)] = True
        frames[dark] = frames[dark] * 0.35 + 10
    if scene.fidelity == "blur":
        frames = _blur(frames, 5)
    elif scene.fidelity == "mild_noise":
        frames = frames + rng.normal(0, 22, frames.shape)
    elif scene.fidelity == "heavy_noise":
        frames = frames + rng.normal(0, 55, frames.shape)
    elif scene.fidelity == "blocky":
        b = 8
        small = frames.reshape(num_frames, size // b, b, size // b, b, 3).mean(axis=(2, 4))
        jitter = rng.normal(0, 20, small.shape)
        frames = np.repeat(np.repeat(small + jitter, b, axis=1), b, axis=2)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _blur(frames: np.ndarray, k: int) -> np.ndarray:
    pad = k // 2
    p = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(frames)
    for dy in range(k):
        for dx in range(k):
            out += p[:, dy : dy + frames.shape[1], dx : dx + frames.shape[2]]
    return out / (k * k)


def _other(options: list[str], but: str | None, rng: np.random.Generator) -> str:
    options = [o for o in options if o != but]
    return options[rng.integers(len(options))]


def _pick(table: dict, rng: np.random.Generator) -> str:
    """"none" 40% of the time, else one of the table's defects."""
    keys = list(table)
    return "none" if rng.random() < 0.4 else keys[1 + rng.integers(len(keys) - 1)]


def _variant_defect(scene: Scene, rng: np.random.Generator) -> str:
    """A clean clip's variant gets a semantic defect; a defective one's is as often matching as not
    (never the clip's own defect kind, whose prompt could come out the same)."""
    defects = [d for d in list(SEMANTIC)[1:] if d != scene.semantic]
    if scene.semantic != "none" and rng.random() < 0.5:
        return "none"
    return defects[rng.integers(len(defects))]


def sample_scene(rng: np.random.Generator) -> Scene:
    """Each dimension independently: about half clean, the rest spread over its defects."""
    colour, background = _other(list(COLOURS), None, rng), _other(list(BACKGROUNDS), None, rng)
    semantic = _pick(SEMANTIC, rng)
    alt = {"colour": lambda: _other(list(COLOURS), colour, rng),
           "background": lambda: _other(list(BACKGROUNDS), background, rng)}.get(semantic, lambda: None)()
    return Scene(colour=colour, shape=SHAPES[rng.integers(len(SHAPES))], count=int(rng.integers(1, 3)),
                 background=background, semantic=semantic, fidelity=_pick(FIDELITY, rng), motion=_pick(MOTION, rng),
                 alt=alt)


def generate(out_dir: str | os.PathLike, n: int, seed: int = 0, num_frames: int = 16, size: int = 64,
             name: str = "ratings.jsonl", prompt_variants: int = 0) -> Path:
    """Write ``n`` rated clips under ``out_dir`` (and ``prompt_variants`` extra prompts for each);
    returns the JSONL path."""
    if n < 1 or prompt_variants < 0:
        raise InvalidParameterError(f"synthetic set: n must be >= 1 and prompt_variants >= 0, got {n}, {prompt_variants}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        scene = sample_scene(rng)
        rel = f"videos/{seed:03d}_{i:05d}.mp4"
        frames = render(scene, num_frames, size, seed=int(rng.integers(2**31)))
        (out / rel).write_bytes(encode_video(frames, fps=8))
        variants = [scene] + [scene.variant(_variant_defect(scene, rng), rng) for _ in range(prompt_variants)]
        rows += [RatedVideo(video=rel, prompt=v.prompt(), ratings=v.ratings(), annotator="synthetic") for v in variants]
    path = out / name
    write_jsonl(path, rows)
    return path
