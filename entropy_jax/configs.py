"""Frozen run configs: which fields change results, the settings a resume compares, and the CLI line of a config.

A config is a frozen dataclass (nested dataclasses allowed: `FinetuneConfig.train` is a `TrainConfig`, set on
the command line as `--train.lr`). Fields that cannot change a result — where to write, progress bars,
resuming, checkpoint cadence, the device mesh — are declared with `runtime(...)`, once, next to the field:

    out: Path = configs.runtime(Path("results/mcqa"))

`settings(config)` is every other field (nested ones as nested dicts): what a run records in its directory and
what a resume must find unchanged, for every launcher alike. `cli(module, config)` is the command that runs
`config` (flags for the fields that differ from the defaults), so printed "reproduce with" lines cannot drift.
"""

from __future__ import annotations

import dataclasses
import shlex
import types
import typing
from pathlib import Path
from typing import Any

RUNTIME = "entropy_jax.runtime_only"

__all__ = ["RUNTIME", "cli", "cli_args", "is_runtime", "runtime", "settings"]


def runtime(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that does not change results (left out of `settings`)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={RUNTIME: True})


def is_runtime(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(RUNTIME, False))


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return settings(x)
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, Path):
        return str(x)
    return x


def settings(config: Any) -> dict:
    """Every field of `config` not declared with `runtime`, nested dataclasses as dicts, as JSON-ready values
    (tuples become lists, paths strings)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {config!r}")
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config) if not is_runtime(f)}


# ------------------------------------------------------------------------------------------------ CLI lines
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_optional_dataclass(tp: Any) -> bool:
    args = typing.get_args(tp)
    return (typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args
            and any(dataclasses.is_dataclass(a) for a in args))


def _value(v: Any) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [x for item in v for x in _value(item)]
    if v is None:
        return ["None"]
    return [str(v)]


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _args(config: Any, prefix: str, defaults: Any = None) -> tuple[list[str], list[list[str]]]:
    """(flags, subcommands): flags of the fields that differ from their defaults (`defaults`: an instance holding
    them, e.g. a nested field's default value; else the class's); an optional nested dataclass that is set is a
    tyro subcommand (`train.lora:lora-config` and its own flags), which must come last."""
    flags: list[str] = []
    subcommands: list[list[str]] = []
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), prefix + f.name
        default = getattr(defaults, f.name) if defaults is not None else _default_of(f)
        if _is_optional_dataclass(hints[f.name]):
            if value is None:
                if default is not None:
                    raise ValueError(f"{name}: cannot write None for a field whose default is set")
                continue
            cls_name = type(value).__name__
            sub_name = "".join("-" + c.lower() if c.isupper() else c for c in cls_name).lstrip("-")
            inner, deeper = _args(value, name + ".", default if type(default) is type(value) else None)
            subcommands.append([f"{name.replace('_', '-')}:{sub_name}", *inner])
            subcommands += deeper
            continue
        if dataclasses.is_dataclass(value):
            inner, deeper = _args(value, name + ".", default if type(default) is type(value) else None)
            flags += inner
            subcommands += deeper
            continue
        if value == default:
            continue
        if isinstance(value, bool):
            flags.append(_flag(name) if value else _flag(_no(name)))
        else:
            flags += [_flag(name), *_value(value)]
    return flags, subcommands


def _no(name: str) -> str:
    head, _, last = name.rpartition(".")
    return f"{head}.no_{last}" if head else f"no_{name}"


def cli_args(config: Any) -> list[str]:
    """The command-line arguments that make tyro build `config` from its class (defaults left out)."""
    flags, subcommands = _args(config, "")
    return flags + [a for sub in subcommands for a in sub]


def cli(module: str, config: Any, *, skip: tuple[str, ...] = ("progress",)) -> str:
    """`python -m MODULE --flag value …` for `config`, shell-quoted; fields in `skip` (presentation only) are left
    at their defaults."""
    if skip:
        config = dataclasses.replace(config, **{k: _default_of(next(f for f in dataclasses.fields(config)
                                                                     if f.name == k))
                                                for k in skip if hasattr(config, k)})
    return " ".join(["python", "-m", module, *map(shlex.quote, cli_args(config))])
