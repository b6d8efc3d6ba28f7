"""The Bayes-risk integrator: the one-pass profile against per-estimator integrals and against the
NumPy reference evaluated on the very same draws; standard errors, exclusions, compilation
counts, chunk and device-sharding invariance, and Table 1 against the published values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import maxent_numpy as ref
from entropy_jax.estimators import (
    baseline_risk,
    bayes_risk,
    dirichlet_posterior_mean,
    expected_kl_to_uniform,
    maxent_first_moment,
    maxent_shrunk,
    maxent_two_moments,
    mean_concentration,
    mixture_params,
    monte_carlo,
    ordered_mixture,
    posterior_mean,
    regularized_ml,
    risk_profile,
    symmetric_dirichlet,
)
from entropy_jax.estimators import risk as risk_lib
from entropy_jax.estimators.risk import ratio_estimate
from entropy_jax.estimators.study import PUBLISHED_TABLE1, table1


def _draws(q, counts, aux):
    return q, counts


def test_ratio_estimate_without_exclusions_is_mean_and_se_of_prior_means(rng):
    per_prior = rng.gamma(2.0, 0.1, size=(50, 8))  # 50 prior draws × 8 samples
    est = ratio_estimate(per_prior.sum(1), np.full(50, 8), 8)
    means = per_prior.mean(1)
    assert est.mean == pytest.approx(means.mean(), rel=1e-13)
    assert est.se == pytest.approx(means.std(ddof=1) / np.sqrt(50), rel=1e-12)
    assert (est.n_pairs, est.n_excluded) == (400, 0)
    # With exclusions it is the pooled mean over kept pairs.
    kept = rng.integers(1, 9, size=50)
    sums = np.array([row[:k].sum() for row, k in zip(per_prior, kept)])
    est = ratio_estimate(sums, kept, 8)
    assert est.mean == pytest.approx(sums.sum() / kept.sum())
    assert est.n_excluded == 400 - kept.sum()


def test_profile_equals_reference_on_the_same_draws(x64, key):
    """Every statistic of the one-pass profile against bench/maxent_numpy.py on identical q, m."""
    n, m_len, n_priors, n_samples = 12, 5, 6, 7
    prior = ordered_mixture(n=n, alpha0=0.3, eps=1.1)
    z = np.arange(1.0, n + 1)
    qs, cs = monte_carlo(_draws, prior, m_len, key=key, n_priors=n_priors, n_samples=n_samples, max_count=9)
    prof = risk_profile(prior, m_len, key=key, n_priors=n_priors, n_samples=n_samples, max_count=9)
    log_w, alphas = mixture_params(prior)
    w, a = np.exp(np.asarray(log_w)), np.asarray(alphas)
    single = np.asarray(mean_concentration(prior))
    for i in range(n_priors):
        q, rows = qs[i], cs[i]
        assert np.all(rows.sum(-1) == m_len)
        assert prof.stats["bayes_true"][i] == pytest.approx(
            sum(ref.kl(q, ref.dirichlet_mixture_posterior_mean(r, w, a)) for r in rows), rel=1e-10)
        assert prof.stats["bayes_single"][i] == pytest.approx(
            sum(ref.kl(q, ref.dirichlet_posterior_mean(r, single)) for r in rows), rel=1e-10)
        for b in (0.2, 1.0, 3.7):
            assert prof.ml_per_prior(b)[i] == pytest.approx(
                np.mean([ref.kl(q, ref.regularized_ml(r, b)) for r in rows]), rel=1e-10)
        for xi in (0.0, 0.45, 1.0, 1.3):
            fits = [ref.maxent_shrunk(r, z, xi) for r in rows]
            want = sum(ref.kl(q, f) for f in fits if f is not None)
            assert prof.shrunk_sums(xi)[0][i] == pytest.approx(want, rel=1e-8, abs=1e-12)
            assert prof.maxent_kept[i] == sum(f is not None for f in fits)


def test_profile_equals_per_estimator_integrals(x64, key):
    """The profile and `bayes_risk` see the same draws for the same key and sizes."""
    prior = ordered_mixture(n=20)
    z = jnp.arange(1.0, 21.0)
    kw = dict(key=key, n_priors=40, n_samples=25, max_count=8)
    prof = risk_profile(prior, 6, two_moments=True, **kw)

    def same(a, b):
        assert a.mean == pytest.approx(b.mean, rel=1e-10)
        assert a.se == pytest.approx(b.se, rel=1e-8)
        assert a.n_excluded == b.n_excluded

    same(prof.bayes_true(), bayes_risk(posterior_mean, prior, 6, args=(prior,), **kw))
    same(prof.bayes_single(), bayes_risk(dirichlet_posterior_mean, prior, 6, args=(mean_concentration(prior),), **kw))
    for b in (0.5, 2.0):
        same(prof.ml(b), bayes_risk(regularized_ml, prior, 6, args=(b,), **kw))
    same(prof.maxent(1.0), bayes_risk(maxent_first_moment, prior, 6, args=(z,), **kw))
    same(prof.maxent(0.3), bayes_risk(maxent_shrunk, prior, 6, args=(z, 0.3), **kw))
    same(prof.maxent_opt(), bayes_risk(maxent_shrunk, prior, 6, args=(z, prof.xi_opt()), **kw))
    same(prof.maxent2(), bayes_risk(maxent_two_moments, prior, 6, args=(z,), **kw))
    base = baseline_risk(prior, key=key, n_priors=40)
    assert prof.baseline().mean == pytest.approx(base.mean, rel=1e-12)


def test_optimised_parameters_are_minima(x64, key):
    prior = ordered_mixture(n=30)
    prof = risk_profile(prior, 7, key=key, n_priors=60, n_samples=40)
    b = prof.b_opt()
    grid = np.geomspace(0.01, 100, 200)
    assert prof.ml(b).mean <= min(prof.ml(g).mean for g in grid) + 1e-12
    xi = prof.xi_opt()
    _, curve, _ = prof.maxent_curve()
    opt = prof.maxent_opt().mean
    assert opt <= curve.min() + 1e-12
    z = jnp.arange(1.0, 31.0)
    kw = dict(key=key, n_priors=60, n_samples=40)
    for delta in (-0.02, 0.02):  # the exact risk just beside ξ_opt is not lower
        assert bayes_risk(maxent_shrunk, prior, 7, args=(z, xi + delta), **kw).mean >= opt - 1e-6


def test_ml_b_zero_is_infinite_when_outcomes_go_unseen(x64, key):
    prof = risk_profile(ordered_mixture(n=20), 3, key=key, n_priors=5, n_samples=5)
    assert prof.ml(0.0).mean == np.inf
    with pytest.raises(ValueError, match="`b`"):
        prof.ml(-1.0)


def test_degenerate_samples_are_counted_not_nan(x64, key):
    prior = ordered_mixture(n=10)
    kw = dict(key=key, n_priors=50, n_samples=20)
    prof = risk_profile(prior, 1, **kw)
    qs, cs = monte_carlo(_draws, prior, 1, **kw)
    edges = int(np.sum((cs[..., 0] == 1) | (cs[..., -1] == 1)))
    assert edges > 0
    assert prof.maxent_excluded == edges == prof.maxent_degenerate
    _, curve, _ = prof.maxent_curve()
    assert np.all(np.isfinite(curve))
    for est in (prof.bayes_true(), prof.ml(1.0), prof.maxent(1.0), prof.baseline()):
        assert np.isfinite(est.mean) and np.isfinite(est.se)


def test_baseline_monte_carlo_against_closed_form(x64, key):
    for prior in (ordered_mixture(), symmetric_dirichlet(3.0, 25)):
        est = baseline_risk(prior, key=key, n_priors=20000)
        assert abs(est.mean - float(expected_kl_to_uniform(prior))) < 4 * est.se


def test_results_do_not_depend_on_chunking(x64, key):
    prior = ordered_mixture(n=15)
    a = risk_profile(prior, 4, key=key, n_priors=23, n_samples=9, chunk_priors=5)
    b = risk_profile(prior, 4, key=key, n_priors=23, n_samples=9, chunk_priors=64)
    for name in a.stats:
        np.testing.assert_allclose(a.stats[name], b.stats[name], rtol=1e-12, err_msg=name)
    assert (a.pairs != b.pairs).nnz == 0
    np.testing.assert_allclose(a.gamma, b.gamma, rtol=1e-12)


def test_one_compilation_per_length_and_sizes(x64, key):
    prior = ordered_mixture(n=15)
    jitted = risk_lib._chunk_stats
    kw = dict(n_priors=12, n_samples=6, chunk_priors=4)
    solves = risk_lib._solve_chunk
    risk_profile(prior, 3, key=key, **kw).maxent_opt()
    before, solves_before = jitted._cache_size(), solves._cache_size()
    risk_profile(prior, 3, key=jax.random.fold_in(key, 1), **kw).maxent_opt()  # new key: no compile
    assert jitted._cache_size() == before
    risk_profile(prior, 4, key=key, **kw)  # new static M: one more
    assert jitted._cache_size() == before + 1
    # With a bound on M, a whole scan of lengths shares one program.
    risk_profile(prior, 2, key=key, max_count=9, **kw)
    after_first = jitted._cache_size()
    for m in (3, 5, 9):
        risk_profile(prior, m, key=key, max_count=9, **kw).maxent_opt()
    assert jitted._cache_size() == after_first
    # The β solves after the pass run in fixed-size chunks: never a new program.
    assert solves._cache_size() == solves_before


def test_sharded_over_8_devices_equals_unsharded(x64, key):
    devices = jax.devices()
    assert len(devices) == 8, "conftest sets 8 simulated CPU devices"
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    prior = ordered_mixture(n=12)
    kw = dict(key=key, n_priors=21, n_samples=6, chunk_priors=8)
    plain = risk_profile(prior, 5, **kw)
    sharded = risk_profile(prior, 5, mesh=mesh, **kw)
    for name in plain.stats:
        np.testing.assert_allclose(sharded.stats[name], plain.stats[name], rtol=1e-12, err_msg=name)
    assert (sharded.pairs != plain.pairs).nnz == 0
    # The chunk really ran on all eight devices.
    ids = jax.device_put(jnp.arange(8, dtype=jnp.uint32),
                         jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    out = risk_lib._chunk_stats(prior, (), *jax.random.split(key), ids, jnp.asarray(5, jnp.int32),
                                stat=risk_lib._kl_to_uniform, max_count=5, n_samples=2)
    assert len(out.sharding.device_set) == 8


def test_monte_carlo_bad_sizes_name_the_argument(key):
    prior = ordered_mixture(n=5)
    with pytest.raises(ValueError, match="total_count"):
        monte_carlo(_draws, prior, 0, key=key, n_priors=2, n_samples=2)
    with pytest.raises(ValueError, match="max_count"):
        monte_carlo(_draws, prior, 5, key=key, n_priors=2, n_samples=2, max_count=3)
    with pytest.raises(ValueError, match="n_priors"):
        monte_carlo(_draws, prior, 2, key=key, n_priors=0, n_samples=2)
    with pytest.raises(ValueError, match="xi_step"):
        risk_profile(prior, 2, key=key, n_priors=2, n_samples=2, xi_step=0.0)


@pytest.mark.slow
def test_table1_at_paper_size_matches_the_published_values():
    """The issue's acceptance check: 10² × 10², every risk within 0.015, ξ_opt within 0.15 (M ≥ 5)."""
    with jax.enable_x64(True):
        table = table1(n_priors=100, n_samples=100, seed=0)
    assert abs(table["baseline"] - PUBLISHED_TABLE1["baseline"]) < 0.015
    assert table["baseline_exact"] == pytest.approx(0.2116, abs=5e-5)
    cols = PUBLISHED_TABLE1["columns"]
    for row in table["rows"]:
        published = dict(zip(cols, PUBLISHED_TABLE1["rows"][row["M"]]))
        for col, value in published.items():
            if value is None:
                assert row[col] is None, (row["M"], col)
                continue
            tol = 0.15 if col == "xi_opt" else 0.015
            if col == "xi_opt" and row["M"] < 5:
                continue  # the published ξ_opt at M = 3 is not reproducible (see papers-notes)
            assert abs(row[col] - value) <= tol, (row["M"], col, row[col], value)
        assert row["maxent_excluded"] == row["maxent_degenerate"]
