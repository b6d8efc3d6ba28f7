"""Rank selection: the predictability criterion of the common-cause reading, and the measures
users know from other NMF tools (explained variance, cophenetic correlation, dispersion).

Predictability (`../shared/spec/nmf-pcc.md`). In an exact common-cause factorization
p(π|i) = Σ_b p(π|b) p(b|i) ≤ max_b p(π|b): conditioning on the latent state predicts the pixel
at least as sharply as conditioning on the image. A pixel–image pair *violates* predictability
at rank R when the data's p(π|i) > max_b p(π|b). v(R) is the fraction of violating pairs,
unweighted (over all pixel–image pairs) or weighted by p(π, i). The effective rank R_c(τ) is
the smallest R with v(R) ≤ τ; on data with pixel-flip noise of probability ξ it is R(ξ, τ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from entropy_jax.nmf.prob import image_conditional, joint, normalize

__all__ = [
    "connectivity",
    "cophenetic_correlation",
    "dispersion",
    "effective_rank",
    "explained_variance",
    "predictability_violations",
]


def predictability_violations(
    P: jax.Array, B: jax.Array, W: jax.Array, *, rtol: float = 1e-5
) -> dict[str, jax.Array]:
    """Fractions of pixel–image pairs with p(π|i) > max_b p(π|b).

    Args:
      P: (pixels, images) data.
      B, W: the factors at rank R.
      rtol: relative slack, p(π|i) > (1 + rtol) max_b p(π|b): an image made of a single part
        has p(π|i) = p(π|b) exactly, which rounding must not turn into a violation.

    Returns:
      {"unweighted": fraction of all pairs, "weighted": p(π, i)-mass of the violating pairs}.
      Dead components (zero column/row) are left out of the max. A NaN in P, B or W makes both
      fractions NaN (a comparison with NaN would otherwise count as "no violation").
    """
    cond, _ = image_conditional(P)
    f = normalize(B, W)
    best = jnp.max(jnp.where(f.dead[None, :], 0.0, f.p_pixel), axis=1)  # (pixels,)
    violate = cond > (1.0 + rtol) * best[:, None]
    unknown = jnp.isnan(cond) | jnp.isnan(best)[:, None]
    mass = jnp.where(violate, joint(P), 0.0)
    return {"unweighted": jnp.mean(jnp.where(unknown, jnp.nan, violate.astype(cond.dtype))),
            "weighted": jnp.sum(jnp.where(unknown, jnp.nan, mass))}


def effective_rank(ranks: Sequence[int], violations: Sequence[float], tau: float) -> int | None:
    """R_c(τ): the smallest rank whose violation fraction is ≤ τ (None if none is).

    Raises ValueError for a NaN fraction (a failed fit must not be skipped over to a higher
    rank), for lists of different lengths and for τ outside [0, 1].
    """
    ranks, violations = list(ranks), [float(v) for v in violations]
    if len(ranks) != len(violations):
        raise ValueError(f"`ranks` ({len(ranks)}) and `violations` ({len(violations)}) differ in length.")
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"`tau` must be a fraction in [0, 1]; got {tau}.")
    for r, v in zip(ranks, violations):
        if math.isnan(v):
            raise ValueError(f"the violation fraction at rank {r} is NaN (a failed fit?).")
    for r, v in sorted(zip(ranks, violations)):
        if v <= tau:
            return int(r)
    return None


def explained_variance(P: jax.Array, B: jax.Array, W: jax.Array) -> jax.Array:
    """1 − ‖P − BW‖²_F / ‖P‖²_F (the "evar" of NMF toolkits: total, not mean-centred, variance)."""
    return 1.0 - jnp.sum((P - B @ W) ** 2) / jnp.sum(P * P)


def connectivity(W: jax.Array) -> jax.Array:
    """C_ij = 1 when images i and j have the same dominant component argmax_b W_b·, (images, images)."""
    label = jnp.argmax(W, axis=0)
    return (label[:, None] == label[None, :]).astype(W.dtype)


def cophenetic_correlation(consensus: np.ndarray) -> float:
    """Brunet et al. (2004): correlation between 1 − consensus and the cophenetic distances of
    its average-linkage clustering. 1 for a perfectly stable clustering across seeds."""
    from scipy.cluster.hierarchy import cophenet, linkage
    from scipy.spatial.distance import squareform

    dist = 1.0 - np.asarray(consensus, np.float64)
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"`consensus` must be a square (images, images) matrix; got shape {dist.shape}.")
    if not np.all(np.isfinite(dist)):
        raise ValueError("`consensus` has NaN or infinite entries.")
    np.fill_diagonal(dist, 0.0)
    condensed = squareform(dist, checks=False)
    if np.allclose(condensed, condensed[0]):
        return 1.0  # every pair equally (in)consistent: the clustering is trivially stable
    corr, _ = cophenet(linkage(condensed, method="average"), condensed)
    return float(corr)


def dispersion(consensus: np.ndarray) -> float:
    """Kim & Park (2007): mean of 4 (C_ij − ½)² ∈ [0, 1]; 1 when the consensus is all 0/1 (NaN in, NaN out)."""
    c = np.asarray(consensus, np.float64)
    return float(np.mean(4.0 * (c - 0.5) ** 2))
