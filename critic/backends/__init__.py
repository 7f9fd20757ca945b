"""Critic backends: one module per backend, one plain dict ``BACKENDS`` of name -> entry.

A backend module (``critic/backends/<name>.py``) defines two things:

- ``Options``: a pydantic model (``extra="forbid"``) of the backend's own settings
  (dtype, rationale_tokens, ...). Serving (``critic.options`` in the Serve YAML) and the
  CLI (``--option KEY=VALUE``) pass one plain dict; ``parse_options`` validates it, so a
  misspelt or foreign option is a typed ``InvalidParameterError``, never silently dropped.
- ``load(model: str | None, options: Options) -> Critic``: build the critic once.

The critic it returns is a ``critic.base.Critic``. Two kinds of scoring exist:

- *batch* backends implement ``_score(inputs) -> list[CriticResult]`` (synchronous);
  the service collects requests into batches with ``@serve.batch``;
- *engine* backends subclass ``critic.backends.engine.AsyncCritic`` and implement
  ``async _ascore(inputs)``; the service awaits ``critic.ascore([item])`` per request,
  concurrently, and the engine batches on its own (continuous batching). ``score`` still
  works (it runs the coroutine), so the CLI and tests need nothing special.

Each entry names the rubric ``kind`` its critic answers (a rubric's ``critic:`` field is
checked against these kinds); several backends may answer one kind (``transformers`` and
``vllm`` both answer ``vlm`` rubrics). Adding a backend = one module, one entry, one test.
This module imports nothing heavy: rubric parsing and the ingress read it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from contract.errors import InvalidParameterError, first_error


@dataclass(frozen=True)
class Backend:
    kind: str  # the rubric kind its critic answers ("vlm", "model-free", "image-reward")
    module: str  # defines ``Options`` and ``load``; imported on first use
    needs_model: bool  # whether ``model`` (a checkpoint folder or hub id) is required
    description: str

    def load(self, name: str, model: str | None, options: dict[str, Any], defaults: dict[str, Any]):
        mod = importlib.import_module(self.module)
        known = {k: v for k, v in defaults.items() if k in mod.Options.model_fields}
        return mod.load(model, parse_options(mod.Options, {**known, **options}, name))


# name -> backend. The names are a contract (serving settings ``critic.backend``, CLI ``--backend``).
BACKENDS: dict[str, Backend] = {
    "transformers": Backend("vlm", "critic.backends.transformers_vlm", True,
                            "any Hugging Face image-text-to-text VLM through transformers (shared-prefix KV cache)"),
    "model-free": Backend("model-free", "critic.backends.model_free", False,
                          "pixel measurements (flicker, motion, sharpness, ...); no weights"),
    "image-reward": Backend("image-reward", "critic.backends.image_reward", True,
                            "a CLIP-style dual encoder scoring each sampled frame against the prompt"),
    "vllm": Backend("vlm", "critic.backends.vllm_engine", True,
                    "a Hugging Face VLM on vLLM's async engine (continuous batching, prefix caching); "
                    "needs vLLM (`make vllm`)"),
}


def rubric_kinds() -> set[str]:
    """The critic kinds a rubric may name."""
    return {b.kind for b in BACKENDS.values()}


def resolve_backend(backend: str | None, model: str | os.PathLike | None) -> str:
    """The backend name to use; without one, a model means ``transformers`` and none ``model-free``."""
    if backend is None:
        return "model-free" if model is None or os.fspath(model) in ("", "model-free") else "transformers"
    if backend not in BACKENDS:
        raise InvalidParameterError(f"unknown critic backend {backend!r}; registered: {sorted(BACKENDS)}")
    return backend


def parse_options(model_cls, options: dict[str, Any], backend: str):
    """Validate a backend's options dict into its ``Options`` model (typed error on the first problem)."""
    from pydantic import ValidationError

    try:
        return model_cls.model_validate(options)
    except ValidationError as e:
        raise InvalidParameterError(f"invalid option for the {backend} backend: {first_error(e, 'options')}") from None


def load_critic(model: str | os.PathLike | None = None, *, backend: str | None = None,
                options: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None, **kwargs):
    """Build the critic of ``backend`` (see ``resolve_backend``) from ``model`` with ``options``
    (keyword arguments are merged into them; all are validated by the backend). ``defaults`` are
    shorthands shared by a deployment's settings (device, dtype, rationale_tokens): each applies
    only to a backend that has that option, and ``options`` override it."""
    name = resolve_backend(backend, model)
    entry = BACKENDS[name]
    if entry.needs_model and (model is None or os.fspath(model) == ""):
        raise InvalidParameterError(f"the {name} backend needs a model (checkpoint folder or hub id)")
    if not entry.needs_model and model is not None and os.fspath(model) not in ("", name):
        raise InvalidParameterError(f"the {name} backend takes no model, got {os.fspath(model)!r}")
    critic = entry.load(name, os.fspath(model) if entry.needs_model else None, {**(options or {}), **kwargs},
                        defaults or {})
    critic.backend = name
    return critic
