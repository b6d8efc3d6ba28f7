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
      xi: flip probability in [0, 1], a scalar.

    Concrete P and ξ are checked (ValueError naming the argument). Under `jit`/`vmap` a ξ
    outside [0, 1] (or NaN) makes the whole result NaN rather than flipping every pixel, and
    P outside [0, 1] or NaN gives NaN entries there (the NMF fit then returns NaN).
    """
    if np.ndim(xi) != 0:
        raise ValueError(f"`xi` must be a scalar flip probability; got shape {np.shape(xi)}.")
    _validate.in_unit_interval("P", P)
    _validate.in_unit_interval("xi", xi)
    flip = jax.random.bernoulli(key, xi, jnp.shape(P))
    out = jnp.where(flip, 1.0 - P, P)
    xi = jnp.asarray(xi)
    bad = ~((xi >= 0) & (xi <= 1)) | ~((P >= 0) & (P <= 1))
    return _validate.poison(out, bad)


def binarize(P: jax.Array, threshold: float = 0.5) -> jax.Array:
    """1 where P > threshold, else 0 (same dtype as P)."""
    return (P > threshold).astype(jnp.asarray(P).dtype)


def random_halves(key: jax.Array, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """A random split of image indices into two halves (the first gets ⌈n/2⌉), each sorted."""
    n_images = _validate.positive_int("n_images", n_images, minimum=2)
    perm = np.asarray(jax.random.permutation(key, n_images))
    half = (n_images + 1) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])
