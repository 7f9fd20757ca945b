"""What a run writes for people (written by the main rank only): the per-step log (log.csv and
TensorBoard), the held-out evaluations (holdout.csv), and the reward curve with held-out points.

A resumed run cuts each record back to its checkpoint's step first, so a step is never logged twice.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path


class StepRecords:
    def __init__(self, out: Path, method: str, tensorboard: bool):
        self.out, self.method = out, method
        self.log, self.holdout = out / "log.csv", out / "holdout.csv"
        self._tb_enabled = tensorboard
        self._tb = None

    def reset(self) -> None:
        """A fresh start: nothing from a run killed before its first checkpoint survives."""
        for p in (self.log, self.holdout):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.out / "tensorboard", ignore_errors=True)

    def cut_to(self, step: int) -> None:
        """Drop rows after ``step`` (what the unfinished steps wrote before a kill)."""
        for p in (self.log, self.holdout):
            if p.exists():
                rows = list(csv.DictReader(open(p)))
                kept = [r for r in rows if int(r["step"]) <= step]
                p.unlink()
                for r in kept:
                    _append(p, r)
        self._purge_step = step + 1

    def writer(self):
        if not self._tb_enabled:
            return None
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=getattr(self, "_purge_step", None))
        return self._tb

    def step(self, row: dict) -> None:
        _append(self.log, row)
        if tb := self.writer():
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    tb.add_scalar(f"train/{k}", v, row["step"])
            tb.flush()

    def evaluation(self, step: int, tag: str, mean_reward: float, n: int) -> None:
        _append(self.holdout, {"step": step, "tag": tag, "mean_reward": mean_reward, "videos": n})
        if tb := self.writer():
            tb.add_scalar("holdout/mean_reward", mean_reward, step)
            tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def plot(self) -> Path | None:
        """reward_curve.png: the training batches' mean reward per step, and the held-out points."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        rows = list(csv.DictReader(open(self.log))) if self.log.exists() else []
        held = list(csv.DictReader(open(self.holdout))) if self.holdout.exists() else []
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([int(r["step"]) for r in rows], [float(r["mean_reward"]) for r in rows], label="training batches")
        if held:
            ax.plot([int(r["step"]) for r in held], [float(r["mean_reward"]) for r in held], "o--", color="C3",
                    label="held-out prompts (same seeds)")
        ax.set_xlabel("step")
        ax.set_ylabel("mean reward")
        ax.set_title(f"{self.method}: reward from the critic service")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(self.out / "reward_curve.png")
        plt.close(fig)
        return self.out / "reward_curve.png"


def _append(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
