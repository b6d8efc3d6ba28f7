"""The one definition of entropy and KL divergence used by every chapter.

All quantities are in nats (natural logarithm). The convention 0 · log 0 = 0 is exact: a
zero-probability outcome contributes exactly zero, never NaN, in values and in gradients.

NaN is never dropped: only an exact zero takes the 0 · log 0 branch, so a NaN anywhere in an input
slice (a probability, an estimate or a logit) makes that slice's result NaN, with and without jit.
Negative "probabilities" are not probabilities: their log is NaN, and so is the result.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["entropy", "entropy_from_logits", "kl", "kl_from_log"]


def _float(x: jax.Array) -> jax.Array:
    """Promotes integers and low-precision floats to at least float32."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def entropy(p: jax.Array, axis: int = -1) -> jax.Array:
    """Shannon entropy H(p) = -Σ p log p of probability vectors, in nats.

    Args:
      p: probabilities, shape (..., n, ...) with the distribution along `axis`; each slice
        should sum to one (not checked: this is a kernel).
      axis: the axis holding the distribution.

    Returns:
      Entropy with `axis` removed, shape (...), dtype at least float32. A slice holding a NaN
      or a negative entry gives NaN (exact zeros give 0 · log 0 = 0).
    """
    p = _float(p)
    # `p == 0` rather than `p > 0`: NaN and negative entries must reach the log, not be skipped.
    zero = p == 0
    # Double `where` keeps the gradient finite for p == 0 entries.
    safe = jnp.where(zero, 1.0, p)
    return -jnp.sum(jnp.where(zero, 0.0, safe * jnp.log(safe)), axis=axis)


def entropy_from_logits(logits: jax.Array, axis: int = -1) -> jax.Array:
    """Entropy of softmax(logits) in nats, computed in one fused, float32-stable pass.

    Uses H = log Z - Σ_v e_v s_v / Z with s = logits - max(logits), e = exp(s), Z = Σ e, so the
    probabilities are never materialised in low precision and no log of a probability is
    taken. bf16/f16 logits are promoted to float32; `-inf` logits (masked vocabulary entries)
    contribute exactly 0. A NaN logit makes its slice NaN (through Z); so does a slice with no
    finite maximum (all `-inf`, or a `+inf` logit), whose softmax is undefined.

    Args:
      logits: unnormalised log-probabilities, e.g. `logits_btv` of shape (batch, time, vocab).
      axis: the vocabulary axis.

    Returns:
      Entropy with `axis` removed, shape (...), dtype float32 (float64 for float64 input).
    """
    x = _float(logits)
    x_max = jnp.max(x, axis=axis, keepdims=True)
    x_max = jnp.where(jnp.isfinite(x_max), x_max, 0.0)
    s = x - x_max
    e = jnp.exp(s)
    z = jnp.sum(e, axis=axis)
    # e == 0 exactly where s == -inf (or underflows): that term is 0 · (-inf) → 0 by convention.
    es = jnp.sum(jnp.where(e > 0, e * jnp.where(e > 0, s, 0.0), 0.0), axis=axis)
    return jnp.log(z) - es / z


def kl(q: jax.Array, q_hat: jax.Array, axis: int = -1) -> jax.Array:
    """Forward Kullback–Leibler divergence K[q, q̂] = Σ q log(q / q̂), in nats.

    Terms with q = 0 are exactly 0 (whatever finite or infinite q̂ is); a term with q > 0 and
    q̂ = 0 is +inf, which is the true value of the loss. A NaN in q or in q̂ (even where
    q = 0: a broken estimate must not pass for a good one) makes the slice NaN, and so does a
    negative entry of q, or of q̂ where q > 0.

    Args:
      q: true distribution, shape (..., n, ...).
      q_hat: estimate, broadcastable against `q`.
      axis: the axis holding the distributions.

    Returns:
      K[q, q̂] with `axis` removed, dtype at least float32.
    """
    q, q_hat = jnp.broadcast_arrays(_float(q), _float(q_hat))
    dtype = jnp.promote_types(q.dtype, q_hat.dtype)
    q, q_hat = q.astype(dtype), q_hat.astype(dtype)
    zero = (q == 0) & ~jnp.isnan(q_hat)
    safe_q = jnp.where(zero, 1.0, q)
    safe_q_hat = jnp.where(zero, 1.0, q_hat)
    # One log of the ratio: half the transcendental work of log q − log q̂.
    return jnp.sum(jnp.where(zero, 0.0, safe_q * jnp.log(safe_q / safe_q_hat)), axis=axis)


def kl_from_log(q: jax.Array, log_q_hat: jax.Array, axis: int = -1) -> jax.Array:
    """K[q, q̂] = Σ q (log q − log q̂) with the estimate given by its logarithm, in nats.

    Use it when q̂ comes from an exponential family (e.g. MaxEnt's exp(−βz)/Z): its log is
    exact even where q̂ itself underflows to 0, so the divergence stays finite and correct.
    Terms with q = 0 are exactly 0 (also where log q̂ = −inf); a NaN in q or in log q̂
    anywhere in the slice, or a negative q, makes the slice NaN.

    Args:
      q: true distribution, shape (..., n, ...).
      log_q_hat: log of the estimate, broadcastable against `q`.
      axis: the axis holding the distributions.

    Returns:
      K[q, q̂] with `axis` removed, dtype at least float32.
    """
    q = _float(q)
    log_q_hat = _float(log_q_hat)
    q, log_q_hat = jnp.broadcast_arrays(q, log_q_hat)
    zero = (q == 0) & ~jnp.isnan(log_q_hat)
    safe_q = jnp.where(zero, 1.0, q)
    return jnp.sum(jnp.where(zero, 0.0, safe_q * (jnp.log(safe_q) - log_q_hat)), axis=axis)
