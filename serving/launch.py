"""Start the service from the Serve YAML on a local (or given) Ray cluster, as `serve run` does.

Overrides (model, ports, keys, directories) are applied to the YAML's typed schema before
deploying, so what runs is always that one document plus explicit changes.
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
    app = next(a for a in cfg["applications"] if a["name"] == APP_NAME)
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
    if critic.get("model") and os.path.exists(critic["model"]):
        critic["model"] = os.path.abspath(critic["model"])
    ingress["allowed_dirs"] = [os.path.abspath(d) for d in ingress.get("allowed_dirs", [])]
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
    return cfg


def start(config: dict, wait_s: float | None = 180.0) -> None:
    """Deploy ``config`` (a Serve YAML dict); wait until the application is RUNNING
    (``wait_s=None``: return at once, while replicas are still starting)."""
    import ray
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    if not ray.is_initialized():
        # a Ray started here gives its gRPC proxy the ingress's body limit instead of Ray's 2 GiB
        # (on a cluster joined as is, the ingress still refuses larger messages itself)
        os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", str(_grpc_limit(config)))
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
    )
    client.deploy_apps(schema, _blocking=False)
    if wait_s is not None:
        wait_running(wait_s)


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
