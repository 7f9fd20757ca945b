"""Shared fixtures: tiny models built in code, real mp4 files."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_vlm_path(tmp_path_factory):
    from critic.tiny import build_tiny_idefics3

    return build_tiny_idefics3(tmp_path_factory.mktemp("models") / "tiny-idefics3")


@pytest.fixture(scope="session")
def vlm_critic(tiny_vlm_path):
    from critic.vlm import VLMCritic

    return VLMCritic(tiny_vlm_path, rationale_tokens=8)


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Real mp4 files on disk: a clean clip and one per defect."""
    from contract.video import encode_video
    from critic.samples import DEFECTS, make_clip

    root = tmp_path_factory.mktemp("clips")
    out = {}
    for name in (None, *DEFECTS):
        path = root / f"{name or 'clean'}.mp4"
        path.write_bytes(encode_video(make_clip(17, 64, defect=name), fps=8))
        out[name or "clean"] = path
    return out


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory):
    """A small synthetic rated set (mp4 + ratings JSONL)."""
    from critic.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("synth"), 12, seed=3)


@pytest.fixture(scope="session")
def tiny_adapter(tiny_vlm_path, synth_set, tmp_path_factory):
    """A LoRA critic adapter trained for a few steps on the tiny model: (trainer, adapter folder)."""
    from critic.train.sft_config import SFTConfig
    from critic.train.sft_trainer import SFTTrainer

    cfg = SFTConfig(model=str(tiny_vlm_path), train=str(synth_set), output_dir=str(tmp_path_factory.mktemp("sft")),
                    method="lora", lora_r=8, lora_alpha=16, max_steps=8, batch_size=6, lr=3e-2, warmup_ratio=0.0,
                    lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                    max_answer_tokens=16)
    trainer = SFTTrainer(cfg)
    trainer.before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.probe = trainer.train_convs[:6]
    with __import__("torch").no_grad():
        trainer.loss_before = trainer.loss(trainer.probe).item()
    trainer.summary = trainer.train()
    return trainer, trainer.out / "final"


def run_cli(*args, timeout: float = 600):
    """``lift-critic ARGS`` (the console script's module, serving.cli) in a subprocess: its exit code, JSON stdout
    and one-line errors are what a user sees."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "serving.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free loopback port drawn below the kernel's ephemeral range (and above Ray's worker ports,
    10002-19999). Ports the kernel hands out for bind(0) and outgoing connections come from that range,
    and a Ray start makes dozens of those: a port taken from bind(0) here was grabbed by one of them
    before Serve's proxy bound it ("Failed to bind to address" in CI). Outside the range only an
    explicit bind can take it."""
    import random
    import socket

    low = _ephemeral_low()
    draw = random.SystemRandom()
    for _ in range(500):
        port = draw.randrange(20000, low) if low > 21000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free loopback port below the ephemeral range")


def start_service(wait_s: float | None = 180.0, ready_s: float = 120.0, attempts: int = 2, **overrides):
    """Start the service (serving.launch) from the repo's YAML with ``overrides`` on fresh loopback
    ports; with ``wait_s``, return only once the app is RUNNING and /readyz answers 200 through the
    proxy. A start-up that fails before that (Ray's "node timed out during startup" on a loaded
    machine, a proxy that cannot bind, readiness that never comes) is shut down and tried again on
    fresh ports; the last attempt's error is raised as is. Returns .cfg, .ports, .url and .grpc."""
    import sys
    from types import SimpleNamespace

    from clients import CriticClient
    from serving import launch

    for attempt in range(1, attempts + 1):
        ports = {"http_port": free_port(), "grpc_port": free_port()}
        cfg = launch.load_config(**{**overrides, **ports})
        svc = SimpleNamespace(cfg=cfg, ports=ports, url=f"http://127.0.0.1:{ports['http_port']}",
                              grpc=f"127.0.0.1:{ports['grpc_port']}")
        try:
            launch.start(cfg, wait_s=wait_s)
            if wait_s is not None:
                CriticClient(svc.url).wait_ready(ready_s)
            return svc
        except Exception as exc:  # noqa: BLE001 -- retried once, then raised
            launch.shutdown()
            if attempt == attempts:
                raise
            print(f"service start-up failed ({type(exc).__name__}: {exc}); retrying on fresh ports",
                  file=sys.stderr)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    from trainer.generator import build_tiny_cogvideox

    return build_tiny_cogvideox(tmp_path_factory.mktemp("cog") / "tiny-cogvideox")


@pytest.fixture(scope="module")
def service():
    """A real model-free critic service on loopback (Ray Serve), one per test module."""
    from serving import launch

    yield start_service(model="model-free").url
    launch.shutdown()


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    from critic.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")
