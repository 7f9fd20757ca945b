"""Supervised fine-tuning of a VLM critic on ratings with rationales (LiFT-Critic training).

Each rated video gives one conversation per rubric dimension, laid out exactly as the
critic asks at inference (critic/prompting.py): frames + ``"{caption} {question}"`` ->
``"{Label}. {rationale}"``. The loss covers the answer tokens only. LoRA (peft) trains and
saves only the adapter; ``full`` trains and saves the whole model.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contract.errors import InvalidParameterError
from contract.sampling import FrameSampling
from critic.base import check_prompt, prepare_input
from critic.data.ratings import RatedVideo, read_training_ratings, video_path
from critic.prompting import format_answer, prompt_layout
from critic.rubrics import get_rubric
from critic.train.sft_config import SFTConfig


@dataclass
class Conversation:
    frames: np.ndarray
    prompt_text: str  # everything up to the answer
    answer: str  # answer lead + "{Label}. {rationale}" + end of turn
    # the processor's output, computed once (``SFTTrainer._conversations``): the prompt with its image tokens
    # expanded, the whole answer's tokens (``collate`` cuts them to max_answer_tokens), and the video's pixels
    # (one tensor shared by every conversation about one video)
    prompt_ids: list[int] | None = None
    answer_ids: list[int] | None = None
    pixels: dict[str, torch.Tensor] | None = None


def load_base(config: SFTConfig):
    """(model, processor) from a checkpoint, or a fresh tiny model for ``tiny:PRESET``."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = config.model
    if path.startswith("tiny:"):
        from critic.tiny import build_tiny_idefics3

        path = str(build_tiny_idefics3(Path(config.output_dir) / "init", preset=path.split(":", 1)[1], seed=config.seed))
    return AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path), path


class SFTTrainer:
    def __init__(self, config: SFTConfig):
        self.config = config
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # read (and check) the data before loading a model: a refused set costs no download
        self.train_rows = read_training_ratings(config.train)
        self.val_rows = read_training_ratings(config.val) if config.val else []
        model, self.processor, self.base_path = load_base(config)
        self.tokenizer = self.processor.tokenizer
        self.rubric = get_rubric(config.rubric)
        self.layout = prompt_layout(self.processor, config.frames)
        self.end_of_turn = self._end_of_turn()
        if config.method == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=config.lora_target_modules)
            model = get_peft_model(model, lora)
        self.model = model.to(self.device)
        unknown = set(config.dimension_weights) - {d.name for d in self.rubric.dimensions}
        if unknown:
            raise InvalidParameterError(f"dimension_weights names {sorted(unknown)}, not dimensions of rubric "
                                        f"{self.rubric.name!r}")
        self.train_convs = self._conversations(self.train_rows, config.train)
        self.truncated = self._count_truncated(self.train_convs)
        self.history: list[dict] = []

    def _end_of_turn(self) -> str:
        eou = "<end_of_utterance>"
        return eou if eou in self.tokenizer.get_vocab() else (self.tokenizer.eos_token or "")

    def _conversations(self, rows: list[RatedVideo], jsonl: str) -> list[Conversation]:
        """One conversation per (row, dimension), encoded once: a video is decoded and its pixels processed
        once however many prompts and questions ask about it."""
        sampling = FrameSampling.uniform(self.config.frames)
        convs, videos = [], {}  # path -> (sampled frames, processed pixels)
        for row in rows:
            path = video_path(row.video, jsonl)
            if path in videos:  # another prompt for a video already decoded
                prompt = check_prompt(row.prompt)
            else:
                item = prepare_input(path, row.prompt, self.rubric, sampling)
                prompt = item.prompt
                enc = self.processor.image_processor(images=[[Image.fromarray(f) for f in item.frames]],
                                                     return_tensors="pt")
                videos[path] = item.frames, {k: enc[k][0] for k in ("pixel_values", "pixel_attention_mask") if k in enc}
            frames, pixels = videos[path]
            for d in self.rubric.dimensions:
                r = row.ratings[d.name]
                # the answer lead (" " after "Assistant:") is tokenised with the answer, as the critic does
                text = self.layout.prefix_for(prompt) + self.layout.suffix_for(d.question)
                answer = self.layout.answer_lead + format_answer(r.label, r.rationale) + self.end_of_turn
                convs.append(Conversation(frames, text, answer, pixels=pixels))
        self._encode_text(convs)
        return convs

    def _encode_text(self, convs: list[Conversation]) -> None:
        """Each conversation's prompt ids as the processor writes them, and its answer ids. The processor expands the image tokens, which costs an image pass per call;
        the expansion depends only on the frames' shape, so it is taken once per shape and the text after the
        last image token is tokenised alone (special tokens split the tokenisation). A sample is checked
        against the processor itself; a processor for which that does not hold is called for every prompt."""
        image_token = getattr(self.processor, "image_token", None)
        heads: dict[tuple, list[int]] = {}

        def full(c: Conversation) -> list[int]:
            return self.processor(text=[c.prompt_text], images=[[Image.fromarray(f) for f in c.frames]],
                                  return_tensors="pt")["input_ids"][0].tolist()

        def fast(c: Conversation) -> list[int] | None:
            if not image_token or image_token not in c.prompt_text:
                return None
            tail = self.tokenizer(c.prompt_text.rsplit(image_token, 1)[1], add_special_tokens=False)["input_ids"]
            key = c.frames.shape
            if key not in heads:
                ids = full(c)
                if not tail or ids[-len(tail):] != tail:
                    return None
                heads[key] = ids[: -len(tail)]
            return heads[key] + tail

        sample = convs[:: max(1, len(convs) // 32)]
        exact = all(fast(c) == full(c) for c in sample)
        for c in convs:
            c.prompt_ids = (fast(c) if exact else None) or full(c)
        answers = self.tokenizer([c.answer for c in convs], add_special_tokens=False)["input_ids"]
        for c, ids in zip(convs, answers):
            c.answer_ids = ids

    def _count_truncated(self, convs: list[Conversation]) -> int:
        """How many answers ``max_answer_tokens`` cuts; warns, as a critic never learns to end those."""
        lengths = [len(c.answer_ids) for c in convs]
        cut = sum(n > self.config.max_answer_tokens for n in lengths)
        if cut:
            warnings.warn(f"{cut} of {len(convs)} answers are longer than max_answer_tokens="
                          f"{self.config.max_answer_tokens} (longest {max(lengths)}) and are cut: the critic will "
                          f"not learn how they end", stacklevel=2)
        return cut

    def collate(self, batch: list[Conversation]) -> dict[str, torch.Tensor]:
        """The encoded prompts with their answers appended (loss on answers only) and the videos' pixels."""
        ids, labels, weights = [], [], []
        for c in batch:
            prompt, answer = c.prompt_ids, c.answer_ids[: self.config.max_answer_tokens]
            ids.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
            w = [self.config.label_weight] * 2 + [1.0] * (len(answer) - 2)
            weights.append([0.0] * len(prompt) + w[: len(answer)])
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id
        out = {
            "input_ids": torch.tensor([x + [pad] * (width - len(x)) for x in ids]),
            "labels": torch.tensor([y + [-100] * (width - len(y)) for y in labels]),
            "loss_weights": torch.tensor([w + [0.0] * (width - len(w)) for w in weights]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
        }
        for key in batch[0].pixels:
            out[key] = _stack_padded([c.pixels[key] for c in batch])
        return {k: v.to(self.device) for k, v in out.items()}

    def loss(self, batch: list[Conversation]) -> torch.Tensor:
        """Token cross-entropy on the answer, the label's tokens weighted by ``label_weight``."""
        inputs = self.collate(batch)
        labels, weights = inputs.pop("labels"), inputs.pop("loss_weights")
        logits = self.model(**inputs).logits[:, :-1].float()
        target, w = labels[:, 1:], weights[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        return (ce * w).sum() / w.sum()

    def trainable_parameters(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def _optimizer(self, params: list[torch.Tensor], lr: float, total: int):
        """AdamW with linear warm-up (``warmup_ratio``) and linear decay to zero at ``total``."""
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=self.config.weight_decay)
        warmup = int(self.config.warmup_ratio * total)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
        return opt, sched

    def warmup_vision(self) -> dict:
        """Stage 1 (critic/train/vision_warmup.py): vision tower + connector through a pooled label head."""
        from tqdm.auto import tqdm

        from critic.train.vision_warmup import AttributeCode, PooledProbe, image_tokens, vision_parameters

        cfg, dims = self.config, self.rubric.dimensions
        labels = [lab.name for lab in self.rubric.labels]
        videos = self.train_convs[:: len(dims)]  # one conversation per video carries its frames
        prompts = [self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"] for r in self.train_rows]
        targets = torch.tensor([[labels.index(r.ratings[d.name].label) for d in dims] for r in self.train_rows])
        hidden = self.model.get_input_embeddings().embedding_dim
        code = None
        if cfg.vision_warmup_attributes:
            code = AttributeCode([r.shown for r in self.train_rows], [r.track for r in self.train_rows], cfg.frames,
                                 cfg.vision_warmup_code, cfg.vision_warmup_track)
            if not code.has_target.any() or code.width > hidden:
                raise InvalidParameterError(
                    f"vision_warmup_attributes needs training rows with `shown` or `track` and a code of at most "
                    f"{hidden} channels (the image tokens' width); got {int(code.has_target.sum())} rows, "
                    f"{code.width} channels")
        probe = PooledProbe(hidden, len(self.tokenizer), len(dims), len(labels), cfg.frames).to(self.device)
        params = vision_parameters(self.model) + list(probe.parameters())
        opt, sched = self._optimizer(params, cfg.vision_warmup_lr, cfg.vision_warmup_steps)
        per_step = max(1, cfg.batch_size // len(dims))  # the videos one SFT step sees
        rng, order, t0 = random.Random(cfg.seed + 1), [], time.perf_counter()
        bar = tqdm(total=cfg.vision_warmup_steps, desc="vision warm-up", disable=None)
        for step in range(1, cfg.vision_warmup_steps + 1):
            if len(order) < per_step:
                order = order + rng.sample(range(len(videos)), len(videos))
            idx, order = order[:per_step], order[per_step:]
            enc = {k: _stack_padded([videos[i].pixels[k] for i in idx]).to(self.device) for k in videos[idx[0]].pixels}
            feats = image_tokens(self.model, enc["pixel_values"], enc.get("pixel_attention_mask"))
            logits = probe(feats, [prompts[i] for i in idx])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets[idx].flatten().to(self.device))
            if code is not None:
                loss = loss + cfg.vision_warmup_attributes * code.loss(feats, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            self.history.append({"stage": "vision_warmup", "step": step, "loss": loss.item()})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        return {"vision_warmup_steps": cfg.vision_warmup_steps, "vision_warmup_s": time.perf_counter() - t0}

    def train(self) -> dict:
        from tqdm.auto import tqdm

        cfg = self.config
        stage1 = self.warmup_vision() if cfg.vision_warmup_steps else {}
        if cfg.freeze_vision:
            from critic.train.vision_warmup import vision_parameters

            for p in vision_parameters(self.model):
                p.requires_grad_(False)
        params = list(self.trainable_parameters().values())
        pool = self.epoch_pool()
        steps_per_epoch = math.ceil(len(pool) / cfg.batch_size)
        total = min(cfg.max_steps or 10**12, steps_per_epoch * cfg.epochs)
        opt, sched = self._optimizer(params, cfg.lr, total)
        rng = random.Random(cfg.seed)
        step, t0 = 0, time.perf_counter()
        bar = tqdm(total=total, desc="critic sft", disable=None)
        self.model.train()
        while step < total:
            order = list(pool)
            rng.shuffle(order)
            for start in range(0, len(order), cfg.batch_size):
                if step >= total:
                    break
                loss = self.loss([self.train_convs[i] for i in order[start : start + cfg.batch_size]])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                step += 1
                self.history.append({"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0]})
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                end_of_epoch = step % steps_per_epoch == 0 or step == total
                if self.val_rows and ((cfg.eval_every and step % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch)):
                    self.history[-1]["val"] = self.validate()
                    bar.write(f"step {step}: {json.dumps(self.history[-1]['val'])}")
                if cfg.save_every and step % cfg.save_every == 0:
                    self.save(self.out / f"checkpoint-{step}")
        bar.close()
        sft = [h for h in self.history if "stage" not in h]
        summary = {"steps": step, "train_s": time.perf_counter() - t0, "final_loss": sft[-1]["loss"],
                   "first_loss": sft[0]["loss"], **stage1}
        self.save(self.out / "final")
        (self.out / "history.json").write_text(json.dumps({"summary": summary, "history": self.history}, indent=1))
        return summary

    def epoch_pool(self) -> list[int]:
        """The conversations one epoch visits (indices into ``train_convs``, one per row and dimension): each
        ``dimension_weights[dimension]`` times, default once."""
        dims = [d.name for d in self.rubric.dimensions]
        weight = [self.config.dimension_weights.get(d, 1) for d in dims]
        return [i for i in range(len(self.train_convs)) for _ in range(weight[i % len(dims)])]

    def critic(self):
        """The model being trained, as a critic (greedy, no rationale): for validation."""
        from critic.vlm import VLMCritic

        return VLMCritic.from_components(self.model, self.processor, name="training", version="-", rationale_tokens=0)

    @torch.no_grad()
    def validate(self) -> dict:
        from critic.train.evaluate import evaluate_rows

        self.model.eval()
        try:
            report = evaluate_rows(self.critic(), self.val_rows, self.config.val, self.rubric.name, self.config.frames)
        finally:
            self.model.train()
        return {d: round(m["accuracy"], 3) for d, m in report["dimensions"].items()}

    def save(self, path: Path) -> Path:
        """LoRA: the adapter only (adapter_config.json + weights). Full: model + processor."""
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        if self.config.method == "full":
            self.processor.save_pretrained(path)
        sampling = FrameSampling.uniform(self.config.frames).describe()
        # the libraries it was trained with: a rerun of one config is bit-identical only with the same ones
        # (and the same CPU kind), which is what `make critic` reproducing eval.json rests on
        (path / "critic_config.json").write_text(json.dumps({"default_sampling": sampling, "rubric": self.rubric.name,
                                                             "trained_with": _library_versions()}))
        (path / "sft_config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        return path


def _library_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for lib in ("torch", "transformers", "peft", "tokenizers", "av", "numpy"):
        try:
            found[lib] = version(lib)
        except PackageNotFoundError:
            pass
    # MKL and oneDNN pick their kernels by the CPU's instruction set: another kind of CPU sums in another order
    return {**found, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _stack_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack per-video pixel tensors, zero-padding the trailing (image count, height, width) dimensions to the
    largest (a processor that keeps each video's size; the zero padding is masked by pixel_attention_mask)."""
    shape = [max(s) for s in zip(*(t.shape for t in tensors))]
    out = tensors[0].new_zeros((len(tensors), *shape))
    for k, t in enumerate(tensors):
        out[(k, *(slice(0, n) for n in t.shape))] = t
    return out
