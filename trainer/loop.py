"""The alignment loop every method shares: generate, score through the service, journal,
update, checkpoint; resumable with no lost and no repeated labels.

Within a step, each video is sent for scoring as soon as it is generated (a background
event loop with the async client), so scoring overlaps the generation of the next video.
Every sample goes into ``journal.jsonl``; a checkpoint records the journal's length, and a
restart truncates the journal to it and regenerates from the same seeds.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clients import AsyncCriticClient, CriticClientError
from clients.media import encode_video
from trainer.config import LoopConfig
from trainer.diffusion import DTYPES, configure_memory, latents_to_uint8, trainable_to_float32
from trainer.generator import add_lora, load_pipeline, lora_state_dict, save_lora


class RewardError(RuntimeError):
    """The service could not give a reward; training stops rather than invent one."""


@dataclass
class Sample:
    prompt: str
    seed: int
    latents: torch.Tensor  # (F, C, H, W) in the diffusion space: x0 for the loss
    frames: np.ndarray  # (F, H, W, 3) uint8
    video: Path
    result: dict | None = None


class RewardService:
    """Async client on a background event loop: ``submit`` returns a Future of the service's answer."""

    def __init__(self, url: str, api_key: str | None, concurrency: int):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client = AsyncCriticClient(url, api_key=api_key)
        self._sem = asyncio.Semaphore(concurrency)
        self.busy_s = 0.0

    async def _score(self, **kwargs) -> dict:
        async with self._sem:
            t0 = time.perf_counter()
            try:
                return await self._client.score(**kwargs)
            finally:
                self.busy_s += time.perf_counter() - t0

    def submit(self, **kwargs) -> Future:
        return asyncio.run_coroutine_threadsafe(self._score(**kwargs), self._loop)

    def submit_compare(self, a: bytes, b: bytes, prompt: str, extra: dict) -> Future:
        async def compare():
            async with self._sem:
                return await self._client.compare(a, b, prompt=prompt, **extra)

        return asyncio.run_coroutine_threadsafe(compare(), self._loop)

    def close(self):
        async def shutdown():
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._client.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def read_prompts(path: str) -> list[str]:
    prompts = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


class AlignmentLoop:
    """Subclasses implement ``update(samples, step) -> dict`` (the method's loss and step)."""

    method = "base"

    def __init__(self, config: LoopConfig):
        self.config = config
        self.out = Path(config.output_dir)
        (self.out / "videos").mkdir(parents=True, exist_ok=True)
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.pipe = load_pipeline(config.pipeline, device=self.device, dtype=DTYPES.get(config.dtype))
        configure_memory(self.pipe, config.gradient_checkpointing, config.vae_slicing, config.vae_tiling)
        torch.manual_seed(config.seed)  # the LoRA initialisation is part of the run's seeded state
        add_lora(self.pipe, rank=config.lora_rank)
        self.params = trainable_to_float32(self.pipe.transformer)
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        self.prompts = read_prompts(config.prompts)
        self.state: dict = {}  # method state that must survive a restart (e.g. running reward statistics)
        self.step = 0
        self.journal = self.out / "journal.jsonl"
        self.timing = {"generate_s": 0.0, "wait_s": 0.0, "update_s": 0.0}
        self.service: RewardService | None = None
        self._local = None

    # ---- service --------------------------------------------------------------------------

    def connect(self) -> str:
        url = self.config.service_url
        if url is None:
            from serving import launch  # a local service for this run (same YAML as production)

            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            model = None if self.config.local_critic == "model-free" else self.config.local_critic
            launch.start(launch.load_config(model=model, http_port=port, grpc_port=0))
            url, self._local = f"http://127.0.0.1:{port}", launch
        self.service = RewardService(url, self.config.api_key, self.config.max_concurrency)
        from clients import CriticClient

        CriticClient(url, api_key=self.config.api_key).wait_ready(180)
        return url

    def close(self):
        if self.service:
            self.service.close()
        if self._local:
            self._local.shutdown()

    # ---- generation -----------------------------------------------------------------------

    def sample_seed(self, step: int, i: int) -> int:
        return self.config.seed * 1_000_003 + step * self.config.batch_size + i

    @torch.no_grad()
    def generate(self, prompt: str, seed: int) -> tuple[torch.Tensor, np.ndarray]:
        c = self.config
        gen = torch.Generator(device="cpu").manual_seed(seed)
        latents = self.pipe(prompt=prompt, num_frames=c.num_frames, height=c.height, width=c.width,
                            num_inference_steps=c.inference_steps, guidance_scale=c.guidance_scale, generator=gen,
                            output_type="latent").frames
        return latents[0], latents_to_uint8(self.pipe, latents)

    def request_kwargs(self) -> dict:
        """Rubric and sampling sent with every request."""
        return {k: v for k, v in {"rubric": self.config.rubric, "sampling": self.config.sampling}.items() if v}

    def request(self, prompt: str, data: bytes, request_id: str) -> dict:
        return {"video": data, "prompt": prompt, "request_id": request_id, **self.request_kwargs()}

    def batch_prompts(self, step: int) -> list[str]:
        return [self.prompts[(step * self.config.batch_size + i) % len(self.prompts)]
                for i in range(self.config.batch_size)]

    def collect(self, step: int, prompts: list[str] | None = None, tag: str = "train") -> list[Sample]:
        """Generate a batch; each video is scored while the next one generates."""
        prompts = prompts or self.batch_prompts(step)
        samples, futures = [], []
        for i, prompt in enumerate(prompts):
            seed = self.sample_seed(step, i)
            t0 = time.perf_counter()
            latents, frames = self.generate(prompt, seed)
            data = encode_video(frames, fps=self.config.fps)
            path = self.out / "videos" / f"{tag}_{step:05d}_{i:03d}.mp4"
            path.write_bytes(data)
            self.timing["generate_s"] += time.perf_counter() - t0
            samples.append(Sample(prompt, seed, latents, frames, path))
            # the request id is a function of the sample: a retried or resumed request is never scored twice
            futures.append(self.service.submit(**self.request(prompt, data, f"{self.out.name}-{tag}-{step}-{i}")))
        t0 = time.perf_counter()
        try:
            for s, f in zip(samples, futures):
                try:
                    s.result = f.result()["result"]
                except CriticClientError as e:
                    raise RewardError(f"no reward for {s.video.name}: {e}") from e
        finally:
            for f in futures:
                f.cancel()
        self.timing["wait_s"] += time.perf_counter() - t0
        return samples

    # ---- journal and checkpoints --------------------------------------------------------------

    def record(self, samples: list[Sample], step: int, extra: dict | None = None) -> None:
        with open(self.journal, "a") as f:
            for s in samples:
                r = s.result
                f.write(json.dumps({
                    "method": self.method, "round": self.state.get("round", 0), "step": step, "prompt": s.prompt,
                    "seed": s.seed, "video": s.video.name, "reward": r["reward"],
                    "scores": {d: v["score"] for d, v in r["dimensions"].items()},
                    "labels": {d: v["label"] for d, v in r["dimensions"].items()},
                    "critic": {"model": r["model"], "version": r["model_version"], "rubric": r["rubric"],
                               "adapter": r.get("adapter")},
                    **{k: r[k] for k in ("segment_frames", "frame_rewards") if k in r},
                    **(extra or {}),
                }) + "\n")

    def journal_lines(self) -> int:
        return sum(1 for _ in open(self.journal)) if self.journal.exists() else 0

    def save_checkpoint(self) -> Path:
        ck = self.out / "checkpoint"
        tmp = self.out / "checkpoint.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        torch.save({
            "step": self.step, "lora": lora_state_dict(self.pipe), "optimizer": self.opt.state_dict(),
            "state": self.state, "journal_lines": self.journal_lines(), "timing": self.timing,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
        }, tmp / "state.pt")
        if ck.exists():
            for p in ck.iterdir():
                p.unlink()
            ck.rmdir()
        tmp.rename(ck)  # atomic: a kill leaves either the old or the new checkpoint
        return ck

    def maybe_resume(self) -> bool:
        path = self.out / "checkpoint" / "state.pt"
        if not path.exists():
            if self.journal.exists():
                self.journal.unlink()  # a run killed before its first checkpoint starts over
            return False
        from peft import set_peft_model_state_dict

        ck = torch.load(path, weights_only=False)
        set_peft_model_state_dict(self.pipe.transformer, ck["lora"])
        self.opt.load_state_dict(ck["optimizer"])
        self.state, self.step, self.timing = ck["state"], ck["step"], ck["timing"]
        torch.set_rng_state(ck["rng"]["torch"])
        random.setstate(ck["rng"]["python"])
        np.random.set_state(ck["rng"]["numpy"])
        lines = open(self.journal).readlines()[: ck["journal_lines"]] if self.journal.exists() else []
        self.journal.write_text("".join(lines))  # drop what the unfinished step wrote
        return True

    # ---- the loop ---------------------------------------------------------------------------

    def update(self, samples: list[Sample], step: int) -> dict:
        raise NotImplementedError

    def optimize(self, loss: torch.Tensor) -> float:
        """One optimizer step on the adapter."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.opt.step()
        return float(loss.detach())

    def train(self, stop_after: int | None = None) -> dict:
        """Run to ``config.steps`` (``stop_after``: stop early after that many steps, for tests)."""
        from tqdm.auto import tqdm

        resumed = self.maybe_resume()
        log = self.out / "log.csv"
        t_start = time.perf_counter()
        done_now = 0
        bar = tqdm(total=self.config.steps, initial=self.step, desc=f"{self.method}", disable=None)
        while self.step < self.config.steps:
            samples = self.collect(self.step)
            t0 = time.perf_counter()
            stats = self.update(samples, self.step)
            self.timing["update_s"] += time.perf_counter() - t0
            self.record(samples, self.step, stats.pop("journal", None))
            self.step += 1
            row = {"step": self.step, "mean_reward": float(np.mean([s.result["reward"] for s in samples])), **stats}
            new = not log.exists()
            with open(log, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    w.writeheader()
                w.writerow(row)
            bar.update(1)
            bar.set_postfix(reward=f"{row['mean_reward']:.3f}")
            per_round = getattr(self.config, "steps_per_round", None)
            if per_round and self.step % per_round == 0:  # IPO: the adapter of each round is kept
                save_lora(self.pipe, self.out / f"round_{self.step // per_round:03d}")
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self.save_checkpoint()
            done_now += 1
            if stop_after is not None and done_now >= stop_after:
                break
        bar.close()
        wall = time.perf_counter() - t_start
        if self.step >= self.config.steps:
            save_lora(self.pipe, self.out / "adapter")
            self.plot()
        gen, wait = self.timing["generate_s"], self.timing["wait_s"]
        return {"steps": self.step, "resumed": resumed, "wall_s": wall, **self.timing,
                "scoring_s": self.service.busy_s if self.service else 0.0,
                "overlap": wall / max(1e-9, gen + (self.service.busy_s if self.service else 0.0)), "wait_share": wait}

    def plot(self) -> Path | None:
        """reward_curve.png from log.csv."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        rows = list(csv.DictReader(open(self.out / "log.csv")))
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([int(r["step"]) for r in rows], [float(r["mean_reward"]) for r in rows])
        ax.set_xlabel("step")
        ax.set_ylabel("mean reward")
        ax.set_title(f"{self.method}: reward from the critic service")
        fig.tight_layout()
        fig.savefig(self.out / "reward_curve.png")
        plt.close(fig)
        return self.out / "reward_curve.png"

    @torch.no_grad()
    def evaluate(self, prompts: list[str], tag: str) -> float:
        """Mean reward on held-out prompts with fixed seeds (same seeds before and after)."""
        samples = self.collect(10**6, prompts=prompts, tag=tag)
        return float(np.mean([s.result["reward"] for s in samples]))
