"""The vllm backend vs the transformers backend (through the service), and vs a stock vLLM
OpenAI-compatible server driven as UnifiedReward's client drives one, side by side in one run.

1. The app from the repo's Serve YAML (local Ray, one critic replica), same model and videos,
   ``backend: transformers`` then ``backend: vllm``, at concurrency 1, 8 and 32 (async HTTP client).
2. ``python -m vllm.entrypoints.openai.api_server`` on loopback with the same model (prefix
   caching on, as UnifiedReward serves), driven by a 16-thread pool sending one chat request per
   rubric dimension with the sampled frames as base64 JPEG data URLs (greedy, the same rationale bound).

Prints videos/s, p50/p99 latency per video and the ratios. Run in the vLLM venv:

    .venv-vllm/bin/python bench/bench_vllm.py [--model PATH] [--requests 48]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from bench_service import _port, load, pct  # noqa: E402  (same load generator as the service bench)

from clients import CriticClient  # noqa: E402
from contract.sampling import FrameSampling  # noqa: E402
from contract.video import encode_video  # noqa: E402
from critic import get_rubric, prepare_input  # noqa: E402
from critic.samples import make_clip  # noqa: E402
from serving import launch  # noqa: E402

PROMPT = "a red ball rolls across the grass"
THREADS = 16  # UnifiedReward's client pool


def service_rows(backend: str, args, videos: list[bytes]) -> list[tuple]:
    one = {"Critic": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 8}}}
    critic = {"backend": backend, "rationale_tokens": args.rationale_tokens, "torch_threads": args.threads}
    cfg = launch.load_config(model=args.model, http_port=_port(), grpc_port=_port(), critic=critic, deployments=one)
    url = f"http://127.0.0.1:{cfg['http_options']['port']}"
    launch.start(cfg, wait_s=900)
    CriticClient(url).wait_ready(300)
    asyncio.run(load(url, videos, 8, 8))  # warm-up
    rows = []
    for c in (1, 8, 32):
        thr, lat = asyncio.run(load(url, videos, args.requests if c > 1 else max(4, args.requests // 4), c))
        rows.append((f"service {backend}, c={c}", thr, lat))
        print(f"{rows[-1][0]}: {thr:.2f} videos/s", file=sys.stderr, flush=True)
    launch.shutdown()
    return rows


def _jpeg_b64(frame) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode()


def stock_server_row(args, videos: list[bytes]) -> tuple:
    """UnifiedReward's way: decode + sample client-side, frames as base64 JPEG, one chat request per
    dimension, a 16-thread pool; a video's latency runs from its first request to its last answer."""
    port = _port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args.model, "--port", str(port),
           "--host", "127.0.0.1", "--dtype", "float32", "--enable-prefix-caching", "--enforce-eager",
           "--block-size", "32", "--limit-mm-per-prompt", '{"image": 16}', "--disable-log-stats"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = open(Path(args.log_dir) / "stock_vllm_server.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stock vLLM server did not start; see {log.name}")
            time.sleep(1)
        rubric, sampling = get_rubric("lift"), FrameSampling.uniform(8)
        http = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=THREADS))

        def ask(i: int, question: str, frames: list[str]) -> tuple[int, float]:
            content = [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{f}"}} for f in frames]
            content.append({"type": "text", "text": f"{PROMPT} #{i % len(videos)} {question}"})
            r = http.post(f"{base}/v1/chat/completions", json={
                "model": args.model, "messages": [{"role": "user", "content": content}],
                "max_tokens": args.rationale_tokens + 2, "temperature": 0.0})
            r.raise_for_status()
            return i, time.perf_counter()

        def run(n: int) -> tuple[float, list[float]]:
            starts, ends = {}, {}
            t0 = time.perf_counter()
            with ThreadPoolExecutor(THREADS) as pool:
                futures = []
                for i in range(n):  # the client decodes and encodes each video before sending its questions
                    item = prepare_input(videos[i % len(videos)], PROMPT, rubric, sampling)
                    frames = [_jpeg_b64(f) for f in item.frames]
                    starts[i] = time.perf_counter()
                    futures += [pool.submit(ask, i, d.question, frames) for d in rubric.dimensions]
                for f in futures:
                    i, t = f.result()
                    ends[i] = max(ends.get(i, 0.0), t)
            return n / (time.perf_counter() - t0), [ends[i] - starts[i] for i in range(n)]

        run(8)  # warm-up
        thr, lat = run(args.requests)
        return (f"stock vLLM server, {THREADS} threads", thr, lat)
    finally:
        server.terminate()
        server.wait(60)
        log.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/lift-critic-tiny",
                    help="default: the shipped tiny critic; --model .cache/models/small-idefics3 builds the 'small' "
                         "preset (vLLM's CPU kernels need a head size >= 32: the 'tiny' preset's 16 does not run)")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the transformers replica")
    ap.add_argument("--rationale-tokens", type=int, default=16)
    ap.add_argument("--log-dir", default=".cache")
    args = ap.parse_args(argv)
    if not (Path(args.model) / "config.json").exists() and "small-idefics3" in args.model:
        from critic.tiny import build_tiny_idefics3

        build_tiny_idefics3(args.model, preset="small")
    args.model = os.path.abspath(args.model)
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    videos = [encode_video(make_clip(49, 128, seed=i), fps=8) for i in range(args.videos)]

    rows = service_rows("transformers", args, videos) + service_rows("vllm", args, videos)
    rows.append(stock_server_row(args, videos))
    print(f"model {args.model}, {args.requests} requests over {args.videos} videos (49 frames 128x128, 8 sampled), "
          f"rubric lift (3 questions), rationale <= {args.rationale_tokens} tokens, 1 critic replica")
    print(f"{'path':<36}{'videos/s':>10}{'p50 s':>9}{'p99 s':>9}")
    for name, thr, lat in rows:
        print(f"{name:<36}{thr:>10.2f}{statistics.median(lat):>9.3f}{pct(lat, 0.99):>9.3f}")
    by = {name: thr for name, thr, _ in rows}
    for c in (1, 8, 32):
        print(f"vllm / transformers at c={c}: {by[f'service vllm, c={c}'] / by[f'service transformers, c={c}']:.2f}x")
    stock = rows[-1][1]
    print(f"vllm backend (c=32) / stock vLLM server ({THREADS} threads): {by['service vllm, c=32'] / stock:.2f}x")


if __name__ == "__main__":
    main()
