"""``lift-critic``: score or compare videos from the command line; prints JSON.

Bad input ends with a non-zero exit and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import get_args

from contract.errors import CriticError
from contract.protocol import AGGREGATES
from contract.sampling import SegmentRule
from critic.loading import DEFAULT_CRITIC

EXIT_BAD_INPUT = 2


def _add_backend_args(p: argparse.ArgumentParser, rationale_tokens: int | None = None) -> None:
    from critic.backends import BACKENDS

    p.add_argument("--model", default=None, help="checkpoint folder or hub id, or 'model-free' (default: the "
                   "shipped critic models/lift-critic-tiny, as the service's)")
    p.add_argument("--backend", default=None, choices=sorted(BACKENDS),
                   help="critic backend (default: transformers, or model-free with --model model-free)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option (value read as YAML), e.g. -o dtype=bfloat16; repeatable")
    p.add_argument("--rationale-tokens", type=int, default=rationale_tokens,
                   help="rationale length bound of VLM backends (ignored by others); 0 switches rationales off")
    p.add_argument("--device", default=None, help="torch device of backends that take one")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="the text the video was generated from")
    _add_backend_args(p)
    p.add_argument("--rubric", default=None, help="registered rubric name or a YAML file (default: the critic's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--frames", type=int, help="uniform sampling: this many frames at span midpoints")
    g.add_argument("--linspace", type=int, metavar="N", help="LiFT's sampling: N frames at linspace(0, n-1, N)")
    g.add_argument("--fps", type=float, help="sample at this many frames per second")
    g.add_argument("--segments", type=int, help="segmental sparse sampling: one frame in each of K segments")
    g.add_argument("--all-frames", action="store_true", help="use every decoded frame")
    p.add_argument("--seed", type=int, default=0, help="seed for segmental sampling")
    p.add_argument("--segment-rule", default="cover", choices=get_args(SegmentRule),
                   help="segments: 'cover' spans the whole clip; 'tsn' (VGen) uses span F//K and never the tail")
    p.add_argument("--aggregate", default=None, choices=AGGREGATES,
                   help="image-reward: how per-frame scores become the reward (default: the critic's)")
    p.add_argument("--attenuation-lambda", type=float, default=None,
                   help="image-reward: lambda of the temporal attenuation exp(-lambda * |i - F//2|) (default 1)")


def _sampling(args):
    """The flags' ``FrameSampling`` (a bad value is ``invalid_parameter``), or None: the rubric's, else the critic's."""
    from pydantic import ValidationError

    from contract.errors import InvalidParameterError, invalid
    from contract.sampling import FrameSampling

    try:
        if args.frames is not None:
            return FrameSampling.uniform(args.frames)
        if args.fps is not None:
            return FrameSampling.at_fps(args.fps)
        if args.segments is not None:
            return FrameSampling.segmental(args.segments, seed=args.seed, rule=args.segment_rule)
        if args.linspace is not None:
            return FrameSampling.linspace(args.linspace)
        if args.all_frames:
            return FrameSampling.every_frame()
    except ValidationError as e:
        raise invalid(e, InvalidParameterError) from None
    return None


def _options(args) -> dict:
    import yaml

    from contract.errors import InvalidParameterError

    options = {}
    for kv in args.option:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"--option takes KEY=VALUE, got {kv!r}")
        options[key] = yaml.safe_load(value)
    return options


def _critic(args):
    from transformers.utils import logging as hf_logging

    from critic.loading import load_critic

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    shorthands = {k: getattr(args, k) for k in ("rationale_tokens", "device") if getattr(args, k) is not None}
    return load_critic(model_of(args), backend=args.backend, options=_options(args), defaults=shorthands)


def model_of(args) -> str | None:
    """The model the command loads: ``--model``, else the shipped critic (the service's default too)
    for the transformers backend, else none (a backend without weights, or one that must be told)."""
    if args.model is None and args.backend in (None, "transformers"):
        return DEFAULT_CRITIC
    return args.model


def _inputs(args, critic, videos):
    from critic.base import prepare_input

    from critic.rubrics import get_rubric

    rubric = get_rubric(args.rubric or critic.default_rubric)
    sampling = _sampling(args) or rubric.frame_sampling(critic.default_sampling)
    chosen = {k: getattr(args, k) for k in ("aggregate", "attenuation_lambda") if getattr(args, k) is not None}
    return [prepare_input(Path(v), args.prompt, rubric, sampling, max_side=critic.input_side, **chosen) for v in videos]


def cmd_score(args) -> dict:
    critic = _critic(args)
    return critic.score(_inputs(args, critic, [args.video]))[0].model_dump(mode="json")


def cmd_compare(args) -> dict:
    critic = _critic(args)
    a, b = _inputs(args, critic, [args.video_a, args.video_b])
    return critic.compare(a, b).model_dump(mode="json")


def cmd_sample(args) -> dict:
    from contract.video import encode_video
    from critic.samples import make_clip

    data = encode_video(make_clip(args.num_frames, args.size, defect=args.defect, seed=args.seed), fps=args.fps)
    Path(args.out).write_bytes(data)
    return {"path": args.out, "bytes": len(data), "frames": args.num_frames, "defect": args.defect}


def cmd_build_tiny(args) -> dict:
    from critic.tiny import BUILDERS

    kwargs = {"preset": args.preset} if args.arch == "idefics3" else {}
    return {"path": str(BUILDERS[args.arch](args.out, **kwargs)), "arch": args.arch}


def cmd_synth(args) -> dict:
    from contract.errors import InvalidParameterError
    from critic.data.synthetic import generate

    if args.renderer != "train":  # the evaluation-only sets draw their own clips and prompts
        from critic.data.eval_renderer import generate_eval
        from critic.data.sample_clips import generate_sample_clips

        if args.domain != "fixed" or args.prompt_variants or args.undirected:
            raise InvalidParameterError(f"--renderer {args.renderer} draws its own clips: no --domain, --prompt-variants "
                                        "or --undirected")
        held_out = {"eval": generate_eval, "samples": generate_sample_clips}[args.renderer]
        path = held_out(args.out, args.n, seed=args.seed, name=args.name)
    else:
        path = generate(args.out, args.n, seed=args.seed, num_frames=args.num_frames, size=args.size, name=args.name,
                        prompt_variants=args.prompt_variants, domain=args.domain, undirected=args.undirected)
    return {"ratings": str(path), "videos": args.n, "seed": args.seed, "renderer": args.renderer, "domain": args.domain}


def cmd_train(args) -> dict:
    from critic.train.sft_config import SFTConfig
    from critic.train.sft_trainer import SFTTrainer

    config = SFTConfig.from_yaml(args.config, output_dir=args.output_dir, epochs=args.epochs, max_steps=args.max_steps)
    trainer = SFTTrainer(config)
    summary = trainer.train()
    return {**summary, "output": str(trainer.out / "final"), "method": config.method}


def cmd_eval(args) -> dict:
    """One set: its report. Several ``NAME=PATH`` sets: ``{"rubric", "sets": {NAME: report}}``."""
    from contract.errors import InvalidParameterError
    from critic.train.evaluate import evaluate

    sets = dict(_named_set(d) for d in args.data)
    if len(sets) != len(args.data) or (len(sets) > 1 and None in sets):
        raise InvalidParameterError("several --data sets must each be named once, as NAME=PATH")
    critic = _critic(args)
    reports = {name: evaluate(critic, path, rubric=args.rubric, frames=args.frames, baseline=args.baseline)
               for name, path in sets.items()}
    for set_name, report in reports.items():
        print(f"== {set_name or args.data[0]} ({report['n']} videos)", file=sys.stderr)
        _print_report(report)
    if list(reports) == [None]:
        return reports[None]
    return {"rubric": next(iter(reports.values()))["rubric"], "sets": reports}


def cmd_calibrate(args) -> dict:
    """Fit each dimension's label temperature on a rated set and store it in the checkpoint (critic/train/calibrate.py)."""
    from contract.errors import InvalidParameterError
    from critic.train.calibrate import calibrate

    if args.model is None:
        raise InvalidParameterError("calibrate writes into a checkpoint: name it with --model DIR")
    report = calibrate(_critic(args), args.model, args.data, frames=args.frames, write=not args.dry_run)
    for name, m in report["dimensions"].items():
        print(f"{name}: temperature {m['temperature']:.3f}, NLL {m['nll'][0]:.3f} -> {m['nll'][1]:.3f}, "
              f"ECE {m['ece'][0]:.3f} -> {m['ece'][1]:.3f}", file=sys.stderr)
    return report


def _named_set(arg: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or a bare ``PATH``."""
    name, sep, path = arg.partition("=")
    return (name, path) if sep and name and not Path(arg).exists() else (None, arg)


def _print_report(report: dict) -> None:
    from critic.train.metrics import format_confusion

    for name, m in report["dimensions"].items():
        print(f"{name}: accuracy {m['accuracy']:.3f} (majority {m['majority_baseline']['label']} "
              f"{m['majority_baseline']['accuracy']:.3f}), macro-F1 {m['macro_f1']:.3f}, Spearman {m['spearman']:.3f}, "
              f"ECE {m['ece']:.3f}, pairwise {m['pairwise_accuracy']:.3f}\n{format_confusion(m['confusion'])}",
              file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lift-critic", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score one video against its prompt")
    p.add_argument("video")
    _add_model_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("compare", help="P(A better than B) per dimension and overall, with ties")
    p.add_argument("video_a")
    p.add_argument("video_b")
    _add_model_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sample", help="write a procedural sample mp4 (optionally with a defect)")
    p.add_argument("out")
    p.add_argument("--defect", default=None, choices=["flicker", "freeze", "jump", "blur", "noise"])
    p.add_argument("--num-frames", type=int, default=17)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("build-tiny", help="build a tiny random VLM checkpoint offline")
    p.add_argument("out")
    p.add_argument("--arch", default="idefics3",
                   choices=["idefics3", "qwen2_vl", "qwen2_5_vl", "llava_onevision", "clip"])
    p.add_argument("--preset", default="tiny", choices=["tiny", "critic", "small"])
    p.set_defaults(func=cmd_build_tiny)
    p = sub.add_parser("synth", help="write a synthetic rated-video set (mp4 + ratings JSONL)")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--name", default="ratings.jsonl")
    p.add_argument("--prompt-variants", type=int, default=0,
                   help="extra rows per clip: the same file under another prompt (semantic label follows)")
    p.add_argument("--undirected", type=float, default=0.0,
                   help="share of rows whose prompt names no direction (reversed motion is then Good)")
    p.add_argument("--domain", default="fixed", choices=["fixed", "random"],
                   help="fixed: one style (the default); random: domain randomisation (critic/data/randomised.py)")
    p.add_argument("--renderer", default="train", choices=["train", "eval", "samples"],
                   help="eval: the independent evaluation renderer (critic/data/eval_renderer.py); samples: the "
                        "sample clips (lift-critic sample), rated (critic/data/sample_clips.py); neither is trainable")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="fine-tune a VLM critic on ratings with rationales (LoRA or full)")
    p.add_argument("--config", required=True, help="SFT YAML (critic/train/sft_config.py)")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy, macro-F1, Spearman, ECE, pairwise accuracy, confusion on ratings")
    p.add_argument("--data", required=True, action="append",
                   help="ratings JSONL to evaluate on; repeat as NAME=PATH for several sets in one report")
    p.add_argument("--baseline", default=None, help="ratings JSONL whose majority labels are the baseline")
    _add_backend_args(p, rationale_tokens=0)  # evaluation reads labels only
    p.add_argument("--rubric", default=None)
    p.add_argument("--frames", type=int, default=8)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("calibrate", help="fit each dimension's label temperature on held-out ratings (validation "
                                         "split) and store it in the checkpoint's critic_config.json")
    p.add_argument("--data", required=True, help="ratings JSONL to fit on (a validation split, not the test set)")
    _add_backend_args(p, rationale_tokens=0)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--dry-run", action="store_true", help="report the temperatures without writing them")
    p.set_defaults(func=cmd_calibrate)
    return ap


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    try:
        result = args.func(args)
    except CriticError as e:
        print(f"lift-critic: error: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if result is not None:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
