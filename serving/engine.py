"""The logic shared by every transport: request in, result or typed ``CriticError`` out.

HTTP and gRPC both call ``Engine``; it depends on a ``CriticBackend`` (the Ray Serve
critic deployment in production, anything with the same three coroutines in tests).
Decoding runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from contract.errors import CriticError, ServiceError, UnknownRubricError
from contract.protocol import (
    BatchItem,
    BatchScoreRequest,
    BatchScoreResponse,
    CompareRequest,
    CompareResponse,
    CriticResult,
    ErrorInfo,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)
from critic.base import compare_results, prepare_input
from critic.rubrics import get_rubric
from critic.types import ScoreInput
from serving.auth import ANONYMOUS, Authorizer
from serving.idempotency import CONFLICT, HIT, ResultStore, StoreUnavailable, content_digest, video_digest
from serving.metrics import Metrics
from serving.settings import IngressSettings


_NOT_CONTENT = {"request_id", "video_b64", "video_path", "video_a_b64", "video_a_path", "video_b_b64", "video_b_path"}


class CriticBackend(Protocol):
    """Scores items that passed ``ModelInfo.check``; failures are raised as ``CriticError``."""

    async def score(self, item: ScoreInput) -> CriticResult: ...
    async def info(self) -> ModelInfo: ...
    async def ready(self) -> dict: ...


class AnswerStore(Protocol):
    """``serving.idempotency.ResultStore`` or a handle to the shared one (raises ``StoreUnavailable``)."""

    async def claim(self, key: str, digest: str) -> tuple[str, bytes | None]: ...
    async def put(self, key: str, digest: str, value: bytes) -> None: ...
    async def release(self, key: str, digest: str) -> None: ...


class Engine:
    def __init__(self, backend: CriticBackend, settings: IngressSettings, metrics: Metrics | None = None,
                 store: AnswerStore | None = None):
        self.backend = backend
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.auth = Authorizer(settings.api_key_digests)
        self.store = store or ResultStore(settings.idempotency_cache_bytes, lease_s=settings.request_timeout_s + 30)
        self.limits = settings.video_limits()
        # decodes run in their own bounded pool: a cancelled request's decode still holds its slot until it
        # ends, so no more than max_concurrent_decodes ever run at once, whatever the traffic
        self._decodes = ThreadPoolExecutor(settings.max_concurrent_decodes, thread_name_prefix="decode")
        self._allowed = [Path(d).resolve() for d in settings.allowed_dirs]
        self._info: ModelInfo | None = None

    # ---- protection ------------------------------------------------------------------

    def authorize(self, authorization: str | None) -> str:
        """The caller's identity (``anonymous`` without keys); 401 for a missing or wrong key."""
        caller = self.auth.caller(authorization)
        if caller is None:
            raise ServiceError("unauthorized", "missing or invalid API key (send 'Authorization: Bearer <key>')")
        return caller

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
            return self._allowed_path(path, what)
        if len(data) > self.settings.max_video_bytes:
            raise ServiceError("video_too_large", f"{what} is {len(data)} bytes; the limit is {self.settings.max_video_bytes}")
        return data

    def _allowed_path(self, path: str, what: str = "video") -> Path:
        """The resolved file, if it lies under an allowed directory (symlinks followed first)."""
        shown = repr(path[:200])
        if not self._under_allowed(Path(os.path.abspath(path))):  # before touching the file system
            raise ServiceError("path_not_allowed", f"{shown} is not under an allowed directory")
        try:
            p = Path(path).resolve()
            is_file = p.is_file()
        except (OSError, RuntimeError, ValueError) as e:  # symlink loop, name too long, NUL byte
            reason = getattr(e, "strerror", None) or str(e)[:100]
            raise ServiceError("invalid_path", f"{what}_path {shown} cannot be resolved: {reason}") from None
        if not self._under_allowed(p):  # a symlink out of the allowed directories
            raise ServiceError("path_not_allowed", f"{shown} is not under an allowed directory")
        if not is_file:
            raise ServiceError("invalid_video", f"{shown} is not a file")
        return p

    def _under_allowed(self, p: Path) -> bool:
        return any(p == d or d in p.parents for d in self._allowed)

    # ---- backend ---------------------------------------------------------------------

    async def info(self) -> ModelInfo:
        if self._info is None:
            self._info = await self.backend.info()
        return self._info

    async def ready(self) -> dict:
        return await self.backend.ready()

    async def _prepare(self, req: ScoreRequest | CompareRequest, source) -> ScoreInput:
        """The request checked against the critic's card (once, here, where it enters), then its video
        decoded and sampled off the event loop."""
        info = await self.info()
        if req.rubric and (os.sep in req.rubric or req.rubric.endswith((".yaml", ".yml"))):
            raise UnknownRubricError("the service takes registered rubric names, not file paths")
        rubric = get_rubric(req.rubric or info.default_rubric)
        info.check(rubric.name, rubric.critic, req.adapter, req.aggregate)
        spec = req.sampling or rubric.frame_sampling(info.default_sampling)
        work = functools.partial(prepare_input, source, req.prompt, rubric, spec, self.limits, req.adapter,
                                 info.input_side, aggregate=req.aggregate, attenuation_lambda=req.attenuation_lambda)
        return await asyncio.get_running_loop().run_in_executor(self._decodes, work)

    async def _score_item(self, item: ScoreInput) -> CriticResult:
        try:
            result = await asyncio.wait_for(self.backend.score(item), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise ServiceError("timeout", f"scoring took longer than {self.settings.request_timeout_s}s") from None
        self.metrics.observe_result(result.timings)
        return result

    async def _once(self, caller: str, req: BaseModel, sources: list, model: type[BaseModel],
                    work: Callable[[], Awaitable[BaseModel]]):
        """Run ``work`` once per (caller, request id, content): a retry gets the first answer,
        never a second scoring; the same id with other content is a 409. Called only once the
        request is authorized and its videos resolved, so a refused request never reaches the store."""
        if req.request_id is None:  # no id sent, none to retry with: nothing to remember
            return await work()
        digest = await self._digest(req, sources)
        key = f"{caller}/{req.request_id}"
        try:
            state, value = await self.store.claim(key, digest)
        except StoreUnavailable:  # the shared cache is gone: answer without it (recompute, never invent)
            return await work()
        if state == CONFLICT:
            raise ServiceError("request_id_conflict", f"request id {req.request_id!r} was already used for a "
                               "different request; use a new id for new content")
        if state == HIT:
            self.metrics.idempotent_hits.inc()
            return model.model_validate_json(value)
        try:
            result = await work()
        except BaseException:
            await self._settle(self.store.release(key, digest))
            raise
        await self._settle(self.store.put(key, digest, result.model_dump_json().encode()))
        return result

    @staticmethod
    async def _settle(call: Awaitable) -> None:
        try:
            await call
        except StoreUnavailable:
            pass

    @staticmethod
    async def _digest(req: BaseModel, sources: list) -> str:
        """The request's content: its fields but the id, and its videos (hashed off the event loop)."""
        try:
            videos = await asyncio.to_thread(lambda: [video_digest(s) for s in sources])
        except OSError as e:
            raise ServiceError("invalid_video", f"a video cannot be read: {e.strerror}") from None
        return content_digest(type(req).__name__, req.model_dump(exclude=_NOT_CONTENT), videos)

    # ---- endpoints -------------------------------------------------------------------

    async def score(self, req: ScoreRequest, upload: bytes | None = None, caller: str = ANONYMOUS,
                    fallback_id: str | None = None) -> ScoreResponse:
        """``fallback_id``: the response's id when the request has none (batch items)."""
        rid = req.request_id or fallback_id or uuid.uuid4().hex
        t0 = time.perf_counter()
        source = self.resolve_video(req.video_b64, req.video_path, upload)

        async def work():
            result = await self._score_item(await self._prepare(req, source))
            timings = {**result.timings, "total_s": time.perf_counter() - t0}
            return ScoreResponse(request_id=rid, result=result, timings=timings)

        return await self._once(caller, req, [source], ScoreResponse, work)

    async def score_batch(self, req: BatchScoreRequest, caller: str = ANONYMOUS) -> BatchScoreResponse:
        async def one(item: ScoreRequest) -> BatchItem:
            rid = item.request_id or uuid.uuid4().hex
            try:
                r = await self.score(item, caller=caller, fallback_id=rid)
                return BatchItem(request_id=rid, result=r.result)
            except CriticError as e:
                return BatchItem(request_id=rid, error=ErrorInfo(**e.to_dict(), request_id=rid))

        return BatchScoreResponse(items=list(await asyncio.gather(*(one(i) for i in req.items))))

    async def compare(self, req: CompareRequest, upload_a: bytes | None = None, upload_b: bytes | None = None,
                      caller: str = ANONYMOUS) -> CompareResponse:
        rid = req.request_id or uuid.uuid4().hex
        t0 = time.perf_counter()
        src_a = self.resolve_video(req.video_a_b64, req.video_a_path, upload_a, "video_a")
        src_b = self.resolve_video(req.video_b_b64, req.video_b_path, upload_b, "video_b")

        async def work():
            a, b = await asyncio.gather(*(self._prepare(req, s) for s in (src_a, src_b)))
            ra, rb = await asyncio.gather(self._score_item(a), self._score_item(b))
            result = compare_results(ra, rb, a.rubric)
            return CompareResponse(request_id=rid, result=result, timings={"total_s": time.perf_counter() - t0})

        return await self._once(caller, req, [src_a, src_b], CompareResponse, work)

