"""Synthetic image sets with a known number of parts, for rank-recovery tests.

`bars`: s × s images, each a sum of randomly chosen horizontal and vertical bars (2s parts,
  nonnegative rank 2s).
`swimmer`: 13 × 13 stick figures, a fixed torso and four limbs each in one of four two-pixel
  positions: 4⁴ = 256 binary images built from 17 disjoint parts (after the Swimmer data of
  Donoho & Stodden used by the Chapter-2 publication).
"""

from __future__ import annotations

import itertools

import numpy as np

from entropy_jax.data.images import ImageSet

__all__ = ["SWIMMER_PARTS", "bars", "swimmer"]

SWIMMER_PARTS = 17  # torso + 4 limbs × 4 positions; bars of side s have 2s parts

def bars(size: int = 8, n_images: int = 400, p_on: float | None = None, seed: int = 0) -> ImageSet:
    """Images that are sums of bars: each of the 2·size bars is on independently.

    Args:
      size: image side; there are `size` horizontal and `size` vertical bars.
      n_images: number of images.
      p_on: probability of each bar (default 2/size: about four bars per image).
      seed: NumPy seed.

    Returns:
      `ImageSet` with P in [0, 1] (pixel values divided by the largest pixel), labels = the
      (n_images, 2·size) on/off matrix of bars.
    """
    if size < 2 or n_images < 1:
        raise ValueError(f"`size` must be >= 2 and `n_images` >= 1; got {size}, {n_images}.")
    p = 2.0 / size if p_on is None else float(p_on)
    rng = np.random.default_rng(seed)
    on = rng.random((n_images, 2 * size)) < p
    on[~on.any(1), rng.integers(0, 2 * size)] = True  # no empty images
    parts = np.zeros((2 * size, size, size))
    for k in range(size):
        parts[k, k, :] = 1.0  # horizontal bar in row k
        parts[size + k, :, k] = 1.0  # vertical bar in column k
    images = np.einsum("ik,kxy->ixy", on.astype(float), parts)
    images /= images.max()
    return ImageSet(images.reshape(n_images, -1).T.copy(), (size, size), "bars", tuple(map(tuple, on)))


def _swimmer_parts() -> np.ndarray:
    parts = np.zeros((SWIMMER_PARTS, 13, 13))
    parts[0, 3:10, 6] = 1.0  # torso
    shoulder, hip = (4, 6), (9, 6)
    # Four two-pixel positions per limb, on distinct pixels: offsets from the joint.
    arm_left = [((-1, -1), (-2, -2)), ((0, -1), (0, -2)), ((1, -1), (2, -2)), ((1, -2), (2, -3))]
    leg_left = [((1, -1), (2, -2)), ((2, -1), (3, -1)), ((1, -2), (1, -3)), ((0, -2), (-1, -3))]
    k = 1
    for joint, limb in ((shoulder, arm_left), (hip, leg_left)):
        for side in (1, -1):  # left, then mirrored right
            for pos in limb:
                for dr, dc in pos:
                    parts[k, joint[0] + dr, joint[1] + side * dc] = 1.0
                k += 1
    return parts


def swimmer() -> ImageSet:
    """The 256 13 × 13 swimmer images (torso + one of four positions for each of 4 limbs)."""
    parts = _swimmer_parts()
    images = []
    for combo in itertools.product(range(4), repeat=4):
        img = parts[0].copy()
        for limb, pos in enumerate(combo):
            img += parts[1 + 4 * limb + pos]
        images.append(img)
    images = np.stack(images)
    return ImageSet(np.clip(images, 0, 1).reshape(256, -1).T.copy(), (13, 13), "swimmer")
