"""The logic shared by every transport: request in, result or typed ``ServiceError`` out.

HTTP and gRPC both call ``Engine``; it depends on a ``CriticBackend`` (the Ray Serve
critic deployment in production, anything with the same three coroutines in tests).
Decoding runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import base64
import binascii
import hmac
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from critic.base import compare_results, prepare_input
from critic.errors import CriticError
from critic.rubrics import get_rubric
from critic.sampling import FrameSampling
from critic.types import CriticResult, ScoreInput
from critic.video import VideoLimits
from serving.errors import ServiceError
from serving.metrics import Metrics
from serving.protocol import (
    BatchItem,
    BatchScoreRequest,
    BatchScoreResponse,
    CompareRequest,
    CompareResponse,
    ErrorInfo,
    Sampling,
    ScoreRequest,
    ScoreResponse,
)
from serving.settings import IngressSettings


class CriticBackend(Protocol):
    async def score(self, item: ScoreInput) -> CriticResult: ...
    async def info(self) -> dict: ...
    async def ready(self) -> dict: ...


class Engine:
    def __init__(self, backend: CriticBackend, settings: IngressSettings, metrics: Metrics | None = None):
        self.backend = backend
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.limits = VideoLimits(
            max_bytes=settings.max_video_bytes,
            max_duration_s=settings.max_duration_s,
            max_frames=settings.max_frames,
            max_pixels=settings.max_pixels,
        )
        self._allowed = [Path(d).resolve() for d in settings.allowed_dirs]
        self._done: OrderedDict[str, object] = OrderedDict()
        self._inflight: dict[str, asyncio.Future] = {}
        self._info: dict | None = None

    # ---- protection ------------------------------------------------------------------

    def authorize(self, authorization: str | None) -> None:
        """Bearer-token check (constant time); no keys configured means no auth."""
        keys = self.settings.api_keys
        if not keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.encode(), k.encode()) for k in keys):
            raise ServiceError("unauthorized", "missing or invalid API key (send 'Authorization: Bearer <key>')")

    def resolve_video(self, b64: str | None, path: str | None, upload: bytes | None, what: str = "video") -> bytes | Path:
        given = [x is not None and x != "" for x in (b64, path, upload)]
        if sum(given) != 1:
            raise ServiceError("invalid_request", f"give exactly one of {what} upload, {what}_b64 or {what}_path")
        if upload is not None:
            data = upload
        elif b64:
            if len(b64) > self.settings.max_video_bytes * 4 // 3 + 4:
                raise ServiceError("video_too_large", f"{what} is larger than {self.settings.max_video_bytes} bytes")
            try:
                data = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise ServiceError("invalid_request", f"{what}_b64 is not valid base64") from None
        else:
            return self._allowed_path(path)
        if len(data) > self.settings.max_video_bytes:
            raise ServiceError("video_too_large", f"{what} is {len(data)} bytes; the limit is {self.settings.max_video_bytes}")
        return data

    def _allowed_path(self, path: str) -> Path:
        p = Path(path).resolve()
        if not any(p == d or d in p.parents for d in self._allowed):
            raise ServiceError("path_not_allowed", f"{path!r} is not under an allowed directory")
        if not p.is_file():
            raise ServiceError("invalid_video", f"{path!r} is not a file")
        return p

    # ---- backend ---------------------------------------------------------------------

    async def info(self) -> dict:
        if self._info is None:
            self._info = await self.backend.info()
        return self._info

    async def ready(self) -> dict:
        return await self.backend.ready()

    async def _prepare(self, prompt: str, source, rubric: str | None, sampling: Sampling | None,
                       adapter: str | None = None, aggregation: dict | None = None) -> ScoreInput:
        info = await self.info()
        try:
            spec = FrameSampling(**(sampling.model_dump() if sampling else info["default_sampling"]))
            if rubric and (os.sep in rubric or rubric.endswith((".yaml", ".yml"))):
                raise ServiceError("unknown_rubric", "the service takes registered rubric names, not file paths")
            rub = get_rubric(rubric or info["default_rubric"])
            if adapter is not None and adapter not in info.get("adapters", []):
                raise ServiceError("unknown_adapter", f"adapter {adapter!r} is not served; available: {info.get('adapters', [])}")
            item = await asyncio.to_thread(prepare_input, source, prompt, rub, spec, self.limits, adapter)
            return dataclasses.replace(item, **(aggregation or {}))
        except CriticError as e:
            raise ServiceError(e.code, e.message, details=e.details or None) from None

    async def _score_item(self, item: ScoreInput) -> CriticResult:
        try:
            result = await asyncio.wait_for(self.backend.score(item), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError("timeout", f"scoring took longer than {self.settings.request_timeout_s}s") from None
        self.metrics.observe_result(result.timings)
        return result

    async def _once(self, request_id: str, work: Callable[[], Awaitable]):
        """Run ``work`` once per request id: a retry gets the first answer, never a second scoring."""
        if request_id in self._done:
            self.metrics.idempotent_hits.inc()
            self._done.move_to_end(request_id)
            return self._done[request_id]
        if request_id in self._inflight:
            self.metrics.idempotent_hits.inc()
            return await asyncio.shield(self._inflight[request_id])
        fut = asyncio.get_running_loop().create_future()
        self._inflight[request_id] = fut
        try:
            result = await work()
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiting retries re-raise it themselves
            raise
        finally:
            self._inflight.pop(request_id, None)
        fut.set_result(result)
        if self.settings.idempotency_cache_size:
            self._done[request_id] = result
            while len(self._done) > self.settings.idempotency_cache_size:
                self._done.popitem(last=False)
        return result

    # ---- endpoints -------------------------------------------------------------------

    async def score(self, req: ScoreRequest, upload: bytes | None = None) -> ScoreResponse:
        rid = req.request_id or uuid.uuid4().hex

        async def work():
            t0 = time.perf_counter()
            source = self.resolve_video(req.video_b64, req.video_path, upload)
            item = await self._prepare(req.prompt, source, req.rubric, req.sampling, req.adapter, _aggregation(req))
            result = await self._score_item(item)
            timings = {**result.timings, "total_s": time.perf_counter() - t0}
            return ScoreResponse(request_id=rid, result=result.to_dict(), timings=timings)

        return await self._once(rid, work)

    async def score_batch(self, req: BatchScoreRequest) -> BatchScoreResponse:
        async def one(item: ScoreRequest) -> BatchItem:
            rid = item.request_id or uuid.uuid4().hex
            try:
                r = await self.score(item.model_copy(update={"request_id": rid}))
                return BatchItem(request_id=rid, result=r.result)
            except ServiceError as e:
                return BatchItem(request_id=rid, error=ErrorInfo(code=e.code, message=e.message, request_id=rid))

        return BatchScoreResponse(items=list(await asyncio.gather(*(one(i) for i in req.items))))

    async def compare(self, req: CompareRequest, upload_a: bytes | None = None, upload_b: bytes | None = None):
        rid = req.request_id or uuid.uuid4().hex

        async def work():
            t0 = time.perf_counter()
            src_a = self.resolve_video(req.video_a_b64, req.video_a_path, upload_a, "video_a")
            src_b = self.resolve_video(req.video_b_b64, req.video_b_path, upload_b, "video_b")
            a, b = await asyncio.gather(*(self._prepare(req.prompt, s, req.rubric, req.sampling, req.adapter,
                                                        _aggregation(req))
                                          for s in (src_a, src_b)))
            ra, rb = await asyncio.gather(self._score_item(a), self._score_item(b))
            result = compare_results(ra, rb, a.rubric)
            return CompareResponse(request_id=rid, result=result.to_dict(), timings={"total_s": time.perf_counter() - t0})

        return await self._once(rid, work)



def _aggregation(req: ScoreRequest | CompareRequest) -> dict:
    """The request's image-reward aggregation, as ``ScoreInput`` fields."""
    return {"aggregate": req.aggregate, "attenuation_lambda": req.attenuation_lambda}
