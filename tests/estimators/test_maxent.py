"""MaxEnt estimators: the β solve, moment matching, degeneracy, encodings, jit/vmap, against the
scalar-root-finding NumPy/SciPy reference in bench/maxent_numpy.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import maxent_numpy as ref
from entropy_jax.estimators import (
    gibbs,
    maxent_first_moment,
    maxent_moments,
    maxent_shrunk,
    maxent_two_moments,
    solve_beta,
)
from entropy_jax.estimators.maxent import (
    degenerate_first_moment,
    degenerate_two_moments,
)


def _random_encoding(rng, n):
    offset = rng.uniform(-1e3, 1e3)
    scale = 10 ** rng.uniform(-3, 3)
    return offset + scale * np.cumsum(rng.uniform(0.1, 2.0, size=n))


def _gibbs_mean(beta, z):
    q, _ = gibbs(jnp.asarray(beta), jnp.asarray(z))
    return np.asarray(q @ jnp.asarray(z))


@pytest.mark.parametrize("jit", [False, True])
def test_solve_beta_matches_mean_to_1e10(x64, rng, jit):
    f = jax.jit(solve_beta) if jit else solve_beta
    for _ in range(6):
        n = int(rng.integers(2, 80))
        z = _random_encoding(rng, n)
        span = z[-1] - z[0]
        # Targets across the range, including 1e-9 of the span from either edge.
        frac = np.concatenate([rng.uniform(0.0, 1.0, 40), [1e-9, 1 - 1e-9, 1e-4, 0.5]])
        mu = z[0] + frac * span
        beta, ok, _ = f(jnp.asarray(mu), jnp.asarray(z))
        assert bool(np.all(np.asarray(ok)))
        err = np.abs(_gibbs_mean(beta, z) - mu)
        assert err.max() <= 1e-10 * span, err.max() / span
        # And the root agrees with Brent's method in the reference.
        for b, m in zip(np.asarray(beta)[:5], mu[:5]):
            assert b == pytest.approx(ref.solve_beta(m, z), rel=1e-7, abs=1e-10 / span)


def test_solve_beta_flags_targets_outside_the_open_range(x64):
    z = jnp.arange(1.0, 11.0)
    beta, ok, _ = solve_beta(jnp.array([1.0, 10.0, 0.5, 11.0, 5.5]), z)
    np.testing.assert_array_equal(np.asarray(ok), [False, False, False, False, True])
    assert np.all(np.isfinite(np.asarray(beta)))
    assert float(beta[-1]) == pytest.approx(0.0, abs=1e-12)  # the mean of uniform z


@pytest.mark.parametrize("jit", [False, True])
def test_first_moment_matches_reference(x64, rng, jit):
    n = 60
    z = np.arange(1.0, n + 1)
    q = rng.dirichlet(np.full(n, 0.5), size=30)
    m = np.stack([rng.multinomial(int(rng.integers(1, 40)), qq) for qq in q])
    m[0] = 0
    m[0, 0] = 5  # degenerate: all on the first outcome
    m[1] = 0
    m[1, -1] = 2  # degenerate: all on the last outcome
    f = jax.jit(maxent_first_moment) if jit else maxent_first_moment
    fit = f(jnp.asarray(m), jnp.asarray(z))
    for i, row in enumerate(m):
        want = ref.maxent_first_moment(row, z)
        assert bool(fit.valid[i]) == (want is not None)
        if want is None:
            np.testing.assert_allclose(np.asarray(fit.q_hat[i]), 1 / n)  # finite placeholder
            continue
        np.testing.assert_allclose(np.asarray(fit.q_hat[i]), want[0], rtol=1e-7, atol=1e-14)
        assert float(fit.multipliers[i]) == pytest.approx(want[1], rel=1e-7, abs=1e-12)
        mu = row @ z / row.sum()
        assert abs(float(fit.q_hat[i] @ z) - mu) < 1e-10 * (z[-1] - z[0])
    assert np.all(np.isfinite(np.asarray(fit.q_hat))) and np.all(np.isfinite(np.asarray(fit.log_q_hat)))
    np.testing.assert_allclose(np.asarray(jnp.exp(fit.log_q_hat)), np.asarray(fit.q_hat), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(fit.log_z), np.log(np.exp(-np.asarray(fit.multipliers)[:, None] * z).sum(-1)), rtol=1e-10
    )


def test_shrunk_matches_reference_and_limits(x64, rng):
    z = np.arange(1.0, 21.0)
    m = np.stack([rng.multinomial(7, rng.dirichlet(np.ones(20))) for _ in range(10)])
    for xi in (0.0, 0.37, 1.0, 1.3):
        fit = maxent_shrunk(jnp.asarray(m), jnp.asarray(z), xi)
        for i, row in enumerate(m):
            want = ref.maxent_shrunk(row, z, xi)
            if want is None:
                assert not bool(fit.valid[i])
                continue
            np.testing.assert_allclose(np.asarray(fit.q_hat[i]), want, rtol=1e-7, atol=1e-14)
    base = maxent_first_moment(jnp.asarray(m), jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(maxent_shrunk(jnp.asarray(m), jnp.asarray(z), 1.0).q_hat),
                               np.asarray(base.q_hat), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(maxent_shrunk(jnp.asarray(m), jnp.asarray(z), 0.0).q_hat), 1 / 20)


def test_encoding_dependence_and_invariances(x64, rng):
    n = 12
    z = np.arange(1.0, n + 1)
    m = jnp.asarray(rng.multinomial(6, rng.dirichlet(np.ones(n)), size=8))
    base = maxent_first_moment(m, jnp.asarray(z))
    assert bool(base.valid.all())
    # Affine re-encodings (either sign) give the same estimate.
    for a, b in ((3.0, -7.0), (-0.5, 100.0)):
        other = maxent_first_moment(m, jnp.asarray(a * z + b))
        np.testing.assert_allclose(np.asarray(other.q_hat), np.asarray(base.q_hat), rtol=1e-9)
    # Relabelling outcomes together with their codes is equivariant…
    perm = rng.permutation(n)
    permuted = maxent_first_moment(m[:, perm], jnp.asarray(z[perm]))
    np.testing.assert_allclose(np.asarray(permuted.q_hat), np.asarray(base.q_hat)[:, perm], rtol=1e-9)
    # …but a nonlinear encoding of the same outcomes is a different estimator.
    cubic = maxent_first_moment(m, jnp.asarray(z**3))
    assert np.abs(np.asarray(cubic.q_hat) - np.asarray(base.q_hat)).max() > 1e-2


def test_degeneracy_detection():
    m = jnp.array(
        [
            [3, 0, 0, 0],  # first edge
            [0, 0, 0, 2],  # last edge
            [1, 1, 0, 0],  # adjacent pair: 2-moment boundary only
            [1, 0, 0, 1],  # the two extremes: 2-moment boundary only
            [1, 0, 1, 0],  # interior
            [0, 4, 0, 0],  # single interior outcome: 2-moment boundary only
        ]
    )
    np.testing.assert_array_equal(np.asarray(degenerate_first_moment(m)), [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(degenerate_two_moments(m)), [1, 1, 1, 1, 0, 1])
    # With an explicit encoding, "edge" and "adjacent" refer to the order of z.
    z = jnp.array([2.0, 4.0, 1.0, 3.0])  # sorted order of outcomes: 2, 0, 3, 1
    np.testing.assert_array_equal(np.asarray(degenerate_first_moment(m, z)), [0, 0, 0, 0, 0, 1])
    for row, flag in zip(np.asarray(m), np.asarray(degenerate_two_moments(m, z))):
        order = np.argsort(np.asarray(z))
        assert flag == ref._two_moment_degenerate(row[order])


@pytest.mark.parametrize("jit", [False, True])
def test_two_moments_matches_reference(x64, rng, jit):
    n = 30
    z = np.arange(1.0, n + 1)
    rows = [rng.multinomial(int(rng.integers(3, 30)), rng.dirichlet(np.full(n, 0.3))) for _ in range(30)]
    # Near-boundary but valid supports, where the multipliers are large.
    for support in ([0, 2], [0, 28], [0, 14, 29], [5, 6, 7]):
        row = np.zeros(n, int)
        row[support] = 1
        row[support[0]] += 20
        rows.append(row)
    m = np.stack(rows)
    f = jax.jit(maxent_two_moments) if jit else maxent_two_moments
    fit = f(jnp.asarray(m), jnp.asarray(z))
    for i, row in enumerate(m):
        want = ref.maxent_two_moments(row, z)
        assert bool(fit.valid[i]) == (want is not None), row
        if want is None:
            continue
        np.testing.assert_allclose(np.asarray(fit.q_hat[i]), want, rtol=1e-5, atol=1e-12)
        q = np.asarray(fit.q_hat[i])
        total = row.sum()
        span = z[-1] - z[0]
        assert abs(q @ z - row @ z / total) < 1e-9 * span
        assert abs(q @ z**2 - row @ z**2 / total) < 1e-9 * span**2
    # The multipliers are in the units of the original encoding.
    lam = np.asarray(fit.multipliers)
    logits = -(lam[:, :1] * z + lam[:, 1:] * z**2)
    recon = np.exp(logits - logits.max(-1, keepdims=True))
    recon /= recon.sum(-1, keepdims=True)
    valid = np.asarray(fit.valid)
    np.testing.assert_allclose(recon[valid], np.asarray(fit.q_hat)[valid], rtol=1e-6, atol=1e-14)


def test_general_moments_with_one_feature_is_first_moment(x64, rng):
    z = np.arange(1.0, 16.0)
    m = jnp.asarray(rng.multinomial(9, rng.dirichlet(np.ones(15)), size=10))
    general = maxent_moments(m, jnp.asarray(z)[None, :])
    first = maxent_first_moment(m, jnp.asarray(z))
    np.testing.assert_array_equal(np.asarray(general.valid), np.asarray(first.valid))
    np.testing.assert_allclose(np.asarray(general.q_hat), np.asarray(first.q_hat), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(general.multipliers[:, 0]), np.asarray(first.multipliers), rtol=1e-9)


def test_vmap_equals_batch_and_float32_is_finite(rng):
    z = jnp.arange(1.0, 41.0)
    m = jnp.asarray(rng.multinomial(5, rng.dirichlet(np.ones(40)), size=16))
    batched = maxent_first_moment(m, z)
    mapped = jax.vmap(lambda row: maxent_first_moment(row, z))(m)
    np.testing.assert_allclose(np.asarray(mapped.q_hat), np.asarray(batched.q_hat), rtol=1e-6)
    assert batched.q_hat.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(batched.q_hat)))
    two = maxent_two_moments(m, z)
    assert np.all(np.isfinite(np.asarray(two.q_hat)))


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: maxent_first_moment(jnp.array([1, 2, 3]), jnp.array([1.0, 2.0])), "z"),
        (lambda: maxent_first_moment(jnp.array([1, 2, 3]), jnp.array([1.0, 2.0, 2.0])), "z"),
        (lambda: maxent_first_moment(jnp.array([1, -2, 3]), jnp.array([1.0, 2.0, 3.0])), "counts"),
        (lambda: maxent_shrunk(jnp.array([1, 2, 3]), jnp.array([1.0, 2.0, 3.0]), -0.5), "xi"),
        (lambda: maxent_two_moments(jnp.array([1, 2, 3]), jnp.ones((3, 1))), "z"),
        (lambda: maxent_moments(jnp.array([1, 2, 3]), jnp.ones((2, 4))), "features"),
    ],
)
def test_bad_input_names_the_argument(call, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        call()
