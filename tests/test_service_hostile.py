"""Hostile traffic against the real Ray Serve app on loopback: two ingress replicas sharing
one result cache, auth on, small limits. Each input class gets its typed status and the
service stays ready; a request id is bound to its caller and its content."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time

import grpc
import httpx
import pytest

from clients import CriticClient, CriticRequestError, CriticUnavailableError, RetryPolicy
from clients.grpc import GrpcCriticClient
from contract import critic_pb2 as pb
from contract import critic_pb2_grpc
from conftest import start_service  # one start-up helper for every service test
from test_service import PROMPT

pytestmark = pytest.mark.timeout(900)
K1, K2 = "hostile-key-one", "hostile-key-two"
H1, H2 = {"authorization": f"Bearer {K1}"}, {"authorization": f"Bearer {K2}"}
SLOTS = 32  # max_ongoing_requests of each ingress replica: fewer than the slow sockets below


@pytest.fixture(scope="module")
def svc(clips, tmp_path_factory):
    from PIL import Image

    from serving import launch

    odd = tmp_path_factory.mktemp("odd")
    (odd / "loop1").symlink_to(odd / "loop2")
    (odd / "loop2").symlink_to(odd / "loop1")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(odd / "still.png")
    (odd / "still.png").rename(odd / "still.mp4")
    svc = start_service(model="model-free", allowed_dirs=[str(clips["clean"].parent), str(odd)],
                        api_keys=[K1, K2], ingress={"max_request_bytes": 1_000_000, "max_video_bytes": 500_000},
                        deployments={"Ingress": {"num_replicas": 2, "max_ongoing_requests": SLOTS}})
    assert K1 not in json.dumps(svc.cfg) and svc.cfg["applications"][0]["args"]["ingress"]["api_key_digests"]
    svc.odd = odd
    yield svc
    launch.shutdown()


def _ready(svc) -> None:
    assert httpx.get(f"{svc.url}/readyz", timeout=30).status_code == 200


def _typed(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    return err


def test_two_ingress_replicas_run(svc):
    from ray import serve

    deps = serve.status().applications["lift-critic"].deployments
    assert deps["Ingress"].replica_states.get("RUNNING") == 2 and deps["ResultCache"].replica_states["RUNNING"] == 1


def test_same_id_other_content_is_a_conflict_on_every_replica(svc, clips):
    c = CriticClient(svc.url, api_key=K1)
    first = c.score(clips["clean"], prompt=PROMPT, request_id="bound-1")
    with httpx.Client(base_url=svc.url, headers=H1, timeout=60) as http:
        body = {"prompt": PROMPT, "video_b64": base64.b64encode(clips["flicker"].read_bytes()).decode(),
                "request_id": "bound-1"}
        for _ in range(8):  # requests spread over both ingress replicas: each one knows the id
            _typed(http.post("/score", json=body), 409, "request_id_conflict")
        other_prompt = {"prompt": "two cats", "video_path": str(clips["clean"]), "request_id": "bound-1"}
        _typed(http.post("/score", json=other_prompt), 409, "request_id_conflict")
    assert c.score(clips["clean"], prompt=PROMPT, request_id="bound-1") == first  # same content: the first answer
    with pytest.raises(CriticRequestError) as e:
        GrpcCriticClient(svc.grpc, api_key=K1).score(clips["jump"], prompt=PROMPT, request_id="bound-1")
    assert e.value.status == 409 and e.value.code == "request_id_conflict" and e.value.attempts == 1
    _ready(svc)


def test_an_id_never_crosses_callers(svc, clips):
    mine = CriticClient(svc.url, api_key=K1).score(clips["clean"], prompt=PROMPT, request_id="shared-id")
    theirs = CriticClient(svc.url, api_key=K2).score(clips["freeze"], prompt=PROMPT, request_id="shared-id")
    fresh = CriticClient(svc.url, api_key=K2).score(clips["freeze"], prompt=PROMPT)
    assert theirs["result"]["dimensions"] == fresh["result"]["dimensions"]
    assert theirs["result"]["dimensions"] != mine["result"]["dimensions"]
    assert theirs["timings"] != mine["timings"]


def test_refused_requests_never_reach_the_cache(svc, clips):
    c = CriticClient(svc.url, api_key=K1)
    c.score(clips["clean"], prompt=PROMPT, request_id="guarded")
    with httpx.Client(base_url=svc.url, timeout=60) as http:
        for headers in (H1, H2):
            _typed(http.post("/score", headers=headers, json={"prompt": PROMPT, "video_path": "/etc/passwd",
                                                              "request_id": "guarded"}), 403, "path_not_allowed")
            _typed(http.post("/score", headers=headers, json={"prompt": PROMPT, "request_id": "guarded"}),
                   422, "invalid_request")
        _typed(http.post("/score", json={"prompt": PROMPT, "video_path": str(clips["clean"]), "request_id": "guarded"}),
               401, "unauthorized")
        _typed(http.post("/score", headers={"authorization": f"Bearer {K1}x"},
                         json={"prompt": PROMPT, "video_path": str(clips["clean"]), "request_id": "guarded"}),
               401, "unauthorized")


def test_concurrent_duplicates_are_scored_once(svc, clips):
    body = {"prompt": PROMPT, "video_path": str(clips["jump"]), "request_id": "dup-storm"}

    async def storm():
        async with httpx.AsyncClient(base_url=svc.url, headers=H1, timeout=120) as http:
            return await asyncio.gather(*(http.post("/score", json=body) for _ in range(16)))

    responses = asyncio.run(storm())
    assert {r.status_code for r in responses} == {200}
    # one scoring: every copy carries the first answer's own timings, whichever replica took it
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1


def _odd_bodies(svc, clips) -> list:
    clean = clips["clean"].read_bytes()
    many = [("video", (f"v{i}.mp4", b"x", "video/mp4")) for i in range(5000)]
    return [
        ("5000 files", {"files": many, "data": {"prompt": PROMPT}}, 422, "invalid_request"),
        ("no boundary", {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
         422, "invalid_request"),
        ("unknown codec", {"files": {"video": ("c.mp4", clean.replace(b"avc1", b"zzzz"), "video/mp4")},
                           "data": {"prompt": PROMPT}}, 422, "invalid_video"),
        ("bad sampling JSON", {"files": {"video": ("c.mp4", clean, "video/mp4")},
                               "data": {"prompt": PROMPT, "sampling": "{not json"}}, 422, "invalid_request"),
        ("symlink loop", {"json": {"prompt": PROMPT, "video_path": str(svc.odd / "loop1")}}, 422, "invalid_path"),
        ("NUL byte", {"json": {"prompt": PROMPT, "video_path": str(svc.odd / "a\0b.mp4")}}, 422, "invalid_path"),
        ("long name", {"json": {"prompt": PROMPT, "video_path": str(svc.odd / ("n" * 300))}}, 422, "invalid_path"),
        ("chunked 1.5 MB", {"content": iter([b"{" + b" " * 65536] * 24), "headers": {"content-type": "application/json"}},
         413, "payload_too_large"),
        ("not a body", {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 422, "invalid_request"),
    ]


def test_odd_inputs_get_typed_4xx_and_the_service_stays_ready(svc, clips):
    with httpx.Client(base_url=svc.url, headers=H1, timeout=120) as http:
        for name, kwargs, status, code in _odd_bodies(svc, clips):
            r = http.post("/score", **kwargs)
            assert r.status_code == status and r.json()["error"]["code"] == code, (name, r.status_code, r.text[:300])
    _ready(svc)
    assert CriticClient(svc.url, api_key=K1).score(clips["clean"], prompt=PROMPT)["result"]


def test_a_still_image_named_mp4_is_unsupported_media(svc):
    with httpx.Client(base_url=svc.url, headers=H1, timeout=60) as http:
        _typed(http.post("/score", json={"prompt": PROMPT, "video_path": str(svc.odd / "still.mp4")}),
               415, "unsupported_media")
    with pytest.raises(CriticRequestError) as e:
        GrpcCriticClient(svc.grpc, api_key=K1).score(video_path=str(svc.odd / "still.mp4"), prompt=PROMPT)
    # the same status as over HTTP: a typed error's status comes from contract.errors.ERRORS, not its gRPC code
    assert e.value.status == 415 and e.value.code == "unsupported_media" and e.value.attempts == 1
    _ready(svc)


@pytest.mark.parametrize("call, code", [
    (lambda g: g.score(b"x", prompt=""), "invalid_request"),
    (lambda g: g.score(b"x", prompt=PROMPT, sampling={"strategy": "segments", "segments": 999}), "invalid_request"),
    (lambda g: g.score(b"x", prompt=PROMPT, sampling={"strategy": "sideways"}), "invalid_request"),
    (lambda g: g.score_batch([]), "invalid_request"),
    (lambda g: g.compare(b"x", b"y", prompt=""), "invalid_request"),
])
def test_grpc_validation_is_invalid_argument_and_not_retried(svc, call, code):
    with GrpcCriticClient(svc.grpc, api_key=K1) as g, pytest.raises(CriticRequestError) as e:
        call(g)
    assert e.value.status == 422 and e.value.code == code and e.value.attempts == 1


@pytest.mark.parametrize("method", ["Score", "ScoreBatch", "Compare"])
@pytest.mark.parametrize("body", [b"\xff" * 40, b"\x0a\x04a \xff\xfe", b"\x0a\x20abc"],
                         ids=["garbage", "invalid UTF-8 prompt", "truncated"])
def test_grpc_bytes_that_do_not_parse_are_invalid_argument(svc, method, body):
    """Raw bytes, not a client's message: grpc used to parse them before the service saw the call and
    answer UNKNOWN; the registration passes them through and the ingress answers invalid_request."""
    md = [("application", "lift-critic"), ("authorization", f"Bearer {K1}")]
    with grpc.insecure_channel(svc.grpc) as channel:
        call = channel.unary_unary(f"/liftcritic.CriticService/{method}", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            call(body, metadata=md, timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.value.code(), e.value.details())
    assert json.loads(e.value.details())["error"]["code"] == "invalid_request"
    _ready(svc)


def test_grpc_message_over_the_limit_is_resource_exhausted(svc):
    md = [("application", "lift-critic"), ("authorization", f"Bearer {K1}")]
    with grpc.insecure_channel(svc.grpc, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = critic_pb2_grpc.CriticServiceStub(channel)
        # just over the ingress limit (1 MB): the ingress refuses it, typed
        items = [pb.ScoreRequest(prompt=PROMPT, video=b"\0" * 340_000)] * 3
        with pytest.raises(grpc.RpcError) as e:
            stub.ScoreBatch(pb.ScoreBatchRequest(items=items), metadata=md, timeout=60)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert json.loads(e.value.details())["error"]["code"] == "payload_too_large"
        # far over it: the proxy (RAY_SERVE_GRPC_MAX_MESSAGE_SIZE, set at launch) never takes it in
        with pytest.raises(grpc.RpcError) as e:
            stub.ScoreBatch(pb.ScoreBatchRequest(items=items * 4), metadata=md, timeout=60)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(CriticRequestError) as e:  # and the client does not retry it
        GrpcCriticClient(svc.grpc, api_key=K1).score_batch([{"prompt": PROMPT, "video": b"\0" * 340_000}] * 12)
    assert e.value.status == 413 and e.value.attempts == 1
    _ready(svc)


def test_clients_retry_an_untyped_404_but_not_a_typed_one(svc, clips):
    fast = RetryPolicy(max_attempts=3, backoff_s=0.01, max_backoff_s=0.02)
    with CriticClient(svc.url, api_key=K1, retry=fast) as c:
        with pytest.raises(CriticUnavailableError) as e:  # no such route: the proxy's / app's bare 404
            c._request("GET", "/no-such-route")
        assert e.value.status == 404 and e.value.code is None and e.value.attempts == 3
        with pytest.raises(CriticRequestError) as e:
            c.score(clips["clean"], prompt=PROMPT, adapter="nope")
        assert e.value.status == 404 and e.value.code == "unknown_adapter" and e.value.attempts == 1


def test_slow_uploads_do_not_stall_scoring_or_readiness(svc, clips):
    n_slow = 300  # more than both ingress replicas' slots (2 x SLOTS)
    host, port = svc.url.removeprefix("http://").split(":")
    head = (f"POST /score HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {K1}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode()

    async def trickle():
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head)
        try:
            for _ in range(60):  # 1 byte/s for up to a minute, until the service answers
                writer.write(b" ")
                await writer.drain()
                try:
                    got = await asyncio.wait_for(reader.read(4096), 1.0)
                    return got.split(b"\r\n", 1)[0]
                except asyncio.TimeoutError:
                    continue
            return b"no answer"
        except ConnectionError:
            return b"reset"
        finally:
            writer.close()

    async def run():
        slow = [asyncio.create_task(trickle()) for _ in range(n_slow)]
        await asyncio.sleep(1.0)  # all slow sockets open and trickling
        async with httpx.AsyncClient(base_url=svc.url, headers=H1, timeout=120) as http:
            t0 = time.monotonic()
            ready = await http.get("/readyz")
            t_ready = time.monotonic() - t0
            scored = await http.post("/score", json={"prompt": PROMPT, "video_path": str(clips["clean"])})
            t_score = time.monotonic() - t0
        return ready, t_ready, scored, t_score, await asyncio.gather(*slow)

    ready, t_ready, scored, t_score, answers = asyncio.run(run())
    print(f"with {n_slow} slow uploads: /readyz in {t_ready:.2f}s, /score in {t_score:.2f}s")
    assert ready.status_code == 200 and scored.status_code == 200
    assert t_ready < 30 and t_score < 45  # bounded: without the body deadline both wait behind the slots for good
    assert sum(a.startswith(b"HTTP/1.1 408") for a in answers) >= n_slow * 0.9, set(answers)
    _ready(svc)


def test_openapi_resolves_and_docs_render_offline(svc):
    doc = httpx.get(f"{svc.url}/openapi.json").json()
    text = json.dumps(doc)
    refs = {r.split("/")[-1] for r in re.findall(r'"\$ref": "([^"]+)"', text)}
    assert "$defs" not in text and refs <= set(doc["components"]["schemas"])
    for path in ("/score", "/score/batch", "/compare"):
        body = doc["paths"][path]["post"]["requestBody"]
        assert body["required"] is True and "application/json" in body["content"]
    assert "multipart/form-data" in doc["paths"]["/score"]["post"]["requestBody"]["content"]
    assert doc["components"]["schemas"]["ScoreRequestForm"]["properties"]["video"]["format"] == "binary"
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    result = doc["components"]["schemas"]["CriticResult"]
    assert {"reward", "soft_reward", "dimensions", "frame_indices"} <= set(result["properties"])
    assert doc["components"]["schemas"]["ScoreRequest"]["examples"]
    pytest.importorskip("fastapi_offline", reason="the docs assets come with the serving extra's fastapi-offline")
    for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"), ("/redoc", "/docs-assets/redoc.standalone.js")):
        html = httpx.get(f"{svc.url}{page}").text
        assert asset in html and "cdn" not in html.lower() and "https://" not in html
        js = httpx.get(f"{svc.url}{asset}")
        assert js.status_code == 200 and len(js.content) > 100_000


def test_property_based_run_over_the_openapi(svc, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{svc.url}/openapi.json", "--max-examples", "30",
           "--seed", "7", "--workers", "2", "--phases", "examples,coverage", "--no-shrink",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
           "-H", f"Authorization: Bearer {K1}", "--request-timeout", "60", "--max-time", "180"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its cache stays out of the repo
    (tmp_path / "schemathesis.log").write_text(out.stdout + out.stderr)
    print(out.stdout[-3000:])
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", out.stdout)
    assert counts and int(counts[1]) == int(counts[2]) >= 100, out.stdout[-2000:]
    _ready(svc)


def _high_water_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB: its resident memory now and its peak since it started."""
    fields = dict(ln.split(":", 1) for ln in open(f"/proc/{pid}/status").read().splitlines() if ":" in ln)
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))


def test_bomb_class_videos_keep_the_ingress_within_its_memory_bound(svc, tmp_path):
    """480 flat 720p frames in 18 KB: decoding every frame held 1.3 GB (plus a stacked copy) per request.
    Six at once, each sampled at 8 frames, must keep every ingress replica under the stated bound."""
    import av
    import numpy as np
    import ray

    from serving.settings import IngressSettings

    path = tmp_path / "bomb.mp4"
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt, s.options = 1280, 720, "yuv420p", {"preset": "ultrafast", "crf": "40", "g": "480"}
        frame = av.VideoFrame.from_ndarray(np.full((720, 1280, 3), 90, np.uint8), format="rgb24")
        for _ in range(480):
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    assert path.stat().st_size < 100_000
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#Ingress#" in a["name"]]
    pids = [ray.get(ray.get_actor(n, namespace="serve").__ray_call__.remote(lambda self: os.getpid())) for n in names]
    assert len(pids) == 2
    before = {pid: _high_water_mb(pid)[0] for pid in pids}
    data = base64.b64encode(path.read_bytes()).decode()

    async def one(i: int):
        async with httpx.AsyncClient(base_url=svc.url, headers=H1, timeout=120) as http:
            return await http.post("/score", json={"prompt": f"{PROMPT} {i}", "video_b64": data,
                                                   "sampling": {"strategy": "uniform", "frames": 8}})

    async def all_at_once():
        return await asyncio.gather(*(one(i) for i in range(6)))

    for r in asyncio.run(all_at_once()):
        assert r.status_code == 200, r.text
        assert len(r.json()["result"]["frame_indices"]) == 8
    settings = IngressSettings(**svc.cfg["applications"][0]["args"]["ingress"])
    bound_mb = settings.max_concurrent_decodes * settings.video_limits().memory_bound_bytes() / 2**20
    for pid in pids:
        rss, peak = _high_water_mb(pid)
        print(f"ingress pid {pid}: RSS before {before[pid]:.0f} MiB, peak {peak:.0f} MiB, now {rss:.0f} MiB; "
              f"bound +{bound_mb:.0f} MiB")
        assert peak - before[pid] < bound_mb, (pid, before[pid], peak, bound_mb)
    _ready(svc)


def test_clients_ride_out_a_redeploy(svc, clips):
    """Last: while the app is gone, both proxies answer an untyped 404 / NOT_FOUND; the clients
    retry it (a typed 404 they would not) and get through once the app is back."""
    import threading

    from ray import serve

    from serving import launch

    serve.delete("lift-critic")
    r = httpx.post(f"{svc.url}/score", headers=H1, json={"prompt": PROMPT, "video_path": str(clips["clean"])})
    assert r.status_code == 404 and "error" not in r.text
    with grpc.insecure_channel(svc.grpc) as ch, pytest.raises(grpc.RpcError) as e:
        critic_pb2_grpc.CriticServiceStub(ch).Score(pb.ScoreRequest(prompt=PROMPT), timeout=30,
                                                     metadata=[("application", "lift-critic")])
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    patient = RetryPolicy(max_attempts=200, backoff_s=0.25, max_backoff_s=1.0)
    results = {}

    def call(name, fn):
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 -- reported by the assertion below
            results[name] = exc

    calls = [threading.Thread(target=call, args=(name, fn)) for name, fn in (
        ("http", lambda: CriticClient(svc.url, api_key=K1, retry=patient).score(clips["clean"], prompt=PROMPT)),
        ("grpc", lambda: GrpcCriticClient(svc.grpc, api_key=K1, retry=patient).score(clips["clean"], prompt=PROMPT)),
    )]
    for t in calls:
        t.start()
    time.sleep(2.0)  # both clients are retrying 404s now
    launch.start(svc.cfg)
    for t in calls:
        t.join(180)
    assert all(isinstance(results.get(k), dict) and results[k]["result"]["reward"] >= 0 for k in ("http", "grpc")), results
    _ready(svc)
