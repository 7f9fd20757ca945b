"""The alignment loop every method shares: generate, score through the service, journal,
update, checkpoint; resumable with no lost and no repeated labels, on one process or many.

Within a step, each video is sent for scoring as soon as it is generated (a background
event loop with the async client), so scoring overlaps the generation of the next video.
Under ``accelerate launch`` every rank generates and scores its contiguous share of the batch
(sample ``i`` of a step has the same prompt and seed whatever the number of ranks), the
gradients are averaged across ranks, and the main rank writes the one journal: exactly one
line per sample, tagged with the rank that made it. A checkpoint records the journal's length;
a restart truncates the journal to it and regenerates from the same seeds.

Request ids are ``{run_id}-{tag}-{step}-{rank}-{i}``: ``run_id`` is drawn once, at a run's first
start, and kept in the output folder, so ids are unique per run and stable across a resume.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clients import CriticClientError
from contract.video import encode_video
from trainer.config import ConfigError, LoopConfig
from trainer.diffusion import DTYPES, configure_memory, latents_to_uint8, trainable_to_float32
from trainer.distributed import Ranks, checksum
from trainer.generator import add_lora, load_pipeline, lora_state_dict, save_lora
from trainer.records import StepRecords
from trainer.reward_service import RewardService


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
    index: int = 0  # position in the step's global batch
    request_id: str | None = None
    future: Future | None = None  # the service's answer, while it is pending


def read_prompts(path: str) -> list[str]:
    prompts = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


class AlignmentLoop:
    """Subclasses implement ``update(samples, step) -> dict`` (the method's loss and step) on this
    rank's samples; ``self.batch`` holds the whole step's (index, prompt, reward) rows."""

    method = "base"
    group_size = 1  # samples that must stay on one rank (DPO: the two videos of a prompt)

    def __init__(self, config: LoopConfig):
        self.config = config
        self.ranks = Ranks()
        if config.batch_size % (self.ranks.world * self.group_size):
            raise ConfigError(f"batch_size {config.batch_size} must split into {self.ranks.world} equal shares "
                              f"of whole groups of {self.group_size} (one per process)")
        self.is_main = self.ranks.is_main
        self.out = Path(config.output_dir)
        (self.out / "videos").mkdir(parents=True, exist_ok=True)
        self.device = self.ranks.device(config.device)
        self.pipe = load_pipeline(config.pipeline, device=self.device, dtype=DTYPES.get(config.dtype))
        configure_memory(self.pipe, config.gradient_checkpointing, config.vae_slicing, config.vae_tiling)
        torch.manual_seed(config.seed)  # the LoRA initialisation is part of the run's seeded state (same on every rank)
        add_lora(self.pipe, rank=config.lora_rank)
        self.params = trainable_to_float32(self.pipe.transformer)
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        self.prompts = read_prompts(config.prompts)
        self.holdout = read_prompts(config.holdout_prompts) if config.holdout_prompts else None
        self.state: dict = {}  # method state that must survive a restart (identical on every rank)
        self.step = 0
        self.batch: list[tuple[int, str, float]] = []
        self.journal = self.out / "journal.jsonl"
        self.records = StepRecords(self.out, self.method, config.tensorboard)
        self.timing = {"generate_s": 0.0, "wait_s": 0.0, "update_s": 0.0}
        self.service: RewardService | None = None
        self._local = None
        self._started = False
        self.resumed = False
        self.run_id = self._run_id()

    def _run_id(self) -> str:
        path = self.out / "run_id"
        if self.is_main and not path.exists():
            path.write_text(secrets.token_hex(6) + "\n")
        self.ranks.barrier()
        return path.read_text().strip()

    # ---- service --------------------------------------------------------------------------

    def connect(self) -> str:
        url = self.config.service_url
        if url is None:
            if self.ranks.distributed:
                raise RewardError("under accelerate launch every rank must reach one service: set service_url")
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
        self.records.close()
        if self.service:
            self.service.close()
        if self._local:
            self._local.shutdown()

    # ---- generation -----------------------------------------------------------------------

    def sample_seed(self, step: int, i: int) -> int:
        return self.config.seed * 1_000_003 + step * self.config.batch_size + i

    def loss_generator(self, step: int, per_rank: bool = True) -> torch.Generator:
        """The step's timesteps and noise for the loss (each rank its own draws; ``per_rank=False``: the same draws
        on every rank, those of rank 0)."""
        return torch.Generator().manual_seed(self.config.seed * 7_919 + step + 104_729 * self.ranks.rank * per_rank)

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

    def sample_request(self, sample: Sample) -> dict:
        """What is sent with one sample's request besides the video and prompt."""
        return self.request_kwargs()

    def request_id(self, tag: str, step: int, i: int, part: str = "") -> str:
        return f"{self.run_id}-{tag}-{step}-{self.ranks.rank}-{i}{part}"

    def batch_prompts(self, step: int) -> list[str]:
        return [self.prompts[(step * self.config.batch_size + i) % len(self.prompts)]
                for i in range(self.config.batch_size)]

    def collect(self, step: int, prompts: list[str] | None = None, tag: str = "train",
                seed_step: int | None = None) -> list[Sample]:
        """Generate this rank's share of the batch and score it (``seed_step``: the step whose seeds to use)."""
        prompts = prompts or self.batch_prompts(step)
        seed_step = step if seed_step is None else seed_step
        samples = []
        for i in self.ranks.share(len(prompts)):
            t0 = time.perf_counter()
            latents, frames = self.generate(prompts[i], self.sample_seed(seed_step, i))
            path = self.out / "videos" / f"{tag}_{step:05d}_{i:03d}.mp4"
            path.write_bytes(encode_video(frames, fps=self.config.fps))
            self.timing["generate_s"] += time.perf_counter() - t0
            s = Sample(prompts[i], self.sample_seed(seed_step, i), latents, frames, path, index=i,
                       request_id=self.request_id(tag, step, i))
            s.future = self.service.submit(video=path.read_bytes(), prompt=s.prompt, request_id=s.request_id,
                                           **self.sample_request(s))
            samples.append(s)
        self.score(samples, step, tag)
        self.batch = sorted(self.ranks.gather([(s.index, s.prompt, s.result["reward"]) for s in samples]))
        return samples

    def score(self, samples: list[Sample], step: int, tag: str) -> None:
        """Wait for each sample's answer (submitted as soon as it was generated)."""
        t0 = time.perf_counter()
        try:
            for s in samples:
                try:
                    s.result = s.future.result()["result"]
                except CriticClientError as e:
                    raise RewardError(f"no reward for {s.video.name}: {e}") from e
        finally:
            for s in samples:
                s.future.cancel()
        self.timing["wait_s"] += time.perf_counter() - t0

    def batch_rewards(self) -> tuple[list[float], list[str]]:
        """The whole step's rewards and prompts, in batch order (the same on every rank)."""
        return [r for _, _, r in self.batch], [p for _, p, _ in self.batch]

    # ---- journal and checkpoints --------------------------------------------------------------

    def record(self, samples: list[Sample], step: int, extra: dict | None = None) -> None:
        lines = []
        for s in samples:
            r = s.result
            lines.append((s.index, json.dumps({
                "method": self.method, "round": self.state.get("round", 0), "step": step, "rank": self.ranks.rank,
                "index": s.index, "request_id": s.request_id, "prompt": s.prompt, "seed": s.seed,
                "video": s.video.name, "reward": r["reward"],
                "scores": {d: v["score"] for d, v in r["dimensions"].items()},
                "labels": {d: v["label"] for d, v in r["dimensions"].items()},
                "critic": {"model": r["model"], "version": r["model_version"], "rubric": r["rubric"],
                           "adapter": r.get("adapter")},
                **{k: r[k] for k in ("frame_indices", "frame_scores", "aggregation") if k in r},
                **(extra or {}),
            })))
        lines = sorted(self.ranks.gather(lines))
        if self.is_main:
            with open(self.journal, "a") as f:
                f.writelines(line + "\n" for _, line in lines)

    def journal_lines(self) -> int:
        return sum(1 for _ in open(self.journal)) if self.journal.exists() else 0

    def has_checkpoint(self) -> bool:
        return (self.out / "checkpoint" / "state.pt").exists()

    def save_checkpoint(self) -> Path:
        """The main rank writes the shared state; every rank writes its own RNG state; one atomic rename."""
        ck, tmp = self.out / "checkpoint", self.out / "checkpoint.tmp"
        if self.is_main:
            tmp.mkdir(parents=True, exist_ok=True)
        self.ranks.barrier()
        torch.save({"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
                   tmp / f"rng_{self.ranks.rank}.pt")
        self.ranks.barrier()
        if self.is_main:
            torch.save({"step": self.step, "lora": lora_state_dict(self.pipe), "optimizer": self.opt.state_dict(),
                        "state": self.state, "journal_lines": self.journal_lines(), "timing": self.timing,
                        "world": self.ranks.world}, tmp / "state.pt")
            if ck.exists():
                for p in ck.iterdir():
                    p.unlink()
                ck.rmdir()
            tmp.rename(ck)  # atomic: a kill leaves either the old or the new checkpoint
        self.ranks.barrier()
        return ck

    def start(self) -> bool:
        """Resume from the checkpoint if there is one, else start clean (once; True when resumed)."""
        if self._started:
            return self.resumed
        self._started = True
        if not self.has_checkpoint():
            if self.is_main:
                self.journal.unlink(missing_ok=True)  # a run killed before its first checkpoint starts over
                self.records.reset()
            self.ranks.barrier()
            return False
        from peft import set_peft_model_state_dict

        ck = torch.load(self.out / "checkpoint" / "state.pt", weights_only=False)
        set_peft_model_state_dict(self.pipe.transformer, ck["lora"])
        self.opt.load_state_dict(ck["optimizer"])
        self.state, self.step, self.timing = ck["state"], ck["step"], ck["timing"]
        rng_path = self.out / "checkpoint" / f"rng_{self.ranks.rank}.pt"
        if rng_path.exists():  # absent when the world size changed: the seeded draws do not depend on it
            rng = torch.load(rng_path, weights_only=False)
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
        self.ranks.barrier()
        if self.is_main:
            lines = open(self.journal).readlines()[: ck["journal_lines"]] if self.journal.exists() else []
            self.journal.write_text("".join(lines))  # drop what the unfinished step wrote
            self.records.cut_to(self.step)
        self.ranks.barrier()
        self.resumed = True
        return True

    # ---- the loop ---------------------------------------------------------------------------

    def update(self, samples: list[Sample], step: int) -> dict:
        raise NotImplementedError

    def optimize(self, loss: torch.Tensor | None) -> float:
        """One optimizer step on the adapter, gradients averaged over the ranks that have a loss
        (``None``: this rank has nothing to learn from this step; it still joins the average)."""
        self.opt.zero_grad(set_to_none=True)
        if loss is not None:
            loss.backward()
        if self.ranks.average_gradients(self.params, contributes=loss is not None):
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
            self.opt.step()
        return float(loss.detach()) if loss is not None else 0.0

    def train(self, stop_after: int | None = None) -> dict:
        """Run to ``config.steps`` (``stop_after``: stop early after that many steps)."""
        from tqdm.auto import tqdm

        resumed = self.start()
        t_start = time.perf_counter()
        done_now = 0
        bar = tqdm(total=self.config.steps, initial=self.step, desc=f"{self.method}", disable=not self.is_main or None)
        while self.step < self.config.steps:
            samples = self.collect(self.step)
            t0 = time.perf_counter()
            stats = self.update(samples, self.step)
            self.timing["update_s"] += time.perf_counter() - t0
            self.record(samples, self.step, stats.pop("journal", None))
            self.step += 1
            row = {"step": self.step, "mean_reward": float(np.mean(self.batch_rewards()[0])), **self.mean_stats(stats)}
            if self.is_main:
                self.records.step(row)
            bar.update(1)
            bar.set_postfix(reward=f"{row['mean_reward']:.3f}")
            self.after_step()
            if self.holdout and self.config.eval_every and self.step % self.config.eval_every == 0 \
                    and self.step < self.config.steps:
                self.evaluate_holdout(self.step, "holdout")
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self.save_checkpoint()
            done_now += 1
            if stop_after is not None and done_now >= stop_after:
                break
        bar.close()
        wall = time.perf_counter() - t_start
        if self.step >= self.config.steps:
            if self.is_main:
                save_lora(self.pipe, self.out / "adapter")
                self.records.plot()
        gen, wait = self.timing["generate_s"], self.timing["wait_s"]
        busy = self.service.busy_s if self.service else 0.0
        return {"steps": self.step, "resumed": resumed, "wall_s": wall, **self.timing, "scoring_s": busy,
                "overlap": wall / max(1e-9, gen + busy), "wait_share": wait, "world_size": self.ranks.world,
                "rank_adapters": self.ranks.gather([checksum(lora_state_dict(self.pipe))])}

    def after_step(self) -> None:
        """IPO: the adapter of each round is kept."""
        per_round = getattr(self.config, "steps_per_round", None)
        if per_round and self.step % per_round == 0 and self.is_main:
            save_lora(self.pipe, self.out / f"round_{self.step // per_round:03d}")

    def mean_stats(self, stats: dict) -> dict:
        """The update's numbers over the ranks: counts (ints) summed, the rest (losses) averaged."""
        rows = self.ranks.gather([stats])
        return {k: sum(r[k] for r in rows) if isinstance(v, int) else float(np.mean([r[k] for r in rows]))
                for k, v in stats.items() if isinstance(v, (int, float))}

    def plot(self) -> Path | None:
        return self.records.plot() if self.is_main else None

    @torch.no_grad()
    def evaluate(self, prompts: list[str], tag: str, step: int = 10**6) -> float:
        """Mean reward on ``prompts`` with fixed seeds (the same seeds whenever it is called)."""
        self.collect(step, prompts=prompts, tag=tag, seed_step=10**6)
        return float(np.mean(self.batch_rewards()[0]))

    def evaluate_holdout(self, step: int, tag: str) -> float:
        """Held-out mean reward at ``step``, recorded in holdout.csv, TensorBoard and the reward curve."""
        self.start()
        mean = self.evaluate(self.holdout, tag, step)
        if self.is_main:
            self.records.evaluation(step, tag, mean, len(self.holdout))
        return mean
