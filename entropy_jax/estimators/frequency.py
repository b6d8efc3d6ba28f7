"""Frequency estimators: regularised maximum likelihood and the uniform baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from entropy_jax import _validate

__all__ = ["regularized_ml", "uniform"]


def as_float(m: jax.Array) -> jax.Array:
    """`m` as an array of at least the default float dtype (counts may be integers)."""
    m = jnp.asarray(m)
    return m.astype(jnp.promote_types(m.dtype, jnp.result_type(float)))


def _check_ml(n: int, b=1.0) -> None:
    _validate.positive("b", b, allow_zero=True)


@_validate.arg_check(_check_ml)
def regularized_ml(counts: jax.Array, b: float | jax.Array = 1.0) -> jax.Array:
    """Regularised maximum likelihood p_k = (m_k + b) / (M + n b).

    b = 0 is plain ML (zero probability for unseen outcomes: infinite forward KL whenever the
    true q_k > 0); b = 1 is Laplace's rule; b → ∞ shrinks to uniform.

    Args:
      counts: (..., n) nonnegative counts m; M = Σ_k m_k per row.
      b: pseudo-count ≥ 0, scalar or broadcastable to (...,).

    Returns:
      (..., n) probabilities.

    Concrete arguments are checked (ValueError naming the argument). Under `jit`/`vmap` the
    checks cannot run: rows whose b is negative or NaN come out NaN, NaN counts propagate, and
    negative counts are not detected (`bayes_risk` checks b before tracing).
    """
    _validate.counts("counts", counts)
    _check_ml(jnp.shape(counts)[-1], b)
    m = as_float(counts)
    b = jnp.asarray(b, m.dtype)[..., None]
    n = m.shape[-1]
    return _validate.poison((m + b) / (m.sum(-1, keepdims=True) + n * b), ~(b >= 0))


def uniform(counts: jax.Array) -> jax.Array:
    """The data-free MaxEnt solution q_k = 1/n, shaped like `counts`: the symmetry baseline."""
    _validate.counts("counts", counts)
    m = as_float(counts)
    return jnp.full(m.shape, 1.0 / m.shape[-1], m.dtype)
