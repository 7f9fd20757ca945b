"""``lift-critic``: the critic's commands plus ``serve`` (this module adds it; critic/ stays serving-free)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from critic import cli as critic_cli


class _Stop(Exception):
    """SIGINT or SIGTERM reached ``lift-critic serve``."""


def _stop(signum, frame):
    """Raise ``_Stop`` in the main thread, wherever it is (joining Ray, deploying, waiting for replicas or
    serving); a second signal, while the service shuts down, kills the process as a default handler would."""
    _on_signals(signal.SIG_DFL)
    raise _Stop(signal.Signals(signum).name)


def _on_signals(handler) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def cmd_serve(args) -> None:
    from serving import launch
    from serving.auth import resolve_api_keys

    overrides = {k: v for k, v in {"model": args.model, "host": args.host, "http_port": args.port,
                                   "grpc_port": args.grpc_port}.items() if v is not None}
    keys = resolve_api_keys(args.api_keys_file)  # here, once: the deployments get digests, on any Ray cluster
    if keys:
        overrides["api_keys"] = keys
    cfg = launch.load_config(args.config, **overrides)
    try:
        _on_signals(_stop)
        launch.connect(cfg)
        # ray.init put Ray's own handlers in place (its SIGTERM one prints a stack and exits, and nothing
        # would take the app down): ours again, before anything is deployed
        _on_signals(_stop)
        print("lift-critic: Ray is up; deploying", flush=True)
        launch.start(cfg)
        http = cfg["http_options"]
        auth = f"{len(keys)} API key(s)" if keys else "no API keys"
        print(f"lift-critic serving on http://{http['host']}:{http['port']} and gRPC :{cfg['grpc_options']['port']}"
              f" ({auth}; Ctrl-C to stop)", flush=True)
        threading.Event().wait()
    except _Stop as e:
        print(f"lift-critic: {e}; shutting down", flush=True)
    finally:
        launch.shutdown()


def build_parser() -> argparse.ArgumentParser:
    from serving.launch import DEFAULT_CONFIG

    ap = critic_cli.build_parser()
    sub = next(a for a in ap._subparsers._group_actions if isinstance(a, argparse._SubParsersAction))
    p = sub.add_parser("serve", help="start the Ray Serve app (HTTP + gRPC) from the Serve YAML")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve YAML (default: the repo's)")
    p.add_argument("--model", default=None, help="override the critic model (folder, hub id or 'model-free')")
    p.add_argument("--host", default=None, help="HTTP host (default from the YAML: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="HTTP port")
    p.add_argument("--grpc-port", type=int, default=None, help="gRPC port")
    p.add_argument("--api-keys-file", default=None, help="bearer keys, one per line (also: env "
                   "LIFT_CRITIC_API_KEYS_FILE, LIFT_CRITIC_API_KEYS=k1,k2); only their digests reach the cluster")
    p.set_defaults(func=cmd_serve)
    return ap


def main(argv: list[str] | None = None) -> int:
    return critic_cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    sys.exit(main())
