"""Maximum-entropy estimators with empirical moment constraints.

First-moment MaxEnt (synopsis eq. 4): q_k ∝ exp(−β z_k) with β such that Σ_k q_k z_k equals the
empirical mean μ₁ = Σ_k m_k z_k / M. Shrunk MaxEnt (eq. 5) replaces β by ξβ. MaxEnt with the
first two moments is q_k ∝ exp(−λ₁ z_k − λ₂ z_k²).

The estimate depends on the numeric encoding z of the outcomes (any vector of distinct
values, not only z_k = k, and not necessarily increasing): that dependence is one of
Chapter 1's findings.

Degenerate samples. When the empirical moments lie on the boundary of what a distribution on
{z_k} can have, no finite multiplier exists and MaxEnt collapses onto a face of the simplex:
for the first moment, all counts on the smallest or all on the largest z (μ₁ at the edge,
β = ±∞); for two moments, all counts inside two outcomes adjacent in z, or inside the two
extremes. Such a sample
yields `valid = False` and a finite placeholder estimate (uniform); the risk integrators
exclude it and report how many were excluded (the paper omits M = 1 for this reason). The
limit estimate would put zero mass on outcomes the true q almost surely has, i.e. infinite KL.

Solvers work on standardised encodings u = (z − c)/s ∈ [−1, 1] (an affine change of the
constraint leaves q̂ unchanged) and run bounded `lax.while_loop`s, so they vmap and jit.

Invalid inputs. Concrete arguments are checked up front (ValueError naming the argument). Under
`jit`/`vmap` they cannot be: a row whose counts hold a NaN, an infinity or a negative entry,
and every row when z has NaN or tied values (or ξ is negative or NaN, or a feature is constant),
gets a poisoned fit: q_hat, log_q_hat, multipliers and log_z NaN and `valid = False`. Unlike a
degenerate sample's finite placeholder, that NaN is never excluded by the risk integrators; it
reaches their result.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropy_jax import _validate
from entropy_jax.estimators.frequency import as_float

__all__ = [
    "MaxEntFit",
    "degenerate_first_moment",
    "degenerate_two_moments",
    "gibbs",
    "maxent_first_moment",
    "maxent_moments",
    "maxent_shrunk",
    "maxent_two_moments",
    "solve_beta",
    "standardize",
]


class MaxEntFit(NamedTuple):
    """Result of a MaxEnt fit, batched over the leading axes of the counts.

    Attributes:
      q_hat: (..., n) the estimate (uniform where not `valid`).
      log_q_hat: (..., n) its logarithm, exact where q_hat underflows (use it for the KL).
      multipliers: (...,) β for one moment, (..., d) λ for d moments, in the units of the
        original encoding: q̂_k ∝ exp(−β z_k), or ∝ exp(−Σ_j λ_j φ_jk).
      log_z: (...,) log partition function ln Σ_k exp(−β z_k) (original units).
      valid: (...,) bool, False for degenerate samples (see module docstring) and for
        solves that did not converge within `max_iter`.
      n_iter: (...,) iterations used.
    """

    q_hat: jax.Array
    log_q_hat: jax.Array
    multipliers: jax.Array
    log_z: jax.Array
    valid: jax.Array
    n_iter: jax.Array


class Standardized(NamedTuple):
    u: jax.Array  # (n,) encodings mapped onto [-1, 1]
    center: jax.Array  # scalar c
    scale: jax.Array  # scalar s > 0; z = c + s·u


def standardize(z: jax.Array) -> Standardized:
    """Maps distinct encodings z onto u ∈ [−1, 1], with u = −1 and u = 1 exactly at the extremes.

    z need not be sorted: a permuted encoding is a legitimate (misaligned) representation.
    """
    lo, hi = jnp.min(z), jnp.max(z)
    center = 0.5 * (lo + hi)
    scale = 0.5 * (hi - lo)
    u = ((z - center) / scale).at[jnp.argmin(z)].set(-1.0).at[jnp.argmax(z)].set(1.0)
    return Standardized(u, center, scale)


def _log_gibbs(beta: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Exponents relative to the extreme that dominates: w = −β (z − z_ref) ≤ 0 with max 0, so
    # no large numbers cancel even when z has a large offset (q then sums to 1 to rounding).
    z_ref = jnp.where(beta >= 0, jnp.min(z), jnp.max(z))
    w = -beta[..., None] * (z - z_ref[..., None])
    log_norm = jnp.log(jnp.sum(jnp.exp(w), axis=-1))
    return w - log_norm[..., None], log_norm - beta * z_ref


def gibbs(beta: jax.Array, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q_k = exp(−β z_k) / Z(β) and ln Z(β), computed stably.

    Args:
      beta: (...,) multipliers.
      z: (n,) encodings.

    Returns:
      (q, log_z) with shapes (..., n) and (...,).
    """
    log_q, log_z = _log_gibbs(jnp.asarray(beta), jnp.asarray(z))
    return jnp.exp(log_q), log_z


def _bad_rows(m: jax.Array) -> jax.Array:
    """(...,) True where a row of counts has a NaN, infinite or negative entry."""
    return ~jnp.all(jnp.isfinite(m) & (m >= 0), axis=-1)


def _bad_encoding(z: jax.Array) -> jax.Array:
    """Scalar True when z has NaN or tied values (the traced form of `_validate.encoding`)."""
    return ~jnp.all(jnp.diff(jnp.sort(z)) > 0)


def _poison_fit(fit: MaxEntFit, bad: jax.Array) -> MaxEntFit:
    """NaN estimates and `valid = False` where `bad` (shape (...,), broadcast over the batch)."""
    batch = fit.valid.shape
    bad = jnp.broadcast_to(bad, batch)
    mult_bad = bad.reshape(batch + (1,) * (fit.multipliers.ndim - len(batch)))
    return MaxEntFit(
        _validate.poison(fit.q_hat, bad[..., None]),
        _validate.poison(fit.log_q_hat, bad[..., None]),
        _validate.poison(fit.multipliers, mult_bad),
        _validate.poison(fit.log_z, bad),
        fit.valid & ~bad,
        fit.n_iter,
    )


def moments_1d(gamma: jax.Array, u: jax.Array):
    """Mean and variance of u under q ∝ exp(−γu), for u ∈ [−1, 1] attaining both −1 and 1."""
    # max_k(−γ u_k) = |γ|, attained at an extreme: a shift that never overflows.
    e = jnp.exp(-gamma[..., None] * u - jnp.abs(gamma)[..., None])
    z = e.sum(-1)
    mean = (e * u).sum(-1) / z
    var = (e * (u - mean[..., None]) ** 2).sum(-1) / z
    return mean, var, jnp.log(z) + jnp.abs(gamma)


def degenerate_first_moment(counts: jax.Array, z: jax.Array | None = None) -> jax.Array:
    """True where all counts sit on the outcome with the smallest or the largest encoding.

    Then μ₁ is an extreme of z and β = ±∞. Without `z` the outcomes are taken as ordered.
    """
    m = jnp.asarray(counts)
    total = m.sum(-1)
    if z is None:
        first, last = m[..., 0], m[..., -1]
    else:
        first, last = m[..., jnp.argmin(z)], m[..., jnp.argmax(z)]
    return (first == total) | (last == total)


def solve_beta(
    mu: jax.Array,
    z: jax.Array,
    *,
    max_iter: int = 100,
    tol: float | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Solves Σ_k z_k exp(−β z_k) / Z(β) = μ for β, elementwise over μ.

    Safeguarded Newton on the convex dual F(γ) = ln Z(γ) + γ t in standardised units: a Newton
    step when it stays inside the current bracket, bisection otherwise. The initial bracket is
    analytic: for t = (μ − c)/s ∈ (−1, 1) the root satisfies
      −ln(2(n−1)/(1−t)) / (u_n − u_{n−1}) ≤ γ ≤ ln(2(n−1)/(1+t)) / (u_2 − u_1),
    because the Gibbs mean is within (n−1)·2·e^{−γ d} of an extreme (u sorted for the gaps).

    Args:
      mu: (...,) target means, strictly inside (min z, max z); others get `converged = False`.
      z: (n,) distinct encodings (any order).
      max_iter: iteration bound of the `while_loop` (static).
      tol: tolerance on |mean − μ| in standardised units (default 64·eps of the dtype, i.e.
        ≈1.4e-14·s in float64, well inside the 1e-10 the tests require).

    Returns:
      (beta, converged, n_iter), each of shape (...,). A NaN μ, and under tracing a z with NaN
      or tied values, gives β = NaN (and `converged = False`).
    """
    _validate.encoding("z", z)
    max_iter = _validate.positive_int("max_iter", max_iter)
    z = as_float(z)
    mu = jnp.asarray(mu, z.dtype)
    u, center, scale = standardize(z)
    n = u.shape[0]
    eps = jnp.finfo(z.dtype).eps
    tol = 64 * eps if tol is None else tol
    t = (mu - center) / scale
    inside = (t > -1.0) & (t < 1.0)
    t = jnp.where(inside, t, 0.0)

    us = jnp.sort(u)
    hi = jnp.maximum(jnp.log(2.0 * (n - 1) / (1.0 + t)) / (us[1] - us[0]), 0.0)
    lo = jnp.minimum(-jnp.log(2.0 * (n - 1) / (1.0 - t)) / (us[-1] - us[-2]), 0.0)
    # Linear response around γ = 0 as the first guess: mean(γ) ≈ ū − γ Var₀(u).
    mean0, var0, _ = moments_1d(jnp.zeros_like(t), u)
    gamma = jnp.clip((mean0 - t) / var0, lo, hi)

    def resid(g):
        mean, var, _ = moments_1d(g, u)
        return mean - t, var

    r, var = resid(gamma)

    def cond(state):
        _, _, _, r, _, it = state
        return jnp.any((jnp.abs(r) > tol) & inside) & (it < max_iter)

    def body(state):
        gamma, lo, hi, r, var, it = state
        active = jnp.abs(r) > tol
        # The Gibbs mean decreases in γ: r > 0 means the root lies above γ.
        lo = jnp.where(active & (r > 0), gamma, lo)
        hi = jnp.where(active & (r <= 0), gamma, hi)
        newton = gamma + r / jnp.maximum(var, jnp.finfo(var.dtype).tiny)
        ok = (newton > lo) & (newton < hi)
        step = jnp.where(ok, newton, 0.5 * (lo + hi))
        gamma = jnp.where(active, step, gamma)
        r_new, var_new = resid(gamma)
        return gamma, lo, hi, r_new, var_new, it + 1

    gamma, _, _, r, _, n_iter = lax.while_loop(
        cond, body, (gamma, lo, hi, r, var, jnp.zeros((), jnp.int32))
    )
    converged = inside & (jnp.abs(r) <= tol)
    beta = _validate.poison(gamma / scale, jnp.isnan(mu) | _bad_encoding(z))
    return beta, converged, jnp.broadcast_to(n_iter, gamma.shape)


def _first_moment_fit(counts: jax.Array, z: jax.Array, xi, max_iter: int) -> MaxEntFit:
    m = as_float(counts)
    z = jnp.asarray(z, m.dtype)
    mu = (m @ z) / m.sum(-1)
    degenerate = degenerate_first_moment(counts, z)
    beta, converged, n_iter = solve_beta(jnp.where(degenerate, jnp.mean(z), mu), z, max_iter=max_iter)
    valid = converged & ~degenerate
    beta = jnp.where(valid, xi * beta, 0.0)
    log_q_hat, log_z = _log_gibbs(beta, z)
    fit = MaxEntFit(jnp.exp(log_q_hat), log_q_hat, beta, log_z, valid, n_iter)
    return _poison_fit(fit, _bad_rows(m) | _bad_encoding(z) | ~(jnp.asarray(xi) >= 0))


def _check_first_moment(n: int, z, *, max_iter: int = 100) -> None:
    _validate.encoding("z", z, n)
    _validate.positive_int("max_iter", max_iter)


def _check_shrunk(n: int, z, xi, *, max_iter: int = 100) -> None:
    _check_first_moment(n, z, max_iter=max_iter)
    _validate.positive("xi", xi, allow_zero=True)


@_validate.arg_check(_check_first_moment)
def maxent_first_moment(counts: jax.Array, z: jax.Array, *, max_iter: int = 100) -> MaxEntFit:
    """First-moment MaxEnt: q̂_k ∝ exp(−β z_k) with Σ_k q̂_k z_k = Σ_k m_k z_k / M.

    Args:
      counts: (..., n) counts with M = Σ m_k ≥ 1 per row.
      z: (n,) distinct numeric encodings of the outcomes (usually increasing; a permuted or
        nonlinear encoding is allowed and changes the estimate: representation dependence).
      max_iter: bound on solver iterations (static).

    Returns:
      `MaxEntFit`; `multipliers` is β of shape (...,). Invalid inputs under tracing: see the
      module docstring.
    """
    _validate.counts("counts", counts)
    _check_first_moment(jnp.shape(counts)[-1], z, max_iter=max_iter)
    return _first_moment_fit(counts, z, 1.0, max_iter)


@_validate.arg_check(_check_shrunk)
def maxent_shrunk(
    counts: jax.Array, z: jax.Array, xi: float | jax.Array, *, max_iter: int = 100
) -> MaxEntFit:
    """Shrunk first-moment MaxEnt (synopsis eq. 5): q̂_k ∝ exp(−ξ β (z_k − μ₁)).

    ξ = 1 is first-moment MaxEnt, ξ = 0 the uniform baseline; the shift by μ₁ cancels in the
    normalisation. `multipliers` holds the shrunk multiplier ξβ. ξ ≥ 0, a scalar or one per
    row (broadcastable to (...,)); under tracing a negative or NaN ξ poisons its rows (module
    docstring).
    """
    _validate.counts("counts", counts)
    _check_shrunk(jnp.shape(counts)[-1], z, xi, max_iter=max_iter)
    return _first_moment_fit(counts, z, xi, max_iter)


def degenerate_two_moments(counts: jax.Array, z: jax.Array | None = None) -> jax.Array:
    """True where the support lies in two outcomes adjacent in z-order, or in {argmin, argmax}.

    For distinct z the points (z_k, z_k²) are in convex position (they lie on a parabola), so
    those are exactly the samples whose first two moments sit on the boundary of the moment
    space. Without `z` the outcomes are taken as ordered.
    """
    occupied = jnp.asarray(counts) > 0
    if z is not None:
        occupied = occupied[..., jnp.argsort(z)]
    n_occ = occupied.sum(-1)
    pair_occ = occupied[..., :-1].astype(jnp.int32) + occupied[..., 1:]
    adjacent = jnp.any(pair_occ == n_occ[..., None], axis=-1)
    ends = (occupied[..., 0].astype(jnp.int32) + occupied[..., -1]) == n_occ
    return adjacent | ends


def _check_features(n: int, features, *, max_iter: int = 200, tol: float | None = None) -> None:
    if np.ndim(features) != 2:
        raise ValueError(f"`features` must have shape (d, n); got {np.shape(features)}.")
    _validate.same_n("features", np.shape(features)[1], "counts", n)
    _validate.finite("features", features)
    if _validate.is_concrete(features):
        v = np.asarray(features)
        flat = np.flatnonzero(v.max(-1) == v.min(-1))
        if flat.size:
            raise ValueError(f"`features` row {int(flat[0])} is constant; every feature must vary over the outcomes.")
    _validate.positive_int("max_iter", max_iter)
    if tol is not None and not (isinstance(tol, int | float) and tol > 0):
        raise ValueError(f"`tol` must be a number > 0 or None; got {tol!r}.")


@_validate.arg_check(_check_features)
def maxent_moments(
    counts: jax.Array,
    features: jax.Array,
    *,
    max_iter: int = 200,
    tol: float | None = None,
) -> MaxEntFit:
    """MaxEnt with d moment constraints: q̂_k ∝ exp(−Σ_j λ_j φ_jk), E_q̂[φ_j] = Σ_k m_k φ_jk / M.

    Damped Newton on the convex dual ln Z(λ) + λ·t with Armijo backtracking, in coordinates
    where each feature spans [−1, 1]. A sample whose moments lie on the boundary of the moment
    space has no finite solution: the solver then stops at `max_iter` with `valid = False`.
    Pass boundary knowledge explicitly where you have it (`maxent_two_moments` does).

    Args:
      counts: (..., n) counts.
      features: (d, n) feature values φ_jk (e.g. rows z and z²), each row non-constant.
      max_iter: Newton iteration bound (static).
      tol: tolerance on the max-norm of the moment residual in standardised units.

    Returns:
      `MaxEntFit`; `multipliers` is λ of shape (..., d) in the original feature units. Invalid
      inputs under tracing (bad counts rows, a NaN or constant feature): see the module docstring.
    """
    _validate.counts("counts", counts)
    _check_features(jnp.shape(counts)[-1], features, max_iter=max_iter, tol=tol)
    m = as_float(counts)
    phi = jnp.asarray(features, m.dtype)
    eps = jnp.finfo(m.dtype).eps
    tol = 1e3 * eps if tol is None else tol
    lo, hi = phi.min(-1, keepdims=True), phi.max(-1, keepdims=True)
    center, scale = 0.5 * (lo + hi), 0.5 * (hi - lo)
    v = (phi - center) / scale  # (d, n) in [-1, 1]
    t = (m @ v.T) / m.sum(-1, keepdims=True)  # (..., d)
    batch = t.shape[:-1]

    def dual(lam):
        w = -lam @ v  # (..., n)
        log_z = jax.nn.logsumexp(w, axis=-1)
        return log_z + jnp.sum(lam * t, -1), jnp.exp(w - log_z[..., None])

    def newton_state(lam):
        f, p = dual(lam)
        mean = p @ v.T  # (..., d)
        grad = t - mean
        dv = v - mean[..., :, None]  # (..., d, n)
        hess = jnp.einsum("...in,...jn,...n->...ij", dv, dv, p)
        return f, grad, hess

    eye = jnp.eye(v.shape[0], dtype=m.dtype)

    def cond(state):
        _, _, grad, _, it = state
        return jnp.any(jnp.max(jnp.abs(grad), -1) > tol) & (it < max_iter)

    def body(state):
        lam, f, grad, hess, it = state
        active = jnp.max(jnp.abs(grad), -1) > tol
        # Tiny ridge: the Hessian is a covariance and gets ill-conditioned near the boundary.
        step = -jnp.linalg.solve(hess + 1e-12 * eye, grad[..., None])[..., 0]
        slope = jnp.sum(grad * step, -1)

        # Armijo with a rounding slack: near the optimum f changes by less than its own
        # rounding error, and a strict test would halve the step forever.
        slack = 16 * eps * (1.0 + jnp.abs(f))

        def ls_cond(ls):
            s, f_new, k = ls
            return jnp.any(active & (f_new > f + 1e-4 * s * slope + slack)) & (k < 60)

        def ls_body(ls):
            s, f_new, k = ls
            shrink = active & (f_new > f + 1e-4 * s * slope + slack)
            s = jnp.where(shrink, 0.5 * s, s)
            f_new, _ = dual(lam + s[..., None] * step)
            return s, f_new, k + 1

        s0 = jnp.ones(batch, m.dtype)
        s, _, _ = lax.while_loop(ls_cond, ls_body, (s0, dual(lam + step)[0], 0))
        lam = jnp.where(active[..., None], lam + s[..., None] * step, lam)
        f, grad, hess = newton_state(lam)
        return lam, f, grad, hess, it + 1

    lam0 = jnp.zeros(batch + (v.shape[0],), m.dtype)
    f0, g0, h0 = newton_state(lam0)
    lam, _, grad, _, n_iter = lax.while_loop(cond, body, (lam0, f0, g0, h0, jnp.zeros((), jnp.int32)))
    valid = jnp.max(jnp.abs(grad), -1) <= tol
    lam = jnp.where(valid[..., None], lam, 0.0)
    log_q_hat = -lam @ v - jax.nn.logsumexp(-lam @ v, axis=-1, keepdims=True)
    lam_orig = lam / scale[:, 0]  # exp(−λ·(φ−c)/s) = exp(−(λ/s)·φ) × const
    log_z = jax.nn.logsumexp(-lam_orig @ phi, axis=-1)
    fit = MaxEntFit(
        jnp.exp(log_q_hat), log_q_hat, lam_orig, log_z, valid, jnp.broadcast_to(n_iter, batch)
    )
    return _poison_fit(fit, _bad_rows(m) | ~jnp.all(hi > lo))


def _check_two_moments(n: int, z, *, max_iter: int = 200) -> None:
    _check_first_moment(n, z, max_iter=max_iter)


@_validate.arg_check(_check_two_moments)
def maxent_two_moments(counts: jax.Array, z: jax.Array, *, max_iter: int = 200) -> MaxEntFit:
    """MaxEnt with the first two moments: q̂_k ∝ exp(−λ₁ z_k − λ₂ z_k²).

    Boundary samples (support in two z-adjacent outcomes or in the two extremes) are flagged
    invalid up front instead of being left to exhaust the solver. Invalid inputs under tracing:
    see the module docstring.
    """
    _validate.counts("counts", counts)
    _check_two_moments(jnp.shape(counts)[-1], z, max_iter=max_iter)
    m = as_float(counts)
    z = jnp.asarray(z, m.dtype)
    u = standardize(z).u  # the square of a centred encoding is better conditioned
    degenerate = degenerate_two_moments(counts, z)
    safe = jnp.where(degenerate[..., None], jnp.ones_like(m), m)
    fit = maxent_moments(safe, jnp.stack([u, u * u]), max_iter=max_iter)
    valid = fit.valid & ~degenerate
    n = m.shape[-1]
    q_hat = jnp.where(valid[..., None], fit.q_hat, 1.0 / n)
    log_q_hat = jnp.where(valid[..., None], fit.log_q_hat, -jnp.log(n))
    # The fit's λ is on the features (u, u²), u = (z − c)/s; in the original encoding
    # λ_a u + λ_b u² = (λ_a/s − 2cλ_b/s²) z + (λ_b/s²) z² + const.
    _, c, s = standardize(z)
    lam_u = fit.multipliers
    lam1 = lam_u[..., 0] / s - 2.0 * c * lam_u[..., 1] / s**2
    lam2 = lam_u[..., 1] / s**2
    lam = jnp.where(valid[..., None], jnp.stack([lam1, lam2], -1), 0.0)
    log_z = jax.nn.logsumexp(-(lam[..., :1] * z + lam[..., 1:] * z * z), axis=-1)
    # Bad rows were replaced by ones above (as if degenerate): poison them here.
    return _poison_fit(MaxEntFit(q_hat, log_q_hat, lam, log_z, valid, fit.n_iter),
                       _bad_rows(m) | _bad_encoding(z))
