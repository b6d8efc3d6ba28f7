"""The probabilistic reading of NMF: P ≈ B W as p(π, i) ≈ Σ_b p(π|b) p(i|b) p(b).

With column sums s_b = Σ_π B_πb and row sums t_b = Σ_i W_bi,
  B W = Σ_b s_b t_b · (B_·b / s_b) ⊗ (W_b· / t_b),
so p(π|b) = B_πb / s_b, p(i|b) = W_bi / t_b and p(b) ∝ s_b t_b, normalized by Z = Σ_b s_b t_b
(= Σ_πi (BW)_πi). The product is unchanged; only the bookkeeping is probabilistic.

Zero columns/rows cannot be normalized: a component with s_b = 0 or t_b = 0 contributes
nothing to BW; it gets p(b) = 0, uniform conditionals (so entropies stay defined) and
`dead[b] = True`. Likewise an all-zero image column of P has no p(π|i): `image_conditional`
returns the uniform distribution there and flags it. NaN is not "zero": a NaN in B, W or P
propagates into the probabilities (and every entropy computed from them) instead of marking a
component dead.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Factorization", "image_conditional", "joint", "normalize", "reconstruction"]


class Factorization(NamedTuple):
    """NMF factors in probabilistic form.

    Attributes:
      p_pixel: (pixels, R) p(π|b), columns sum to one.
      p_b: (R,) p(b), sums to one.
      p_image: (R, images) p(i|b), rows sum to one.
      dead: (R,) components with a zero basis column or weight row.
    """

    p_pixel: jax.Array
    p_b: jax.Array
    p_image: jax.Array
    dead: jax.Array


def normalize(B: jax.Array, W: jax.Array) -> Factorization:
    """Rescales (B, W) to (p(π|b), p(b), p(i|b)) without changing B W up to its total mass."""
    s = B.sum(0)
    t = W.sum(1)
    dead = (s <= 0) | (t <= 0)
    p_pixel = jnp.where(dead[None, :], 1.0 / B.shape[0], B / jnp.where(dead, 1.0, s)[None, :])
    p_image = jnp.where(dead[:, None], 1.0 / W.shape[1], W / jnp.where(dead, 1.0, t)[:, None])
    mass = jnp.where(dead, 0.0, s * t)
    return Factorization(p_pixel, mass / mass.sum(), p_image, dead)


def joint(P: jax.Array) -> jax.Array:
    """p(π, i) = P_πi / Σ P, shape (pixels, images)."""
    return P / P.sum()


def image_conditional(P: jax.Array) -> tuple[jax.Array, jax.Array]:
    """p(π|i) = P_πi / Σ_π P_πi per image column, and a flag for all-zero images (uniform)."""
    col = P.sum(0)
    empty = col <= 0
    cond = jnp.where(empty[None, :], 1.0 / P.shape[0], P / jnp.where(empty, 1.0, col)[None, :])
    return cond, empty


def reconstruction(f: Factorization) -> jax.Array:
    """p̂(π, i) = Σ_b p(π|b) p(b) p(i|b), shape (pixels, images)."""
    return (f.p_pixel * f.p_b[None, :]) @ f.p_image
