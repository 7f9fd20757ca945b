"""`make demo`: start the service on the embedded default (local Ray, tiny critic), score a
generated sample video through the HTTP client, print the result, shut down cleanly."""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from clients import CriticClient
from critic.samples import make_clip
from critic.video import encode_video
from serving import launch


def _free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(launch.DEFAULT_CONFIG))
    ap.add_argument("--model", default=None, help="override the YAML's critic model")
    ap.add_argument("--prompt", default="a red ball rolls across the grass")
    args = ap.parse_args(argv)

    overrides = {"http_port": _free(8000), "grpc_port": _free(9000)}
    if args.model:
        overrides["model"] = args.model
    cfg = launch.load_config(args.config, **overrides)
    url = f"http://{cfg['http_options']['host']}:{cfg['http_options']['port']}"
    t0 = time.perf_counter()
    print(f"starting the service at {url} (critic: {cfg['applications'][0]['args']['critic'].get('model')}) ...",
          flush=True)
    try:
        launch.start(cfg)
        with CriticClient(url) as client:
            client.wait_ready(180)
            print(f"ready in {time.perf_counter() - t0:.1f}s; scoring a sample video over HTTP", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                video = Path(tmp) / "sample.mp4"
                video.write_bytes(encode_video(make_clip(17, 64), fps=8))
                result = client.score(video, prompt=args.prompt)
        print(json.dumps(result, indent=2))
    finally:
        launch.shutdown()
        print("service shut down", flush=True)


if __name__ == "__main__":
    main()
