"""Ray Serve application: an ingress (HTTP + gRPC) and an autoscaled, batching critic.

    serve run serving/config/serve.yaml        # or: lift-critic serve [--config FILE]
    serve run serving.app:app                  # the same application, built from that YAML

The critic deployment owns the model and batches requests from all callers with
``@serve.batch``; batch size and wait are hot settings (``user_config``), and the size also
bounds the model's own batches. Deployment options (replicas, resources, queues) come only
from the Serve YAML: the decorators name the deployments and nothing else. The ingress
validates, decodes off the event loop and maps every failure to one typed error.
"""


import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from contract import critic_pb2 as pb
from contract.errors import CriticError, ServiceError
from contract.protocol import (
    BatchScoreRequest,
    BatchScoreResponse,
    CompareRequest,
    CompareResponse,
    ErrorBody,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
    Status,
)
from critic.backends.engine import AsyncCritic
from serving.auth import resolve_digests
from serving.engine import Engine
from serving.grpc_convert import (batch_reply, batch_request, compare_reply, compare_request, parse_message,
                                  score_reply, score_request)
from serving.http import BodyLimits, error_response, parse
from serving.idempotency import ResultStore, StoreUnavailable
from serving.launch import DEFAULT_CONFIG, app_config, load_config
from serving.metrics import Metrics
from serving.openapi import ERROR_RESPONSES, METRICS_RESPONSE, PUBLIC, body_doc, document
from serving.settings import AppSettings, BatchSettings, CriticSettings, IngressSettings

log = logging.getLogger("ray.serve")
CANCELLED = 499  # status label of requests whose caller went away (nginx's "client closed request")


@serve.deployment(name="Critic")
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
        if hasattr(self.critic, "max_batch_size"):  # a critic that splits batches runs them whole
            self.critic.max_batch_size = b.max_batch_size

    async def ready(self) -> dict:
        return {"ready": True}

    def check_health(self):
        """Serve's periodic probe: a critic that can tell it is broken (an engine backend whose
        engine died) fails it, and Serve replaces the replica."""
        probe = getattr(self.critic, "check_health", None)
        if probe is not None:
            probe()

    async def info(self) -> ModelInfo:
        """The critic's card, with the adapters this deployment serves (loaded on first use)."""
        return self.critic.info().model_copy(update={"adapters": sorted(self.settings.adapters)})

    @serve.multiplexed(max_num_models_per_replica=8)
    async def _load_adapter(self, name: str) -> str:
        """Load a critic adapter into this replica; Serve routes later requests for it here.
        Adapters are small and stay in the model once loaded (Serve's LRU only forgets the name)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self.critic.load_adapter, name, self.settings.adapters[name])
        return name

    async def score(self, item):
        """One video whose request the ingress checked (``ModelInfo.check``); the model's own checks
        run here, before it joins a batch, so a bad item fails alone. Failures are raised, typed."""
        if item.adapter is not None:
            await self._load_adapter(item.adapter)
        self.critic.check_input(item)
        if isinstance(self.critic, AsyncCritic):  # an engine batches on its own
            return (await self.critic.ascore_checked([item]))[0]
        return await self._batched(item)

    @serve.batch  # size and wait: user_config, applied in reconfigure before the first request
    async def _batched(self, items: list):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.critic.score_checked, items)


class HandleBackend:
    """``CriticBackend`` over a Ray Serve handle: the critic's typed errors come out as raised there
    (Ray wraps them in ``RayTaskError``); Ray's own failures become typed, retryable errors."""

    def __init__(self, handle: DeploymentHandle, retry_after_s: float):
        self.handle, self.retry_after_s = handle, retry_after_s

    async def _call(self, handle, method: str, *args):
        try:
            return await getattr(handle, method).remote(*args)
        except RayTaskError as e:
            if isinstance(e.cause, CriticError):
                raise e.cause from None
            raise
        except BackPressureError:
            raise ServiceError("overloaded", "the critic is at capacity; retry later", retry_after=self.retry_after_s) from None
        except (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError) as e:
            raise ServiceError("replica_unavailable", f"critic replica unavailable ({type(e).__name__}); retry",
                               retry_after=self.retry_after_s) from None

    async def score(self, item):
        handle = self.handle.options(multiplexed_model_id=item.adapter) if item.adapter else self.handle
        return await self._call(handle, "score", item)

    async def info(self):
        return await self._call(self.handle, "info")

    async def ready(self):
        return await self._call(self.handle, "ready")


ResultCache = serve.deployment(name="ResultCache")(ResultStore)  # options: the Serve YAML


class HandleStore:
    """The shared ``ResultCache`` (one replica) behind the engine's store interface; a Ray
    failure reaching it is ``StoreUnavailable`` (the engine then scores without it)."""

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def _call(self, method: str, *args):
        try:
            return await getattr(self.handle, method).remote(*args)
        except (RayActorError, ActorDiedError, ActorUnavailableError, DeploymentUnavailableError,
                BackPressureError) as e:
            raise StoreUnavailable(type(e).__name__) from None

    async def claim(self, key: str, digest: str):
        return tuple(await self._call("claim", key, digest))

    async def put(self, key: str, digest: str, value: bytes) -> None:
        await self._call("put", key, digest, value)

    async def release(self, key: str, digest: str) -> None:
        await self._call("release", key, digest)


http = FastAPI(
    title="LiFT critic",
    version="0.1.0",
    description="Scores text-to-video generations (semantic consistency, fidelity, motion) with rationales.",
    docs_url=None, redoc_url=None,  # served from local assets by serving.openapi.document
)
document(http)


@serve.deployment(name="Ingress")
@serve.ingress(http)
class Ingress:
    def __init__(self, critic: DeploymentHandle, settings: dict, results: DeploymentHandle | None = None):
        s = self.settings = IngressSettings(**settings)
        self.metrics = Metrics(cluster=True)
        self.engine = Engine(HandleBackend(critic, s.retry_after_s), s, self.metrics,
                             store=HandleStore(results) if results is not None else None)
        self.body_limits = BodyLimits(s.max_request_bytes, s.body_timeout_s, s.body_min_bytes_per_s)
        n = len(s.api_key_digests)
        log.info("ingress up (%s)", f"{n} API key(s)" if n else "no auth")

    async def _handle(self, route: str, transport: str, auth, work):
        """Auth, metrics and error mapping shared by every route of both transports."""
        t0 = time.perf_counter()
        self.metrics.inflight.inc()
        status = 200
        try:
            caller = self.engine.authorize(auth)
            return await work(caller)
        except CriticError as e:
            status = e.status
            raise
        except asyncio.CancelledError:  # the caller went away (or gave up): one line, no traceback
            status = CANCELLED
            log.info("%s %s cancelled: the client disconnected or its deadline passed", transport, route)
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
        except CriticError as e:
            return error_response(e, request.headers.get("x-request-id"))

    # ---- HTTP --------------------------------------------------------------------------

    @http.post("/score", response_model=ScoreResponse, responses=ERROR_RESPONSES,
               openapi_extra=body_doc(ScoreRequest, files=("video",)))
    async def score(self, request: Request):
        """Score one video: JSON (video_b64 or video_path) or multipart (file field 'video')."""
        async def work(caller):
            req, files = await parse(request, ScoreRequest, self.body_limits, files=("video",))
            return await self.engine.score(req, files.get("video"), caller)

        return await self._http("/score", request, work)

    @http.post("/score/batch", response_model=BatchScoreResponse, responses=ERROR_RESPONSES,
               openapi_extra=body_doc(BatchScoreRequest))
    async def score_batch(self, request: Request):
        """Score many videos; each item gets its result or its own error."""
        async def work(caller):
            req, _ = await parse(request, BatchScoreRequest, self.body_limits)
            return await self.engine.score_batch(req, caller)

        return await self._http("/score/batch", request, work)

    @http.post("/compare", response_model=CompareResponse, responses=ERROR_RESPONSES,
               openapi_extra=body_doc(CompareRequest, files=("video_a", "video_b")))
    async def compare(self, request: Request):
        """P(A better than B) per dimension and overall, with ties (multipart: 'video_a', 'video_b')."""
        async def work(caller):
            req, files = await parse(request, CompareRequest, self.body_limits, files=("video_a", "video_b"))
            return await self.engine.compare(req, files.get("video_a"), files.get("video_b"), caller)

        return await self._http("/compare", request, work)

    @http.get("/healthz", response_model=Status, openapi_extra=PUBLIC)
    async def healthz(self):
        """Live: the ingress answers."""
        return Status(status="ok")

    @http.get("/readyz", response_model=Status, responses={503: ERROR_RESPONSES[503]}, openapi_extra=PUBLIC)
    async def readyz(self):
        """Ready only once a critic replica has its weights loaded (and answers)."""
        try:
            await asyncio.wait_for(self.engine.ready(), 2.0)
            return Status(status="ready")
        except (CriticError, asyncio.TimeoutError):
            return error_response(ServiceError("not_ready", "no critic replica with loaded weights yet", retry_after=1))

    @http.get("/metrics", response_class=Response, responses={**METRICS_RESPONSE, 401: ERROR_RESPONSES[401]})
    async def metrics_endpoint(self, request: Request):
        """Prometheus metrics of this ingress replica (text exposition format)."""
        async def work(caller):
            return Response(self.metrics.render(), media_type=self.metrics.content_type)

        return await self._http("/metrics", request, work)

    @http.get("/models", response_model=list[ModelInfo], responses={s: ERROR_RESPONSES[s] for s in (401, 500, 503)})
    async def models(self, request: Request):
        """The critic behind the service: name, version, rubrics, default sampling, adapters."""
        async def work(caller):
            return [await self.engine.info()]

        return await self._http("/models", request, work)

    # ---- gRPC (method names are the RPCs of contract/critic.proto) ------------------------

    async def _grpc(self, route: str, ctx, work, empty):
        auth = dict(ctx.invocation_metadata()).get("authorization") if ctx is not None else None
        try:
            return await self._handle(route, "grpc", auth, work)
        except CriticError as e:
            ctx.set_code(grpc.StatusCode[e.grpc_status])
            ctx.set_details(ErrorBody.of(e).model_dump_json(exclude_none=True))
            return empty

    def _grpc_message(self, message, request):
        """The RPC's message, after the HTTP body limit (Ray's proxy accepts up to 2 GiB), checked on the
        bytes before they are parsed (``parse_message``: bytes that do not parse are ``invalid_request``)."""
        size = request.ByteSize() if hasattr(request, "ByteSize") else len(request)
        limit = self.settings.max_request_bytes
        if size > limit:
            raise ServiceError("payload_too_large", f"request message is {size} bytes; the limit is {limit}")
        return parse_message(message, request)

    async def Score(self, request: pb.ScoreRequest | bytes, grpc_context=None) -> pb.ScoreReply:
        async def work(caller):
            r = self._grpc_message(pb.ScoreRequest, request)
            return score_reply(await self.engine.score(score_request(r), r.video or None, caller))

        return await self._grpc("Score", grpc_context, work, pb.ScoreReply())

    async def ScoreBatch(self, request: pb.ScoreBatchRequest | bytes, grpc_context=None) -> pb.ScoreBatchReply:
        async def work(caller):
            r = batch_request(self._grpc_message(pb.ScoreBatchRequest, request))
            return batch_reply(await self.engine.score_batch(r, caller))

        return await self._grpc("ScoreBatch", grpc_context, work, pb.ScoreBatchReply())

    async def Compare(self, request: pb.CompareRequest | bytes, grpc_context=None) -> pb.CompareReply:
        async def work(caller):
            m = self._grpc_message(pb.CompareRequest, request)
            r = await self.engine.compare(compare_request(m), m.video_a or None, m.video_b or None, caller)
            return compare_reply(r)

        return await self._grpc("Compare", grpc_context, work, pb.CompareReply())


def compose(settings: AppSettings, deployments: dict[str, dict] | None = None) -> serve.Application:
    """The application: ``settings`` are the Serve YAML's ``args``; ``deployments`` its per-deployment
    options ({name: options}), applied here when deploying through the Python API.

    API keys named in this process's environment (``serve run``, a RayService pod with the
    Secret file) join the digests in ``args`` (what ``lift-critic serve`` resolved); a named
    source that cannot be read fails the deployment instead of serving without auth."""
    opts = {name: dict(o) for name, o in (deployments or {}).items()}
    critic_opts = opts.get("Critic", {})
    critic_opts["user_config"] = BatchSettings(**critic_opts.get("user_config", {})).model_dump()
    critic_settings = settings.critic
    if os.path.exists(critic_settings.model):
        critic_settings = critic_settings.model_copy(update={"model": os.path.abspath(critic_settings.model)})
    ing = settings.ingress
    digests = sorted(set(ing.api_key_digests) | set(resolve_digests()))
    ingress = ing.model_copy(update={"allowed_dirs": [os.path.abspath(d) for d in ing.allowed_dirs],
                                     "api_key_digests": digests})
    critic = CriticDeployment.options(**critic_opts).bind(critic_settings.model_dump())
    results = ResultCache.options(**opts.get("ResultCache", {})).bind(ing.idempotency_cache_bytes,
                                                                      lease_s=ing.request_timeout_s + 30)
    return Ingress.options(**opts.get("Ingress", {})).bind(critic, ingress.model_dump(), results)


def build_app(args: dict | None = None) -> serve.Application:
    """Application builder for ``serve run`` / the Serve YAML's ``import_path`` (Serve applies the
    YAML's deployment options itself)."""
    return compose(AppSettings(**(args or {})))


def from_config(config: dict) -> serve.Application:
    """The application a Serve config (the YAML as a dict) describes, deployment options included."""
    app_cfg = app_config(config)
    deployments = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app_cfg.get("deployments", [])}
    return compose(AppSettings(**app_cfg.get("args", {})), deployments)


# `serve run serving.app:app` / `serve build serving.app:app`: the repo's Serve YAML as an application
app = from_config(load_config(DEFAULT_CONFIG))
