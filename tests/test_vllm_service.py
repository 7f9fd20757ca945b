"""The ``vllm`` lane: the real Ray Serve app on loopback with ``backend: vllm`` on the shipped tiny
Idefics3 critic agrees with the transformers backend and maps bad input to the same typed errors.

Runs only in the vLLM venv (``make vllm``; CI: ``.ci/run``): ``pytest -m vllm``.
Tolerance: label probabilities within 1e-4 of the transformers backend's (both float32; measured
differences are ~1e-6), identical hard labels and identical greedy rationales.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import pytest

from clients import AsyncCriticClient, CriticClient, CriticRequestError
from contract.errors import CriticError
from contract.sampling import FrameSampling
from critic.backends import load_critic
from critic.base import prepare_input
from conftest import start_service  # one start-up helper for every service test

# no importorskip: in the vllm lane a missing vLLM must fail, not skip
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]

MODEL = Path(__file__).resolve().parents[1] / "models" / "lift-critic-tiny"
PROMPT = "a red ball rolls across the grass"
TOL = 1e-4
RATIONALE = 8


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """A LoRA critic adapter on the shipped critic's language model (peft, random non-zero weights:
    it moves the answers, so agreement with it is not agreement with the base model)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(MODEL), LoraConfig(
        r=8, lora_alpha=16, init_lora_weights=False,
        target_modules=r".*text_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"))
    out = tmp_path_factory.mktemp("lora") / "tuned"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def reference(lora):
    """The transformers backend on the same checkpoint (and adapter), in process."""
    critic = load_critic(MODEL, backend="transformers", options={"rationale_tokens": RATIONALE})
    critic.load_adapter("tuned", lora)
    return critic


@pytest.fixture(scope="module")
def service(clips, lora):
    from serving import launch

    yield start_service(model=str(MODEL), allowed_dirs=[str(clips["clean"].parent)],
                        critic={"backend": "vllm", "rationale_tokens": RATIONALE,
                                "options": {"enable_lora": True}, "adapters": {"tuned": str(lora)}},
                        ingress={"max_request_bytes": 1_000_000, "max_video_bytes": 500_000}, wait_s=600).url
    launch.shutdown()


def _expected(reference, clip, **kw):
    sampling = FrameSampling(**kw["sampling"]) if "sampling" in kw else reference.default_sampling
    item = prepare_input(Path(clip).read_bytes(), PROMPT, kw.get("rubric", reference.default_rubric), sampling,
                         adapter=kw.get("adapter"))
    return reference.score([item])[0]


def _agree(got: dict, want) -> None:
    assert got["model"] == want.model and got["frame_indices"] == want.frame_indices
    for name, d in want.dimensions.items():
        g = got["dimensions"][name]
        assert g["label"] == d.label, name
        assert g["probabilities"] == pytest.approx(d.probabilities, abs=TOL), name
        assert g["score"] == pytest.approx(d.score, abs=TOL * 4), name
        assert g["rationale"] == d.rationale, name
    assert got["reward"] == pytest.approx(want.reward, abs=1e-9)
    assert got["soft_reward"] == pytest.approx(want.soft_reward, abs=TOL * 4)


def test_vllm_service_agrees_with_transformers(service, clips, reference):
    client = CriticClient(service)
    info = client.models()[0]
    assert info["kind"] == "vlm" and info["name"] == "lift-critic-tiny"
    labels = set()
    for name, clip in clips.items():
        got = client.score(clip, prompt=PROMPT)["result"]
        want = _expected(reference, clip)
        _agree(got, want)
        labels |= {d.label for d in want.dimensions.values()}
    assert len(labels) > 1  # the trained critic tells the clips apart: agreement is not on a constant
    # another sampling and rubric go through the same path
    sampling = {"strategy": "segments", "segments": 4, "seed": 1}
    _agree(client.score(clips["clean"], prompt=PROMPT, sampling=sampling)["result"],
           _expected(reference, clips["clean"], sampling=sampling))


def test_lora_adapter_through_vllm(service, clips, reference):
    """vLLM's LoRA support scores with the critic adapter exactly as peft does in transformers."""
    client = CriticClient(service)
    assert client.models()[0]["adapters"] == ["tuned"]
    base = client.score(clips["clean"], prompt=PROMPT)["result"]
    tuned = client.score(clips["clean"], prompt=PROMPT, adapter="tuned")["result"]
    assert tuned["adapter"] == "tuned"
    _agree(tuned, _expected(reference, clips["clean"], adapter="tuned"))
    moved = max(abs(tuned["dimensions"][d]["probabilities"][lab] - base["dimensions"][d]["probabilities"][lab])
                for d in base["dimensions"] for lab in base["dimensions"][d]["probabilities"])
    assert moved > 10 * TOL  # the adapter is really applied


def test_concurrent_requests_share_the_engine(service, clips, reference):
    """32 requests at once (continuous batching, prefix cache shared across videos): same results."""
    names = list(clips) * 4

    async def go():
        async with AsyncCriticClient(service, timeout=300) as client:
            return await asyncio.gather(*(client.score(clips[n], prompt=PROMPT) for n in names))

    out = asyncio.run(go())
    want = {n: _expected(reference, clips[n]) for n in clips}
    for n, r in zip(names, out):
        _agree(r["result"], want[n])
    assert any(r["timings"]["cached_prompt_tokens"] > 0 for r in out)


BAD = [
    ({"json": {"prompt": PROMPT, "video_b64": base64.b64encode(b"garbage bytes").decode()}}, 422, "invalid_video"),
    ({"json": {"prompt": PROMPT, "video_b64": "%%% not base64"}}, 422, "invalid_request"),
    ({"json": {"prompt": "", "video_path": "/x"}}, 422, "invalid_request"),
    ({"json": {"prompt": PROMPT, "video_path": "/etc/passwd"}}, 403, "path_not_allowed"),
    ({"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    ({"content": b"x" * 1_100_000, "headers": {"content-type": "application/json"}}, 413, "payload_too_large"),
    ({"json": {"prompt": PROMPT, "video_b64": base64.b64encode(b"\0" * 600_000).decode()}}, 413, "video_too_large"),
]


@pytest.mark.parametrize("request_kwargs, status, code", BAD)
def test_bad_requests_get_the_same_typed_errors(service, request_kwargs, status, code):
    with httpx.Client(base_url=service, timeout=60) as http:
        r = http.post("/score", **request_kwargs)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("kwargs", [
    {"rubric": "signal"},  # a model-free rubric on a VLM critic
    {"adapter": "no-such-adapter"},
    {"sampling": {"strategy": "segments", "segments": 99}},  # more segments than frames
    {"rubric": "no-such-rubric"},
])
def test_backend_errors_match_the_transformers_backend(service, clips, reference, kwargs):
    """What the transformers critic raises in process, the vllm service answers with the same code."""
    try:
        sampling = FrameSampling(**kwargs["sampling"]) if "sampling" in kwargs else reference.default_sampling
        rubric = kwargs.get("rubric", reference.default_rubric)
        item = prepare_input(clips["clean"].read_bytes(), PROMPT, rubric, sampling, adapter=kwargs.get("adapter"))
        reference.score([item])
        want = None
    except CriticError as e:
        want = e.code
    with pytest.raises(CriticRequestError) as e:
        CriticClient(service).score(clips["clean"], prompt=PROMPT, **kwargs)
    assert want is not None and e.value.code == want
