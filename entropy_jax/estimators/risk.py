"""Bayes risk ⟨K[q, q̂]⟩ by Monte Carlo over prior draws × multinomial samples.

The integral is nested: draw q ~ prior (N times), then m ~ Mult(M, q) (S times per q), and
average K[q, q̂(m)]. The engine evaluates a per-prior statistic (a pytree) for a chunk of prior
draws in one jitted, vmapped call and loops over chunks on the host, so memory is bounded by
the chunk and a progress bar can follow. Each prior draw i gets its own key
(fold_in(key, i)), so results do not depend on the chunk size, and two calls with the same key
see the same q's and the same samples: common random numbers for every estimator and
every value of a tuning parameter.

Standard errors come from the N per-prior averages, which are i.i.d.; per-pair errors would
ignore the correlation of samples that share a q. Excluded (degenerate) pairs make each entry a
ratio Σ K / Σ 1 over the pairs kept; its error uses the delta method for ratio estimators.

`risk_profile` computes, in one pass, every estimator of Chapter 1: the Bayes estimator of
the true prior, the collapsed single-Dirichlet Bayes estimator, regularised ML for every b (via
the exact sufficient statistic Σ_{k: m_k = c} q_k), first-moment MaxEnt and its shrunk form for
every ξ (β is solved once per distinct empirical mean after the pass, and
K_ξ = −H(q) + ξγ⟨u⟩_q + ln Z_u(ξγ) needs nothing else of the sample), optionally two-moment
MaxEnt, and the uniform baseline.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse
from tqdm.auto import tqdm

from entropy_jax import _validate
from entropy_jax.estimators import priors as priors_lib
from entropy_jax.estimators.bayes import (
    dirichlet_mixture_posterior_mean,
    dirichlet_posterior_mean,
)
from entropy_jax.estimators.maxent import (
    degenerate_first_moment,
    degenerate_two_moments,
    maxent_two_moments,
    moments_1d,
    solve_beta,
    standardize,
)
from entropy_jax.estimators.sampling import sample_counts
from entropy_jax.info import entropy, kl, kl_from_log

__all__ = [
    "RiskEstimate",
    "RiskProfile",
    "baseline_risk",
    "bayes_risk",
    "monte_carlo",
    "ratio_estimate",
    "risk_profile",
    "xi_grid",
]


class RiskEstimate(NamedTuple):
    """A Monte-Carlo Bayes risk in nats.

    Attributes:
      mean: the estimate (average over the kept pairs).
      se: its standard error (from the per-prior averages).
      n_pairs: (prior draw, sample) pairs kept.
      n_excluded: pairs excluded as degenerate or unconverged.
    """

    mean: float
    se: float
    n_pairs: int
    n_excluded: int


def ratio_estimate(sums: np.ndarray, counts: np.ndarray, n_samples: int) -> RiskEstimate:
    """Combines per-prior sums of K over kept pairs and per-prior kept counts.

    Args:
      sums: (N,) Σ_s K_is over the kept samples of prior draw i.
      counts: (N,) number of kept samples of prior draw i.
      n_samples: S, samples drawn per prior draw.
    """
    sums = np.asarray(sums, np.float64)
    counts = np.asarray(counts, np.float64)
    n = sums.shape[0]
    total = counts.sum()
    excluded = int(round(n * n_samples - total))
    if total == 0:
        return RiskEstimate(math.nan, math.nan, 0, excluded)
    mean = sums.sum() / total
    if n < 2 or not math.isfinite(mean):
        return RiskEstimate(float(mean), math.nan, int(total), excluded)
    resid = sums - mean * counts
    se = math.sqrt(np.sum(resid**2) / (n - 1) / n) / (total / n)
    return RiskEstimate(float(mean), float(se), int(total), excluded)


@functools.partial(jax.jit, static_argnames=("stat", "max_count", "n_samples"))
def _chunk_stats(prior, aux, prior_key, sample_key, ids, total_count, *, stat, max_count, n_samples):
    def one(i):
        q = prior.sample(jax.random.fold_in(prior_key, i))
        m = sample_counts(
            jax.random.fold_in(sample_key, i), q, total_count, n_samples, max_count=max_count
        )
        return stat(q, m, aux)

    return jax.vmap(one)(ids)


def _default_chunk(n_samples: int, pairs_per_call: int = 4096) -> int:
    # ~4096 (prior, sample) pairs per call keeps the (pairs, n) float64 temporaries within
    # the CPU caches (measured: 64 priors × 1000 samples per call runs 1.5× slower than 4 × 1000).
    return max(1, pairs_per_call // max(1, n_samples))


def monte_carlo(
    stat: Callable[[jax.Array, jax.Array, Any], Any],
    prior,
    total_count: int,
    *,
    key: jax.Array,
    n_priors: int,
    n_samples: int,
    aux: Any = (),
    chunk_priors: int | None = None,
    max_count: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool | str = False,
) -> Any:
    """Evaluates a per-prior statistic over N prior draws, chunked.

    Args:
      stat: `stat(q, counts, aux) -> pytree` for one prior draw q (n,) and its samples counts
        (S, n); it should reduce over the S samples. Static: use a module-level function or a
        frozen dataclass (a new lambda per call recompiles).
      prior: a NumPyro distribution over the simplex (sampled with `prior.sample(key)`).
      total_count: M, the sample length.
      key: PRNG key.
      n_priors: N, prior draws.
      n_samples: S, samples per prior draw.
      aux: pytree of arrays passed to `stat` (dynamic: changing values does not recompile).
      chunk_priors: prior draws per jitted call (default: about 4096 pairs per device and
        call, which keeps the temporaries in cache). The last chunk is padded to the same shape.
      max_count: static bound on M. By default M itself is static (one compilation per
        (stat, M, S, chunk, shapes)); with a bound, M is traced and every M ≤ max_count shares
        one compilation (the M draws of each sample are the first M of max_count).
      mesh: a device mesh; each chunk's prior draws are split over its first axis (data
        parallel; the chunk is rounded up to a multiple of that axis). Draws are keyed by
        their index, so the result equals the unsharded one.
      progress: show a tqdm bar; a string sets its description.

    Returns:
      The pytree returned by `stat`, as NumPy arrays with a leading axis of length N.
    """
    total_count = _validate.positive_int("total_count", total_count)
    max_count = total_count if max_count is None else _validate.positive_int("max_count", max_count)
    if total_count > max_count:
        raise ValueError(f"`total_count` = {total_count} exceeds `max_count` = {max_count}.")
    n_priors = _validate.positive_int("n_priors", n_priors)
    n_samples = _validate.positive_int("n_samples", n_samples)
    if chunk_priors is not None:
        chunk_priors = _validate.positive_int("chunk_priors", chunk_priors)
    width, placement = 1, None
    if mesh is not None:
        axis = mesh.axis_names[0]
        width = mesh.shape[axis]
        placement = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
    chunk = chunk_priors or _default_chunk(n_samples) * width
    chunk = max(1, min(chunk, n_priors))
    chunk = -(-chunk // width) * width  # whole prior draws per device
    prior_key, sample_key = jax.random.split(key)
    outs = []
    starts = range(0, n_priors, chunk)
    bar = tqdm(
        starts,
        desc=progress if isinstance(progress, str) else f"M={total_count}",
        disable=not progress,
        unit="chunk",
        leave=False,
    )
    for start in bar:
        ids = jnp.asarray(np.minimum(np.arange(start, start + chunk), n_priors - 1), jnp.uint32)
        if placement is not None:
            # The jitted program follows its input's sharding: prior draws split over devices.
            ids = jax.device_put(ids, placement)
        out = _chunk_stats(
            prior,
            aux,
            prior_key,
            sample_key,
            ids,
            jnp.asarray(total_count, jnp.int32),
            stat=stat,
            max_count=max_count,
            n_samples=n_samples,
        )
        # Keep device arrays (fetching each chunk would block the loop and stall dispatch);
        # the padded tail of the last chunk is cut on the host.
        outs.append(out)
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:n_priors], *outs)


def _kept_sum(k: jax.Array, valid: jax.Array) -> jax.Array:
    """Σ K over the valid samples; a NaN K is never excluded (it flags a bad input, see maxent)."""
    return jnp.sum(jnp.where(valid | jnp.isnan(k), k, 0.0))


@dataclasses.dataclass(frozen=True)
class _EstimatorKL:
    """Per-prior Σ_s K[q, q̂(m_s)] and the kept count for one estimator."""

    estimator: Callable

    def __call__(self, q, counts, args):
        out = self.estimator(counts, *args)
        if hasattr(out, "valid"):
            valid = out.valid
            k = kl_from_log(q, out.log_q_hat) if hasattr(out, "log_q_hat") else kl(q, out.q_hat)
        else:
            valid = jnp.ones(counts.shape[:-1], bool)
            k = kl(q, out)
        return _kept_sum(k, valid), jnp.sum(valid)


def _n_outcomes(prior) -> int:
    shape = getattr(prior, "event_shape", None)
    if not shape:
        raise ValueError(
            "`prior` must be a NumPyro distribution over the simplex (event shape (n,)); "
            f"got {type(prior).__name__}."
        )
    return int(shape[-1])


def bayes_risk(
    estimator: Callable,
    prior,
    total_count: int,
    *,
    key: jax.Array,
    n_priors: int,
    n_samples: int,
    args: tuple = (),
    chunk_priors: int | None = None,
    max_count: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool | str = False,
) -> RiskEstimate:
    """Bayes risk ⟨K[q, q̂]⟩ of any estimator under a prior, with its standard error.

    Args:
      estimator: `estimator(counts, *args)` → q̂ (..., n), or an object with `.q_hat` and a
        `.valid` mask (e.g. `MaxEntFit`); invalid samples are excluded and counted.
      prior: NumPyro distribution over the simplex.
      total_count: M, the sample length.
      key, n_priors, n_samples, chunk_priors, max_count, mesh, progress: as in `monte_carlo`.
      args: extra array arguments of the estimator (e.g. `(z,)` or `(alpha,)`).

    Returns:
      `RiskEstimate` in nats. A NaN estimate (e.g. from an invalid argument the estimator could
      only detect under tracing) makes the mean NaN; it is never excluded like a degenerate sample.

    The estimator's arguments are checked here, on their concrete values, before anything is
    traced (inside the jitted pass the estimator's own checks are skipped): this package's
    estimators carry `check_args`, and for any estimator `estimator(counts, *args)` must fit its
    signature. Errors name the estimator and the argument.

    Example:
      >>> bayes_risk(maxent_first_moment, ordered_mixture(), 7, args=(z,), key=key,
      ...            n_priors=100, n_samples=100)
    """
    _validate.check_estimator_call(estimator, _n_outcomes(prior), tuple(args), caller="bayes_risk")
    sums, counts = monte_carlo(
        _EstimatorKL(estimator),
        prior,
        total_count,
        key=key,
        n_priors=n_priors,
        n_samples=n_samples,
        aux=tuple(args),
        chunk_priors=chunk_priors,
        max_count=max_count,
        mesh=mesh,
        progress=progress,
    )
    return ratio_estimate(sums, counts, n_samples)


def _kl_to_uniform(q, counts, aux):
    del counts, aux
    return jnp.log(q.shape[-1]) - entropy(q)


def baseline_risk(prior, *, key: jax.Array, n_priors: int, chunk_priors: int | None = None) -> RiskEstimate:
    """Monte-Carlo ⟨K[q, 1/n]⟩ over the same prior draws as every other call with this key.

    K[q, 1/n] = ln n − H(q) is exact per draw, so only q is sampled; compare with the closed
    form `priors.expected_kl_to_uniform` to check the integrator.
    """
    values = monte_carlo(
        _kl_to_uniform, prior, 1, key=key, n_priors=n_priors, n_samples=1,
        chunk_priors=chunk_priors or min(n_priors, 4096),
    )
    return ratio_estimate(values, np.ones_like(values), 1)


# --------------------------------------------------------------------------------------------
# One pass for every estimator of Chapter 1.


@dataclasses.dataclass(frozen=True)
class _ProfileStat:
    max_count: int
    two_moments: bool

    def __call__(self, q, counts, aux):
        z, log_w, alphas, alpha_single, u = aux
        m = counts.astype(q.dtype)
        big_m = self.max_count
        total = m[0].sum()  # M: every sample has the same length
        neg_h = -entropy(q)

        # Regularised ML for any b: K = Σ q ln q + ln(M + nb) − Σ_c H_c ln(c + b), with
        # H_c = Σ_{k: m_k = c} q_k averaged over the samples.
        # A scatter-add: the one-hot einsum over (S, n, M+1) costs ~30× more on CPU.
        ml_hist = jnp.zeros(big_m + 1, q.dtype).at[counts].add(jnp.broadcast_to(q, counts.shape))
        ml_hist = ml_hist / counts.shape[0]

        bayes_true = dirichlet_mixture_posterior_mean(counts, log_w, alphas, max_count=big_m)
        bayes_true = jnp.sum(kl(q, bayes_true))
        bayes_single = jnp.sum(kl(q, dirichlet_posterior_mean(counts, alpha_single)))

        out = {
            "neg_entropy": neg_h,
            "ml_hist": ml_hist,
            "bayes_true": bayes_true,
            "bayes_single": bayes_single,
            # First-moment MaxEnt depends on the sample only through μ₁ (solved after the pass,
            # once per distinct value) and on q through ⟨u⟩_q and H(q).
            "u_q": q @ u,
            "maxent_mu": (m @ z) / total,
            "maxent_degenerate": degenerate_first_moment(counts, z),
        }
        if self.two_moments:
            fit = maxent_two_moments(counts, z)
            k2 = kl_from_log(q, fit.log_q_hat)
            out["maxent2_sum"] = _kept_sum(k2, fit.valid)
            out["maxent2_kept"] = jnp.sum(fit.valid)
            out["maxent2_degenerate"] = jnp.sum(degenerate_two_moments(counts, z))
        return out


_UNIQUE_CHUNK = 8192


@jax.jit
def _solve_chunk(mu, z):
    beta, converged, _ = solve_beta(mu, z)
    return beta, converged


@jax.jit
def _moments_chunk(gamma, u):
    return moments_1d(gamma, u)


def _map_unique(fn, values: np.ndarray, *args) -> tuple[np.ndarray, ...]:
    """Applies a jitted elementwise `fn(values_chunk, *args)` in fixed-size padded chunks."""
    parts = []
    for start in range(0, max(1, values.size), _UNIQUE_CHUNK):
        chunk = values[start : start + _UNIQUE_CHUNK]
        padded = np.pad(chunk, (0, _UNIQUE_CHUNK - chunk.size), mode="edge")
        parts.append([np.asarray(o)[: chunk.size] for o in fn(jnp.asarray(padded), *args)])
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))


@dataclasses.dataclass(frozen=True)
class RiskProfile:
    """Per-prior sufficient statistics of one Monte-Carlo pass (see `risk_profile`).

    All risks are `RiskEstimate`s in nats over the same prior draws and samples.

    Attributes:
      stats: per-prior arrays with a leading axis of length N.
      gamma: (U,) MaxEnt multipliers in standardised units, one per distinct μ₁.
      pairs: (N, U) sparse counts: how many kept pairs of prior draw i have the i-th distinct
        μ₁. Every per-pair MaxEnt sum is then `pairs @ (a per-distinct-value array)`.
      u: (n,) the standardised encoding.
    """

    total_count: int
    n_samples: int
    n: int
    xi_grid: tuple[float, ...]
    stats: dict[str, np.ndarray]
    gamma: np.ndarray
    pairs: scipy.sparse.csr_matrix
    u: np.ndarray

    @property
    def n_priors(self) -> int:
        return int(self.stats["neg_entropy"].shape[0])

    def _full(self, per_prior_mean: np.ndarray) -> RiskEstimate:
        s = self.n_samples
        return ratio_estimate(per_prior_mean * s, np.full(self.n_priors, s), s)

    def baseline(self) -> RiskEstimate:
        """⟨K[q, 1/n]⟩ = ln n − ⟨H(q)⟩ (exact per draw; Monte Carlo only over q)."""
        return self._full(np.log(self.n) + self.stats["neg_entropy"])

    def bayes_true(self) -> RiskEstimate:
        """Posterior mean under the true prior (Bayes-optimal)."""
        return self._full(self.stats["bayes_true"] / self.n_samples)

    def bayes_single(self) -> RiskEstimate:
        """Posterior mean under one Dirichlet with the prior's mean concentration."""
        return self._full(self.stats["bayes_single"] / self.n_samples)

    def ml_per_prior(self, b: float) -> np.ndarray:
        hist = self.stats["ml_hist"]
        c = np.arange(hist.shape[-1])
        with np.errstate(divide="ignore"):
            log_cb = np.log(c + b)
        # Unseen outcomes with q_k > 0 make plain ML (b = 0) infinitely bad; 0·log 0 = 0.
        cross = np.where(hist > 0, hist * log_cb, 0.0).sum(-1)
        if b == 0:
            cross = np.where(hist[:, 0] > 0, -np.inf, cross)
        return self.stats["neg_entropy"] + np.log(self.total_count + self.n * b) - cross

    def ml(self, b: float) -> RiskEstimate:
        """Regularised ML (m + b)/(M + nb), exact in b for the sampled pairs."""
        if not (b >= 0 and math.isfinite(b)):
            raise ValueError(f"`b` must be a finite number >= 0; got {b}.")
        return self._full(self.ml_per_prior(float(b)))

    def b_opt(self, bounds: tuple[float, float] = (1e-4, 1e4)) -> float:
        """The b minimising the Monte-Carlo ML risk (bounded Brent search in log b)."""
        lo, hi = bounds
        if not (0 < lo < hi < math.inf):
            raise ValueError(f"`bounds` must satisfy 0 < lo < hi < inf; got {bounds}.")
        res = scipy.optimize.minimize_scalar(
            lambda lb: float(np.mean(self.ml_per_prior(math.exp(lb)))),
            bounds=(math.log(bounds[0]), math.log(bounds[1])),
            method="bounded",
            options={"xatol": 1e-6},
        )
        return float(math.exp(res.x))

    @functools.cached_property
    def maxent_kept(self) -> np.ndarray:
        """(N,) pairs per prior draw that MaxEnt keeps (not degenerate, solve converged)."""
        return np.asarray(self.pairs.sum(axis=1)).ravel()

    @functools.cached_property
    def _gamma_sums(self) -> np.ndarray:
        return self.pairs @ self.gamma

    @property
    def maxent_excluded(self) -> int:
        return int(self.n_priors * self.n_samples - self.maxent_kept.sum())

    @property
    def maxent_degenerate(self) -> int:
        return int(self.stats["maxent_degenerate"].sum())

    def shrunk_sums(self, xi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-prior Σ_s K_ξ, dK_ξ/dξ and d²K_ξ/dξ² of shrunk MaxEnt at any ξ ≥ 0, exactly.

        With γ the pair's multiplier in standardised units,
        K_ξ = −H(q) + ξγ⟨u⟩_q + ln Z_u(ξγ): the Gibbs moments are computed once per distinct
        γ, then gathered per pair.
        """
        if not (xi >= 0 and math.isfinite(xi)):
            raise ValueError(f"`xi` must be a finite number >= 0; got {xi}.")
        mean, var, log_z = _map_unique(_moments_chunk, xi * self.gamma, jnp.asarray(self.u))
        g = self.gamma
        k = self.maxent_kept * self.stats["neg_entropy"] + xi * self.stats["u_q"] * self._gamma_sums
        k = k + self.pairs @ log_z
        dk = self.stats["u_q"] * self._gamma_sums - self.pairs @ (g * mean)
        d2k = self.pairs @ (g * g * var)
        return k, dk, d2k

    def maxent(self, xi: float = 1.0) -> RiskEstimate:
        """Shrunk-MaxEnt risk at ξ, exact (ξ = 1: plain first-moment MaxEnt, ξ = 0: uniform)."""
        return ratio_estimate(self.shrunk_sums(float(xi))[0], self.maxent_kept, self.n_samples)

    @functools.cached_property
    def _curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        risks = [self.maxent(x) for x in self.xi_grid]
        return (np.asarray(self.xi_grid), np.array([r.mean for r in risks]),
                np.array([r.se for r in risks]))

    def maxent_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ξ grid, risk, standard error) of shrunk MaxEnt on the profile's ξ grid."""
        return self._curve

    @functools.cached_property
    def _xi_star(self) -> float:
        kept = self.maxent_kept.sum()
        if kept == 0:
            return math.nan
        xs, f, _ = self._curve
        j = int(np.argmin(f))
        if j == 0 or j == len(xs) - 1:
            return float(xs[j])
        # R(ξ) is convex (R'' = ⟨γ² Var_{ξγ}(u)⟩ ≥ 0), so its minimum lies between the grid
        # neighbours of the best grid point: safeguarded Newton on the exact risk there.
        lo, hi, x = xs[j - 1], xs[j + 1], xs[j]
        for _ in range(60):
            _, dk, d2k = (v.sum() / kept for v in self.shrunk_sums(x))
            if dk == 0:
                break
            if dk > 0:
                hi = x
            else:
                lo = x
            step = dk / d2k if d2k > 0 else math.inf
            if abs(step) <= 1e-10 * max(1.0, abs(x)):
                x = min(max(x - step, lo), hi)
                break
            # Newton inside the bracket, bisection when the step would leave it.
            x = x - step if lo < x - step < hi else 0.5 * (lo + hi)
            if hi - lo <= 1e-12:
                break
        return float(x)

    def xi_opt(self) -> float:
        """The exact minimiser of the Monte-Carlo shrunk-MaxEnt risk over [0, max grid ξ]."""
        return self._xi_star

    def maxent_opt(self) -> RiskEstimate:
        """Shrunk-MaxEnt risk at `xi_opt()`, exact."""
        return self.maxent(self.xi_opt())

    def maxent2(self) -> RiskEstimate:
        """Two-moment MaxEnt risk (requires `two_moments=True`)."""
        if "maxent2_sum" not in self.stats:
            raise ValueError("this profile was computed with two_moments=False.")
        return ratio_estimate(self.stats["maxent2_sum"], self.stats["maxent2_kept"], self.n_samples)


def xi_grid(xi_step: float = 0.1, xi_max: float = 1.5) -> tuple[float, ...]:
    """The shrinkage grid ξ_j = j·xi_step ≤ xi_max (ξ = 1, plain MaxEnt, always on it)."""
    if not (xi_step > 0 and 1.0 <= xi_max < math.inf):
        raise ValueError(f"`xi_step` must be > 0 and `xi_max` a finite number >= 1; got {xi_step}, {xi_max}.")
    n_xi = math.floor(xi_max / xi_step + 1e-9) + 1
    if n_xi > 100_000:
        raise ValueError(f"`xi_step` = {xi_step} gives {n_xi} grid points up to `xi_max`; use a coarser step.")
    return tuple(sorted({round(j * xi_step, 12) for j in range(n_xi)} | {1.0}))


@jax.jit
def _profile_inputs(prior, z):
    # One program for the per-call preparation: run eagerly, each small op would compile on
    # its own (dozens of ~30 ms compilations on a cold start).
    log_w, alphas = priors_lib.mixture_params(prior)
    u, _, scale = standardize(z)
    return z, log_w, alphas, priors_lib.mean_concentration(prior), scale, u


def risk_profile(
    prior,
    total_count: int,
    *,
    z: jax.Array | None = None,
    key: jax.Array,
    n_priors: int,
    n_samples: int,
    xi_step: float = 0.1,
    xi_max: float = 1.5,
    two_moments: bool = False,
    chunk_priors: int | None = None,
    max_count: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool | str = False,
) -> RiskProfile:
    """Every Chapter-1 estimator's Bayes risk at one sample length M, from one Monte-Carlo pass.

    The pass (jitted, vmapped, chunked) reduces each prior draw's samples to sufficient
    statistics; first-moment MaxEnt keeps each pair's empirical mean μ₁ and β is then solved
    once per distinct μ₁ (for integer-valued encodings there are at most (n−1)M + 1 of them),
    which makes plain and shrunk MaxEnt exact at any ξ afterwards.

    Args:
      prior: NumPyro Dirichlet or Dirichlet mixture over n outcomes (the true prior).
      total_count: M.
      z: (n,) distinct encodings for MaxEnt (default z_k = k).
      key: PRNG key; the same key gives the same draws as `bayes_risk` with the same sizes.
      n_priors, n_samples: N prior draws × S samples.
      xi_step, xi_max: the grid of ξ for `maxent_curve`; ξ_opt is searched on [0, xi_max].
      two_moments: also evaluate two-moment MaxEnt (slower: a 2-D Newton per sample).
      chunk_priors, max_count, mesh, progress: as in `monte_carlo` (pass the largest M of a
        scan as `max_count` to compile once for the whole scan).

    Returns:
      `RiskProfile` with methods baseline(), bayes_true(), bayes_single(), ml(b), b_opt(),
      maxent(ξ), xi_opt(), maxent_opt(), maxent_curve(), maxent2().
    """
    n = _n_outcomes(prior)
    dtype = jnp.result_type(float)
    z = np.arange(1, n + 1) if z is None else np.asarray(z)
    _validate.encoding("z", z, n)
    grid = xi_grid(xi_step, xi_max)
    total_count = _validate.positive_int("total_count", total_count)
    max_count = total_count if max_count is None else _validate.positive_int("max_count", max_count)
    aux = _profile_inputs(prior, jnp.asarray(z, dtype))
    z, u, scale = aux[0], aux[-1], aux[-2]
    aux = aux[:4] + (u,)
    stat = _ProfileStat(max_count, bool(two_moments))
    stats = monte_carlo(
        stat,
        prior,
        total_count,
        key=key,
        n_priors=n_priors,
        n_samples=n_samples,
        aux=aux,
        chunk_priors=chunk_priors,
        max_count=max_count,
        mesh=mesh,
        progress=progress,
    )
    # β once per distinct empirical mean (degenerate pairs get a harmless placeholder).
    mu, degenerate = stats.pop("maxent_mu"), stats["maxent_degenerate"]
    mu = np.where(degenerate, float(np.mean(np.asarray(z))), mu)
    values, index = np.unique(mu, return_inverse=True)
    beta, converged = _map_unique(_solve_chunk, values, z)
    keep = ~degenerate & converged[index.reshape(mu.shape)]
    rows = np.broadcast_to(np.arange(mu.shape[0])[:, None], mu.shape)
    pairs = scipy.sparse.csr_matrix(
        (np.ones(int(keep.sum())), (rows[keep], index.reshape(mu.shape)[keep])),
        shape=(mu.shape[0], values.size),
    )
    gamma = np.where(converged, beta * float(scale), 0.0)
    return RiskProfile(int(total_count), int(n_samples), int(n), grid, stats, gamma, pairs, np.asarray(u))
