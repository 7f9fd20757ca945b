"""Protobuf <-> protocol models for the gRPC transport (contract/critic.proto).

Messages are validated by the same pydantic models as HTTP bodies: a failure is the typed
``invalid_request`` (gRPC INVALID_ARGUMENT), never INTERNAL. A sampling message carries only
the fields its sender set; the others take ``FrameSampling``'s defaults.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from pydantic import ValidationError

from contract import critic_pb2 as pb
from contract.errors import ServiceError, invalid
from contract.protocol import (
    BatchScoreRequest,
    BatchScoreResponse,
    CompareRequest,
    CompareResponse,
    ScoreRequest,
    ScoreResponse,
)

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def _validated(build: Callable[[], T]) -> T:
    try:
        return build()
    except ValidationError as e:
        raise invalid(e) from None


def parse_message(message: type[M], request: M | bytes) -> M:
    """The RPC's message: ``request`` as is, or parsed from the bytes the servicer registration passes
    through (``serving.grpc_servicer``); bytes that are not such a message are ``invalid_request``."""
    if isinstance(request, message):
        return request
    try:
        return message.FromString(bytes(request))
    except DecodeError as e:
        name = message.DESCRIPTOR.full_name
        raise ServiceError("invalid_request", f"the request is not a {name} message: {e}") from None


def sampling(request) -> dict | None:
    """The fields of the request's sampling message that were set (validated by ``FrameSampling``)."""
    if not request.HasField("sampling") or not request.sampling.HasField("strategy"):
        return None
    return {field.name: value for field, value in request.sampling.ListFields()}


def aggregation(request) -> dict:
    """The image-reward aggregation fields that are set (absent ones take the protocol's defaults)."""
    out = {"aggregate": request.aggregate} if request.aggregate else {}
    if request.HasField("attenuation_lambda"):
        out["attenuation_lambda"] = request.attenuation_lambda
    return out


def _score_request(r: pb.ScoreRequest, with_b64: bool) -> ScoreRequest:
    return ScoreRequest(
        prompt=r.prompt, video_path=r.video_path or None, rubric=r.rubric or None, sampling=sampling(r),
        request_id=r.request_id or None, adapter=r.adapter or None, **aggregation(r),
        video_b64=base64.b64encode(r.video).decode() if (with_b64 and r.video) else None,
    )


def score_request(r: pb.ScoreRequest, with_b64: bool = False) -> ScoreRequest:
    """``with_b64``: carry the bytes inside the request (batch items); else they go as the upload."""
    return _validated(lambda: _score_request(r, with_b64))


def batch_request(r: pb.ScoreBatchRequest) -> BatchScoreRequest:
    return _validated(lambda: BatchScoreRequest(items=[_score_request(i, True) for i in r.items]))


def score_reply(r: ScoreResponse) -> pb.ScoreReply:
    return pb.ScoreReply(request_id=r.request_id, reward=r.result.reward, soft_reward=r.result.soft_reward,
                         result_json=r.result.model_dump_json(), timings_json=json.dumps(r.timings))


def batch_reply(out: BatchScoreResponse) -> pb.ScoreBatchReply:
    return pb.ScoreBatchReply(items=[
        pb.BatchItem(request_id=i.request_id, result_json=i.result.model_dump_json() if i.result else "",
                     error_json=i.error.model_dump_json(exclude_none=True) if i.error else "")
        for i in out.items
    ])


def compare_request(r: pb.CompareRequest) -> CompareRequest:
    return _validated(lambda: CompareRequest(
        prompt=r.prompt, video_a_path=r.video_a_path or None, video_b_path=r.video_b_path or None,
        rubric=r.rubric or None, sampling=sampling(r), request_id=r.request_id or None, adapter=r.adapter or None,
        **aggregation(r),
    ))


def compare_reply(r: CompareResponse) -> pb.CompareReply:
    o = r.result.overall
    return pb.CompareReply(request_id=r.request_id, p_a_better=o.p_a_better, p_b_better=o.p_b_better,
                           p_tie=o.p_tie, result_json=r.result.model_dump_json())
