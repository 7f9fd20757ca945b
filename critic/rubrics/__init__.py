"""Rubrics as data: what is asked, which labels may answer, what each label is worth.

A rubric is validated by pydantic (unknown keys are errors). The shipped ones live in
YAML beside this file; ``get_rubric`` takes a registered name or a path to a YAML file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.errors import InvalidRubricError, UnknownRubricError, first_error
from contract.sampling import FrameSampling

_HERE = Path(__file__).parent


class Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Identifier, e.g. 'motion'.")
    question: str = Field(min_length=1, description="Asked of the VLM; for model-free rubrics, what is measured.")
    weight: float = Field(1.0, ge=0.0, description="Weight of this dimension in the reward.")


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, pattern=r"^\S+$", description="The answer token(s), e.g. 'Good' or '5'.")
    value: float = Field(description="What this label is worth in the reward.")


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, description="Registry name.")
    description: str = ""
    critic: str = Field("vlm", description="Which critic kind can answer it: the kind of a registered backend "
                        "(critic/backends: 'vlm', 'model-free', 'image-reward').")
    dimensions: tuple[Dimension, ...] = Field(min_length=1)
    labels: tuple[Label, ...] = Field(min_length=2, description="Best first.")
    reward_from: Literal["label", "score"] = Field(
        "label",
        description="'label': weighted mean of the hard labels' values (as LiFT); "
        "'score': weighted mean of the soft scores (expectation over label probabilities).",
    )
    sampling: FrameSampling | None = Field(
        None, description="Frame sampling used when a request names none (before the critic's default), "
        "e.g. LiFT's {strategy: linspace, frames: 8}.")
    reward_round: int | None = Field(
        None, ge=0, le=12, description="Round the published reward (not the soft reward) to this many decimals "
        "(LiFT: 2); none: exact.")

    @field_validator("critic")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from critic.backends import rubric_kinds

        if kind not in rubric_kinds():
            raise ValueError(f"unknown critic kind {kind!r}; registered backends answer {sorted(rubric_kinds())}")
        return kind

    @model_validator(mode="after")
    def _check(self):
        names = [d.name for d in self.dimensions]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate dimension names: {names}")
        labels = [lab.name for lab in self.labels]
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate label names: {labels}")
        if sum(d.weight for d in self.dimensions) <= 0:
            raise ValueError("at least one dimension needs a positive weight")
        return self

    def frame_sampling(self, fallback: FrameSampling) -> FrameSampling:
        """The rubric's own frame sampling if it names one, else ``fallback`` (the critic's default)."""
        return self.sampling if self.sampling is not None else fallback

    @property
    def label_values(self) -> list[float]:
        return [lab.value for lab in self.labels]

    def dimension(self, name: str) -> Dimension:
        for d in self.dimensions:
            if d.name == name:
                return d
        raise KeyError(name)

    def reward(self, label_values: dict[str, float], scores: dict[str, float], source: str | None = None) -> float:
        """Weighted mean over dimensions of the hard label values or the soft scores
        (``source`` overrides the rubric's ``reward_from``)."""
        per_dim = label_values if (source or self.reward_from) == "label" else scores
        total = sum(d.weight for d in self.dimensions)
        reward = sum(d.weight * per_dim[d.name] for d in self.dimensions) / total
        if source is not None or self.reward_round is None:  # rounding is for the published reward only
            return reward
        return round(reward, self.reward_round)


def load_rubric_file(path: str | os.PathLike) -> Rubric:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise UnknownRubricError(f"cannot read rubric file {os.fspath(path)!r}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise InvalidRubricError(f"rubric file {os.fspath(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise InvalidRubricError(f"rubric file {os.fspath(path)!r} must hold a mapping")
    return parse_rubric(data, source=os.fspath(path))


def parse_rubric(data: dict, source: str = "<dict>") -> Rubric:
    try:
        return Rubric.model_validate(data)
    except ValidationError as e:
        raise InvalidRubricError(f"invalid rubric in {source}: {first_error(e, 'rubric')}") from None


# name -> Rubric. Adding a rubric is one entry here (or one YAML file beside this one).
RUBRICS: dict[str, Rubric] = {
    p.stem: load_rubric_file(p) for p in sorted(_HERE.glob("*.yaml"))
}


def get_rubric(name_or_path: str | os.PathLike | Rubric) -> Rubric:
    """A registered rubric by name, or one read from a YAML file path."""
    if isinstance(name_or_path, Rubric):
        return name_or_path
    key = os.fspath(name_or_path)
    if key in RUBRICS:
        return RUBRICS[key]
    if key.endswith((".yaml", ".yml")) or os.sep in key:
        return load_rubric_file(key)
    raise UnknownRubricError(f"unknown rubric {key!r}; registered: {sorted(RUBRICS)} (or give a .yaml path)")


def register_rubric(rubric: Rubric) -> None:
    RUBRICS[rubric.name] = rubric
