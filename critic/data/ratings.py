"""The ratings JSONL format (one rated video per line) and pairwise preference rows.

Pointwise row::

    {"video": "videos/000001.mp4",            # relative to the JSONL file, or absolute
     "prompt": "a red ball moves from left to right on green grass",
     "rubric": "lift",                        # optional, default "lift"
     "ratings": {"semantic_consistency": {"label": "Good", "rationale": "The video shows ..."},
                 "fidelity": {"label": "Bad", "rationale": "Heavy noise covers every frame."},
                 "motion": {"label": "Normal", "rationale": "The ball jumps forward once."}},
     "annotator": "a1",                       # optional
     "shown": {"colour": "red", "shape": "ball", "count": "1", "background": "green grass", "fidelity": "none"},
                                              # optional: what a synthetic clip shows (its generator
                                              # knows); the vision warm-up's attribute code reads it
     "track": [[0.21, 0.5], [0.26, 0.5], ...]}  # optional: where a synthetic clip's objects are in each
                                              # frame (x, y as fractions of width and height)

Pairwise row::

    {"video_a": "...", "video_b": "...", "prompt": "...", "rubric": "lift",
     "winners": {"semantic_consistency": "a", "fidelity": "tie", "motion": "b"}}

Every row is checked against its rubric; a bad row raises ``RatingsFormatError`` naming
the file, the line and the field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import CriticError
from critic.prompting import format_answer
from critic.rubrics import Rubric, get_rubric


class RatingsFormatError(CriticError):
    code = "invalid_ratings"


class EvaluationOnlyDataError(CriticError):
    """A training run was given rows that are only for evaluation (``EVAL_ONLY_ANNOTATORS``)."""

    code = "evaluation_only_data"


# the annotators of rows only for evaluation, which training refuses: the evaluation renderer's
# (critic/data/eval_renderer.py) and the sample clips rated (critic/data/sample_clips.py)
EVAL_ONLY_ANNOTATOR = "synthetic-eval-renderer"
SAMPLE_CLIPS_ANNOTATOR = "synthetic-sample-clips"
EVAL_ONLY_ANNOTATORS = (EVAL_ONLY_ANNOTATOR, SAMPLE_CLIPS_ANNOTATOR)


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, description="One of the rubric's labels.")
    rationale: str = Field("", description="Why; LiFT's human rationale.")


class RatedVideo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    video: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    rubric: str = "lift"
    ratings: dict[str, Rating]
    annotator: str | None = None
    shown: dict[str, str] | None = Field(None, description="What a synthetic clip shows (attribute -> value); "
                                         "real rated sets have none.")
    track: list[tuple[float, float]] | None = Field(
        None, description="Where a synthetic clip's objects are in each frame: the mean of their centres, x and y "
                          "as fractions of the frame's width and height; real rated sets have none.")

    def check(self, rubric: Rubric) -> None:
        dims = [d.name for d in rubric.dimensions]
        if set(self.ratings) != set(dims):
            raise ValueError(f"ratings must cover exactly {dims}, got {sorted(self.ratings)}")
        labels = [lab.name for lab in rubric.labels]
        for dim, r in self.ratings.items():
            if r.label not in labels:
                raise ValueError(f"ratings.{dim}.label {r.label!r} is not one of {labels}")


class PairwisePreference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    video_a: str = Field(min_length=1)
    video_b: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    rubric: str = "lift"
    winners: dict[str, Literal["a", "b", "tie"]]
    annotator: str | None = None

    def check(self, rubric: Rubric) -> None:
        dims = [d.name for d in rubric.dimensions]
        if set(self.winners) != set(dims):
            raise ValueError(f"winners must cover exactly {dims}, got {sorted(self.winners)}")


def _read(path: str | os.PathLike, model: type[BaseModel]) -> list:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise RatingsFormatError(f"cannot read {path}: {e.strerror or e}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = model.model_validate_json(line)
            row.check(get_rubric(row.rubric))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "row"
            raise RatingsFormatError(f"{path}:{n}: {where}: {first['msg']}") from None
        except (ValueError, CriticError) as e:
            raise RatingsFormatError(f"{path}:{n}: {e}") from None
        rows.append(row)
    if not rows:
        raise RatingsFormatError(f"{path} holds no rows")
    return rows


def read_ratings(path: str | os.PathLike) -> list[RatedVideo]:
    return _read(path, RatedVideo)


def read_training_ratings(path: str | os.PathLike) -> list[RatedVideo]:
    """``read_ratings`` for a training run: refuses a set holding evaluation-only rows."""
    rows = read_ratings(path)
    held = [n for n, row in enumerate(rows, 1) if row.annotator in EVAL_ONLY_ANNOTATORS]
    if held:
        raise EvaluationOnlyDataError(
            f"{path}: {len(held)} of {len(rows)} rows (first: row {held[0]}) are only for evaluation "
            f"(annotator {rows[held[0] - 1].annotator!r}); they measure generalisation and must not be trained on",
            path=str(path), rows=len(held))
    return rows


def read_preferences(path: str | os.PathLike) -> list[PairwisePreference]:
    return _read(path, PairwisePreference)


def write_jsonl(path: str | os.PathLike, rows: Iterable[BaseModel]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(row.model_dump_json(exclude_none=True) + "\n")


def write_rated_clips(out_dir: str | os.PathLike, name: str,
                      clips: Iterable[tuple[str, bytes, list[RatedVideo]]]) -> Path:
    """Write a rated set: each ``(relative path, mp4 bytes, rows)`` clip under ``out_dir`` (a clip may be
    rated under several prompts), then all rows to ``out_dir/name``; returns the JSONL path."""
    root = Path(out_dir)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for rel, data, clip_rows in clips:
        (root / rel).write_bytes(data)
        rows += clip_rows
    path = root / name
    write_jsonl(path, rows)
    return path


def video_path(row_video: str, jsonl: str | os.PathLike) -> Path:
    p = Path(row_video)
    return p if p.is_absolute() else Path(jsonl).parent / p


# ---- LiFT's conversation format ---------------------------------------------------------

def to_lift_conversations(rows: Iterable[RatedVideo]) -> list[dict]:
    """One LLaVA-style conversation per (video, dimension), as LiFT trains its critic."""
    out = []
    for i, row in enumerate(rows):
        rubric = get_rubric(row.rubric)
        for d in rubric.dimensions:
            r = row.ratings[d.name]
            out.append({
                "id": f"{i}-{d.name}",
                "video": row.video,
                "conversations": [
                    {"from": "human", "value": f"<video>\n{row.prompt} {d.question}"},
                    {"from": "gpt", "value": format_answer(r.label, r.rationale)},
                ],
            })
    return out


def from_lift_conversations(convs: Iterable[dict], rubric: str = "lift") -> list[RatedVideo]:
    """Group LiFT conversations back into rated videos (dimension found by its question)."""
    rub = get_rubric(rubric)
    by_video: dict[tuple[str, str], dict] = {}
    for c in convs:
        try:
            human, gpt = c["conversations"][0]["value"], c["conversations"][1]["value"]
            video = c["video"]
        except (KeyError, IndexError, TypeError):
            raise RatingsFormatError(f"conversation {c.get('id', '?')!r} is not in LiFT's format") from None
        text = human.removeprefix("<video>\n")
        dim = next((d for d in rub.dimensions if text.endswith(" " + d.question)), None)
        if dim is None:
            raise RatingsFormatError(f"conversation {c.get('id', '?')!r} asks none of rubric {rubric!r}'s questions")
        prompt = text[: -len(dim.question) - 1]
        label, _, rationale = gpt.partition(". ")
        label = label.rstrip(".")
        entry = by_video.setdefault((video, prompt), {"video": video, "prompt": prompt, "rubric": rubric, "ratings": {}})
        entry["ratings"][dim.name] = {"label": label, "rationale": rationale}
    rows = []
    for entry in by_video.values():
        try:
            row = RatedVideo.model_validate(entry)
            row.check(rub)
        except (ValidationError, ValueError) as e:
            raise RatingsFormatError(f"video {entry['video']!r}: {e}") from None
        rows.append(row)
    return rows


def parse_answer(text: str, labels: list[str]) -> tuple[str, str]:
    """``"Bad. The crane's eyes ..."`` -> ("Bad", "The crane's eyes ..."); the label is anchored
    at the start (LiFT's substring match would count "Good. nothing bad" as Bad)."""
    head, _, rest = text.strip().partition(".")
    if head not in labels:
        raise ValueError(f"answer does not start with one of {labels}: {text[:40]!r}")
    return head, rest.strip()
