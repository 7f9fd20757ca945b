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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    from trainer.generator import build_tiny_cogvideox

    return build_tiny_cogvideox(tmp_path_factory.mktemp("cog") / "tiny-cogvideox")


@pytest.fixture(scope="module")
def service():
    """A real model-free critic service on loopback (Ray Serve), one per test module."""
    from serving import launch

    port = free_port()
    launch.start(launch.load_config(model="model-free", http_port=port, grpc_port=free_port()))
    yield f"http://127.0.0.1:{port}"
    launch.shutdown()


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    from critic.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")
