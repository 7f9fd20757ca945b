"""``lift-train [--config FILE] [--FIELD VALUE ...]``: align the generator with rewards from the critic service.

Every config field is also a flag (``lift-train --method rwr --help`` lists them); flags override
the YAML. With no service URL it starts a local service itself. With holdout prompts it prints
the mean held-out reward before and after training, from the same seeds. Under
``accelerate launch`` each process generates and scores its share of every batch.
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
from trainer.flags import add_dataclass_arguments, compose
from trainer.kto_config import KTOConfig
from trainer.kto_trainer import KTOTrainer
from trainer.rwr_config import RWRConfig
from trainer.rwr_trainer import RWRTrainer

# method name -> (config class, trainer class). Adding a method is one entry.
METHODS = {"rwr": (RWRConfig, RWRTrainer), "dpo": (DPOConfig, DPOTrainer), "kto": (KTOConfig, KTOTrainer),
           "edit": (EditConfig, EditTrainer)}


def method_of(config_path: str | None, flag: str | None) -> str:
    method = flag
    if method is None and config_path:
        with open(config_path) as f:
            method = (yaml.safe_load(f) or {}).get("method")
    method = method or "rwr"
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {sorted(METHODS)}")
    return method


def build(config_path: str | None, method: str | None = None, **flags):
    """The method's trainer from the YAML (if any) with ``flags`` (field name -> value) on top."""
    cfg_cls, trainer_cls = METHODS[method_of(config_path, method)]
    return trainer_cls(compose(cfg_cls, config_path, flags))


def run(trainer, stop_after: int | None = None) -> dict:
    url = trainer.connect()
    try:
        report = {"method": trainer.method, "service": url, "run_id": trainer.run_id}
        if trainer.holdout and trainer.step == 0 and not trainer.has_checkpoint():
            report["holdout_before"] = trainer.evaluate_holdout(0, "before")
        t0 = time.perf_counter()
        report.update(trainer.train(stop_after=stop_after))
        report["train_wall_s"] = time.perf_counter() - t0
        if trainer.holdout and trainer.step >= trainer.config.steps:
            report["holdout_after"] = trainer.evaluate_holdout(trainer.step, "after")
            trainer.plot()
        return report
    finally:
        trainer.close()


def parser(method: str | None, add_help: bool = True) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lift-train", description=__doc__.splitlines()[0], add_help=add_help)
    ap.add_argument("--config", help="trainer YAML (its keys are the flags below)")
    ap.add_argument("--method", choices=sorted(METHODS), help="alignment method (default: the YAML's, else rwr)")
    ap.add_argument("--service", dest="service_url", default=argparse.SUPPRESS, help="alias of --service-url")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="stop after this many steps in this invocation (time-sliced jobs); rerun to resume")
    ap.add_argument("--build-tiny", metavar="OUT", help="build a tiny random CogVideoX pipeline folder and exit")
    if method:
        add_dataclass_arguments(ap, METHODS[method][0])
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        pre, _ = parser(None, add_help=False).parse_known_args(argv)  # --help waits for the method's flags
        if pre.build_tiny:
            from trainer.generator import build_tiny_cogvideox

            print(json.dumps({"pipeline": str(build_tiny_cogvideox(pre.build_tiny))}))
            return 0
        method = method_of(pre.config, pre.method)
        args = vars(parser(method).parse_args(argv))
        config_path, stop_after = args.pop("config"), args.pop("stop_after")
        args.pop("build_tiny"), args.pop("method")
        trainer = build(config_path, method, **args)
        report = run(trainer, stop_after=stop_after)
        if trainer.is_main:
            print(json.dumps(report, indent=2), flush=True)
        trainer.ranks.close()
        return 0
    except (ConfigError, FileNotFoundError) as e:
        print(f"lift-train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
