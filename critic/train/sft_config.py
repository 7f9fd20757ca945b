"""Configuration of critic SFT: a typed dataclass; YAML and the command line only fill it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import yaml

from contract.errors import InvalidParameterError


@dataclass
class SFTConfig:
    model: str = field(metadata={"help": "Initial checkpoint (folder or hub id), or 'tiny:PRESET' to build "
                                         "a random tiny Idefics3 (e.g. tiny:critic)."})
    train: str = field(metadata={"help": "Ratings JSONL (critic/data/ratings.py)."})
    output_dir: str = field(metadata={"help": "Where checkpoints and the final model/adapter go."})
    val: str | None = field(default=None, metadata={"help": "Held-out ratings JSONL for validation."})
    rubric: str = field(default="lift", metadata={"help": "Rubric whose questions are asked."})
    frames: int = field(default=8, metadata={"help": "Uniformly sampled frames per video."})
    method: Literal["lora", "full"] = field(default="lora", metadata={"help": "LoRA adapter or full fine-tuning."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (LiFT: 128 for 13B, 64 for 40B)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (LiFT: 2 x r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                           metadata={"help": "Module names that get adapters."})
    epochs: int = field(default=3, metadata={"help": "Passes over the training set."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimizer steps."})
    batch_size: int = field(default=8, metadata={"help": "Conversations per step."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate (LiFT: 1e-5 for 13B)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Linear warm-up share of all steps."})
    grad_clip: float = field(default=1.0, metadata={"help": "Max gradient norm."})
    max_answer_tokens: int = field(default=64, metadata={"help": "Answer (label + rationale) tokens kept."})
    label_weight: float = field(default=1.0, metadata={"help": "Loss weight of the answer's first two tokens "
                                                              "(the label) relative to the rationale's."})
    vision_warmup_steps: int = field(default=0, metadata={"help": "Stage 1 for critics trained from random weights "
                                                                   "(full only): steps that train the vision tower "
                                                                   "and connector through a pooled label head "
                                                                   "(critic/train/vision_warmup.py) before SFT; "
                                                                   "batch_size / dimensions videos a step."})
    vision_warmup_lr: float = field(default=3e-3, metadata={"help": "Peak learning rate of the vision warm-up."})
    vision_warmup_attributes: float = field(default=0.0, metadata={"help": "Weight of the warm-up's attribute code "
                                                                          "(critic/train/vision_warmup.py): needs "
                                                                          "rows with `shown` (synthetic sets)."})
    vision_warmup_code: list[str] | None = field(default=None, metadata={
        "help": "What the attribute code holds: `shown` attributes (colour, shape, count, background, fidelity) "
                "and/or `track` (where the objects are in each frame); default everything the rows carry."})
    vision_warmup_track: float = field(default=1.0, metadata={
        "help": "Weight of the code's track channels against one attribute channel: the precision of the objects' "
                "per-frame position, which jumps and stalls are read from."})
    freeze_vision: bool = field(default=False, metadata={"help": "Stage 2 trains the language model only: the "
                                                                 "vision tower and connector keep their weights."})
    dimension_weights: dict[str, int] = field(default_factory=dict, metadata={
        "help": "Conversations of a dimension per row and epoch (default 1), e.g. {semantic_consistency: 2}."})
    eval_every: int = field(default=0, metadata={"help": "Validate every N steps; 0: after each epoch."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N steps; 0: only at the end."})
    seed: int = field(default=0, metadata={"help": "Seeds the model build, the shuffling and the dropout."})
    device: str | None = field(default=None, metadata={"help": "torch device; default cuda if available."})

    def __post_init__(self):
        checks = [
            (self.method in ("lora", "full"), f"method must be 'lora' or 'full', got {self.method!r}"),
            (self.frames >= 1, "frames must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.lora_r >= 1 and self.lora_alpha >= 1, "lora_r and lora_alpha must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.max_answer_tokens >= 2, "max_answer_tokens must be >= 2"),
            (self.label_weight > 0, "label_weight must be > 0"),
            (self.vision_warmup_steps >= 0 and self.vision_warmup_lr > 0, "vision warm-up steps/lr must be >= 0/> 0"),
            (self.vision_warmup_attributes >= 0, "vision_warmup_attributes must be >= 0"),
            (self.vision_warmup_track >= 0, "vision_warmup_track must be >= 0"),
            (all(isinstance(w, int) and w >= 1 for w in self.dimension_weights.values()),
             f"dimension_weights must be whole numbers >= 1, got {self.dimension_weights}"),
            (not self.freeze_vision or self.method == "full",
             "freeze_vision needs method 'full' (a LoRA run trains its adapters only)"),
            (self.vision_warmup_steps == 0 or self.method == "full",
             "vision_warmup_steps needs method 'full' (a LoRA adapter would not keep the warmed-up tower)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InvalidParameterError(f"SFTConfig: {msg}")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides) -> "SFTConfig":
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(f"{path}: unknown SFT settings {sorted(unknown)}")
        base = os.path.dirname(os.path.abspath(path))
        for key in ("train", "val"):  # data paths are relative to the config file
            if data.get(key) and not os.path.isabs(data[key]):
                data[key] = os.path.join(base, data[key])
        model = data.get("model")  # so is a local starting checkpoint (a hub id or tiny:PRESET is left alone)
        if isinstance(model, str) and model.startswith(".") and os.path.isdir(os.path.join(base, model)):
            data["model"] = os.path.normpath(os.path.join(base, model))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)

    def to_dict(self) -> dict:
        """The settings; paths inside the working directory are written relative to it."""
        d = asdict(self)
        for key in ("model", "train", "val"):
            if d[key] and os.path.isabs(d[key]) and d[key].startswith(os.getcwd() + os.sep):
                d[key] = os.path.relpath(d[key])
        return d
