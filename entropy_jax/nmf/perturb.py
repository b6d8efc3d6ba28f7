"""Perturbations for stability studies: symmetric pixel-flip noise and random half splits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from entropy_jax import _validate

__all__ = ["binarize", "flip_noise", "random_halves"]


def flip_noise(key: jax.Array, P: jax.Array, xi: float | jax.Array) -> jax.Array:
    """Symmetric pixel-flip noise: each entry x becomes 1 − x with probability ξ, independently.

    On binary data this flips bits; on grey-level data in [0, 1] it is the publication's
    x ↦ 1 − x (a dark pixel turns bright and vice versa), so the noisy matrix stays in [0, 1].
    vmap over keys for several noise draws.

    Args:
      key: PRNG key.
      P: (pixels, images) data in [0, 1].
      xi: flip probability in [0, 1].
    """
    if _validate.is_concrete(P):
        v = np.asarray(P)
        if v.min() < 0 or v.max() > 1:
            raise ValueError(f"`P` must lie in [0, 1] for flip noise; got range [{v.min()}, {v.max()}].")
    if _validate.is_concrete(xi) and not 0.0 <= float(xi) <= 1.0:
        raise ValueError(f"`xi` must be a probability in [0, 1]; got {xi}.")
    flip = jax.random.bernoulli(key, xi, jnp.shape(P))
    return jnp.where(flip, 1.0 - P, P)


def binarize(P: jax.Array, threshold: float = 0.5) -> jax.Array:
    """1 where P > threshold, else 0 (same dtype as P)."""
    return (P > threshold).astype(jnp.asarray(P).dtype)


def random_halves(key: jax.Array, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """A random split of image indices into two halves (the first gets ⌈n/2⌉), each sorted."""
    if n_images < 2:
        raise ValueError(f"`n_images` must be >= 2 to split; got {n_images}.")
    perm = np.asarray(jax.random.permutation(key, n_images))
    half = (n_images + 1) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])
