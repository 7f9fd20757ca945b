"""Protobuf <-> protocol models for the gRPC transport (serving/critic.proto)."""

from __future__ import annotations

import base64
import json

from serving import critic_pb2 as pb
from serving.protocol import BatchScoreResponse, CompareRequest, CompareResponse, Sampling, ScoreRequest, ScoreResponse


def sampling(request) -> Sampling | None:
    if not request.HasField("sampling") or not request.sampling.strategy:
        return None
    s = request.sampling
    fields = {"strategy": s.strategy, "frames": s.frames or 8, "segments": s.segments or 4, "seed": s.seed,
              "rule": s.rule or "cover"}
    return Sampling(**fields, **({"fps": s.fps} if s.fps else {}))


def aggregation(request) -> dict:
    """The image-reward aggregation fields that are set (absent ones take the protocol's defaults)."""
    out = {"aggregate": request.aggregate} if request.aggregate else {}
    if request.HasField("attenuation_lambda"):
        out["attenuation_lambda"] = request.attenuation_lambda
    return out


def score_request(r: pb.ScoreRequest, with_b64: bool = False) -> ScoreRequest:
    """``with_b64``: carry the bytes inside the request (batch items); else they go as the upload."""
    return ScoreRequest(
        prompt=r.prompt, video_path=r.video_path or None, rubric=r.rubric or None, sampling=sampling(r),
        request_id=r.request_id or None, adapter=r.adapter or None, **aggregation(r),
        video_b64=base64.b64encode(r.video).decode() if (with_b64 and r.video) else None,
    )


def score_reply(r: ScoreResponse) -> pb.ScoreReply:
    return pb.ScoreReply(request_id=r.request_id, reward=r.result["reward"], soft_reward=r.result["soft_reward"],
                         result_json=json.dumps(r.result), timings_json=json.dumps(r.timings))


def batch_reply(out: BatchScoreResponse) -> pb.ScoreBatchReply:
    return pb.ScoreBatchReply(items=[
        pb.BatchItem(request_id=i.request_id, result_json=json.dumps(i.result) if i.result else "",
                     error_json=i.error.model_dump_json(exclude_none=True) if i.error else "")
        for i in out.items
    ])


def compare_request(r: pb.CompareRequest) -> CompareRequest:
    return CompareRequest(
        prompt=r.prompt, video_a_path=r.video_a_path or None, video_b_path=r.video_b_path or None,
        rubric=r.rubric or None, sampling=sampling(r), request_id=r.request_id or None, adapter=r.adapter or None,
        **aggregation(r),
    )


def compare_reply(r: CompareResponse) -> pb.CompareReply:
    o = r.result["overall"]
    return pb.CompareReply(request_id=r.request_id, p_a_better=o["p_a_better"], p_b_better=o["p_b_better"],
                           p_tie=o["p_tie"], result_json=json.dumps(r.result))
