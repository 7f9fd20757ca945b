"""gRPC client of the critic service (through Ray Serve's gRPC proxy).

Returns the same dicts as the HTTP client ({"request_id", "result", "timings"}); retries
UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED and an untyped NOT_FOUND (the proxy during a
redeploy) with one request id across attempts, never INVALID_ARGUMENT or another typed
refusal; raises ``CriticRequestError`` / ``CriticUnavailableError``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import grpc

from clients.errors import CriticRequestError, CriticUnavailableError
from clients.http import VideoArg
from clients.retry import RetryPolicy
from contract import critic_pb2 as pb
from contract import critic_pb2_grpc as pb_grpc
from contract.errors import ERRORS, GRPC_TO_HTTP


def _bytes(video: VideoArg | None) -> bytes:
    if video is None:
        return b""
    return video if isinstance(video, bytes) else Path(video).read_bytes()


def _sampling(sampling: dict | None) -> pb.Sampling | None:
    return pb.Sampling(**sampling) if sampling else None


class GrpcCriticClient:
    def __init__(self, target: str = "127.0.0.1:9000", *, api_key: str | None = None, application: str = "lift-critic",
                 timeout: float = 300.0, retry: RetryPolicy | None = None):
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 256 << 20),
                                                               ("grpc.max_receive_message_length", 256 << 20)])
        self._stub = pb_grpc.CriticServiceStub(self._channel)
        self._metadata = [("application", application)] + ([("authorization", f"Bearer {api_key}")] if api_key else [])
        self.timeout, self.retry = timeout, retry or RetryPolicy()

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method: str, request, rid: str):
        attempt = 0
        while True:
            attempt += 1
            try:
                return getattr(self._stub, method)(request, metadata=self._metadata, timeout=self.timeout)
            except grpc.RpcError as e:
                code, details = e.code(), e.details() or ""
                try:
                    err = json.loads(details)["error"]
                    message, ecode = err["message"], err["code"]
                except (ValueError, KeyError, TypeError):
                    message, ecode = details or str(code), None
                # a typed error keeps the HTTP status of its code (one table for both clients); an untyped one
                # (the proxy's, the transport's) is mapped from its gRPC code; retried as over HTTP (RetryPolicy)
                status = ERRORS[ecode].http if ecode in ERRORS else GRPC_TO_HTTP.get(code.name, 500)
                if not self.retry.should_retry(status, typed=ecode is not None):
                    raise CriticRequestError(message, status=status, code=ecode, request_id=rid, attempts=attempt) from None
                if attempt >= self.retry.max_attempts:
                    raise CriticUnavailableError(f"gave up: {message}", status=status, code=ecode, request_id=rid,
                                                 attempts=attempt) from None
                time.sleep(self.retry.delay(attempt))

    def score(self, video: VideoArg | None = None, *, prompt: str, video_path: str | None = None,
              rubric: str | None = None, sampling: dict | None = None, adapter: str | None = None,
              request_id: str | None = None) -> dict:
        rid = request_id or uuid.uuid4().hex
        req = pb.ScoreRequest(prompt=prompt, video=_bytes(video), video_path=video_path or "", rubric=rubric or "",
                              sampling=_sampling(sampling), request_id=rid, adapter=adapter or "")
        r = self._call("Score", req, rid)
        return {"request_id": r.request_id, "result": json.loads(r.result_json), "timings": json.loads(r.timings_json)}

    def score_batch(self, items: list[dict]) -> list[dict]:
        reqs = []
        for kw in items:
            kw = {**kw, "request_id": kw.get("request_id") or uuid.uuid4().hex}
            reqs.append(pb.ScoreRequest(prompt=kw["prompt"], video=_bytes(kw.get("video")),
                                        video_path=kw.get("video_path") or "", rubric=kw.get("rubric") or "",
                                        sampling=_sampling(kw.get("sampling")), request_id=kw["request_id"],
                                        adapter=kw.get("adapter") or ""))
        r = self._call("ScoreBatch", pb.ScoreBatchRequest(items=reqs), rid="batch")
        return [{"request_id": i.request_id, "result": json.loads(i.result_json) if i.result_json else None,
                 "error": json.loads(i.error_json) if i.error_json else None} for i in r.items]

    def compare(self, video_a: VideoArg | None = None, video_b: VideoArg | None = None, *, prompt: str,
                rubric: str | None = None, sampling: dict | None = None, adapter: str | None = None,
                request_id: str | None = None) -> dict:
        rid = request_id or uuid.uuid4().hex
        req = pb.CompareRequest(prompt=prompt, video_a=_bytes(video_a), video_b=_bytes(video_b), rubric=rubric or "",
                                sampling=_sampling(sampling), request_id=rid, adapter=adapter or "")
        r = self._call("Compare", req, rid)
        return {"request_id": r.request_id, "result": json.loads(r.result_json)}
