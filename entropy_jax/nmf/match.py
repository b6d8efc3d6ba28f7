"""Stability of basis images: cosine distances and the optimal one-to-one matching.

Two runs give basis sets {B_a} and {B'_b}. With c_ab = 1 − cos(B_a, B'_b) between vectorized
basis images, the pairing σ that minimizes Σ_a c_aσ(a) is a linear assignment problem, solved
inside jit by optax's Hungarian algorithm (vmappable over many run pairs).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["Matching", "cosine_distances", "match", "match_pairs"]


class Matching(NamedTuple):
    """An optimal matching of the columns of B1 to the columns of B2.

    Attributes:
      perm: (R,) perm[a] is the column of B2 matched to column a of B1.
      distances: (R,) the matched cosine distances c_a,perm[a].
      total: scalar Σ_a c_a,perm[a], the minimum over all one-to-one matchings.
    """

    perm: jax.Array
    distances: jax.Array
    total: jax.Array


def cosine_distances(B1: jax.Array, B2: jax.Array) -> jax.Array:
    """1 − cos between every column of B1 (pixels, R1) and of B2 (pixels, R2): (R1, R2).

    A zero column has no direction; its distance to everything is 1.
    """
    n1 = jnp.linalg.norm(B1, axis=0)
    n2 = jnp.linalg.norm(B2, axis=0)
    cos = (B1.T @ B2) / jnp.maximum(n1[:, None] * n2[None, :], jnp.finfo(B1.dtype).tiny)
    return 1.0 - jnp.clip(cos, -1.0, 1.0)


@jax.jit
def match(B1: jax.Array, B2: jax.Array) -> Matching:
    """Optimal one-to-one matching of basis images by cosine distance (Hungarian, in jit).

    Args:
      B1, B2: (pixels, R) basis images of two runs (same R).

    Returns:
      `Matching`, indexed by the columns of B1. A NaN basis image gives NaN distances and a
      NaN total (the permutation is then meaningless).
    """
    if jnp.ndim(B1) != 2 or jnp.shape(B1) != jnp.shape(B2):
        raise ValueError(f"`B1` and `B2` must both be (pixels, R) with the same shape; got {jnp.shape(B1)} "
                         f"and {jnp.shape(B2)}.")
    cost = cosine_distances(B1, B2)
    rows, cols = optax.assignment.hungarian_algorithm(cost)
    perm = jnp.zeros(cost.shape[0], jnp.int32).at[rows].set(cols.astype(jnp.int32))
    distances = cost[jnp.arange(cost.shape[0]), perm]
    return Matching(perm, distances, distances.sum())


def match_pairs(B1s: jax.Array, B2s: jax.Array) -> Matching:
    """`match` vmapped over a leading axis of run pairs: (K, pixels, R) × (K, pixels, R)."""
    return jax.vmap(match)(B1s, B2s)
