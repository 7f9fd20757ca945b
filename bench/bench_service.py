"""Service throughput and latency vs the in-process batched critic, side by side in one run.

Starts the app from the repo's Serve YAML (local Ray, the same model), sends the same
videos through the async HTTP client at concurrency 1, 8 and 32, then with dynamic
batching off (max_batch_size 1), and runs the in-process critic in batches on the same
videos. Prints throughput, p50/p99 latency, the service / in-process ratio, and the
resident memory of the running app.

    .venv/bin/python bench/bench_service.py [--model PATH] [--requests 96] [--size 480x720]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from clients import AsyncCriticClient, CriticClient
from contract.sampling import FrameSampling
from contract.video import encode_video
from critic import get_rubric, prepare_input
from critic.samples import make_clip
from critic.vlm import VLMCritic
from serving import launch

PROMPT = "a red ball rolls across the grass"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, videos: list[bytes], n: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    async with AsyncCriticClient(url) as client:

        async def one(i: int):
            async with sem:
                t0 = time.perf_counter()
                await client.score(videos[i % len(videos)], prompt=f"{PROMPT} #{i % len(videos)}")
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0), latencies


def in_process(model: str, videos: list[bytes], n: int, batch: int, threads: int, rationale: int) -> float:
    import torch

    torch.set_num_threads(threads)
    critic = VLMCritic(model, rationale_tokens=rationale)
    rubric, sampling = get_rubric("lift"), FrameSampling.uniform(8)
    prompts = [f"{PROMPT} #{i % len(videos)}" for i in range(n)]
    critic.score([prepare_input(videos[0], PROMPT, rubric, sampling)])  # warm-up
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        items = [prepare_input(videos[i % len(videos)], prompts[i], rubric, sampling) for i in range(start, min(n, start + batch))]
        critic.score(items)
    return n / (time.perf_counter() - t0)


def app_memory_mb() -> float:
    """Resident memory of this machine's Ray processes (GCS, raylet, controller, proxy, replicas)."""
    total = 0
    for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if ("ray" in cmd and ("raylet" in cmd or "gcs_server" in cmd or "default_worker" in cmd or "ray::" in cmd
                              or "dashboard" in cmd or "log_monitor" in cmd)) or p.info["name"].startswith("ray::"):
            total += p.info["memory_info"].rss
    return total / 2**20


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=".cache/models/small-idefics3",
                    help="default: the 'small' tiny model, where model time dominates as with real critics")
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8, help="max batch size (service) = batch size (in-process)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in both the replica and in-process")
    ap.add_argument("--rationale-tokens", type=int, default=16)
    ap.add_argument("--max-replicas", type=int, default=1, help="critic autoscaling ceiling during the bench")
    ap.add_argument("--size", default="480x720", help="HxW of the 49-frame clips (CogVideoX's output: 480x720)")
    args = ap.parse_args(argv)
    if not (Path(args.model) / "config.json").exists():
        from critic.tiny import build_tiny_idefics3

        build_tiny_idefics3(args.model, preset="small")

    h, w = (int(x) for x in args.size.split("x"))
    videos = [encode_video(np.stack([np.asarray(Image.fromarray(f).resize((w, h))) for f in make_clip(49, 128, seed=i)]),
                           fps=8) for i in range(args.videos)]
    critic = {"torch_threads": args.threads, "rationale_tokens": args.rationale_tokens}
    # one critic replica: this measures the service's overhead, not autoscaling (on 2 cores a second
    # replica with 2 torch threads only oversubscribes the CPU)
    one = {"Critic": {"autoscaling_config": {"min_replicas": 1, "max_replicas": args.max_replicas,
                                             "target_ongoing_requests": 8}}}
    base = dict(model=args.model, http_port=_port(), grpc_port=_port(), critic=critic, deployments=one)
    cfg = launch.load_config(**base, user_config={"max_batch_size": args.batch, "batch_wait_timeout_s": 0.01})
    url = f"http://127.0.0.1:{cfg['http_options']['port']}"
    launch.start(cfg)
    CriticClient(url).wait_ready(180)
    asyncio.run(load(url, videos, 16, 8))  # warm-up
    rows = []
    for c in (1, 8, 32):
        thr, lat = asyncio.run(load(url, videos, args.requests if c > 1 else args.requests // 4, c))
        rows.append((f"service, batching on, c={c}", thr, lat))
    mem = app_memory_mb()
    launch.start(launch.load_config(**base, user_config={"max_batch_size": 1, "batch_wait_timeout_s": 0.0}))
    CriticClient(url).wait_ready(180)
    asyncio.run(load(url, videos, 16, 8))
    thr, lat = asyncio.run(load(url, videos, args.requests, 32))
    rows.append(("service, batching off, c=32", thr, lat))
    launch.shutdown()
    inproc = in_process(args.model, videos, args.requests, args.batch, args.threads, args.rationale_tokens)

    print(f"model {args.model}, {args.requests} requests over {args.videos} videos (49 frames {h}x{w}, 8 sampled), "
          f"rubric lift, rationale <= {args.rationale_tokens} tokens, max batch {args.batch}, {args.threads} torch threads")
    print(f"{'path':<32}{'videos/s':>10}{'p50 s':>9}{'p99 s':>9}")
    for name, thr, lat in rows:
        print(f"{name:<32}{thr:>10.1f}{statistics.median(lat):>9.3f}{pct(lat, 0.99):>9.3f}")
    print(f"{'in-process batched critic':<32}{inproc:>10.1f}")
    on32, off32 = rows[2][1], rows[3][1]
    print(f"service / in-process at c=32: {on32 / inproc:.2f}  (target >= 0.85)")
    print(f"dynamic batching on / off at c=32: {on32 / off32:.2f}x")
    print(f"resident memory of the running app (all Ray processes): {mem:.0f} MiB")


if __name__ == "__main__":
    main()
