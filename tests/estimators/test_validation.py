"""Argument checks of the Chapter 1 estimators: concrete values raise naming the argument, the
integrators check an estimator's arguments before tracing, and traced bad values give NaN."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropy_jax import estimators as est
from entropy_jax.estimators import risk, study
from entropy_jax.estimators.maxent import solve_beta

Z5 = np.arange(1.0, 6.0)


@pytest.fixture
def no_tracing(monkeypatch):
    """Fails the test if the Monte-Carlo pass is reached (the check must come first)."""

    def boom(*args, **kwargs):
        raise AssertionError("the jitted pass ran before the arguments were checked")

    monkeypatch.setattr(risk, "_chunk_stats", boom)


@pytest.mark.parametrize(
    "estimator, args, match",
    [
        (est.regularized_ml, (-0.5,), "regularized_ml.*`b` must be >= 0"),
        (est.regularized_ml, (np.nan,), "`b` has non-finite"),
        (est.dirichlet_posterior_mean, (0.0,), "dirichlet_posterior_mean.*`alpha` must be > 0"),
        (est.dirichlet_posterior_mean, (np.ones(4),), "`alpha` must be a scalar or have shape"),
        (est.dirichlet_mixture_posterior_mean, (np.zeros(2), np.zeros((2, 5))), "`alphas` must be > 0"),
        (est.dirichlet_mixture_posterior_mean, (np.zeros(3), np.ones((2, 5))), "`log_weights` must have shape"),
        (est.dirichlet_mixture_posterior_mean, (np.array([0.0, np.nan]), np.ones((2, 5))), "`log_weights`"),
        (est.posterior_mean, (est.symmetric_dirichlet(1.0, 4),), "`alphas` has n = 4"),
        (est.maxent_first_moment, (np.array([1.0, 2.0, 2.0, 3.0, 4.0]),), "`z` must have pairwise distinct"),
        (est.maxent_first_moment, (np.arange(4.0),), "`z` has n = 4"),
        (est.maxent_shrunk, (Z5, -1.0), "maxent_shrunk.*`xi` must be >= 0"),
        (est.maxent_two_moments, (np.array([1.0, np.nan, 3.0, 4.0, 5.0]),), "`z` has non-finite"),
        (est.maxent_moments, (np.stack([Z5, np.ones(5)]),), "`features` row 1 is constant"),
        (functools.partial(est.maxent_shrunk, xi=-2.0), (Z5,), "`xi` must be >= 0"),
        (est.regularized_ml, (1.0, 2.0), r"`args` = \(1.0, 2.0\) do not fit regularized_ml\(counts, b\)"),
    ],
)
def test_bayes_risk_checks_estimator_arguments_before_tracing(no_tracing, key, estimator, args, match):
    prior = est.symmetric_dirichlet(1.0, 5)
    with pytest.raises(ValueError, match=match):
        est.bayes_risk(estimator, prior, 4, key=key, n_priors=2, n_samples=2, args=args)


def test_bayes_risk_rejects_what_is_not_a_prior(no_tracing, key):
    with pytest.raises(ValueError, match="`prior` must be a NumPyro distribution"):
        est.bayes_risk(est.uniform, np.ones(5) / 5, 4, key=key, n_priors=2, n_samples=2)


@pytest.mark.parametrize("jit", [False, True])
def test_traced_bad_parameters_give_nan_not_numbers(jit):
    m = jnp.array([[3.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    if not jit:  # concrete: an error naming the argument
        with pytest.raises(ValueError, match="`b`"):
            est.regularized_ml(m, -0.5)
        with pytest.raises(ValueError, match="`alpha`"):
            est.dirichlet_posterior_mean(m, 0.0)
        with pytest.raises(ValueError, match="`alphas`"):
            est.dirichlet_mixture_posterior_mean(m, jnp.zeros(2), jnp.zeros((2, 3)))
        return
    assert np.all(np.isnan(jax.jit(est.regularized_ml)(m, -0.5)))
    # Per-row b: only the bad row is poisoned.
    rows = np.asarray(jax.jit(est.regularized_ml)(m, jnp.array([1.0, -1.0])))
    assert np.all(np.isfinite(rows[0])) and np.all(np.isnan(rows[1]))
    assert np.all(np.isnan(jax.jit(est.dirichlet_posterior_mean)(m, 0.0)))  # ML in disguise: inf KL
    assert np.all(np.isnan(jax.jit(est.dirichlet_posterior_mean)(m, jnp.array([1.0, -1.0, 1.0]))))
    mix = jax.jit(est.dirichlet_mixture_posterior_mean)(m, jnp.zeros(2), jnp.ones((2, 3)).at[1, 0].set(0.0))
    assert np.all(np.isnan(mix))
    # NaN counts propagate through the frequency and Bayes estimators.
    bad = m.at[1, 1].set(jnp.nan)
    assert np.all(np.isnan(jax.jit(est.regularized_ml)(bad, 1.0)[1]))
    assert np.all(np.isnan(jax.jit(est.dirichlet_posterior_mean)(bad, 1.0)[1]))


@pytest.mark.parametrize("jit", [False, True])
def test_maxent_poisons_bad_rows_instead_of_calling_them_degenerate(jit):
    z = jnp.arange(4.0)
    m = jnp.array([[2.0, 1.0, 0.0, 1.0], [2.0, jnp.nan, 0.0, 1.0], [2.0, -1.0, 0.0, 3.0]])
    if not jit:
        with pytest.raises(ValueError, match="`counts`"):
            est.maxent_first_moment(m, z)
        with pytest.raises(ValueError, match="`xi`"):
            est.maxent_shrunk(m[:1], z, -0.1)
        return
    for fit in (jax.jit(est.maxent_first_moment)(m, z), jax.jit(est.maxent_two_moments)(m, z)):
        q = np.asarray(fit.q_hat)
        assert np.all(np.isfinite(q[0])) and bool(fit.valid[0])
        assert np.all(np.isnan(q[1:])) and not np.any(fit.valid[1:])
        assert np.all(np.isnan(np.asarray(fit.log_z)[1:]))
    # A bad parameter poisons every row: tied or NaN encodings, negative ξ.
    tied = jnp.array([0.0, 1.0, 1.0, 2.0])
    assert np.all(np.isnan(jax.jit(est.maxent_first_moment)(m[:1], tied).q_hat))
    assert np.all(np.isnan(jax.jit(est.maxent_shrunk)(m[:1], z, -0.5).q_hat))
    assert np.all(np.isnan(jax.jit(est.maxent_moments)(m[:1], jnp.stack([z, jnp.ones(4)])).q_hat))
    beta, converged, _ = jax.jit(solve_beta)(jnp.array([1.5, jnp.nan]), z)
    assert np.isfinite(beta[0]) and np.isnan(beta[1]) and not converged[1]


def _shrunk_unchecked(counts, z, xi):
    # A user estimator: no `check_args`, so bayes_risk cannot check xi before tracing.
    return est.maxent_shrunk(counts, z, xi)


def test_a_poisoned_fit_reaches_the_risk_instead_of_being_excluded(key):
    prior = est.symmetric_dirichlet(1.0, 4)
    r = est.bayes_risk(_shrunk_unchecked, prior, 3, key=key, n_priors=2, n_samples=2, args=(jnp.arange(4.0), -1.0))
    assert np.isnan(r.mean)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda k: est.sample_counts(k, jnp.array([0.5, jnp.nan]), 3, 2), "`q` has NaN"),
        (lambda k: est.sample_counts(k, jnp.array([1.5, -0.5]), 3, 2), "`q` has negative"),
        (lambda k: est.sample_counts(k, jnp.array([0.5, 0.4]), 3, 2), "`q` must sum to 1"),
        (lambda k: est.sample_counts(k, jnp.ones((2, 2)) / 2, 3, 2), "`q` must be a 1-D"),
        (lambda k: est.sample_counts(k, jnp.ones(2) / 2, 3, 0), "`n_samples` must be >= 1"),
        (lambda k: est.sample_counts(k, jnp.ones(2) / 2, 5, 2, max_count=3), "`total_count` must be in"),
        (lambda k: est.sample_counts(k, jnp.ones(2) / 2, 2.5, 2), "`total_count` must be an integer"),
    ],
)
def test_sample_counts_checks_q_and_sizes(key, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(key)


def test_monte_carlo_sizes_must_be_integers(no_tracing, key):
    prior = est.symmetric_dirichlet(1.0, 3)
    with pytest.raises(TypeError, match="`total_count` must be an integer"):
        est.monte_carlo(risk._kl_to_uniform, prior, 2.5, key=key, n_priors=2, n_samples=2)
    with pytest.raises(ValueError, match="`chunk_priors` must be >= 1"):
        est.monte_carlo(risk._kl_to_uniform, prior, 2, key=key, n_priors=2, n_samples=2, chunk_priors=0)
    with pytest.raises(ValueError, match="`xi_max`"):
        risk.xi_grid(0.1, np.inf)


def test_studies_check_their_lists_before_any_work(monkeypatch):
    monkeypatch.setattr(study, "risk_profile", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ValueError, match="`ms` is empty"):
        study.table1(ms=())
    with pytest.raises(ValueError, match="`ms` lists a sample length twice"):
        study.table1(ms=(3, 3))
    with pytest.raises(ValueError, match="`ms entry` must be >= 1"):
        study.table1(ms=(3, 0))
    with pytest.raises(ValueError, match="`n_priors`"):
        study.table1(n_priors=0)
    with pytest.raises(ValueError, match="`alphas` is empty"):
        study.near_uniform_regime(alphas=())
    with pytest.raises(ValueError, match="`kinds` must be one of|`kind` must be one of"):
        study.encoding_regime(kinds=("linear", "sideways"))
    with pytest.raises(ValueError, match="`z` has n = 3"):
        study.table1(z=[1.0, 2.0, 3.0])


def test_profile_parameters_are_checked():
    import scipy.sparse

    stats = {"neg_entropy": np.zeros(2), "ml_hist": np.full((2, 4), 0.25)}
    profile = risk.RiskProfile(3, 2, 4, (0.0, 1.0), stats, np.zeros(1), scipy.sparse.csr_matrix((2, 1)), np.zeros(4))
    assert np.isfinite(profile.ml(1.0).mean)
    for b in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`b` must be a finite number >= 0"):
            profile.ml(b)
    with pytest.raises(ValueError, match="`xi` must be a finite number >= 0"):
        profile.shrunk_sums(float("nan"))
    with pytest.raises(ValueError, match="`bounds` must satisfy"):
        profile.b_opt(bounds=(0.0, 10.0))
