"""The VLM critic: any Hugging Face image-text-to-text model, frames in as images.

For a batch of videos sharing a rubric:

1. one forward pass over the *prefix* (frames + caption) builds the KV cache;
2. per dimension, the question runs on a copy of that cache; the next-token logits
   at the answer position, restricted to each label's first distinguishing token,
   give the label probabilities, the hard label and the soft score;
3. the rationale is decoded greedily after ``"{Label}."``, bounded in length.

LiFT instead re-decodes and re-encodes the video for each question; ``bench/`` measures
the difference. Decoding is greedy, so the same input gives the same output.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contract.errors import InvalidRubricError, ModelLoadError
from contract.protocol import CriticResult
from contract.sampling import FrameSampling
from critic.base import Critic, dimension_result
from critic.prompting import PromptLayout, prompt_layout
from critic.rubrics import Dimension, Rubric
from critic.types import ScoreInput


CRITIC_CONFIG = "critic_config.json"  # written by critic SFT: the frame sampling the critic was trained with


@dataclass(frozen=True)
class _DimensionPlan:
    """Token ids for asking one dimension: the context before the label, and per label its tokens."""

    dimension: Dimension
    context_ids: list[int]  # question + closing tokens + the labels' common leading tokens
    label_first: list[int]  # first distinguishing token of each label (rubric order)
    label_rest: list[list[int]]  # the remaining tokens of each label, then "."


def checkpoint_version(path: str) -> str:
    """A short fingerprint of a local checkpoint (config + weight files' sizes and heads)."""
    p = Path(path)
    if not p.is_dir():
        return "hub"
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        if f.suffix in (".json", ".safetensors", ".bin"):
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:12]


class VLMCritic(Critic):
    kind = "vlm"
    # dimension name -> temperature of its label probabilities (critic_config.json's ``label_temperature``,
    # fitted by ``lift-critic calibrate``); a dimension not named keeps the model's own probabilities
    label_temperature: dict[str, float] = {}

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        device: str | None = None,
        dtype: torch.dtype | str | None = None,
        default_rubric: str | None = None,
        default_sampling: FrameSampling | None = None,
        rationale_tokens: int = 32,
        max_batch_size: int = 8,
    ):
        from transformers import AutoModelForImageTextToText

        from critic.loading import load_processor

        path = os.fspath(model)
        try:
            processor = load_processor(path)
            loaded = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype or "auto")
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load a VLM critic from {path!r}: {e}") from None
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        trained_rubric, trained_sampling, temperatures = trained_defaults(path)
        default_sampling = default_sampling or trained_sampling
        default_rubric = default_rubric or trained_rubric
        self._setup(loaded.to(device), processor, Path(path).name if os.path.isdir(path) else path,
                    checkpoint_version(path), default_rubric, default_sampling, rationale_tokens, max_batch_size)
        self.label_temperature = temperatures

    @classmethod
    def from_components(cls, model, processor, name: str, version: str, **kwargs) -> "VLMCritic":
        """Wrap a model already in memory (e.g. while training) without saving and reloading it."""
        self = cls.__new__(cls)
        self._setup(model, processor, name, version, kwargs.get("default_rubric", "lift"),
                    kwargs.get("default_sampling"), kwargs.get("rationale_tokens", 32), kwargs.get("max_batch_size", 8))
        return self

    def _setup(self, model, processor, name, version, default_rubric, default_sampling, rationale_tokens,
               max_batch_size):
        self.model, self.processor = model.eval(), processor
        self.model_path = getattr(model, "name_or_path", name)
        self.device = next(model.parameters()).device
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.name, self.version = name, version
        self.default_rubric = default_rubric
        self.default_sampling = default_sampling or FrameSampling.uniform(8)
        self.rationale_tokens = rationale_tokens
        self.max_batch_size = max_batch_size
        self.input_side = _input_side(processor)
        self._stop_ids = self._stop_token_ids()
        # multimodal rotary models (Qwen2-VL, Qwen2.5-VL) expose get_rope_index, also under a peft wrapper
        self._rope_index = next((m.get_rope_index for m in model.modules() if hasattr(m, "get_rope_index")), None)
        self._layouts: dict[int, PromptLayout] = {}
        self._plans: dict[tuple[int, str], list[_DimensionPlan]] = {}
        self._adapters: dict[str, str] = {}
        self._active: str | None = None

    def _dimension_result(self, rubric: Rubric, dimension: str, probs, rationale: str | None, adapter: str | None):
        """``dimension_result`` at this checkpoint's label temperature for ``dimension`` (both backends). An
        adapter's answers keep their own probabilities: the temperatures were fitted to the base model's."""
        t = 1.0 if adapter else self.label_temperature.get(dimension, 1.0)
        return dimension_result(rubric, probs, rationale, t)

    # ---- adapters (LoRA critics trained by critic/train) -------------------------------

    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    def load_adapter(self, name: str, path: str | os.PathLike) -> None:
        """Load a peft adapter beside the others; requests pick it by ``ScoreInput.adapter``."""
        if name in self._adapters:
            return
        try:
            self.model.load_adapter(os.fspath(path), adapter_name=name)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load adapter {name!r} from {os.fspath(path)!r}: {e}") from None
        self._adapters[name] = os.fspath(path)
        self._activate(self._active)

    def _activate(self, name: str | None) -> None:
        if not self._adapters:
            return
        if name is None:
            self.model.disable_adapters()
        else:
            self.model.enable_adapters()
            self.model.set_adapter(name)
        self._active = name

    # ---- prompt pieces -------------------------------------------------------------

    def _stop_token_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        for end_of_turn in ("<end_of_utterance>", "<|im_end|>"):  # Idefics3 / SmolVLM, Qwen and LLaVA-OneVision
            eot = self.tokenizer.convert_tokens_to_ids(end_of_turn)
            if isinstance(eot, int) and eot != self.tokenizer.unk_token_id:
                ids.add(eot)
        return {i for i in ids if i is not None}

    def _layout(self, num_images: int) -> PromptLayout:
        if num_images not in self._layouts:
            self._layouts[num_images] = prompt_layout(self.processor, num_images)
        return self._layouts[num_images]

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _plan(self, rubric: Rubric, num_images: int) -> list[_DimensionPlan]:
        """Tokenise each question and label once per (rubric, frame count)."""
        key = (num_images, rubric.model_dump_json())
        if key in self._plans:
            return self._plans[key]
        layout = self._layout(num_images)
        plans = []
        for dim in rubric.dimensions:
            suffix = layout.suffix_for(dim.question)
            base = self._encode(suffix)
            answers = []
            for lab in rubric.labels:
                ids = self._encode(suffix + layout.answer_lead + lab.name + ".")
                if ids[: len(base)] != base:
                    raise InvalidRubricError(f"label {lab.name!r} does not tokenise cleanly after the question")
                answers.append(ids[len(base) :])
            common = 0
            while all(len(a) > common + 1 for a in answers) and len({a[common] for a in answers}) == 1:
                common += 1
            first = [a[common] for a in answers]
            if len(set(first)) != len(first):
                raise InvalidRubricError(
                    f"labels {[lab.name for lab in rubric.labels]} of rubric {rubric.name!r} share a first token "
                    f"for this tokenizer; rename them so each starts differently"
                )
            plans.append(
                _DimensionPlan(dim, base + answers[0][:common], first, [a[common + 1 :] for a in answers])
            )
        self._plans[key] = plans
        return plans

    # ---- scoring -------------------------------------------------------------------

    def check_input(self, item: ScoreInput) -> None:
        self._plan(item.rubric, len(item.frames))  # labels must tokenise apart

    def _score(self, inputs: list[ScoreInput]) -> list[CriticResult]:
        results: list[CriticResult | None] = [None] * len(inputs)
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(inputs):
            groups.setdefault((item.adapter or "", item.rubric.model_dump_json(), len(item.frames)), []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.max_batch_size):
                chunk = idx[start : start + self.max_batch_size]
                for i, res in zip(chunk, self._score_group([inputs[i] for i in chunk])):
                    results[i] = res
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _score_group(self, items: list[ScoreInput]) -> list[CriticResult]:
        """Score items that share a rubric and a frame count, in one batch."""
        rubric, n = items[0].rubric, len(items[0].frames)
        layout, plans = self._layout(n), self._plan(rubric, n)
        self._activate(items[0].adapter)
        t0 = time.perf_counter()
        enc = self.processor(
            text=[layout.prefix_for(it.prompt) for it in items],
            images=[[Image.fromarray(f) for f in it.frames] for it in items],
            return_tensors="pt",
            padding=True,
        ).to(self.device)
        t_proc = time.perf_counter()
        mask = enc["attention_mask"]
        positions, deltas = self._prefix_positions(enc)
        out = self.model(**enc, position_ids=positions, use_cache=True)
        t_prefix = time.perf_counter()
        probs, rationales = self._ask_all(plans, out.past_key_values, mask, deltas)
        per_item: list[dict] = [{} for _ in items]
        adapter = items[0].adapter  # a group shares its adapter (_score)
        for r, (p, why) in enumerate(zip(probs, rationales)):
            plan = plans[r % len(plans)]
            per_item[r // len(plans)][plan.dimension.name] = self._dimension_result(rubric, plan.dimension.name, p, why,
                                                                                      adapter)
        t_end = time.perf_counter()
        timings = {
            "preprocess_s": (t_proc - t0) / len(items),
            "prefix_s": (t_prefix - t_proc) / len(items),
            "questions_s": (t_end - t_prefix) / len(items),
            "model_s": (t_end - t0) / len(items),
            "batch_size": float(len(items)),
        }
        return [self.make_result(it, dims, timings) for it, dims in zip(items, per_item)]

    def _prefix_positions(self, enc) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Position ids of the prefix, and (multimodal rotary models) each row's rope delta.

        Most VLMs take 1-D positions that skip the left padding. Qwen2-VL / Qwen2.5-VL place image
        tokens on a 3-D (time, height, width) grid: the model's own ``get_rope_index`` gives those
        positions and, per row, the delta by which every later text position is shifted.
        """
        mask = enc["attention_mask"]
        rope_index = self._rope_index
        if rope_index is None or "mm_token_type_ids" not in enc:
            return _positions(mask), None
        extra = {k: enc[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if k in enc}
        positions, deltas = rope_index(enc["input_ids"], mm_token_type_ids=enc["mm_token_type_ids"],
                                       attention_mask=mask, **extra)
        return positions, deltas.reshape(-1, 1)

    def _step(self, ids: torch.Tensor, new_mask: torch.Tensor, mask: torch.Tensor, cache, deltas):
        """Run ``ids`` on top of ``cache``; returns (last logits, extended mask). Text positions continue
        from the prefix's (shifted by the rope deltas of multimodal rotary models, on all three axes)."""
        full = torch.cat([mask, new_mask], dim=1)
        pos = _positions(full)[:, -ids.shape[1] :]
        if deltas is not None:
            pos = (pos + deltas).unsqueeze(0).expand(3, -1, -1)
        out = self.model(input_ids=ids, attention_mask=full, position_ids=pos, past_key_values=cache, use_cache=True)
        return out.logits[:, -1, :].float(), full

    def _ask_all(self, plans: list[_DimensionPlan], cache, mask: torch.Tensor, deltas: torch.Tensor | None = None):
        """Ask every dimension of every video at once: row ``b * D + d`` is video b, dimension d.

        The prefix cache is repeated D times along the batch, so the questions (and their
        rationales) decode in parallel on top of one encoding of each video.
        """
        d_count = len(plans)
        cache.batch_repeat_interleave(d_count)
        mask = mask.repeat_interleave(d_count, dim=0)
        deltas = None if deltas is None else deltas.repeat_interleave(d_count, dim=0)
        rows = [plans[r % d_count] for r in range(mask.shape[0])]
        ids, new_mask = self._pad_left([p.context_ids for p in rows])
        logits, mask = self._step(ids, new_mask, mask, cache, deltas)
        label_logits = [logits[r, p.label_first] for r, p in enumerate(rows)]
        probs = [torch.softmax(x, dim=-1).cpu().numpy().astype(np.float64) for x in label_logits]
        if self.rationale_tokens <= 0:
            return probs, [None] * len(rows)
        # the chosen label's remaining tokens and ".", then greedy decoding of the rationale
        chosen = [int(np.argmax(p)) for p in probs]
        ids, new_mask = self._pad_left([[p.label_first[c]] + p.label_rest[c] for p, c in zip(rows, chosen)])
        logits, mask = self._step(ids, new_mask, mask, cache, deltas)
        generated: list[list[int]] = [[] for _ in rows]
        done = np.zeros(len(rows), dtype=bool)
        for _ in range(self.rationale_tokens):
            nxt = logits.argmax(dim=-1).tolist()
            for k, t in enumerate(nxt):
                if not done[k]:
                    if t in self._stop_ids:
                        done[k] = True
                    else:
                        generated[k].append(t)
            if done.all():
                break
            step = torch.tensor(nxt, device=self.device)[:, None]
            logits, mask = self._step(step, torch.ones_like(step), mask, cache, deltas)
        return probs, [self.tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated]

    def _pad_left(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of different lengths, left-padded with masked pad tokens (positions skip them)."""
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding, so a row's positions do not depend on its batch."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _input_side(processor) -> int | None:
    """The longest side the image processor resizes every frame to (Idefics3 / SmolVLM's
    ``size.longest_edge``), so frames can be downscaled to it while decoding; None where the
    processor keeps other sizes (Qwen's pixel budgets, LLaVA's crops)."""
    ip = getattr(processor, "image_processor", None)
    side = getattr(getattr(ip, "size", None), "longest_edge", None)  # a SizeDict (or None)
    if isinstance(getattr(ip, "size", None), dict):
        side = ip.size.get("longest_edge")
    return int(side) if side and getattr(ip, "do_resize", False) else None


def trained_defaults(path: str | os.PathLike) -> tuple[str, FrameSampling | None, dict[str, float]]:
    """The rubric and frame sampling a checkpoint was trained to be asked with and its dimensions' label
    temperatures (its critic_config.json, written by critic SFT and ``lift-critic calibrate``):
    ``("lift", None, {})`` for a checkpoint without one."""
    saved = Path(path) / CRITIC_CONFIG
    trained = json.loads(saved.read_text()) if saved.is_file() else {}
    sampling = FrameSampling(**trained["default_sampling"]) if "default_sampling" in trained else None
    temperatures = trained.get("label_temperature", {})
    if not isinstance(temperatures, dict) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < float("inf") for t in temperatures.values()):
        raise ModelLoadError(f"{saved}: label_temperature must map dimension names to positive numbers, "
                             f"got {temperatures!r}")
    return trained.get("rubric", "lift"), sampling, {str(k): float(v) for k, v in temperatures.items()}
