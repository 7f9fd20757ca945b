"""Backend ``image-reward``: InstructVideo's reward from an image-text dual encoder.

A CLIP-style model (``CLIPModel``, ``SiglipModel``; PickScore and HPSv2 checkpoints in
transformers format load the same way) scores each sampled frame against the prompt
(cosine similarity of the projected embeddings, or that times the model's logit scale,
PickScore's convention). The frame scores become the reward by one named aggregation:

- ``mean``: the plain mean over the sampled frames;
- ``attenuated``: VGen's temporally attenuated reward, the unnormalised mean over the
  sampled frames of ``exp(-lambda * |i - F // 2|) * score``, ``i`` the frame's index in the
  whole video of ``F`` frames (frames far from the middle count less);
- ``attenuated_normalized``: the same weighted sum divided by the weights' sum.

``ImageRewardScorer`` is the differentiable in-process scorer (frames tensor -> per-frame
scores) for trainers that back-propagate through the reward; ``ImageRewardCritic`` is the
service's critic built on it. Preprocessing (resize, centre crop, normalise) runs in torch,
from the checkpoint's image-processor settings, so the same code path is differentiable and
needs no torchvision.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from contract.errors import InvalidParameterError, ModelLoadError
from contract.protocol import AGGREGATES, Aggregate, Aggregation, CriticResult
from contract.sampling import FrameSampling, SegmentRule
from critic.base import Critic, dimension_result
from critic.modelfree import interpolate_probabilities
from critic.types import ScoreInput
from critic.vlm import checkpoint_version

PROMPT_FIELD = "{prompt}"  # a dimension's question names the text scored; this is replaced by the prompt


def attenuation_weights(indices: Sequence[int], num_frames: int, lam: float = 1.0) -> torch.Tensor:
    """``exp(-lam * |i - num_frames // 2|)`` for each whole-video frame index ``i``."""
    idx = torch.as_tensor(list(indices), dtype=torch.float64)
    return torch.exp(-lam * (idx - num_frames // 2).abs())


def aggregate(scores: torch.Tensor, indices: Sequence[int], num_frames: int, method: str, lam: float = 1.0) -> torch.Tensor:
    """The reward from per-frame ``scores`` (differentiable); see the module docstring for ``method``."""
    if method not in AGGREGATES:
        raise InvalidParameterError(f"unknown aggregate {method!r}; use one of {list(AGGREGATES)}")
    if scores.ndim != 1 or len(scores) != len(indices) or len(scores) == 0:
        raise InvalidParameterError(f"need one score per sampled frame: {tuple(scores.shape)} scores, {len(indices)} indices")
    if method == "mean":
        return scores.mean()
    if not math.isfinite(lam) or lam < 0:
        raise InvalidParameterError(f"attenuation lambda must be finite and >= 0, got {lam}")
    w = attenuation_weights(indices, num_frames, lam).to(scores)
    weighted = w * scores
    return weighted.mean() if method == "attenuated" else weighted.sum() / w.sum()


class ImageRewardScorer:
    """Per-frame image-text scores from a CLIP-style dual encoder, differentiable in the frames."""

    def __init__(self, model, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 logit_scale: bool = False):
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        path = model if isinstance(model, (str, os.PathLike)) else model.name_or_path
        try:
            loaded = AutoModel.from_pretrained(os.fspath(path), dtype=dtype) if isinstance(model, (str, os.PathLike)) else model
            self.tokenizer = AutoTokenizer.from_pretrained(os.fspath(path))
            image_processor = AutoImageProcessor.from_pretrained(os.fspath(path))
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load an image-reward model from {os.fspath(path)!r}: {e}") from None
        if not (hasattr(loaded, "get_image_features") and hasattr(loaded, "get_text_features")):
            raise ModelLoadError(f"{os.fspath(path)!r} is a {type(loaded).__name__}, not an image-text dual encoder")
        self.model = loaded.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device, self.dtype, self.logit_scale = torch.device(device), dtype, logit_scale
        ip = image_processor
        size = ip.size or {}
        self._crop = (ip.crop_size["height"], ip.crop_size["width"]) if getattr(ip, "do_center_crop", False) else None
        self._shortest = size.get("shortest_edge")
        self._size = (size["height"], size["width"]) if "height" in size else None
        self._mean = torch.tensor(ip.image_mean, device=device, dtype=dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(ip.image_std, device=device, dtype=dtype).view(1, 3, 1, 1)
        text_cfg = getattr(loaded.config, "text_config", loaded.config)
        self._max_text = getattr(text_cfg, "max_position_embeddings", 77)

    def pixel_values(self, frames: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) floats in [0, 1] -> the model's normalised input (resize, centre crop)."""
        x = frames.to(device=self.device, dtype=self.dtype)
        if self._shortest is not None:
            h, w = x.shape[-2:]
            s = self._shortest / min(h, w)
            x = F.interpolate(x, size=(max(1, int(h * s)), max(1, int(w * s))), mode="bicubic", antialias=True,
                              align_corners=False)
        elif self._size is not None:
            x = F.interpolate(x, size=self._size, mode="bicubic", antialias=True, align_corners=False)
        if self._crop is not None:
            ch, cw = self._crop
            h, w = x.shape[-2:]
            top, left = max(0, (h - ch) // 2), max(0, (w - cw) // 2)
            x = x[..., top : top + ch, left : left + cw]
        return (x - self._mean) / self._std

    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self._max_text,
                             return_tensors="pt").to(self.device)
        out = self.model.get_text_features(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")})
        return F.normalize(_pooled(out).float(), dim=-1)

    def image_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        return F.normalize(_pooled(self.model.get_image_features(pixel_values=self.pixel_values(frames))).float(), dim=-1)

    def scale(self) -> float:
        """What multiplies the cosine: the model's learnt logit scale (PickScore) or 1."""
        return float(self.model.logit_scale.exp()) if self.logit_scale else 1.0

    def frame_scores(self, frames: torch.Tensor, prompt: str) -> torch.Tensor:
        """(F, 3, H, W) floats in [0, 1] and a prompt -> (F,) scores (differentiable in ``frames``)."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise InvalidParameterError(f"frames must be (F, 3, H, W), got {tuple(frames.shape)}")
        return (self.image_embeddings(frames) @ self.text_embeddings([prompt])[0]) * self.scale()


def _pooled(out) -> torch.Tensor:
    """``get_*_features`` return a tensor in older transformers, an output with ``pooler_output`` in 5.x."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str | None = Field(None, description="torch device; default cuda when available, else cpu.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights' dtype.")
    logit_scale: bool = Field(False, description="Scores times the model's logit scale (PickScore) instead of "
                              "the plain cosine similarity (HPSv2, as InstructVideo uses it).")
    aggregate: Aggregate = Field("mean", description="Aggregation when a request names none.")
    default_rubric: str = Field("image_reward", description="Rubric used when a request names none.")
    segments: int = Field(4, ge=1, le=256, description="Default sampling: this many segments ...")
    segment_rule: SegmentRule = Field("tsn", description="... by this rule (VGen's tsn by default).")


class ImageRewardCritic(Critic):
    """Each rubric dimension is a text (its question, with ``{prompt}`` replaced by the prompt)
    scored against every sampled frame; the dimension's score is the aggregated reward."""

    kind = "image-reward"
    takes_aggregate = True

    def __init__(self, model: str | os.PathLike, options: Options | None = None):
        o = options or Options()
        device = o.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.scorer = ImageRewardScorer(model, device=device, dtype=getattr(torch, o.dtype), logit_scale=o.logit_scale)
        path = os.fspath(model)
        self.name = os.path.basename(os.path.normpath(path)) if os.path.isdir(path) else path
        self.version = checkpoint_version(path)
        self.default_rubric, self.default_aggregate = o.default_rubric, o.aggregate
        self.default_sampling = FrameSampling.segmental(o.segments, rule=o.segment_rule)

    def check_input(self, item: ScoreInput) -> None:
        if item.aggregate is not None and item.aggregate not in AGGREGATES:
            raise InvalidParameterError(f"unknown aggregate {item.aggregate!r}; use one of {list(AGGREGATES)}")
        if not math.isfinite(item.attenuation_lambda) or item.attenuation_lambda < 0:
            raise InvalidParameterError(f"attenuation_lambda must be finite and >= 0, got {item.attenuation_lambda}")
        if (item.aggregate or self.default_aggregate) != "mean" and item.video_frames <= max(item.frame_indices):
            raise InvalidParameterError("temporal attenuation needs the video's frame count (ScoreInput.video_frames)")

    @torch.inference_mode()
    def _score(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        t0 = time.perf_counter()
        frames = torch.from_numpy(np.concatenate([it.frames for it in inputs])).permute(0, 3, 1, 2).float() / 255.0
        images = self.scorer.image_embeddings(frames)
        texts = [d.question.replace(PROMPT_FIELD, it.prompt) for it in inputs for d in it.rubric.dimensions]
        text_emb = self.scorer.text_embeddings(texts)
        t_model = time.perf_counter()
        results, start, row = [], 0, 0
        scale = self.scorer.scale()
        for it in inputs:
            n = len(it.frames)
            method = it.aggregate or self.default_aggregate
            dims, per_frame = {}, {}
            for d in it.rubric.dimensions:
                scores = (images[start : start + n] @ text_emb[row]) * scale
                reward = float(aggregate(scores.double(), it.frame_indices, it.video_frames, method, it.attenuation_lambda))
                probs = interpolate_probabilities(reward / scale, it.rubric.label_values)
                why = f"{method} of {n} frame scores (min {float(scores.min()):.4f}, max {float(scores.max()):.4f})"
                dims[d.name] = dimension_result(it.rubric, probs, why)
                dims[d.name].score = reward
                per_frame[d.name] = [float(s) for s in scores]
                row += 1
            start += n
            res = self.make_result(it, dims, {"model_s": (t_model - t0) / len(inputs), "batch_size": float(len(inputs))})
            res.frame_scores = per_frame
            res.aggregation = Aggregation(method=method, attenuation_lambda=it.attenuation_lambda,
                                          num_frames=it.video_frames)
            results.append(res)
        return results


def load(model: str | None, options: Options) -> ImageRewardCritic:
    return ImageRewardCritic(model, options)
