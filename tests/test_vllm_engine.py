"""The vllm backend in process: the engine sees the transformers backend's exact token sequence,
one video is encoded once per rubric (prefix cache), typed errors, and a dead engine fails the
health probe. Runs in the vLLM venv: ``pytest -m vllm``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from contract.errors import InvalidParameterError, ModelLoadError
from contract.sampling import FrameSampling
from contract.video import encode_video
from critic.backends import load_critic
from critic.base import prepare_input
from critic.samples import make_clip

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]
MODEL = Path(__file__).resolve().parents[1] / "models" / "lift-critic-tiny"
PROMPT = "a red ball rolls across the grass"


@pytest.fixture(scope="module")
def critic():
    c = load_critic(MODEL, backend="vllm", options={"rationale_tokens": 4, "max_frames": 16})
    yield c
    c.close()


def _item(seed: int, frames: int = 8, length: int = 17):
    video = encode_video(make_clip(length, 64, seed=seed), fps=8)
    return prepare_input(video, PROMPT, "lift", FrameSampling.uniform(frames))


def test_the_engine_sees_the_transformers_backends_tokens(critic):
    from vllm import SamplingParams

    item = _item(1)
    images = [Image.fromarray(f) for f in item.frames]
    layout, plan = critic._layout(8), critic._plan(item.rubric, 8)[1]
    # the transformers backend: the processor expands each <image> into the image's tokens
    expanded = critic.processor(text=[layout.prefix_for(item.prompt)], images=[images])["input_ids"][0]
    out = critic._on_loop(critic._generate(critic._encode(layout.prefix_for(item.prompt)) + plan.context_ids, images,
                                           SamplingParams(max_tokens=1), None)).result()
    assert list(out.prompt_token_ids) == list(expanded) + plan.context_ids


def test_a_video_is_encoded_once_per_rubric(critic):
    item = _item(2)  # a video the engine has not seen
    prefix = len(critic.processor(text=[critic._layout(8).prefix_for(item.prompt)],
                                  images=[[Image.fromarray(f) for f in item.frames]])["input_ids"][0])
    result = critic.score([item])[0]
    dims = len(item.rubric.dimensions)
    whole_blocks = prefix // 32 * 32  # the CPU default block size; reuse is per full block
    # the first question computes the prefix; every other question reuses it
    assert result.timings["cached_prompt_tokens"] >= (dims - 1) * whole_blocks > 0


def test_typed_errors(critic):
    with pytest.raises(InvalidParameterError, match="max_frames"):
        critic.validate(_item(3, frames=20, length=24))
    with pytest.raises(ModelLoadError, match="enable_lora"):
        critic.load_adapter("tuned", MODEL)
    with pytest.raises(InvalidParameterError, match="device"):
        load_critic(MODEL, backend="vllm", options={"device": "tpu"})
    with pytest.raises(InvalidParameterError, match="vllm backend: max_num_seqs"):
        load_critic(MODEL, backend="vllm", options={"max_num_seqs": 0})
    with pytest.raises(ModelLoadError):
        load_critic(MODEL.parent / "no-such-model", backend="vllm")


def test_a_dead_engine_fails_the_health_probe(critic):
    critic.check_health()
    assert critic.score([_item(4)])[0].dimensions
    cores = [p for p in psutil.Process().children(recursive=True) if "EngineCore" in " ".join(p.cmdline() + [p.name()])]
    assert cores
    for p in cores:
        os.kill(p.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            critic.check_health()
        except RuntimeError:
            return
        time.sleep(0.5)
    pytest.fail("the engine core was killed but check_health still passes")
