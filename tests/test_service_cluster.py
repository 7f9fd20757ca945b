"""`lift-critic serve` joining an existing Ray cluster (`ray start --head`) keeps auth on, and
no API key appears in any file Ray writes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from clients import CriticClient, CriticRequestError
from clients.grpc import GrpcCriticClient
from conftest import free_port as _free_port  # one loopback helper for every service test
from test_service import PROMPT

pytestmark = pytest.mark.timeout(600)
KEY = "cluster-key-0f9a7c2e55d14b0b"


def _stop(proc: subprocess.Popen, grace_s: float = 60) -> None:
    """SIGTERM (both `ray start --block` and `lift-critic serve` clean up their children), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _wait_while_running(proc: subprocess.Popen, log: Path, ready, what: str, timeout_s: float) -> None:
    """Poll ``ready()`` every half second; fail with the log's tail if ``proc`` exits, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


@pytest.fixture()
def ray_head(tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="lcray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = _free_port()
    # the cluster's workers import this checkout's code, as a cluster built from its image would
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path / "ray-head.log", "w")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
         f"--temp-dir={temp}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield f"127.0.0.1:{port}", temp, env
    _stop(head)
    log.close()
    shutil.rmtree(temp, ignore_errors=True)


def test_serve_into_an_existing_cluster_keeps_auth_and_logs_no_key(ray_head, tmp_path):
    address, temp, env = ray_head
    keys = tmp_path / "keys"
    keys.write_text(f"# the service's keys\n{KEY}\n")
    http_port, grpc_port = _free_port(), _free_port()
    env = {**env, "RAY_ADDRESS": address}
    env.pop("LIFT_CRITIC_API_KEYS", None)
    env.pop("LIFT_CRITIC_API_KEYS_FILE", None)
    serve_log = tmp_path / "serve.log"
    log = open(serve_log, "w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "serve", "--model", "model-free", "--port", str(http_port),
         "--grpc-port", str(grpc_port), "--api-keys-file", str(keys)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    try:
        _wait_while_running(serve, serve_log, CriticClient(url).healthy, "the service did not come up", 240)
        CriticClient(url, api_key=KEY).wait_ready(120)
        body = {"prompt": PROMPT, "video_b64": "AAAA"}
        r = httpx.post(f"{url}/score", json=body, timeout=60)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert httpx.get(f"{url}/models", timeout=60).status_code == 401
        assert httpx.get(f"{url}/metrics", timeout=60).status_code == 401
        with pytest.raises(CriticRequestError) as e:
            GrpcCriticClient(f"127.0.0.1:{grpc_port}").score(b"AAAA", prompt=PROMPT)
        assert e.value.status == 401 and e.value.attempts == 1
        with CriticClient(url, api_key=KEY) as c:
            assert c.models()[0]["kind"] == "model-free"
            with pytest.raises(CriticRequestError) as e:  # through auth, refused for its content
                c.score(b"not a video", prompt=PROMPT)
            assert e.value.code == "invalid_video"
            # `serve` prints its banner once it has seen the app RUNNING, which can come after the app
            # answers; a SIGTERM before that stops it without one
            _wait_while_running(serve, serve_log, lambda: "serving on" in serve_log.read_text(), "no banner", 120)
    finally:
        _stop(serve)
        log.close()
    assert serve_log.read_text().count("1 API key(s)") == 1
    files = [p for p in temp.rglob("*") if p.is_file() and not p.is_symlink()]
    logs = [p for p in files if "logs" in p.parts]
    assert logs, f"no Ray logs under {temp}"
    leaked = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_sigterm_while_deploying_stops_cleanly_and_takes_the_app_down(ray_head, tmp_path):
    """A stop that comes while `serve` is still deploying (Kubernetes deleting a pod that is starting, a
    Ctrl-C) is ours, not Ray's: the process shuts Serve down and exits 0, leaving no app on the cluster."""
    address, temp, env = ray_head
    env = {**env, "RAY_ADDRESS": address}
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "w") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "serve", "--model", "model-free", "--port", str(_free_port()),
             "--grpc-port", str(_free_port())],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_while_running(serve, serve_log, lambda: "deploying" in serve_log.read_text(), "never deployed", 120)
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(120) == 0, serve_log.read_text()[-3000:]
        finally:
            _stop(serve)
    text = serve_log.read_text()
    assert "SIGTERM; shutting down" in text and "SIGTERM received" not in text, text[-3000:]
    # Serve's controller is a detached actor: had the process died without serve.shutdown(), it would still
    # be there, deploying the app. Ray's own names for it, so that a rename cannot make this pass unseen.
    probe = ("import ray\nfrom ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE\n"
             "ray.init(address='auto', log_to_driver=False)\n"
             "try:\n    ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE); print('controller alive')\n"
             "except ValueError:\n    print('no controller')\n")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1:] == ["no controller"], out.stdout + out.stderr[-2000:]
