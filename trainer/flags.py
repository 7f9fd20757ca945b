"""Every field of a dataclass config as a command-line flag (HfArgumentParser-style), composed with YAML.

``--lora-rank 16`` (or ``--lora_rank 16``) sets ``lora_rank``; the field's ``help`` metadata is the
flag's help. Booleans take ``--flag`` / ``--flag false``; tuples take one value per element;
dicts take a YAML or JSON mapping (``--sampling '{strategy: all}'``). Flags override the YAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

import yaml

from trainer.config import ConfigError


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _mapping(text: str) -> dict:
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{strategy: all}}', got {text!r}")
    return value


def _optional(text: str, kind):
    return None if text.lower() in ("none", "null") else kind(text)


def _strip_optional(tp):
    """(type without None, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {tp}")
        return args[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of ``cls``; unset flags are absent from the parsed namespace (argparse.SUPPRESS)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} (YAML keys of the same name)")
    for f in dataclasses.fields(cls):
        tp, nullable = _strip_optional(hints[f.name])
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS}
        origin = typing.get_origin(tp) or tp
        if tp is bool:
            kw.update(type=_bool, nargs="?", const=True, metavar="BOOL")
        elif origin is tuple:
            kinds = typing.get_args(tp)
            kw.update(type=kinds[0], nargs=len(kinds))
        elif origin is dict:
            kw.update(type=_mapping, metavar="MAPPING")
        elif tp in (int, float, str):
            kw.update(type=(lambda text, k=tp: _optional(text, k)) if nullable else tp, metavar=tp.__name__.upper())
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for type {tp}")
        default = None if f.default is dataclasses.MISSING else f.default
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        text = f.metadata.get("help", "")
        kw["help"] = f"{text} ({'required unless in the YAML' if required else f'default: {default}'})"
        flag = f.name.replace("_", "-")
        group.add_argument(f"--{flag}", *([f"--{f.name}"] if flag != f.name else []), **kw)


def compose(cls, yaml_path: str | None, flags: dict):
    """The config from the YAML (if any) with ``flags`` on top."""
    if yaml_path:
        return cls.from_yaml(yaml_path, **flags)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in flags]
    if missing:
        raise ConfigError(f"{cls.__name__}: missing settings {missing} (give --config FILE or the flags)")
    return cls(**flags)
