"""Qwen2.5-VL end to end on a CPU machine without torchvision: built by `lift-critic build-tiny`,
scored by `lift-critic score`, and served by the real Ray Serve app over HTTP and gRPC, all
giving the same answer."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli as _cli  # the CLI as a user runs it
from conftest import start_service  # one start-up helper for every service test

pytestmark = pytest.mark.timeout(900)
PROMPT = "a red ball rolls across the grass"


def test_qwen_through_the_cli_and_the_service(tmp_path, clips):
    from clients import CriticClient
    from clients.grpc import GrpcCriticClient
    from serving import launch

    built = _cli("build-tiny", tmp_path / "qwen", "--arch", "qwen2_5_vl")
    assert built.returncode == 0, built.stderr
    model = json.loads(built.stdout)["path"]
    p = _cli("score", clips["clean"], "--prompt", PROMPT, "--model", model, "--frames", "4", "--rationale-tokens", "4")
    assert p.returncode == 0, p.stderr
    by_cli = json.loads(p.stdout)
    assert by_cli["model"] == "qwen" and len(by_cli["frame_indices"]) == 4
    svc = start_service(model=model, critic={"rationale_tokens": 4})
    try:
        by_http = CriticClient(svc.url).score(clips["clean"].read_bytes(), prompt=PROMPT,
                                              sampling={"strategy": "uniform", "frames": 4})
        with GrpcCriticClient(svc.grpc) as g:
            by_grpc = g.score(clips["clean"].read_bytes(), prompt=PROMPT, sampling={"strategy": "uniform", "frames": 4})
    finally:
        launch.shutdown()
    for served in (by_http["result"], by_grpc["result"]):
        assert served["model_version"] == by_cli["model_version"]
        for name, d in by_cli["dimensions"].items():
            s = served["dimensions"][name]
            assert s["label"] == d["label"] and s["rationale"] == d["rationale"]
            assert s["probabilities"] == pytest.approx(d["probabilities"], abs=1e-4)
