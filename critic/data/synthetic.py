"""A synthetic rated-video set: procedural clips whose defects are injected on purpose,
so the labels and rationales follow from them (LiFT's three dimensions).

What every label means (the one place it is written down; every renderer of the project,
``render`` here, ``critic.data.randomised`` and ``critic.data.eval_renderer``, keeps to it):

| dimension | defect | label | what the clip shows |
|---|---|---|---|
| semantic consistency | none | Good | the colour, shape, count and background the prompt asks for (its direction is motion's) |
| | background | Normal | the objects match; only the background differs |
| | colour / shape / count | Bad | the objects have another colour, another shape, or another number of them |
| fidelity | none | Good | clean, sharp frames (a static background texture is not noise) |
| | blur | Normal | slightly soft frames (e.g. Gaussian, box or motion blur of a few pixels) |
| | mild_noise | Normal | some noise that changes frame to frame (e.g. Gaussian, a few salt-and-pepper pixels, compression ringing) |
| | heavy_noise | Bad | heavy noise over every frame (e.g. strong Gaussian or salt-and-pepper) |
| | blocky | Bad | the picture is made of coarse blocks (block artefacts of 4 or more pixels) |
| motion | none | Good | smooth, continuous motion in the prompt's direction |
| | jump | Normal | the objects skip forward once, then move on smoothly |
| | flicker | Bad | the brightness (or colour) jumps between frames |
| | freeze | Bad | the objects stop for a third of the clip or more |
| | reversed | Bad | the objects move against the prompt's direction (a prompt that names none, ``--undirected``: any direction is Good) |

The fixed domain (``render``, the default) draws one style: 64x64, 16 frames at 8 fps, the
same sizes, lane and speed range, one implementation of each defect; the randomised domain
(``--domain random``, ``critic.data.randomised``) varies all of that and adds objects,
colours, counts, verbs and directions (``EXTRA_*``); the evaluation renderer
(``--renderer eval``, ``critic.data.eval_renderer``) is drawn separately and only evaluates.

Seeded and reproducible: ``generate(out_dir, n, seed)`` writes ``videos/*.mp4`` and
``ratings.jsonl`` in the ratings format (critic/data/ratings.py). With ``prompt_variants=k``
each clip also gets k rows with another prompt for the same file (``Scene.variant``): the
clip is unchanged, the prompt asks for something else, and the semantic label follows.
Such pairs only differ in how text and video agree, so a critic learns to compare the two
instead of guessing from priors (fidelity and motion stay as they were). With ``undirected=p``
each row's prompt leaves the direction out with probability p ("a red ball moves over green
grass"): reversed motion is then no defect, so a critic learns that only a named direction
can be gone against.

    lift-critic synth OUT_DIR --n 600 --seed 0 [--prompt-variants 1] [--undirected 0.5] [--domain random | --renderer eval]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from contract.errors import InvalidParameterError
from contract.video import encode_video
from critic.data.ratings import Rating, RatedVideo, write_rated_clips

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230), "yellow": (235, 215, 40), "white": (245, 245, 245),
           "purple": (150, 50, 200), "orange": (245, 140, 20)}
BACKGROUNDS = {"green grass": (40, 120, 50), "a grey road": (110, 110, 110), "blue water": (30, 70, 140),
               "yellow sand": (200, 170, 100)}
SHAPES = ("ball", "square")
COUNTS = {1: "a", 2: "two"}
# the randomised domain's additions to the vocabulary above (the fixed domain never draws them)
EXTRA_COLOURS = {"pink": (240, 120, 180), "black": (25, 25, 25), "cyan": (40, 200, 210)}
EXTRA_BACKGROUNDS = {"white snow": (225, 230, 235), "a brown field": (120, 85, 50)}
EXTRA_SHAPES = ("triangle",)
EXTRA_COUNTS = {3: "three"}
VERBS = ("moves", "slides", "drifts", "glides")
DIRECTIONS = {"left to right": "right to left", "right to left": "left to right",
              "top to bottom": "bottom to top", "bottom to top": "top to bottom"}


@dataclass(frozen=True)
class Vocabulary:
    """What prompts may name: colours and backgrounds (name -> RGB), shapes, counts, verbs, directions."""
    colours: dict[str, tuple[int, int, int]]
    backgrounds: dict[str, tuple[int, int, int]]
    shapes: tuple[str, ...]
    counts: tuple[int, ...]
    verbs: tuple[str, ...] = ("moves",)
    directions: tuple[str, ...] = ("left to right",)


BASE = Vocabulary(COLOURS, BACKGROUNDS, SHAPES, tuple(COUNTS))
WIDE = Vocabulary({**COLOURS, **EXTRA_COLOURS}, {**BACKGROUNDS, **EXTRA_BACKGROUNDS}, SHAPES + EXTRA_SHAPES,
                  tuple(COUNTS) + tuple(EXTRA_COUNTS), VERBS, tuple(DIRECTIONS))

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
    # what the clip shows instead (semantic defects): a colour, a background, a shape or a count
    # (as text); None for a shape or count defect means the other of ball/square or of 1/2
    alt: str | None = None
    verb: str = "moves"
    direction: str = "left to right"
    says_direction: bool = True  # False: the prompt leaves the direction out, and no motion is against it

    def prompt(self) -> str:
        """What the text asks for; a semantic defect makes the clip differ from it."""
        colour, shape, count, bg = self.colour, self.shape, self.count, self.background
        noun = shape + ("s" if count > 1 else "")
        verb = self.verb.removesuffix("s") if count > 1 else self.verb
        article = {**COUNTS, **EXTRA_COUNTS}[count] if count > 1 else ("an" if colour[0] in "aeiou" else "a")
        way = f" from {self.direction}" if self.says_direction else ""
        return f"{article} {colour} {noun} {verb}{way} over {bg}"

    def shown(self) -> "Scene":
        """What the clip actually shows."""
        d = dict(colour=self.colour, shape=self.shape, count=self.count, background=self.background,
                 verb=self.verb, direction=self.direction)
        if self.semantic == "colour":
            d["colour"] = self.alt
        elif self.semantic == "shape":
            d["shape"] = self.alt or ("square" if self.shape == "ball" else "ball")
        elif self.semantic == "count":
            d["count"] = int(self.alt) if self.alt else 3 - self.count
        elif self.semantic == "background":
            d["background"] = self.alt
        return Scene(**d)

    def attributes(self) -> dict[str, str]:
        """What the clip shows, as a ratings row's ``shown`` (the same for every prompt of the clip)."""
        s = self.shown()
        return {"colour": s.colour, "shape": s.shape, "count": str(s.count), "background": s.background,
                "fidelity": self.fidelity}

    def variant(self, semantic: str, rng: np.random.Generator, vocab: "Vocabulary | None" = None) -> "Scene":
        """A scene that renders the same clip (same ``shown()``) under a prompt with defect ``semantic``
        (its other colour, shape, count or background drawn from ``vocab``, the fixed domain's by default)."""
        vocab = vocab or BASE
        x = self.shown()
        d = dict(colour=x.colour, shape=x.shape, count=x.count, background=x.background, verb=x.verb,
                 direction=x.direction, fidelity=self.fidelity, motion=self.motion, semantic=semantic,
                 says_direction=self.says_direction)
        if semantic == "colour":
            d.update(colour=_other(list(vocab.colours), x.colour, rng), alt=x.colour)
        elif semantic == "shape":
            d.update(shape=_other(list(vocab.shapes), x.shape, rng), alt=x.shape)
        elif semantic == "count":
            d.update(count=int(_other([str(c) for c in vocab.counts], str(x.count), rng)), alt=str(x.count))
        elif semantic == "background":
            d.update(background=_other(list(vocab.backgrounds), x.background, rng), alt=x.background)
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
        motion = "none" if self.motion == "reversed" and not self.says_direction else self.motion
        mot = {
            "none": "The motion is smooth and continuous.",
            "jump": "The object jumps forward once.",
            "flicker": "The video flickers between bright and dark frames.",
            "freeze": "The motion freezes partway through.",
            "reversed": f"The object moves from {DIRECTIONS[self.direction]}, against the described motion.",
        }[motion]
        return {
            "semantic_consistency": Rating(label=SEMANTIC[self.semantic], rationale=sem),
            "fidelity": Rating(label=FIDELITY[self.fidelity], rationale=fid),
            "motion": Rating(label=MOTION[motion], rationale=mot),
        }


def render(scene: Scene, num_frames: int = 16, size: int = 64, seed: int = 0) -> np.ndarray:
    """Draw the clip ``scene`` describes (its shown version), then inject its defects."""
    return render_with_track(scene, num_frames, size, seed)[0]


def track_point(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """A row's ``track`` entry: a position in pixels as fractions of the frame, 4 decimals."""
    return (round(float(x) / width, 4), round(float(y) / height, 4))


def render_with_track(scene: Scene, num_frames: int = 16, size: int = 64,
                      seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """``render``'s frames and where the objects are in each (the mean of their centres, ``track_point``)."""
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
    track = [track_point(x0 + step * speed, np.mean(lanes) * size, size, size) for step in steps]
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
    return np.clip(frames, 0, 255).astype(np.uint8), track


def _blur(frames: np.ndarray, k: int) -> np.ndarray:
    pad = k // 2
    p = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(frames)
    for dy in range(k):
        for dx in range(k):
            out += p[:, dy : dy + frames.shape[1], dx : dx + frames.shape[2]]
    return out / (k * k)


def _other(options: list[str], but: str | None, rng: np.random.Generator) -> str:
    """One of ``options`` other than ``but``; a single remaining option takes no draw from ``rng``."""
    options = [o for o in options if o != but]
    return options[0] if len(options) == 1 else options[rng.integers(len(options))]


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


DOMAINS = ("fixed", "random")


def generate(out_dir: str | os.PathLike, n: int, seed: int = 0, num_frames: int = 16, size: int = 64,
             name: str = "ratings.jsonl", prompt_variants: int = 0, domain: str = "fixed", undirected: float = 0.0) -> Path:
    """Write ``n`` rated clips under ``out_dir`` (and ``prompt_variants`` extra prompts for each);
    returns the JSONL path. ``domain="random"`` draws them with ``critic.data.randomised`` (which
    picks its own frame count and size; ``num_frames`` and ``size`` are the fixed domain's).
    ``undirected``: the share of rows whose prompt names no direction (0 draws nothing extra from the seed)."""
    if n < 1 or prompt_variants < 0 or not 0 <= undirected <= 1:
        raise InvalidParameterError(f"synthetic set: n must be >= 1, prompt_variants >= 0 and undirected in [0, 1], "
                                    f"got {n}, {prompt_variants}, {undirected}")
    if domain not in DOMAINS:
        raise InvalidParameterError(f"synthetic set: unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    if domain == "random":
        from critic.data import randomised

        sample, vocab = randomised.sample_scene, WIDE
        clip = randomised.clip
    else:
        sample, vocab = sample_scene, BASE

        def clip(scene: Scene, seed: int) -> tuple[bytes, list[tuple[float, float]]]:
            frames, track = render_with_track(scene, num_frames, size, seed=seed)
            return encode_video(frames, fps=8), track
    rng, leave_out = np.random.default_rng(seed), np.random.default_rng([seed, 1])

    def clips():
        for i in range(n):
            scene = sample(rng)
            rel = f"videos/{seed:03d}_{i:05d}.mp4"
            data, track = clip(scene, int(rng.integers(2**31)))
            variants = [scene] + [scene.variant(_variant_defect(scene, rng), rng, vocab) for _ in range(prompt_variants)]
            if undirected:  # its own draws: the clips and every other row stay as they are without it
                variants = [replace(v, says_direction=bool(leave_out.random() >= undirected)) for v in variants]
            yield rel, data, [RatedVideo(video=rel, prompt=v.prompt(), ratings=v.ratings(), annotator="synthetic",
                                         shown=scene.attributes(), track=track) for v in variants]

    return write_rated_clips(out_dir, name, clips())
