"""``python -m trainer.align``: the alignment evidence. Each method trains the tiny CogVideoX against
a real critic service and reports the mean held-out reward before and after, from the same seeds.

rwr, dpo, kto and edit-service use the model-free critic's brightness rubric (a reward the tiny
generator can move); edit-differentiable back-propagates the tiny CLIP's reward and is scored by
an image-reward service on the same CLIP (VGen's attenuated aggregation). Results go to
``OUT/align.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import time
from pathlib import Path

CONFIGS = Path(__file__).parent / "configs"
# name -> (YAML, critic service, overrides)
RUNS = {
    "rwr": ("brightness_rwr.yaml", "model-free", {}),
    "dpo": ("brightness_dpo.yaml", "model-free", {}),
    "kto": ("brightness_kto.yaml", "model-free", {}),
    "edit-service": ("brightness_edit.yaml", "model-free", {}),
    "edit-differentiable": ("clip_edit.yaml", "image-reward", {}),
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service(kind: str, models: Path) -> str:
    from clients import CriticClient
    from serving import launch

    port = _port()
    if kind == "model-free":
        cfg = launch.load_config(model=None, http_port=port, grpc_port=_port())
    else:
        cfg = launch.load_config(model=str(models / "tiny-clip"), http_port=port, grpc_port=_port(),
                                 critic={"backend": "image-reward", "options": {"aggregate": "attenuated"}})
    launch.start(cfg, wait_s=180)
    url = f"http://127.0.0.1:{port}"
    CriticClient(url).wait_ready(180)
    return url


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.align", description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(RUNS), help=f"comma-separated, of {list(RUNS)}")
    ap.add_argument("--steps", type=int, default=None, help="override each config's steps")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config field for every run (value read as YAML), e.g. --set balance=none; repeatable")
    ap.add_argument("--out", default=".cache/align", help="runs and align.json go here")
    ap.add_argument("--models", default=".cache/models", help="tiny-cogvideox and tiny-clip (built if missing)")
    args = ap.parse_args(argv)
    from critic.tiny import build_tiny_clip
    from serving import launch
    from trainer.cli import build, run
    from trainer.generator import build_tiny_cogvideox

    models, out = Path(args.models), Path(args.out)
    if not (models / "tiny-cogvideox" / "model_index.json").exists():
        build_tiny_cogvideox(models / "tiny-cogvideox")
    if not (models / "tiny-clip" / "config.json").exists():
        build_tiny_clip(models / "tiny-clip")
    import yaml

    extra = {k: yaml.safe_load(v) for k, _, v in (kv.partition("=") for kv in args.set)}
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(names) - set(RUNS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}")
    results = {}
    for kind in ("model-free", "image-reward"):
        todo = [n for n in names if RUNS[n][1] == kind]
        if not todo:
            continue
        url = _service(kind, models)
        try:
            for name in todo:
                yaml_name, _, overrides = RUNS[name]
                run_dir = out / name
                shutil.rmtree(run_dir, ignore_errors=True)
                flags = {"service_url": url, "output_dir": str(run_dir), "pipeline": str(models / "tiny-cogvideox"),
                         **overrides, **extra, **({"steps": args.steps} if args.steps else {})}
                if kind == "image-reward":
                    flags["reward_model"] = str(models / "tiny-clip")
                t0 = time.perf_counter()
                report = run(build(str(CONFIGS / yaml_name), **flags))
                results[name] = {"before": report["holdout_before"], "after": report["holdout_after"],
                                 "gain": report["holdout_after"] - report["holdout_before"], "steps": report["steps"],
                                 "critic": kind, "config": yaml_name, "wall_s": round(time.perf_counter() - t0, 1)}
                print(json.dumps({name: results[name]}), flush=True)
        finally:
            launch.shutdown()
    out.mkdir(parents=True, exist_ok=True)
    (out / "align.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'method':<22}{'before':>10}{'after':>10}{'gain':>10}  critic")
    for name, r in results.items():
        print(f"{name:<22}{r['before']:>10.4f}{r['after']:>10.4f}{r['gain']:>+10.4f}  {r['critic']}")
    return 0 if all(r["gain"] > 0 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
