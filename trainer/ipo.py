"""IPO's rounds for the preference methods (DPO, KTO).

``schedule: rounds`` runs IPO as published: at the start of each round the current model
generates the whole round's set (``steps_per_round`` batches) and the service labels it; the
round then trains on that set, one batch per step. The labelled set is kept on disk
(``rounds/round_NNN/rank_R.pt``), so a run resumed mid-round trains on the same set.
``schedule: on_policy`` keeps today's blocks: every step generates and labels its own batch.

``refresh_reference``: at each round's end the round's adapter is merged into the weights and
a fresh adapter starts, so the reference (the network with the adapter off) is the previous
round's model. The rounds' adapters then stack: ``load_round_adapters`` rebuilds the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.config import ConfigError, LoopConfig
from trainer.loop import AlignmentLoop, Sample

SCHEDULES = ("on_policy", "rounds")


@dataclass
class IPOConfig(LoopConfig):
    steps_per_round: int = field(default=5, metadata={"help": "Steps per IPO round; the adapter is saved each round."})
    schedule: str = field(default="on_policy", metadata={"help": "rounds: at each round's start the model generates "
                                                                 "and the service labels the round's whole set, "
                                                                 "then the round trains on it (IPO); on_policy: "
                                                                 "each step generates and labels its own batch."})
    refresh_reference: bool = field(default=False, metadata={"help": "The reference becomes the previous round's "
                                                                     "model (its adapter merged into the weights); "
                                                                     "off: the base model in every round."})

    def __post_init__(self):
        super().__post_init__()
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.steps_per_round < 1:
            raise ConfigError("steps_per_round must be >= 1")


def merge_adapter(transformer, seed: int) -> None:
    """Fold the active LoRA into the frozen weights, then restart it (B = 0: the policy equals the new reference)."""
    from peft.tuners.lora import LoraLayer

    torch.manual_seed(seed)  # the fresh A matrices: the same on every rank
    for module in transformer.modules():
        if isinstance(module, LoraLayer):
            for name in module.active_adapters:
                weight = module.get_base_layer().weight
                weight.data += module.get_delta_weight(name).to(weight.dtype)
                module.reset_lora_parameters(name, True)


def load_round_adapters(pipe, out: str | os.PathLike, rounds: int | None = None) -> int:
    """Merge a refresh_reference run's round adapters (round_001, round_002, ...) into ``pipe``'s weights."""
    from safetensors.torch import load_file

    from trainer.generator import add_lora

    paths = sorted(Path(out).glob("round_[0-9][0-9][0-9]"))[:rounds]
    if not paths:
        raise FileNotFoundError(f"no round adapters in {out}")
    add_lora(pipe, rank=_rank_of(paths[0]))
    for path in paths:
        _set_lora(pipe, load_file(path / "pytorch_lora_weights.safetensors"))
        merge_adapter(pipe.transformer, 0)
    pipe.transformer.disable_adapters()  # everything is in the weights now
    return len(paths)


def _rank_of(path: Path) -> int:
    from safetensors.torch import load_file

    a = next(v for k, v in load_file(path / "pytorch_lora_weights.safetensors").items() if "lora_A" in k)
    return a.shape[0]


def _set_lora(pipe, saved: dict) -> None:
    from peft import set_peft_model_state_dict

    state = {k.removeprefix("transformer."): v for k, v in saved.items()}
    set_peft_model_state_dict(pipe.transformer, state)


class IPOLoop(AlignmentLoop):
    """The loop of DPO and KTO: round schedule and reference refresh."""

    def collect(self, step: int, prompts: list[str] | None = None, tag: str = "train",
                seed_step: int | None = None) -> list[Sample]:
        if self.config.schedule != "rounds" or prompts is not None or tag != "train":
            return super().collect(step, prompts, tag, seed_step)
        spr = self.config.steps_per_round
        path = self.out / "rounds" / f"round_{step // spr:03d}" / f"rank_{self.ranks.rank}.pt"
        if not path.exists():  # the round's start: the current model generates, the service labels, all of it
            first = step - step % spr
            sets = {}
            for s in range(first, min(first + spr, self.config.steps)):
                samples = super().collect(s)
                sets[s] = ([_stored(x) for x in samples], self.batch)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(sets, path.with_suffix(".tmp"))
            path.with_suffix(".tmp").rename(path)
        rows, self.batch = torch.load(path, weights_only=False)[step]
        return [Sample(**r) for r in rows]

    def after_step(self) -> None:
        super().after_step()
        c = self.config
        if c.refresh_reference and self.step % c.steps_per_round == 0 and self.step < c.steps:
            self.ranks.barrier()  # the round's adapter is on disk before anyone moves on
            self.refresh(self.step // c.steps_per_round)

    def refresh(self, rounds_done: int) -> None:
        merge_adapter(self.pipe.transformer, self.config.seed + rounds_done)
        self.opt.state.clear()  # a fresh adapter: fresh optimizer moments

    def start(self) -> bool:
        c = self.config
        if c.refresh_reference and not self._started and self.has_checkpoint():
            done = torch.load(self.out / "checkpoint" / "state.pt", weights_only=False)["step"]
            from safetensors.torch import load_file

            for r in range(1, min(done, c.steps - 1) // c.steps_per_round + 1):  # rebuild the merged weights
                _set_lora(self.pipe, load_file(self.out / f"round_{r:03d}" / "pytorch_lora_weights.safetensors"))
                self.refresh(r)
        return super().start()


def _stored(s: Sample) -> dict:
    """A labelled sample as kept in a round's set (no frames: the video file and latents are enough)."""
    import numpy as np

    return {"prompt": s.prompt, "seed": s.seed, "latents": s.latents.cpu(), "frames": np.zeros((0,), np.uint8),
            "video": s.video, "result": s.result, "index": s.index, "request_id": s.request_id}
