"""`make demo`: start the service on the embedded default (local Ray, the trained tiny critic),
score synthetic sample videos whose defects are known through the HTTP client, print each
verdict beside the truth, shut down cleanly."""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from clients import CriticClient
from contract.video import encode_video
from critic.data.synthetic import Scene, render
from serving import launch
from serving.settings import AppSettings


def _free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


# Synthetic clips (critic/data/synthetic.py) whose labels follow from the injected defects.
SAMPLES = [
    Scene(colour="red", shape="ball", count=1, background="green grass"),
    Scene(colour="blue", shape="square", count=2, background="a grey road", fidelity="heavy_noise", motion="freeze"),
    Scene(colour="yellow", shape="ball", count=1, background="blue water", semantic="colour", alt="purple",
          motion="flicker"),
]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(launch.DEFAULT_CONFIG))
    ap.add_argument("--model", default=None, help="override the YAML's critic model")
    args = ap.parse_args(argv)

    overrides = {"http_port": _free(8000), "grpc_port": _free(9000)}
    if args.model:
        overrides["model"] = args.model
    cfg = launch.load_config(args.config, **overrides)
    url = f"http://{cfg['http_options']['host']}:{cfg['http_options']['port']}"
    t0 = time.perf_counter()
    critic = AppSettings(**launch.app_config(cfg).get("args", {})).critic.model
    print(f"starting the service at {url} (critic: {critic}) ...", flush=True)
    try:
        launch.start(cfg)
        with CriticClient(url) as client:
            client.wait_ready(180)
            print(f"ready in {time.perf_counter() - t0:.1f}s; scoring sample videos over HTTP", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                for i, scene in enumerate(SAMPLES):
                    video = Path(tmp) / f"sample{i}.mp4"
                    video.write_bytes(encode_video(render(scene, seed=i), fps=8))
                    response = client.score(video, prompt=scene.prompt())
                    if i == 0:
                        print(json.dumps(response, indent=2))
                    result = response["result"]
                    truth = {d: r.label for d, r in scene.ratings().items()}
                    print(f"\n{scene.prompt()!r} (injected: {scene.semantic}/{scene.fidelity}/{scene.motion}), "
                          f"reward {result['reward']:.3f}")
                    for d, v in result["dimensions"].items():
                        print(f"  {d:22s} critic {v['label']:6s} truth {truth.get(d, '-'):6s} {v.get('rationale') or ''}")
    finally:
        launch.shutdown()
        print("service shut down", flush=True)


if __name__ == "__main__":
    main()
