"""One way to get a critic: a model path or hub id gives the VLM critic; none gives the model-free one."""

from __future__ import annotations

import os
from pathlib import Path

from critic.base import Critic

# The shipped trained critic (`make critic` rebuilds it): the one default of `lift-critic score`,
# the service's CriticSettings and so of the Serve YAML and build_app().
DEFAULT_CRITIC = str(Path(__file__).resolve().parents[1] / "models" / "lift-critic-tiny")


def load_critic(model: str | os.PathLike | None = None, **kwargs) -> Critic:
    if model is None or os.fspath(model) in ("", "model-free"):
        from critic.modelfree import ModelFreeCritic

        return ModelFreeCritic()
    from critic.vlm import VLMCritic

    return VLMCritic(model, **kwargs)
