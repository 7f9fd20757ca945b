"""Start the service from the Serve YAML on a local (or given) Ray cluster, as `serve run` does,
through Ray Serve's public API.

Overrides (model, ports, keys, directories) are applied to the YAML before it is validated
(Ray's schema and ours) and deployed, so what runs is always that one document plus explicit
changes.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import yaml

from serving.auth import key_digest

DEFAULT_CONFIG = Path(__file__).parent / "config" / "serve.yaml"
APP_NAME = "lift-critic"


def load_config(path: str | os.PathLike = DEFAULT_CONFIG, **overrides) -> dict:
    """The YAML as a dict, with overrides: model, http_port, grpc_port, host, api_keys (plaintext; only
    their SHA-256 digests enter the config), allowed_dirs, critic (dict merged into args.critic), ingress (dict
    merged into args.ingress),
    deployments ({name: options} merged into each deployment), user_config (batching)."""
    with open(path) as f:
        cfg = yaml.safe_load(f)
    cfg = copy.deepcopy(cfg)
    app = app_config(cfg)
    args = app.setdefault("args", {})
    critic, ingress = args.setdefault("critic", {}), args.setdefault("ingress", {})
    if "model" in overrides:
        critic["model"] = overrides["model"]
    critic.update(overrides.get("critic", {}))
    ingress.update(overrides.get("ingress", {}))
    if "allowed_dirs" in overrides:
        ingress["allowed_dirs"] = overrides["allowed_dirs"]
    if "api_keys" in overrides:
        ingress["api_key_digests"] = sorted({key_digest(k) for k in overrides["api_keys"]})
    if "host" in overrides:
        cfg["http_options"]["host"] = overrides["host"]
    if "http_port" in overrides:
        cfg["http_options"]["port"] = overrides["http_port"]
    if "grpc_port" in overrides:
        cfg["grpc_options"]["port"] = overrides["grpc_port"]
    for dep in app.get("deployments", []):
        dep.update(overrides.get("deployments", {}).get(dep["name"], {}))
        if dep["name"] == "Critic" and "user_config" in overrides:
            dep["user_config"] = {**dep.get("user_config", {}), **overrides["user_config"]}
    validate(cfg)
    return cfg


def app_config(config: dict) -> dict:
    """The lift-critic application's entry of a Serve config."""
    return next(a for a in config["applications"] if a["name"] == APP_NAME)


def validate(config: dict) -> None:
    """Ray's schema of the whole document, ours of the app's args and the critic's batching."""
    from ray.serve.schema import ServeDeploySchema

    from serving.settings import AppSettings, BatchSettings

    ServeDeploySchema.model_validate(config)
    app = app_config(config)
    AppSettings(**app.get("args", {}))
    for dep in app.get("deployments", []):
        if dep["name"] == "Critic":
            BatchSettings(**dep.get("user_config", {}))


def start(config: dict, wait_s: float | None = 180.0) -> None:
    """Deploy ``config`` (a Serve YAML dict); wait until the application is RUNNING
    (``wait_s=None``: return at once, while replicas are still starting)."""
    from ray import serve

    from serving.app import from_config

    validate(config)
    connect(config)
    serve.start(proxy_location=config.get("proxy_location"), http_options=config.get("http_options"),
                grpc_options=config.get("grpc_options"))
    app = app_config(config)
    # run_many (not run) so the call returns while replicas still load: readiness is then observable
    serve.run_many([serve.RunTarget(from_config(config), name=APP_NAME, route_prefix=app.get("route_prefix", "/"))],
                   wait_for_applications_running=False)
    if wait_s is not None:
        wait_running(wait_s)


def connect(config: dict) -> None:
    """Join the cluster at ``RAY_ADDRESS``, or start a local Ray; nothing if Ray is up already. Ray's
    driver installs its own handlers for SIGTERM and other signals here: a program that wants to
    stop cleanly on them installs its own after this."""
    import ray

    if not ray.is_initialized():
        # a Ray started here gives its gRPC proxy the ingress's body limit instead of Ray's 2 GiB
        # (on a cluster joined as is, the ingress still refuses larger messages itself)
        os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", str(_grpc_limit(config)))
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)


def _grpc_limit(config: dict) -> int:
    from serving.settings import IngressSettings

    app = next(a for a in config["applications"] if a["name"] == APP_NAME)
    limit = app.get("args", {}).get("ingress", {}).get("max_request_bytes")
    return (limit or IngressSettings.model_fields["max_request_bytes"].default) + 64 * 1024  # + message framing


def wait_running(wait_s: float = 120.0, app: str = APP_NAME) -> None:
    from ray import serve

    deadline = time.monotonic() + wait_s
    status = None
    while time.monotonic() < deadline:
        apps = serve.status().applications
        if app in apps:
            status = apps[app].status
            if status == "RUNNING":
                return
            if status == "DEPLOY_FAILED":
                raise RuntimeError(f"deploying {app} failed: {apps[app].message}")
        time.sleep(0.25)
    raise TimeoutError(f"{app} not RUNNING after {wait_s}s (last status: {status})")


def shutdown() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()
