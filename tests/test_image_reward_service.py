"""The image-reward backend behind the real Ray Serve app on loopback: HTTP and gRPC agree with
the in-process critic, per-frame scores and the chosen aggregation included."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
import torch

from critic.backends.image_reward import aggregate
from conftest import start_service  # one start-up helper for every service test

pytestmark = pytest.mark.timeout(900)
PROMPT = "a red ball rolls across the grass"


@pytest.fixture(scope="module")
def service(tiny_clip_path, clips):
    from serving import launch

    # the repo's YAML sets rationale_tokens (a VLM shorthand): the image-reward backend must ignore it
    svc = start_service(model=str(tiny_clip_path), allowed_dirs=[str(clips["clean"].parent)],
                        critic={"backend": "image-reward", "options": {"aggregate": "mean"}})
    yield svc.url, svc.grpc
    launch.shutdown()


def _check(result: dict, method: str, lam: float, num_frames: int = 17):
    scores = torch.tensor(result["frame_scores"]["alignment"], dtype=torch.float64)
    assert len(scores) == len(result["frame_indices"]) == 4
    assert result["aggregation"] == {"method": method, "attenuation_lambda": lam, "num_frames": num_frames}
    assert result["reward"] == pytest.approx(float(aggregate(scores, result["frame_indices"], num_frames, method, lam)))


def test_http_and_grpc_answer_the_same(service, clips, tiny_clip_path):
    from contract import critic_pb2 as pb
    from contract import critic_pb2_grpc as pb_grpc

    url, target = service
    sampling = {"strategy": "segments", "segments": 4, "seed": 1, "rule": "tsn"}
    with httpx.Client(base_url=url, timeout=120) as http:
        info = http.get("/models").json()[0]
        assert info["kind"] == "image-reward" and "image_reward" in info["rubrics"]
        assert info["default_sampling"] == {"strategy": "segments", "segments": 4, "seed": 0, "rule": "tsn"}
        r = http.post("/score", json={"prompt": PROMPT, "video_path": str(clips["clean"]), "sampling": sampling,
                                      "aggregate": "attenuated", "attenuation_lambda": 0.5})
        assert r.status_code == 200, r.text
        by_http = r.json()["result"]
        _check(by_http, "attenuated", 0.5)
        assert by_http["sampling"] == sampling
        plain = http.post("/score", json={"prompt": PROMPT, "video_path": str(clips["clean"]), "sampling": sampling})
        _check(plain.json()["result"], "mean", 1.0)  # the critic's configured default
        bad = http.post("/score", json={"prompt": PROMPT, "video_path": str(clips["clean"]), "aggregate": "median"})
        assert bad.status_code == 422
        cmp = http.post("/compare", json={"prompt": PROMPT, "video_a_path": str(clips["clean"]),
                                          "video_b_path": str(clips["jump"]), "sampling": sampling,
                                          "aggregate": "attenuated_normalized"})
        assert cmp.status_code == 200, cmp.text
        _check(cmp.json()["result"]["a"], "attenuated_normalized", 1.0)
    with grpc.insecure_channel(target) as ch:
        stub = pb_grpc.CriticServiceStub(ch)
        reply = stub.Score(pb.ScoreRequest(prompt=PROMPT, video=clips["clean"].read_bytes(),
                                           sampling=pb.Sampling(strategy="segments", segments=4, seed=1, rule="tsn"),
                                           aggregate="attenuated", attenuation_lambda=0.5),
                           metadata=[("application", "lift-critic")], timeout=120)
    by_grpc = json.loads(reply.result_json)
    _check(by_grpc, "attenuated", 0.5)
    assert by_grpc["frame_scores"]["alignment"] == pytest.approx(by_http["frame_scores"]["alignment"], abs=1e-6)
    assert reply.reward == pytest.approx(by_http["reward"], abs=1e-6)
    # in process, the same numbers
    from contract.sampling import FrameSampling
    from critic import prepare_input
    from critic.backends import load_critic

    item = prepare_input(clips["clean"], PROMPT, "image_reward", FrameSampling.segmental(4, seed=1, rule="tsn"))
    from dataclasses import replace

    (local,) = load_critic(tiny_clip_path, backend="image-reward").score([replace(item, aggregate="attenuated",
                                                                                    attenuation_lambda=0.5)])
    assert local.reward == pytest.approx(by_http["reward"], abs=1e-6)
