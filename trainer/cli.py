"""``lift-train --config FILE [--service URL]``: align the generator with rewards from the critic service.

With no URL (and none in the config) it starts a local service itself. With holdout prompts
it prints the mean held-out reward before and after training, from the same seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import yaml

from trainer.config import ConfigError
from trainer.dpo_config import DPOConfig
from trainer.dpo_trainer import DPOTrainer
from trainer.edit_config import EditConfig
from trainer.edit_trainer import EditTrainer
from trainer.kto_config import KTOConfig
from trainer.kto_trainer import KTOTrainer
from trainer.rwr_config import RWRConfig
from trainer.rwr_trainer import RWRTrainer

# method name -> (config class, trainer class). Adding a method is one entry.
METHODS = {"rwr": (RWRConfig, RWRTrainer), "dpo": (DPOConfig, DPOTrainer), "kto": (KTOConfig, KTOTrainer),
           "edit": (EditConfig, EditTrainer)}


def build(config_path: str, **overrides):
    with open(config_path) as f:
        method = (yaml.safe_load(f) or {}).get("method", "rwr")
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    cfg_cls, trainer_cls = METHODS[method]
    return trainer_cls(cfg_cls.from_yaml(config_path, **overrides))


def run(trainer, stop_after: int | None = None) -> dict:
    from trainer.loop import read_prompts

    url = trainer.connect()
    try:
        holdout = read_prompts(trainer.config.holdout_prompts) if trainer.config.holdout_prompts else None
        report = {"method": trainer.method, "service": url}
        if holdout and trainer.step == 0 and not (trainer.out / "checkpoint").exists():
            report["holdout_before"] = trainer.evaluate(holdout, "before")
        t0 = time.perf_counter()
        report.update(trainer.train(stop_after=stop_after))
        report["train_wall_s"] = time.perf_counter() - t0
        if holdout and trainer.step >= trainer.config.steps:
            report["holdout_after"] = trainer.evaluate(holdout, "after")
        return report
    finally:
        trainer.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lift-train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="trainer YAML (method: rwr, ...)")
    ap.add_argument("--service", default=None, help="critic service URL (default: start a local one)")
    ap.add_argument("--output-dir", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--build-tiny", metavar="OUT", help="build a tiny random CogVideoX pipeline folder and exit")
    args = ap.parse_args(argv)
    try:
        if args.build_tiny:
            from trainer.generator import build_tiny_cogvideox

            print(json.dumps({"pipeline": str(build_tiny_cogvideox(args.build_tiny))}))
            return 0
        if not args.config:
            ap.error("--config is required")
        trainer = build(args.config, service_url=args.service, output_dir=args.output_dir, steps=args.steps)
        print(json.dumps(run(trainer), indent=2))
        return 0
    except (ConfigError, FileNotFoundError) as e:
        print(f"lift-train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
