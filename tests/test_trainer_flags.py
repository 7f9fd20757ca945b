"""Every trainer config field is a command-line flag; flags compose with (and override) the YAML."""

from __future__ import annotations

import dataclasses

import pytest

from trainer.cli import METHODS, method_of, parser
from trainer.config import ConfigError
from trainer.flags import compose


def _parse(argv):
    args = vars(parser(method_of(None, None) if "--method" not in argv else argv[argv.index("--method") + 1])
                .parse_args(argv))
    return {k: v for k, v in args.items() if k not in ("config", "method", "stop_after", "build_tiny")}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_field_is_a_flag_with_its_help(method, capsys):
    cls = METHODS[method][0]
    with pytest.raises(SystemExit):
        parser(method).parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(cls):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
        assert " ".join(f.metadata["help"].split())[:30] in text, f.name


def test_flag_types():
    flags = _parse(["--method", "rwr", "--steps", "7", "--lr", "0.5", "--betas", "0.8", "0.99",
                    "--sampling", "{strategy: all}", "--gradient-checkpointing", "--vae_tiling", "false",
                    "--holdout-prompts", "none", "--dtype", "bfloat16", "--service", "http://x:1"])
    assert flags == {"steps": 7, "lr": 0.5, "betas": [0.8, 0.99], "sampling": {"strategy": "all"},
                     "gradient_checkpointing": True, "vae_tiling": False, "holdout_prompts": None,
                     "dtype": "bfloat16", "service_url": "http://x:1"}
    with pytest.raises(SystemExit):
        _parse(["--method", "rwr", "--tensorboard", "maybe"])


def test_yaml_and_flags_compose_flags_win(tmp_path):
    (tmp_path / "p.txt").write_text("a red ball\n")
    y = tmp_path / "c.yaml"
    y.write_text("method: dpo\npipeline: pipe\nprompts: p.txt\noutput_dir: out\nbeta: 50.0\nsteps: 3\n")
    cls = METHODS[method_of(str(y), None)][0]
    cfg = compose(cls, str(y), _parse(["--method", "dpo", "--beta", "7", "--lora-rank", "2"]))
    assert (cfg.beta, cfg.lora_rank, cfg.steps) == (7.0, 2, 3)  # flags over YAML, YAML over defaults
    assert cfg.prompts == str(tmp_path / "p.txt")  # paths in the YAML stay relative to it
    assert type(cfg).__name__ == "DPOConfig"


def test_flags_alone_and_what_is_missing():
    cls = METHODS["rwr"][0]
    cfg = compose(cls, None, _parse(["--pipeline", "p", "--prompts", "q", "--output-dir", "o", "--num-frames", "17"]))
    assert cfg.num_frames == 17 and cfg.normalization == "none"
    with pytest.raises(ConfigError, match="output_dir"):
        compose(cls, None, _parse(["--pipeline", "p", "--prompts", "q"]))
    with pytest.raises(ConfigError, match="8k\\+1"):
        compose(cls, None, _parse(["--pipeline", "p", "--prompts", "q", "--output-dir", "o", "--num-frames", "10"]))


def test_cli_errors_are_one_line(tmp_path, capsys):
    from trainer.cli import main

    assert main(["--method", "rwr", "--pipeline", "p", "--prompts", "q"]) == 2
    assert "missing settings" in capsys.readouterr().err
