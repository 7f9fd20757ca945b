"""A third style of rated clips, for evaluation only: the project's sample clips, rated.

``critic.samples.make_clip`` draws the clips ``lift-critic sample``, the test suite and the benchmarks score:
a red disc over a textured green ground, moving left to right along an arc, 64x64, 17 frames at 8 fps, each
seed another start, height and texture. It was written for those, not for training, and neither training
renderer draws its look (an arc, its texture, a flicker that washes two frames in four out towards grey),
so it is another draw of the same concepts. Its defects map onto the label table (``critic.data.synthetic``):
``blur`` (a 5-pixel box) is fidelity Normal; ``jump`` (the disc skips half the clip's travel once) is motion
Normal; ``flicker`` and ``freeze`` (stops at a third of the clip, for the rest) are motion Bad. Its ``noise``
(Gaussian, sigma 40) is left out: it lies between the table's examples of mild (sigma 12 to 26) and heavy
(45 to 75) noise, so its label would be a guess. The prompt is drawn like the fixed domain's: the clip's own
description (semantic Good), or another background (Normal), colour, shape or count (Bad).

The rows say ``annotator: synthetic-sample-clips``: like the evaluation renderer's, ``lift-critic train``
refuses them (``critic.data.ratings.EVAL_ONLY_ANNOTATORS``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from contract.errors import InvalidParameterError
from contract.video import encode_video
from critic.data.ratings import SAMPLE_CLIPS_ANNOTATOR, RatedVideo, write_rated_clips
from critic.data.synthetic import COLOURS, SEMANTIC, Scene, _pick
from critic.samples import make_clip

# make_clip's defect -> (fidelity, motion) defect of the label table; None: a clean clip
DEFECTS = {None: ("none", "none"), "blur": ("blur", "none"), "jump": ("none", "jump"),
           "flicker": ("none", "flicker"), "freeze": ("none", "freeze")}
FRAMES, SIZE, FPS = 17, 64, 8
COLOUR = "red"  # the disc, drawn in the label table's RGB of this colour


def generate_sample_clips(out_dir: str | os.PathLike, n: int, seed: int = 0, name: str = "ratings.jsonl") -> Path:
    """Write ``n`` rated sample clips under ``out_dir`` (defects in turn, prompts drawn per clip); returns the JSONL path."""
    if n < 1:
        raise InvalidParameterError(f"sample-clip set: n must be >= 1, got {n}")
    rng = np.random.default_rng([seed, 0x5A3])
    kinds = list(DEFECTS)

    def clips():
        for i in range(n):
            defect = kinds[i % len(kinds)]
            fidelity, motion = DEFECTS[defect]
            scene = Scene(COLOUR, "ball", 1, "green grass", fidelity=fidelity, motion=motion).variant(_pick(SEMANTIC, rng), rng)
            frames = make_clip(FRAMES, SIZE, colour=COLOURS[COLOUR], defect=defect, seed=int(rng.integers(2**31)))
            row = RatedVideo(video=f"videos/sample_{seed:03d}_{i:05d}.mp4", prompt=scene.prompt(), ratings=scene.ratings(),
                             annotator=SAMPLE_CLIPS_ANNOTATOR)
            yield row.video, encode_video(frames, fps=FPS), [row]

    return write_rated_clips(out_dir, name, clips())
