"""One way to get a critic: a model path or hub id gives the VLM critic; none gives the model-free one."""

from __future__ import annotations

import os

from critic.base import Critic


def load_critic(model: str | os.PathLike | None = None, **kwargs) -> Critic:
    if model is None or os.fspath(model) in ("", "model-free"):
        from critic.modelfree import ModelFreeCritic

        return ModelFreeCritic()
    from critic.vlm import VLMCritic

    return VLMCritic(model, **kwargs)
