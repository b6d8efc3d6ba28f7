"""Argument checks for public functions.

Value checks run only on concrete inputs: inside `jit`/`vmap` the values are abstract, so the
check is skipped there and the boundary function that received concrete data has already run it.
Every error names the offending argument.
"""

from __future__ import annotations

import jax
import numpy as np


def is_concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _concrete(x):
    return np.asarray(x) if is_concrete(x) else None


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
