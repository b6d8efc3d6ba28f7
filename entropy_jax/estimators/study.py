"""Chapter 1 studies assembled from `risk_profile`: Table 1 and the regimes around it.

Each function returns plain dicts (JSON-ready) so that launch scripts, notebooks and the report
share one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import jax
import numpy as np

from entropy_jax import _validate
from entropy_jax.estimators import priors as priors_lib
from entropy_jax.estimators.risk import (
    RiskProfile,
    baseline_risk,
    risk_profile,
    xi_grid,
)

__all__ = [
    "ENCODINGS",
    "PUBLISHED_TABLE1",
    "REGIME_MS",
    "TABLE1_MS",
    "encoding",
    "encoding_regime",
    "near_uniform_regime",
    "profile_row",
    "second_moment_regime",
    "table1",
]

REGIME_MS: tuple[int, ...] = (3, 7, 15, 35)

ENCODINGS: tuple[str, ...] = ("linear", "log", "cubic", "exp", "permuted")

TABLE1_MS: tuple[int, ...] = (35, 25, 15, 11, 7, 5, 3, 1)

# Table 1 of the synopsis (n = 60, z_k = k, α0 = 0.3, ε = 1.1; 10² priors × 10² samples).
# Columns: bayes_mixture, bayes_single, ml_bopt, ml_b1, maxent1, maxent1_shrunk, xi_opt.
PUBLISHED_TABLE1: dict[str, object] = {
    "baseline": 0.212,
    "rows": {
        35: (0.014, 0.206, 0.180, 0.204, 0.048, 0.047, 0.91),
        25: (0.015, 0.207, 0.188, 0.210, 0.053, 0.051, 0.87),
        15: (0.017, 0.209, 0.197, 0.214, 0.065, 0.060, 0.84),
        11: (0.022, 0.209, 0.201, 0.215, 0.077, 0.069, 0.78),
        7: (0.035, 0.209, 0.205, 0.215, 0.105, 0.084, 0.69),
        5: (0.052, 0.210, 0.207, 0.214, 0.141, 0.101, 0.59),
        3: (0.083, 0.210, 0.209, 0.213, 0.268, 0.140, 0.50),
        1: (0.150, 0.211, 0.211, 0.212, None, None, None),
    },
    "columns": (
        "bayes_mixture", "bayes_single", "ml_bopt", "ml_b1", "maxent1", "maxent1_shrunk", "xi_opt"
    ),
}


def encoding(kind: str, n: int, *, seed: int = 0) -> np.ndarray:
    """Named numeric encodings z of n ordered outcomes, for representation-dependence studies.

    Args:
      kind: "linear" (z_k = k), "cubic" (z_k = k³), "exp" (z_k = exp(k/4)), "log" (z_k = ln k),
        or "permuted" (a random permutation of 1..n: ordering information destroyed).
      n: number of outcomes.
      seed: permutation seed.

    Returns:
      (n,) float64 array of distinct values.
    """
    k = np.arange(1, n + 1, dtype=np.float64)
    table = {
        "linear": lambda: k,
        "cubic": lambda: k**3,
        "exp": lambda: np.exp(k / 4.0),
        "log": lambda: np.log(k),
        "permuted": lambda: np.random.default_rng(seed).permutation(k),
    }
    if kind not in table:
        raise ValueError(f"`kind` must be one of {list(ENCODINGS)}; got {kind!r}.")
    return table[kind]()


def _check_sizes(ms: Sequence[int], n_priors: int, n_samples: int, name: str = "ms") -> tuple[int, ...]:
    """Sample lengths (non-empty, distinct, each >= 1) and Monte-Carlo sizes, before any work."""
    if isinstance(ms, str) or not isinstance(ms, Iterable):
        raise TypeError(f"`{name}` must be a sequence of sample lengths M >= 1; got {ms!r}.")
    ms = tuple(_validate.positive_int(f"{name} entry", m) for m in ms)
    if not ms:
        raise ValueError(f"`{name}` is empty: give at least one sample length M >= 1.")
    if len(set(ms)) != len(ms):
        raise ValueError(f"`{name}` lists a sample length twice; got {list(ms)}.")
    _validate.positive_int("n_priors", n_priors)
    _validate.positive_int("n_samples", n_samples)
    return ms


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def profile_row(profile: RiskProfile, *, with_maxent: bool = True) -> dict[str, object]:
    """One table row (JSON-ready) from a profile: risks, their standard errors and b/ξ optima."""
    b_opt = profile.b_opt()
    ml_opt, ml_1 = profile.ml(b_opt), profile.ml(1.0)
    bayes, single = profile.bayes_true(), profile.bayes_single()
    row: dict[str, object] = {
        "M": profile.total_count,
        "bayes_mixture": bayes.mean,
        "bayes_single": single.mean,
        "ml_bopt": ml_opt.mean,
        "b_opt": b_opt,
        "ml_b1": ml_1.mean,
        "maxent1": None,
        "maxent1_shrunk": None,
        "xi_opt": None,
        "bayes_mixture_se": bayes.se,
        "bayes_single_se": single.se,
        "ml_bopt_se": ml_opt.se,
        "ml_b1_se": ml_1.se,
        "maxent1_se": None,
        "maxent1_shrunk_se": None,
        "maxent_excluded": profile.maxent_excluded,
        "maxent_degenerate": profile.maxent_degenerate,
        "pairs": profile.n_priors * profile.n_samples,
    }
    if with_maxent:
        xi = profile.xi_opt()
        me1, shrunk = profile.maxent(1.0), profile.maxent_opt()
        _, curve, _ = profile.maxent_curve()
        row.update(
            xi_risk=[_num(v) for v in curve],
            maxent1=_num(me1.mean),
            maxent1_se=_num(me1.se),
            maxent1_shrunk=_num(shrunk.mean),
            maxent1_shrunk_se=_num(shrunk.se),
            xi_opt=_num(xi),
        )
    return row


def table1(
    *,
    n_priors: int = 100,
    n_samples: int = 100,
    seed: int = 0,
    ms: Sequence[int] = TABLE1_MS,
    n: int = 60,
    alpha0: float = 0.3,
    eps: float = 1.1,
    z: Iterable[float] | None = None,
    maxent_min_m: int = 2,
    xi_step: float = 0.1,
    xi_max: float = 1.5,
    done: dict[int, dict] | None = None,
    on_row=None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Table 1 of the synopsis: every estimator's Bayes risk per sample length M.

    The prior is `ordered_mixture(n, alpha0, eps)`. All M share the same prior draws and the
    samples are nested (the M draws are the first M of max(ms)): common random numbers across
    rows, and one compilation for the whole table. Run under float64
    (`jax.enable_x64(True)`); the β solves need it for their 1e-10 accuracy.

    Args:
      n_priors, n_samples: Monte-Carlo sizes (the paper: 100 × 100).
      seed: PRNG seed.
      ms: sample lengths, one row each.
      n, alpha0, eps: the prior (a_k = α0 + ε(k−1)).
      z: encodings for MaxEnt (default z_k = k).
      maxent_min_m: MaxEnt entries are null below this M (the paper omits M = 1, where every
        edge sample is degenerate).
      xi_step, xi_max: the ξ grid of shrunk MaxEnt (see `risk_profile`).
      done: rows already computed (keyed by M), e.g. from an interrupted run; they are reused.
      on_row: callback(row) after each new row (for checkpointing).
      mesh: shard the prior draws over this device mesh (see `monte_carlo`).
      progress: tqdm bars.

    Returns:
      {"baseline", "baseline_se", "baseline_exact", "rows": [...], "settings": {...}}.
    """
    ms = _check_sizes(ms, n_priors, n_samples)
    _validate.positive_int("maxent_min_m", maxent_min_m)
    xi_grid(xi_step, xi_max)  # checks the grid before any work
    prior = priors_lib.ordered_mixture(n, alpha0, eps)
    key = jax.random.key(seed)
    zz = None if z is None else np.asarray(list(z), np.float64)
    if zz is not None:
        _validate.encoding("z", zz, n)
    done = dict(done or {})
    rows, baseline = [], None
    max_m = max(ms)
    for m in ms:
        if m in done:
            rows.append(done[m])
            continue
        profile = risk_profile(
            prior, m, z=zz, key=key, n_priors=n_priors, n_samples=n_samples,
            max_count=max_m, xi_step=xi_step, xi_max=xi_max, mesh=mesh,
            progress=f"M={m}" if progress else False,
        )
        # Every row sees the same prior draws, so any profile gives the baseline.
        baseline = baseline or profile.baseline()
        row = profile_row(profile, with_maxent=m >= maxent_min_m)
        if on_row is not None:
            on_row(row)
        rows.append(row)
    if baseline is None:  # every row came from an interrupted run
        baseline = baseline_risk(prior, key=key, n_priors=n_priors)
    return {
        "baseline": baseline.mean,
        "baseline_se": baseline.se,
        "baseline_exact": float(priors_lib.expected_kl_to_uniform(prior)),
        "rows": rows,
        "xi_grid": list(xi_grid(xi_step, xi_max)),
        "settings": {
            "n_priors": n_priors, "n_samples": n_samples, "seed": seed, "n": n,
            "alpha0": alpha0, "eps": eps, "ms": list(ms),
            "z": "linear" if z is None else [float(v) for v in np.asarray(list(z))],
        },
    }


def _point(profile: RiskProfile, **labels) -> dict[str, object]:
    """A regime data point: labels, baseline and the estimators that matter there."""
    row = profile_row(profile)
    point = dict(labels)
    point["M"] = profile.total_count
    point["baseline"] = profile.baseline().mean
    for key in ("bayes_mixture", "ml_bopt", "b_opt", "maxent1", "maxent1_se", "maxent1_shrunk",
                "xi_opt", "maxent_excluded"):
        point[key] = row[key]
    if "maxent2_sum" in profile.stats:
        m2 = profile.maxent2()
        point.update(maxent2=_num(m2.mean), maxent2_se=_num(m2.se), maxent2_excluded=m2.n_excluded)
    return point


def _run_points(jobs, *, n_priors, n_samples, seed, done, on_point, progress, mesh=None):
    """Runs (key, labels, prior, M, z, two_moments) jobs with one key (common random numbers)."""
    if not jobs:
        raise ValueError("nothing to compute: the regime has no (setting, M) points.")
    key = jax.random.key(seed)
    max_m = max(job[3] for job in jobs)
    points = []
    for name, labels, prior, m, z, two in jobs:
        if done and name in done:
            points.append(done[name])
            continue
        profile = risk_profile(
            prior, m, z=z, key=key, n_priors=n_priors,
            n_samples=n_samples, max_count=max_m, two_moments=two, mesh=mesh,
            progress=name if progress else False,
        )
        point = _point(profile, **labels)
        if on_point is not None:
            on_point(name, point)
        points.append(point)
    return points


def near_uniform_regime(
    *,
    alphas: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    ms: Sequence[int] = REGIME_MS,
    n: int = 60,
    n_priors: int = 200,
    n_samples: int = 100,
    seed: int = 0,
    done: dict | None = None,
    on_point=None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Regime (a): true worlds from symmetric Dir(α); large α means near-uniform q.

    The first moment carries no information about such q, so first-moment MaxEnt injects
    spurious structure: its risk exceeds the uniform baseline in sparse samples, increasingly so
    as α grows, while ML and Bayes never do worse than the baseline.
    """
    ms = _check_sizes(ms, n_priors, n_samples)
    if not alphas:
        raise ValueError("`alphas` is empty: give at least one concentration α > 0.")
    jobs = [
        (f"alpha={a}/M={m}", {"alpha": float(a)}, priors_lib.symmetric_dirichlet(a, n), m, None, False)
        for a in alphas for m in ms
    ]
    points = _run_points(jobs, n_priors=n_priors, n_samples=n_samples, seed=seed, done=done,
                         on_point=on_point, progress=progress, mesh=mesh)
    return {"n": n, "ms": list(ms), "alphas": [float(a) for a in alphas], "points": points,
            "settings": {"n_priors": n_priors, "n_samples": n_samples, "seed": seed}}


def encoding_regime(
    *,
    kinds: Sequence[str] = ENCODINGS,
    ms: Sequence[int] = REGIME_MS,
    n: int = 60,
    alpha0: float = 0.3,
    eps: float = 1.1,
    n_priors: int = 200,
    n_samples: int = 100,
    seed: int = 0,
    done: dict | None = None,
    on_point=None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Regime (b): the Table 1 prior, MaxEnt under different numeric encodings z of the outcomes.

    Bayes and ML do not use z, so their risks are the same for every encoding; first-moment
    MaxEnt changes with z, and misaligned encodings (permuted, or strongly nonlinear) make it
    worse than the uniform baseline.
    """
    ms = _check_sizes(ms, n_priors, n_samples)
    if not kinds:
        raise ValueError("`kinds` is empty: give at least one encoding.")
    prior = priors_lib.ordered_mixture(n, alpha0, eps)
    jobs = [
        (f"z={k}/M={m}", {"encoding": k}, prior, m, encoding(k, n, seed=seed), False)
        for k in kinds for m in ms
    ]
    points = _run_points(jobs, n_priors=n_priors, n_samples=n_samples, seed=seed, done=done,
                         on_point=on_point, progress=progress, mesh=mesh)
    return {"n": n, "ms": list(ms), "encodings": list(kinds), "points": points,
            "baseline_exact": float(priors_lib.expected_kl_to_uniform(prior)),
            "settings": {"n_priors": n_priors, "n_samples": n_samples, "seed": seed,
                         "alpha0": alpha0, "eps": eps}}


def second_moment_regime(
    *,
    ms: Sequence[int] = REGIME_MS,
    n: int = 60,
    n_priors: int = 200,
    n_samples: int = 100,
    seed: int = 0,
    done: dict | None = None,
    on_point=None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Regime (c): first- vs first-and-second-moment MaxEnt under two priors.

    Under the ordered (Table 1) prior the second constraint only adds noise; under the
    bump/valley prior, whose structure is invisible to the mean, it is what makes MaxEnt useful —
    once M is large enough to estimate it.
    """
    ms = _check_sizes(ms, n_priors, n_samples)
    named = {
        "ordered mixture (Table 1)": priors_lib.ordered_mixture(n),
        "bump/valley mixture": priors_lib.bump_valley_mixture(n),
    }
    jobs = [
        (f"{name}/M={m}", {"prior": name}, prior, m, None, True)
        for name, prior in named.items() for m in ms
    ]
    points = _run_points(jobs, n_priors=n_priors, n_samples=n_samples, seed=seed, done=done,
                         on_point=on_point, progress=progress, mesh=mesh)
    return {"n": n, "ms": list(ms), "priors": list(named), "points": points,
            "settings": {"n_priors": n_priors, "n_samples": n_samples, "seed": seed}}
