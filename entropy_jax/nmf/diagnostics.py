"""Entropy diagnostics of an approximate factorization (in nats) and Hoyer sparseness.

The synopsis observes that NMF smooths images, S_i ≤ Ŝ_i for most images, and that basis
images localize (lower H(π|b)) in the stable range of ranks. These are measured here, not
assumed. A NaN in the data or the factors gives NaN entropies and fractions (see
`entropy_jax.info`), never a value computed from the other entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from entropy_jax.info import entropy
from entropy_jax.nmf.prob import image_conditional

__all__ = ["basis_entropies", "hoyer_sparseness", "image_entropies", "reconstruction_entropies", "smoothing"]


def image_entropies(P: jax.Array) -> jax.Array:
    """S_i = H(p(π|i)) of each image column of P, shape (images,)."""
    return entropy(image_conditional(P)[0], axis=0)


def reconstruction_entropies(B: jax.Array, W: jax.Array) -> jax.Array:
    """Ŝ_i = H(p̂(π|i)) of each column of the reconstruction B W, shape (images,)."""
    return image_entropies(B @ W)


def basis_entropies(B: jax.Array) -> jax.Array:
    """H(π|b) of each basis image (column of B, normalized), shape (R,)."""
    return image_entropies(B)


def smoothing(P: jax.Array, B: jax.Array, W: jax.Array) -> dict[str, jax.Array]:
    """S_i, Ŝ_i and the fraction of images with S_i ≤ Ŝ_i (the synopsis' smoothing signature).

    NaN anywhere in the data or the factors gives NaN entropies and a NaN fraction.
    """
    s, s_hat = image_entropies(P), reconstruction_entropies(B, W)
    # A NaN entropy must not count as "not smoothed": the fraction is NaN then.
    smoothed = jnp.where(jnp.isnan(s) | jnp.isnan(s_hat), jnp.nan, (s <= s_hat).astype(s.dtype))
    return {"S": s, "S_hat": s_hat, "fraction_smoothed": jnp.mean(smoothed)}


def hoyer_sparseness(x: jax.Array, axis: int = 0) -> jax.Array:
    """Hoyer (2004) sparseness (√n − ‖x‖₁/‖x‖₂)/(√n − 1) ∈ [0, 1] along `axis` (1 = one-hot).

    A zero vector gets 0; NaN entries give NaN. Needs n ≥ 2 entries along `axis`.
    """
    n = x.shape[axis]
    if n < 2:
        raise ValueError(f"`x` needs at least 2 entries along axis {axis} for Hoyer sparseness; got {n}.")
    l1 = jnp.sum(jnp.abs(x), axis=axis)
    l2 = jnp.sqrt(jnp.sum(x * x, axis=axis))
    ratio = jnp.where(l2 > 0, l1 / jnp.where(l2 > 0, l2, 1.0), jnp.sqrt(n))
    return (jnp.sqrt(n) - ratio) / (jnp.sqrt(n) - 1.0)
