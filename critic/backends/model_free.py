"""Backend ``model-free``: the pixel-measurement critic (critic/modelfree.py); it has no options."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from critic.modelfree import ModelFreeCritic


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def load(model: str | None, options: Options) -> ModelFreeCritic:
    return ModelFreeCritic()
