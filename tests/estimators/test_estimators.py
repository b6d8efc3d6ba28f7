"""Frequency and Bayes estimators, priors and the count sampler against independent references:
the plain NumPy/SciPy implementation in bench/maxent_numpy.py, closed forms and scipy.stats."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from bench import maxent_numpy as ref
from entropy_jax.estimators import (
    bayes_risk,
    dirichlet,
    dirichlet_mixture,
    dirichlet_mixture_posterior_mean,
    dirichlet_posterior_mean,
    expected_kl_to_uniform,
    mean_concentration,
    mixture_params,
    ordered_mixture,
    posterior_mean,
    regularized_ml,
    sample_counts,
    symmetric_dirichlet,
    uniform,
)
from entropy_jax.estimators.sampling import alias_table


def _counts(rng, batch, n, total):
    q = rng.dirichlet(np.full(n, 0.4), size=batch)
    return np.stack([rng.multinomial(total, qq) for qq in q])


# ---------------------------------------------------------------------------------------------
# Frequency and Bayes estimators vs the NumPy reference.


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("b", [0.0, 0.5, 1.0, 7.0])
def test_regularized_ml_matches_reference(x64, rng, jit, b):
    m = _counts(rng, 20, 12, 9)
    f = jax.jit(regularized_ml) if jit else regularized_ml
    got = np.asarray(f(jnp.asarray(m), b))
    want = np.stack([ref.regularized_ml(row, b) for row in m])
    np.testing.assert_allclose(got, want, rtol=1e-14)


@pytest.mark.parametrize("jit", [False, True])
def test_dirichlet_posterior_mean_matches_reference(x64, rng, jit):
    m = _counts(rng, 20, 10, 6)
    alpha = rng.uniform(0.1, 5.0, size=10)
    f = jax.jit(dirichlet_posterior_mean) if jit else dirichlet_posterior_mean
    got = np.asarray(f(jnp.asarray(m), jnp.asarray(alpha)))
    want = np.stack([ref.dirichlet_posterior_mean(row, alpha) for row in m])
    np.testing.assert_allclose(got, want, rtol=1e-14)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("table", [False, True])
def test_dirichlet_mixture_posterior_mean_matches_reference(x64, rng, jit, table):
    n, total, comps = 15, 11, 3
    m = _counts(rng, 25, n, total)
    weights = rng.dirichlet(np.ones(comps))
    alphas = rng.uniform(0.05, 8.0, size=(comps, n))
    kw = {"max_count": total} if table else {}

    def f(m, lw, a):
        return dirichlet_mixture_posterior_mean(m, lw, a, **kw)

    f = jax.jit(f) if jit else f
    got = np.asarray(f(jnp.asarray(m), jnp.log(jnp.asarray(weights)), jnp.asarray(alphas)))
    want = np.stack([ref.dirichlet_mixture_posterior_mean(row, weights, alphas) for row in m])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_mixture_posterior_reduces_to_single_dirichlet(x64, rng):
    m = jnp.asarray(_counts(rng, 5, 8, 20))
    alpha = jnp.asarray(rng.uniform(0.5, 3.0, size=8))
    single = dirichlet_posterior_mean(m, alpha)
    one = dirichlet_mixture_posterior_mean(m, jnp.zeros(1), alpha[None])
    same = dirichlet_mixture_posterior_mean(m, jnp.log(jnp.array([0.3, 0.7])), jnp.stack([alpha, alpha]))
    np.testing.assert_allclose(np.asarray(one), np.asarray(single), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(same), np.asarray(single), rtol=1e-14)
    # posterior_mean dispatches on the NumPyro prior.
    np.testing.assert_allclose(np.asarray(posterior_mean(m, dirichlet(alpha))), np.asarray(single), rtol=1e-14)


def test_mixture_posterior_weights_follow_the_evidence(x64):
    # Counts piled on the last outcome must put (almost) all posterior weight on the
    # component that favours it: the mean then equals that component's posterior mean.
    prior = ordered_mixture(n=10, alpha0=0.3, eps=1.1)
    log_w, alphas = mixture_params(prior)
    m = jnp.zeros(10).at[-1].set(30.0)
    got = posterior_mean(m, prior)
    increasing = dirichlet_posterior_mean(m, alphas[0])  # a_k grows with k
    np.testing.assert_allclose(np.asarray(got), np.asarray(increasing), rtol=1e-6)


def test_uniform_and_shapes():
    m = jnp.ones((2, 3, 5), jnp.int32)
    u = uniform(m)
    assert u.shape == (2, 3, 5)
    np.testing.assert_allclose(np.asarray(u), 0.2)
    assert regularized_ml(m, 1.0).shape == (2, 3, 5)


def test_estimators_sum_to_one_and_are_positive(x64, rng):
    m = jnp.asarray(_counts(rng, 50, 20, 4))
    prior = ordered_mixture(n=20)
    for q_hat in (regularized_ml(m, 0.3), posterior_mean(m, prior), posterior_mean(m, prior, max_count=4)):
        np.testing.assert_allclose(np.asarray(q_hat.sum(-1)), 1.0, rtol=1e-13)
        assert np.all(np.asarray(q_hat) > 0)


# ---------------------------------------------------------------------------------------------
# Priors.


def test_ordered_mixture_has_uniform_mean_and_paper_baseline(x64):
    prior = ordered_mixture()
    log_w, alphas = mixture_params(prior)
    np.testing.assert_allclose(np.exp(np.asarray(log_w)), [0.5, 0.5])
    np.testing.assert_allclose(np.asarray(alphas[0]), 0.3 + 1.1 * np.arange(60))
    np.testing.assert_allclose(np.asarray(alphas[1]), np.asarray(alphas[0])[::-1])
    # ⟨q_k⟩ = 1/n exactly, and the collapsed Dirichlet has α = A/n = 32.75 per outcome.
    comp_means = np.asarray(alphas / alphas.sum(-1, keepdims=True))
    np.testing.assert_allclose(0.5 * comp_means.sum(0), 1 / 60, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(mean_concentration(prior)), 32.75, rtol=1e-13)
    baseline = float(expected_kl_to_uniform(prior))
    assert round(baseline, 3) == 0.212  # the synopsis' 0.212
    w, a = ref.table1_prior_alphas()
    assert baseline == pytest.approx(ref.expected_kl_to_uniform(w, a), rel=1e-13)


def test_closed_form_baseline_against_monte_carlo(x64, key):
    # ⟨ln n − H(q)⟩ under the prior, estimated from NumPyro's own Dirichlet draws.
    from entropy_jax import entropy

    for prior in (ordered_mixture(n=20), symmetric_dirichlet(0.7, 12), dirichlet(jnp.arange(1.0, 9.0))):
        q = prior.sample(key, (40000,))
        n = q.shape[-1]
        values = np.log(n) - np.asarray(entropy(q))
        se = values.std(ddof=1) / np.sqrt(values.size)
        assert abs(values.mean() - float(expected_kl_to_uniform(prior))) < 4 * se


@pytest.mark.parametrize(
    "make, arg",
    [
        (lambda: symmetric_dirichlet(0.0, 5), "alpha"),
        (lambda: symmetric_dirichlet(-1.0, 5), "alpha"),
        (lambda: symmetric_dirichlet(1.0, 1), "n"),
        (lambda: dirichlet(jnp.array([1.0, -2.0])), "alpha"),
        (lambda: dirichlet_mixture(jnp.array([0.5, 0.5]), jnp.ones((3, 4))), "weights"),
        (lambda: dirichlet_mixture(jnp.array([0.6, 0.6]), jnp.ones((2, 4))), "weights"),
        (lambda: ordered_mixture(n=1), "n"),
        (lambda: ordered_mixture(alpha0=0.0), "alpha0"),
    ],
)
def test_prior_bad_input_names_the_argument(make, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        make()


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: regularized_ml(jnp.array([1, -1, 2]), 1.0), "counts"),
        (lambda: regularized_ml(jnp.array([1, 2]), -1.0), "b"),
        (lambda: regularized_ml(jnp.array([3]), 1.0), "counts"),
        (lambda: dirichlet_posterior_mean(jnp.array([1, 2, 3]), jnp.array([1.0, 0.0, 1.0])), "alpha"),
        (lambda: dirichlet_mixture_posterior_mean(jnp.array([1, 2, 3]), jnp.zeros(2), jnp.ones((2, 4))), "alphas"),
        (lambda: dirichlet_mixture_posterior_mean(jnp.array([1, 2, 3]), jnp.zeros(2), jnp.zeros((2, 3))), "alphas"),
    ],
)
def test_estimator_bad_input_names_the_argument(call, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        call()


# ---------------------------------------------------------------------------------------------
# The count sampler.


def test_alias_table_reproduces_q_exactly(x64, rng):
    cases = [
        np.array([0.5, 0.0, 0.2, 0.3]),
        np.array([1.0, 0.0, 0.0]),
        np.array([0.0, 0.0, 1.0]),
        rng.dirichlet(np.full(60, 0.3)),
        rng.dirichlet(np.full(7, 50.0)),
    ]
    for q in cases:
        prob, alias = alias_table(jnp.asarray(q))
        n = q.size
        implied = (np.asarray(prob) + np.bincount(np.asarray(alias), 1 - np.asarray(prob), minlength=n)) / n
        np.testing.assert_allclose(implied, q, atol=1e-15)
        # A zero-probability outcome is never accepted in its own column nor used as an alias.
        zero = np.flatnonzero(q == 0)
        assert np.all(np.asarray(prob)[zero] == 0)
        assert not np.isin(np.asarray(alias)[np.asarray(prob) < 1], zero).any()


def test_sample_counts_follow_the_multinomial(x64, key):
    # Every composition of M = 4 into n = 3 parts, against scipy.stats.multinomial.
    q = np.array([0.55, 0.3, 0.15])
    total, draws = 4, 40000
    counts = np.asarray(sample_counts(key, jnp.asarray(q), total, draws))
    assert counts.dtype == np.int32 and np.all(counts.sum(-1) == total)
    outcomes = [c for c in itertools.product(range(total + 1), repeat=3) if sum(c) == total]
    observed = np.array([np.sum(np.all(counts == c, axis=1)) for c in outcomes])
    expected = draws * np.array([scipy.stats.multinomial.pmf(c, total, q) for c in outcomes])
    chi2, p = scipy.stats.chisquare(observed, expected)
    assert p > 1e-3, (chi2, p)


def test_sample_counts_never_draw_impossible_outcomes(key):
    q = jnp.array([0.5, 0.0, 0.5, 0.0])
    counts = np.asarray(sample_counts(key, q, 9, 5000))
    assert counts[:, [1, 3]].max() == 0
    assert np.all(counts.sum(-1) == 9)


def test_sample_counts_with_traced_length_compiles_once(x64, key):
    q = jnp.asarray(np.random.default_rng(0).dirichlet(np.ones(6)))
    f = jax.jit(lambda k, m: sample_counts(k, q, m, 1000, max_count=10))
    means = {}
    for m in (1, 4, 10):
        c = np.asarray(f(key, m))
        assert np.all(c.sum(-1) == m)
        means[m] = c.mean(0) / m
    assert f._cache_size() == 1
    # Each length still samples from q (loose check: 1000 samples).
    for mean in means.values():
        np.testing.assert_allclose(mean, np.asarray(q), atol=0.05)


def test_bayes_risk_of_uniform_matches_closed_form(x64, key):
    # The integrator end to end, for the one estimator whose Bayes risk is known exactly.
    prior = ordered_mixture(n=30)
    est = bayes_risk(
        lambda m: jnp.full(m.shape, 1.0 / m.shape[-1]), prior, 5, key=key, n_priors=4000, n_samples=2
    )
    assert abs(est.mean - float(expected_kl_to_uniform(prior))) < 4 * est.se
    assert est.n_pairs == 8000 and est.n_excluded == 0
