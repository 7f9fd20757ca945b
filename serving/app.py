"""Ray Serve application: an ingress (HTTP + gRPC) and an autoscaled, batching critic.

    serve run serving/config/serve.yaml        # or: lift-critic serve [--config FILE]

The critic deployment owns the model and batches requests from all callers with
``@serve.batch``; batch size and wait are hot settings (``user_config``). The ingress
validates, decodes off the event loop and maps every failure to one typed error.
"""


import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from critic.backends.engine import AsyncCritic
from critic.errors import CriticError
from critic.rubrics import RUBRICS
from serving import critic_pb2 as pb
from serving.engine import Engine
from serving.errors import ServiceError
from serving.grpc_convert import batch_reply, compare_request, compare_reply, score_reply, score_request
from serving.http import ERROR_RESPONSES, error_response, parse
from serving.metrics import Metrics
from serving.protocol import (
    BatchScoreRequest,
    BatchScoreResponse,
    CompareRequest,
    CompareResponse,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
)
from serving.settings import AppSettings, BatchSettings, CriticSettings, IngressSettings

log = logging.getLogger("ray.serve")


@serve.deployment(
    name="Critic",
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=32,
    max_queued_requests=128,
    health_check_period_s=5,
)
class CriticDeployment:
    """Owns the model (and the accelerator). Loads in the constructor, so Serve routes
    requests (and counts an autoscaled replica as up) only once the weights are in."""

    def __init__(self, settings: dict):
        s = self.settings = CriticSettings(**settings)
        time.sleep(s.load_delay_s)
        if s.torch_threads:
            import torch

            torch.set_num_threads(s.torch_threads)
        from critic.loading import load_critic

        # a failure fails the replica, loudly, in Serve's status
        self.critic = load_critic(s.model, backend=s.backend, options=s.options, defaults=s.shorthands())
        if s.adapters and not hasattr(self.critic, "load_adapter"):
            raise ValueError(f"the {self.critic.kind} critic takes no adapters")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="critic")  # model work, one at a time
        log.info("critic loaded: %s (%s)", self.critic.name, self.critic.version)

    def reconfigure(self, user_config: dict):
        b = BatchSettings(**(user_config or {}))
        self._batched.set_max_batch_size(b.max_batch_size)
        self._batched.set_batch_wait_timeout_s(b.batch_wait_timeout_s)

    async def ready(self) -> dict:
        return {"ready": True}

    def check_health(self):
        """Serve's periodic probe: a critic that can tell it is broken (an engine backend whose
        engine died) fails it, and Serve replaces the replica."""
        probe = getattr(self.critic, "check_health", None)
        if probe is not None:
            probe()

    async def info(self) -> dict:
        c = self.critic
        return ModelInfo(
            name=c.name, version=c.version, kind=c.kind, default_rubric=c.default_rubric,
            default_sampling=c.default_sampling.describe(),
            rubrics=sorted(n for n, r in RUBRICS.items() if r.critic == c.kind),
            adapters=sorted(self.settings.adapters),
        ).model_dump()

    @serve.multiplexed(max_num_models_per_replica=8)
    async def _load_adapter(self, name: str) -> str:
        """Load a critic adapter into this replica; Serve routes later requests for it here.
        Adapters are small and stay in the model once loaded (Serve's LRU only forgets the name)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self.critic.load_adapter, name, self.settings.adapters[name])
        return name

    async def score(self, item):
        """One video; joins a batch. Returns the result, or {"error": ...} for a typed failure."""
        if item.adapter is not None:
            if item.adapter not in self.settings.adapters:
                msg = f"adapter {item.adapter!r} is not served; available: {sorted(self.settings.adapters)}"
                return {"error": {"code": "unknown_adapter", "message": msg}}
            try:
                await self._load_adapter(item.adapter)
            except CriticError as e:
                return {"error": e.to_dict()}
        try:
            self.critic.validate(item)
            if isinstance(self.critic, AsyncCritic):  # an engine batches on its own
                return (await self.critic.ascore([item]))[0]
        except CriticError as e:
            return {"error": e.to_dict()}
        return await self._batched(item)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _batched(self, items: list):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self.critic.score, items)
        except CriticError as e:
            return [{"error": e.to_dict()}] * len(items)


class HandleBackend:
    """``CriticBackend`` over a Ray Serve handle: Ray failures become typed, retryable errors."""

    def __init__(self, handle: DeploymentHandle, retry_after_s: float):
        self.handle, self.retry_after_s = handle, retry_after_s

    async def _call(self, handle, method: str, *args):
        try:
            out = await getattr(handle, method).remote(*args)
        except BackPressureError:
            raise ServiceError("overloaded", "the critic is at capacity; retry later", retry_after=self.retry_after_s) from None
        except (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError) as e:
            raise ServiceError("replica_unavailable", f"critic replica unavailable ({type(e).__name__}); retry",
                               retry_after=self.retry_after_s) from None
        if isinstance(out, dict) and "error" in out:
            raise ServiceError.from_dict(out["error"])
        return out

    async def score(self, item):
        handle = self.handle.options(multiplexed_model_id=item.adapter) if item.adapter else self.handle
        return await self._call(handle, "score", item)

    async def info(self):
        return await self._call(self.handle, "info")

    async def ready(self):
        return await self._call(self.handle, "ready")


http = FastAPI(
    title="LiFT critic",
    version="0.1.0",
    description="Scores text-to-video generations (semantic consistency, fidelity, motion) with rationales.",
)


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256)
@serve.ingress(http)
class Ingress:
    def __init__(self, critic: DeploymentHandle, settings: dict):
        self.settings = IngressSettings(**settings)
        self.metrics = Metrics()
        self.engine = Engine(HandleBackend(critic, self.settings.retry_after_s), self.settings, self.metrics)
        log.info("ingress up (%s)", f"{len(self.settings.api_keys)} API key(s)" if self.settings.api_keys else "no auth")

    async def _handle(self, route: str, transport: str, auth, work):
        """Auth, metrics and error mapping shared by every route of both transports."""
        t0 = time.perf_counter()
        self.metrics.inflight.inc()
        status = 200
        try:
            self.engine.authorize(auth)
            return await work()
        except ServiceError as e:
            status = e.status
            raise
        except Exception:
            status = 500
            log.exception("internal error on %s", route)
            raise ServiceError("internal", "internal error; see the service log") from None
        finally:
            self.metrics.inflight.dec()
            self.metrics.requests.labels(route, transport, str(status)).inc()
            self.metrics.latency.labels(route, transport).observe(time.perf_counter() - t0)

    async def _http(self, route: str, request: Request, work):
        try:
            return await self._handle(route, "http", request.headers.get("authorization"), work)
        except ServiceError as e:
            return error_response(e, request.headers.get("x-request-id"))

    # ---- HTTP --------------------------------------------------------------------------

    @http.post("/score", response_model=ScoreResponse, responses=ERROR_RESPONSES,
               openapi_extra={"requestBody": {"content": {"application/json": {"schema": ScoreRequest.model_json_schema()}}}})
    async def score(self, request: Request):
        """Score one video: JSON (video_b64 or video_path) or multipart (file field 'video')."""
        async def work():
            req, files = await parse(request, ScoreRequest, self.settings.max_request_bytes, files=("video",))
            return await self.engine.score(req, files.get("video"))

        return await self._http("/score", request, work)

    @http.post("/score/batch", response_model=BatchScoreResponse, responses=ERROR_RESPONSES,
               openapi_extra={"requestBody": {"content": {"application/json": {"schema": BatchScoreRequest.model_json_schema()}}}})
    async def score_batch(self, request: Request):
        """Score many videos; each item gets its result or its own error."""
        async def work():
            req, _ = await parse(request, BatchScoreRequest, self.settings.max_request_bytes)
            return await self.engine.score_batch(req)

        return await self._http("/score/batch", request, work)

    @http.post("/compare", response_model=CompareResponse, responses=ERROR_RESPONSES,
               openapi_extra={"requestBody": {"content": {"application/json": {"schema": CompareRequest.model_json_schema()}}}})
    async def compare(self, request: Request):
        """P(A better than B) per dimension and overall, with ties (multipart: 'video_a', 'video_b')."""
        async def work():
            req, files = await parse(request, CompareRequest, self.settings.max_request_bytes, files=("video_a", "video_b"))
            return await self.engine.compare(req, files.get("video_a"), files.get("video_b"))

        return await self._http("/compare", request, work)

    @http.get("/healthz")
    async def healthz(self):
        """Live: the ingress answers."""
        return {"status": "ok"}

    @http.get("/readyz")
    async def readyz(self):
        """Ready only once a critic replica has its weights loaded (and answers)."""
        try:
            await asyncio.wait_for(self.engine.ready(), 2.0)
            return {"status": "ready"}
        except (ServiceError, asyncio.TimeoutError):
            return error_response(ServiceError("not_ready", "no critic replica with loaded weights yet", retry_after=1))

    @http.get("/metrics")
    async def metrics_endpoint(self, request: Request):
        async def work():
            return Response(self.metrics.render(), media_type=self.metrics.content_type)

        return await self._http("/metrics", request, work)

    @http.get("/models", response_model=list[ModelInfo])
    async def models(self, request: Request):
        async def work():
            return [await self.engine.info()]

        return await self._http("/models", request, work)

    # ---- gRPC (method names are the RPCs of serving/critic.proto) ------------------------

    async def _grpc(self, route: str, ctx, work, empty):
        auth = dict(ctx.invocation_metadata()).get("authorization") if ctx is not None else None
        try:
            return await self._handle(route, "grpc", auth, work)
        except ServiceError as e:
            ctx.set_code(e.grpc_status)
            ctx.set_details(e.body().model_dump_json(exclude_none=True))
            return empty

    async def Score(self, request: pb.ScoreRequest, grpc_context=None) -> pb.ScoreReply:
        async def work():
            return score_reply(await self.engine.score(score_request(request), request.video or None))

        return await self._grpc("Score", grpc_context, work, pb.ScoreReply())

    async def ScoreBatch(self, request: pb.ScoreBatchRequest, grpc_context=None) -> pb.ScoreBatchReply:
        async def work():
            reqs = [score_request(i, with_b64=True) for i in request.items]
            return batch_reply(await self.engine.score_batch(BatchScoreRequest(items=reqs)))

        return await self._grpc("ScoreBatch", grpc_context, work, pb.ScoreBatchReply())

    async def Compare(self, request: pb.CompareRequest, grpc_context=None) -> pb.CompareReply:
        async def work():
            r = await self.engine.compare(compare_request(request), request.video_a or None, request.video_b or None)
            return compare_reply(r)

        return await self._grpc("Compare", grpc_context, work, pb.CompareReply())


def build_app(args: dict | None = None) -> serve.Application:
    """Application builder for ``serve run`` / the Serve YAML's ``import_path``."""
    settings = AppSettings(**(args or {}))
    critic_settings = settings.critic
    if critic_settings.model and os.path.exists(critic_settings.model):
        critic_settings = critic_settings.model_copy(update={"model": os.path.abspath(critic_settings.model)})
    allowed = [os.path.abspath(d) for d in settings.ingress.allowed_dirs]
    critic = CriticDeployment.options(user_config=BatchSettings().model_dump()).bind(critic_settings.model_dump())
    return Ingress.bind(critic, settings.ingress.model_copy(update={"allowed_dirs": allowed}).model_dump())
