"""Argument checks shared by the library and the launchers.

Three kinds, one module so that every chapter words its errors the same way:

- Library arguments (`counts`, `positive`, `encoding`, `positive_int`, ...). Value checks run only
  on concrete inputs: inside `jit`/`vmap` the values are abstract, so the check is skipped there
  and the boundary function that received concrete data runs it instead (`bayes_risk` checks its
  estimator's arguments before tracing, `nmf.check_input` checks a stacked batch before a vmap).
  Where a skipped check is cheap to express on device, the traced function returns NaN instead
  (`poison`), so a bad value is never turned into a plausible number. Every error names the
  offending argument.
- Launcher flags (`ConfigError` and the `flag_*` helpers): a launcher calls them at the top of
  `main`, before it creates its output directory or loads anything, and every message reads
  "--flag: what is wrong (got X)".
- Files (`read_text`, `read_json`): decoding and parsing errors name the file and the line.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _concrete(x):
    return np.asarray(x) if is_concrete(x) else None


# --------------------------------------------------------------------------------------------
# Library arguments.


def counts(name: str, m) -> None:
    """Counts: at least 1-D with n ≥ 2 outcomes on the last axis, nonnegative, finite."""
    shape = np.shape(m)
    if len(shape) < 1:
        raise ValueError(f"`{name}` must have the outcomes on its last axis; got a scalar.")
    if shape[-1] < 2:
        raise ValueError(f"`{name}` needs n >= 2 outcomes on its last axis; got n = {shape[-1]}.")
    v = _concrete(m)
    if v is not None:
        if not np.all(np.isfinite(v)):
            raise ValueError(f"`{name}` has non-finite entries.")
        if np.any(v < 0):
            raise ValueError(f"`{name}` has negative entries (min {v.min()}); counts must be >= 0.")


def positive(name: str, x, *, allow_zero: bool = False) -> None:
    """A parameter that must be > 0 (or >= 0 with `allow_zero`), e.g. a Dirichlet α or ML's b."""
    v = _concrete(x)
    if v is None:
        return
    if not np.all(np.isfinite(v)):
        raise ValueError(f"`{name}` has non-finite entries.")
    bad = np.any(v < 0) if allow_zero else np.any(v <= 0)
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}; got min {np.min(v)}.")


def finite(name: str, x) -> None:
    """No NaN or infinite entries (concrete inputs only)."""
    v = _concrete(x)
    if v is not None and not np.all(np.isfinite(v)):
        bad = np.argwhere(~np.isfinite(v))
        where = f" (first at index {tuple(int(i) for i in bad[0])})" if v.ndim else ""
        raise ValueError(f"`{name}` has {len(bad)} NaN or infinite entries{where}.")


def in_unit_interval(name: str, x) -> None:
    """A probability or a set of probabilities: finite values in [0, 1] (concrete inputs only)."""
    v = _concrete(x)
    if v is None:
        return
    if not np.all(np.isfinite(v)):
        raise ValueError(f"`{name}` has NaN or infinite entries.")
    if v.size and (v.min() < 0 or v.max() > 1):
        raise ValueError(f"`{name}` must lie in [0, 1]; got range [{v.min()}, {v.max()}].")


def _integer_scalar_array(x) -> bool:
    return (isinstance(x, np.ndarray | jax.Array) and is_concrete(x) and x.ndim == 0
            and jnp.issubdtype(x.dtype, jnp.integer))


def positive_int(name: str, value, *, minimum: int = 1) -> int:
    """A static size (a Python or NumPy integer, not a bool or a float) >= `minimum`; returned as int."""
    if _integer_scalar_array(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    if int(value) < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")
    return int(value)


def same_n(name_a: str, n_a: int, name_b: str, n_b: int) -> None:
    if n_a != n_b:
        raise ValueError(
            f"shape mismatch: `{name_a}` has n = {n_a} outcomes but `{name_b}` has n = {n_b}."
        )


def encoding(name: str, z, n: int | None = None) -> None:
    """Numeric encodings of the outcomes: 1-D, finite, pairwise distinct (any order)."""
    if np.ndim(z) != 1:
        raise ValueError(f"`{name}` must be 1-D (one value per outcome); got shape {np.shape(z)}.")
    if n is not None:
        same_n(name, np.shape(z)[0], "counts", n)
    if np.shape(z)[0] < 2:
        raise ValueError(f"`{name}` needs n >= 2 outcomes; got {np.shape(z)[0]}.")
    v = _concrete(z)
    if v is not None:
        if not np.all(np.isfinite(v)):
            raise ValueError(f"`{name}` has non-finite entries.")
        if np.unique(v).size != v.size:
            raise ValueError(f"`{name}` must have pairwise distinct values (two outcomes share one).")


def poison(x: jax.Array, bad: jax.Array) -> jax.Array:
    """`x` with NaN wherever `bad` (broadcast against x): the traced stand-in for a skipped check.

    A check that needs values cannot raise under `jit`; turning the affected results into NaN
    makes the bad input visible downstream (NaN propagates through `entropy`, `kl` and every
    mean) instead of letting it pass as a plausible number.
    """
    return jnp.where(bad, jnp.asarray(jnp.nan, jnp.result_type(x, float)), x)


def check_estimator_call(estimator: Callable, n: int, args: Sequence, *, caller: str) -> None:
    """Runs an estimator's own argument checks on concrete `args`, before anything is traced.

    Estimators of this package carry `check_args(n, *args, **kwargs)` (see `arg_check`); for
    `functools.partial(estimator, **keywords)` the keywords are checked too. For any estimator
    the call `estimator(counts, *args)` must fit its signature. Errors name the caller, the
    estimator and the argument.
    """
    import functools
    import inspect

    fn, keywords = estimator, {}
    if isinstance(estimator, functools.partial) and not estimator.args:
        fn, keywords = estimator.func, dict(estimator.keywords)
    label = getattr(fn, "__name__", type(fn).__name__)
    try:
        signature = inspect.signature(estimator)
    except (TypeError, ValueError):  # some builtins and C callables have none
        signature = None
    if signature is not None:
        try:
            signature.bind(None, *args)
        except TypeError as e:
            params = ", ".join(signature.parameters)
            raise ValueError(f"{caller}: `args` = {tuple(args)!r} do not fit {label}({params}) ({e}).") from None
    check = getattr(fn, "check_args", None)
    if check is None or not is_concrete(tuple(args)):
        return
    try:
        check(n, *args, **keywords)
    except ValueError as e:
        raise ValueError(f"{caller}: argument of {label}: {e}") from None


def arg_check(check: Callable) -> Callable:
    """Decorator: attaches `check(n, *args, **kwargs)` to an estimator as `estimator.check_args`.

    `check` receives the number of outcomes n instead of the counts and must raise ValueError
    naming the argument; integrators (`bayes_risk`) call it on the concrete arguments before
    tracing, where the estimator's own checks would be skipped.
    """

    def attach(fn):
        fn.check_args = check
        return fn

    return attach


# --------------------------------------------------------------------------------------------
# Launcher flags.


class ConfigError(ValueError):
    """An invalid launcher argument; the message starts with the flag, e.g. "--loss: ..."."""


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """For a launcher's `cli`: a bad flag (`ConfigError`), a refused resume or unreadable store
    (`stores.StoreError`) or an --out held by another process (`stores.RunLockedError`) ends the process with
    "error: …" on stderr and exit status 1 instead of a traceback."""
    from entropy_jax.stores import RunLockedError, StoreError

    try:
        yield
    except (ConfigError, StoreError, RunLockedError) as e:
        raise SystemExit(f"error: {e}") from None


def flag(field: str) -> str:
    """The command-line spelling of a config field (tyro's): n_iter → --n-iter."""
    return "--" + field.replace("_", "-")


def flag_error(field: str, what: str, got: Any) -> ConfigError:
    return ConfigError(f"{flag(field)}: {what} (got {got!r})")


def flag_int(field: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """An integer flag in [lo, hi] (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise flag_error(field, "must be an integer", value)
    _flag_range(field, value, lo, hi, "an integer")
    return int(value)


def flag_float(field: str, value, lo: float | None = None, hi: float | None = None, *,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in [lo, hi] ((lo, hi) with the open flags)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise flag_error(field, "must be a finite number", value)
    _flag_range(field, value, lo, hi, "a number", lo_open=lo_open, hi_open=hi_open)
    return float(value)


def _flag_range(field, value, lo, hi, kind, *, lo_open=False, hi_open=False) -> None:
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if not (low_bad or high_bad):
        return
    left = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
    right = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
    if lo is not None and hi is not None:
        what = f"must be {kind} in {left}, {right}"
    elif lo is not None:
        what = f"must be {kind} {'>' if lo_open else '>='} {lo:g}"
    else:
        what = f"must be {kind} {'<' if hi_open else '<='} {hi:g}"
    raise flag_error(field, what, value)


def flag_choice(field: str, value, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise flag_error(field, f"must be one of {', '.join(choices)}", value)
    return value


def flag_ints(field: str, values, lo: int | None = None, hi: int | None = None, *,
              distinct: bool = True) -> tuple[int, ...]:
    """A non-empty list of integers in [lo, hi], pairwise distinct unless `distinct=False`."""
    values = _flag_list(field, values, "integers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise flag_error(field, "every value must be an integer", v)
        _flag_range(field, v, lo, hi, "an integer")
    if distinct:
        _flag_distinct(field, values)
    return tuple(int(v) for v in values)


def flag_floats(field: str, values, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False, distinct: bool = True) -> tuple[float, ...]:
    values = _flag_list(field, values, "numbers")
    for v in values:
        flag_float(field, v, lo, hi, lo_open=lo_open, hi_open=hi_open)
    if distinct:
        _flag_distinct(field, values)
    return tuple(float(v) for v in values)


def flag_choices(field: str, values, choices: Iterable[str]) -> tuple[str, ...]:
    """A non-empty list of distinct values, each one of `choices`."""
    values = _flag_list(field, values, "values")
    for v in values:
        flag_choice(field, v, choices)
    _flag_distinct(field, values)
    return tuple(values)


def _flag_list(field, values, kind) -> list:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise flag_error(field, f"must be a list of {kind}", values)
    values = list(values)
    if not values:
        raise flag_error(field, f"needs at least one value (a list of {kind})", values)
    return values


def _flag_distinct(field, values) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise flag_error(field, f"lists {v!r} twice", list(values))
        seen.add(v)


def flag_parse(field: str, parse: Callable, value):
    """`parse(value)`, its ValueError reworded as a ConfigError naming the flag."""
    try:
        return parse(value)
    except ValueError as e:
        raise ConfigError(f"{flag(field)}: {e}") from None


def flag_out_dir(field: str, path) -> Path:
    """An output directory: may exist (resume), must not be a file; nothing is created here."""
    p = Path(path).expanduser()
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                raise flag_error(field, f"{parent} exists and is not a directory", str(path))
            if not os.access(parent, os.W_OK | os.X_OK):
                raise flag_error(field, f"{parent} is not writable", str(path))
            break
    return p


MAX_SEED = 2**63 - 1  # seeds become numpy/JAX uint64 keys
DTYPES = ("float32", "bfloat16", "float16")  # what `entropy_jax.llm.load` accepts


def flag_seed(field: str, value) -> int:
    return flag_int(field, value, 0, MAX_SEED)


def flag_optional_int(field: str, value, lo: int | None = None, hi: int | None = None) -> int | None:
    """None, or an integer flag in [lo, hi]."""
    return None if value is None else flag_int(field, value, lo, hi)


def flag_text(field: str, value, *, optional: bool = False) -> str | None:
    """A non-empty string (None allowed with `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise flag_error(field, "must be a non-empty string", value)
    return value


def flag_model(field: str, source) -> str:
    """A model source `entropy_jax.llm.load` can read, checked without loading it: an alias whose wheel is
    installed, an existing .gguf file, a directory with a readable config.json, or a hub id (owner/name). Returns
    its kind ("alias", "gguf", "hf", "hub")."""
    from entropy_jax.llm.api import check_source

    flag_text(field, str(source) if isinstance(source, Path) else source)
    try:
        return check_source(source)
    except (ValueError, OSError) as e:
        raise ConfigError(f"{flag(field)}: {e}") from None


def flag_data(field: str, source, *, split: str | None = None, limit: int | None = None) -> list:
    """The questions of a --data source (`entropy_jax.data.mcqa.load`); a missing, unreadable or malformed file
    is a ConfigError naming the flag, the file and the line."""
    from entropy_jax.data import mcqa

    flag_text(field, str(source) if isinstance(source, Path) else source)
    try:
        return mcqa.load(source, split=split, limit=limit)
    except (ValueError, OSError) as e:
        raise ConfigError(f"{flag(field)}: {e}") from None


def flag_mesh(**axes) -> None:
    """Mesh axis flags (data / fsdp / tensor sizes): each ≥ 1 or -1 (all remaining devices), at most one -1."""
    for name, v in axes.items():
        flag_int(name, v, -1)
        if v == 0:
            raise flag_error(name, "must be >= 1, or -1 for all remaining devices", v)
    if sum(v == -1 for v in axes.values()) > 1:
        raise ConfigError(f"at most one of {', '.join(map(flag, axes))} may be -1 (got "
                          + ", ".join(f"{flag(k)} {v}" for k, v in axes.items()) + ")")


def too_long(lengths: dict[str, int], context: int, *, what: str, field: str = "data",
             skip_flag: str = "skip_long") -> ConfigError:
    """The error for questions whose prompts do not fit a model's context: names the ids and the way out."""
    over = sorted(lengths.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{i} ({n} tokens)" for i, n in over[:5]) + (f" and {len(over) - 5} more" if len(over) > 5 else "")
    return ConfigError(f"{flag(field)}: {len(over)} questions do not fit the context of {what} ({context} "
                       f"positions): {shown}; pass {flag(skip_flag)} to skip them (counted in the results)")


def flag_resume_file(path: Path, resume: bool) -> None:
    """A damaged partial-results file of an interrupted run is named here (with the way out), not deep in the
    resume logic."""
    if resume and path.exists():
        flag_json_file("resume", path, "Delete the file or pass --no-resume.")


def flag_json_file(field: str, path: Path, way_out: str) -> Any:
    """An existing JSON file a run will reuse (a partial result, an earlier output): read here,
    before any work, so a damaged one is named with the flag that leads to it and `way_out`
    (e.g. "Delete the file or pass --no-resume.")."""
    try:
        return read_json(path)
    except ValueError as e:
        raise ConfigError(f"{flag(field)}: {e} {way_out}") from None


# --------------------------------------------------------------------------------------------
# Files.


def decode_utf8(data: bytes, path) -> str:
    """UTF-8 (a leading BOM is dropped); a decoding error names the file, line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
            "save the file as UTF-8."
        ) from None


def read_text(path: str | os.PathLike) -> str:
    """The text of a UTF-8 file; errors name the file (and, for bad bytes, the line)."""
    p = Path(path)
    return decode_utf8(p.read_bytes(), p)  # OSError messages already carry the file name


def parse_json(text: str, path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}, line {e.lineno}: invalid JSON ({e.msg} at column {e.colno}).") from None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's value; bad bytes or bad JSON name the file and the line."""
    return parse_json(read_text(path), path)
