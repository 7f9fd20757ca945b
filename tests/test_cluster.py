"""The service as a cluster runs it: the repo's Serve YAML with its defaults (the shipped critic),
two ingress replicas, metrics scraped from Ray's metrics export port, the YAML's batch size in
the model's batches, cancelled requests, and the CLI giving the service's default result."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from clients import AsyncCriticClient, CriticClient
from clients.http import score_body
from conftest import free_port as _free_port  # one loopback helper for every service test
from conftest import start_service  # and one start-up helper

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red ball rolls across the grass"
BATCH = 12  # above the critic's own former split at 8
WAIT_S = 3.0  # batch wait: a lone request waits this long, so a client can give up on it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray

    from serving import launch

    os.environ["RAY_metrics_report_interval_ms"] = "500"  # before ray.init: replicas export every 0.5 s
    temp = tmp_path_factory.mktemp("ray")
    metrics_port = _free_port()
    ray.init(_metrics_export_port=metrics_port, _temp_dir=str(temp), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    # one attempt: a retry would shut down the Ray started here with its metrics port
    svc = start_service(wait_s=300, ready_s=300, attempts=1, deployments={
        "Critic": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
        "Ingress": {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.1}},
    }, user_config={"max_batch_size": BATCH, "batch_wait_timeout_s": WAIT_S})
    svc.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    svc.logs = temp / "session_latest" / "logs" / "serve"
    yield svc
    launch.shutdown()


def _series(text: str, name: str, **labels) -> dict[str, float]:
    """{replica: value} of the series ``name`` whose labels include ``labels``."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"{name}{{(.*)}} (\S+)$", line)
        if not m:
            continue
        tags = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(tags.get(k) == v for k, v in labels.items()):
            out[tags["replica"]] = out.get(tags["replica"], 0.0) + float(m.group(2))
    return out


def _scrape_until(svc, name: str, total: float, timeout_s: float = 60, **labels) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        series = _series(httpx.get(svc.metrics_url, timeout=10).text, name, **labels)
        if sum(series.values()) >= total or time.monotonic() > deadline:
            return series
        time.sleep(0.5)


async def _score_concurrently(url: str, video: bytes, n: int) -> list[dict]:
    async with AsyncCriticClient(url, timeout=120) as client:
        return await asyncio.gather(*(client.score(video, prompt=PROMPT) for _ in range(n)))


def test_yaml_batch_size_reaches_the_model_and_metrics_cover_both_replicas(cluster, clips):
    out = asyncio.run(_score_concurrently(cluster.url, clips["clean"].read_bytes(), BATCH))
    assert [o["timings"]["batch_size"] for o in out] == [float(BATCH)] * BATCH  # one model batch, not 8 + 4
    assert out[0]["result"]["model"] == "lift-critic-tiny"

    series = _scrape_until(cluster, "ray_lift_requests_total", BATCH, route="/score", status="200",
                           application="lift-critic", deployment="Ingress")
    assert sum(series.values()) == BATCH, series  # one scrape, every request once
    assert len(series) == 2, series  # two replicas, each its own labelled series
    ingress_local = httpx.get(f"{cluster.url}/metrics").text  # one replica's registry only
    local = [ln for ln in ingress_local.splitlines() if ln.startswith('lift_requests_total{route="/score",status="200"')]
    assert local and float(local[0].split()[-1]) < BATCH
    batches = _series(httpx.get(cluster.metrics_url).text, "ray_lift_batch_size_count", deployment="Ingress")
    assert sum(batches.values()) == BATCH


def test_a_client_that_gives_up_is_counted_cancelled_and_logged_in_one_line(cluster, clips):
    with pytest.raises(httpx.ReadTimeout):  # a lone request waits WAIT_S for its batch; we leave first
        httpx.post(f"{cluster.url}/score", json=score_body(PROMPT, clips["flicker"]), timeout=0.5)
    series = _scrape_until(cluster, "ray_lift_requests_total", 1, route="/score", status="499", deployment="Ingress")
    assert sum(series.values()) == 1, series
    lines = [ln for f in cluster.logs.glob("replica_lift-critic_Ingress_*.log") for ln in f.read_text().splitlines()]
    cancelled = [ln for ln in lines if "cancelled: the client disconnected" in ln]
    assert len(cancelled) == 1, cancelled
    every = [ln for f in cluster.logs.glob("*.log") for ln in f.read_text().splitlines()]  # critic, proxy too
    assert not [ln for ln in every if "Traceback" in ln or "CancelledError" in ln]


def test_the_cli_gives_the_service_default_result(cluster, clips):
    served = CriticClient(cluster.url, timeout=120).score(clips["clean"], prompt=PROMPT)["result"]
    p = subprocess.run([sys.executable, "-m", "serving.cli", "score", str(clips["clean"]), "--prompt", PROMPT],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    local = json.loads(p.stdout)
    assert local["model"] == served["model"] == "lift-critic-tiny"
    assert local["frame_indices"] == served["frame_indices"] and local["sampling"] == served["sampling"]
    for name, dim in served["dimensions"].items():
        assert local["dimensions"][name]["label"] == dim["label"]
        assert local["dimensions"][name]["probabilities"] == pytest.approx(dim["probabilities"], abs=1e-4)
    assert local["reward"] == pytest.approx(served["reward"], abs=1e-4)


CLIENT_SCRIPT = """
import importlib.util, json, sys
from clients import CriticClient
from clients.grpc import GrpcCriticClient
video = open(sys.argv[3], "rb").read()
http = CriticClient(sys.argv[1]).score(video, prompt="a red ball")
with GrpcCriticClient(sys.argv[2]) as g:
    rpc = g.score(video, prompt="a red ball")
heavy = [m for m in ("torch", "transformers", "ray", "numpy", "serving", "critic") if importlib.util.find_spec(m)]
print(json.dumps({"http": http["result"], "grpc": rpc["result"], "heavy": heavy,
                  "installed": [sys.modules[m].__file__ for m in ("clients", "contract")]}))
"""


def test_the_client_installs_alone_from_the_repo_and_scores(cluster, clips, tmp_path):
    venv, src = tmp_path / "venv", tmp_path / "src" / "clients"
    for package in ("clients", "contract"):  # the client distribution ships the contract beside it
        shutil.copytree(ROOT / package, tmp_path / "src" / package,
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    p = subprocess.run([py, "-m", "pip", "install", "-q", f"{src}[grpc]"], capture_output=True, text=True, timeout=600,
                       env=env)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([py, "-c", CLIENT_SCRIPT, cluster.url, cluster.grpc, str(clips["clean"])], capture_output=True,
                       text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    # installed, alone: no torch, ray, serving; the client and its contract both from the venv
    assert out["heavy"] == [] and all(f.startswith(str(venv)) for f in out["installed"])
    assert out["http"]["model"] == out["grpc"]["model"] == "lift-critic-tiny"
    assert out["http"]["dimensions"] == out["grpc"]["dimensions"]
