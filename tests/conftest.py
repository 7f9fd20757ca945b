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
    from critic.samples import DEFECTS, make_clip
    from critic.video import encode_video

    root = tmp_path_factory.mktemp("clips")
    out = {}
    for name in (None, *DEFECTS):
        path = root / f"{name or 'clean'}.mp4"
        path.write_bytes(encode_video(make_clip(17, 64, defect=name), fps=8))
        out[name or "clean"] = path
    return out
