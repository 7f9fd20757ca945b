"""The backend registry: names, options validated by each backend, rubric kinds, async engines."""

import asyncio
import importlib

import pytest
from pydantic import BaseModel, ConfigDict

from contract.errors import InvalidParameterError, InvalidRubricError
from contract.sampling import FrameSampling
from critic import prepare_input
from critic.backends import BACKENDS, load_critic, resolve_backend, rubric_kinds
from critic.backends.engine import AsyncCritic
from critic.modelfree import ModelFreeCritic
from critic.rubrics import parse_rubric

PROMPT = "a red ball rolls across the grass"


def test_registry_names_and_modules():
    assert {"transformers", "model-free", "image-reward"} <= set(BACKENDS)
    for name, entry in BACKENDS.items():
        mod = importlib.import_module(entry.module)
        assert callable(mod.load), name
        assert mod.Options.model_config.get("extra") == "forbid", name
    assert {"vlm", "model-free", "image-reward"} <= rubric_kinds()


def test_default_backend_follows_the_model():
    assert resolve_backend(None, None) == "model-free"
    assert resolve_backend(None, "model-free") == "model-free"
    assert resolve_backend(None, "some/checkpoint") == "transformers"
    assert resolve_backend("image-reward", "x") == "image-reward"
    with pytest.raises(InvalidParameterError, match="unknown critic backend"):
        resolve_backend("tensorflow", None)


def test_options_are_validated_by_the_backend(tiny_vlm_path):
    assert load_critic().backend == "model-free"
    with pytest.raises(InvalidParameterError, match="model-free backend: rationale_tokens"):
        load_critic(backend="model-free", options={"rationale_tokens": 4})
    with pytest.raises(InvalidParameterError, match="rationale_tokens"):
        load_critic(tiny_vlm_path, options={"rationale_tokens": -1})
    with pytest.raises(InvalidParameterError, match="needs a model"):
        load_critic(backend="transformers")
    with pytest.raises(InvalidParameterError, match="takes no model"):
        load_critic(tiny_vlm_path, backend="model-free")
    critic = load_critic(tiny_vlm_path, backend="transformers", options={"rationale_tokens": 0, "max_batch_size": 2})
    assert critic.backend == "transformers" and critic.kind == "vlm"
    assert critic.rationale_tokens == 0 and critic.max_batch_size == 2
    # shared shorthands (the Serve YAML's rationale_tokens) reach only the backends that have them
    assert load_critic(defaults={"rationale_tokens": 4}).backend == "model-free"
    assert load_critic(tiny_vlm_path, defaults={"rationale_tokens": 4}).rationale_tokens == 4
    assert load_critic(tiny_vlm_path, options={"rationale_tokens": 2}, defaults={"rationale_tokens": 4}).rationale_tokens == 2


def test_rubric_kind_is_checked_against_the_registry():
    base = {"name": "k", "labels": [{"name": "Yes", "value": 1}, {"name": "No", "value": 0}],
            "dimensions": [{"name": "d", "question": "q"}]}
    assert parse_rubric({**base, "critic": "image-reward"}).critic == "image-reward"
    with pytest.raises(InvalidRubricError, match="unknown critic kind 'tensorflow'"):
        parse_rubric({**base, "critic": "tensorflow"})


class _AsyncModelFree(AsyncCritic, ModelFreeCritic):
    """An engine-style critic: the model-free measurements, scored as a coroutine."""

    async def _ascore(self, inputs):
        await asyncio.sleep(0)
        return ModelFreeCritic._score(self, inputs)


def test_async_backends_score_both_ways(clips):
    critic = _AsyncModelFree()
    item = prepare_input(clips["flicker"], PROMPT, "signal", FrameSampling.every_frame())
    (sync,) = critic.score([item])
    (asy,) = asyncio.run(critic.ascore([item]))
    assert sync.dimensions == asy.dimensions == ModelFreeCritic().score([item])[0].dimensions
    with pytest.raises(InvalidRubricError):
        asyncio.run(critic.ascore([prepare_input(clips["flicker"], PROMPT, "lift", FrameSampling.uniform(4))]))


# the test's own engine-style backend: this module is its ``Options`` + ``load``
class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def load(model, options):
    return _AsyncModelFree()


def test_the_critic_deployment_drives_an_engine_backend(monkeypatch, clips):
    """Registered under a new name (one entry), the async critic is awaited per request, without @serve.batch."""
    from critic.backends import Backend
    from serving.app import CriticDeployment

    monkeypatch.setitem(BACKENDS, "async-model-free", Backend("model-free", __name__, False, "test engine"))
    deployment = CriticDeployment.func_or_class({"backend": "async-model-free", "rationale_tokens": 4})
    assert isinstance(deployment.critic, _AsyncModelFree) and deployment.critic.backend == "async-model-free"
    deployment._batched = None  # the @serve.batch path must not be taken

    async def drive():
        good = prepare_input(clips["flicker"], PROMPT, "signal", FrameSampling.every_frame())
        bad = prepare_input(clips["flicker"], PROMPT, "lift", FrameSampling.uniform(4))
        return await asyncio.gather(deployment.score(good), deployment.score(good), deployment.score(bad),
                                    return_exceptions=True)

    a, b, err = asyncio.run(drive())
    assert a.dimensions == b.dimensions == ModelFreeCritic().score(
        [prepare_input(clips["flicker"], PROMPT, "signal", FrameSampling.every_frame())])[0].dimensions
    assert isinstance(err, InvalidRubricError) and err.code == "invalid_rubric"  # raised, typed; not a value
