"""entropy / entropy_from_logits / kl / kl_from_log against SciPy, in nats."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

import entropy_jax
from entropy_jax import entropy, entropy_from_logits, kl, kl_from_log


def _probs(rng, shape, zeros=True):
    p = rng.dirichlet(np.full(shape[-1], 0.5), size=shape[:-1])
    if zeros:
        p[..., ::7] = 0.0  # exact zeros exercise 0 · log 0 = 0
        p /= p.sum(-1, keepdims=True)
    return p


def test_public_api_is_exported():
    for name in ("entropy", "entropy_from_logits", "kl", "kl_from_log"):
        assert getattr(entropy_jax, name) is getattr(entropy_jax.info, name)
    assert isinstance(entropy_jax.__version__, str)


@pytest.mark.parametrize("jit", [False, True])
def test_entropy_matches_scipy(x64, rng, jit):
    p = _probs(rng, (5, 4, 30))
    f = jax.jit(entropy, static_argnames="axis") if jit else entropy
    got = np.asarray(f(jnp.asarray(p)))
    np.testing.assert_allclose(got, scipy.stats.entropy(p, axis=-1), rtol=1e-13, atol=1e-15)
    # Another axis.
    got_ax = np.asarray(f(jnp.asarray(np.moveaxis(p, -1, 1)), axis=1))
    np.testing.assert_allclose(got_ax, scipy.stats.entropy(p, axis=-1), rtol=1e-13)


def test_entropy_edge_cases_and_gradient():
    assert float(entropy(jnp.array([1.0, 0.0, 0.0]))) == 0.0
    np.testing.assert_allclose(float(entropy(jnp.full(8, 0.125))), np.log(8), rtol=1e-6)
    g = jax.grad(lambda p: entropy(p))(jnp.array([0.5, 0.5, 0.0]))
    assert np.all(np.isfinite(np.asarray(g)[:2]))
    # Integer input is promoted, not truncated.
    assert entropy(jnp.array([1, 0])).dtype == jnp.float32


@pytest.mark.parametrize("jit", [False, True])
def test_entropy_from_logits_matches_softmax_entropy(x64, rng, jit):
    logits = rng.normal(size=(3, 7, 50)) * 4.0
    f = jax.jit(entropy_from_logits) if jit else entropy_from_logits
    got = np.asarray(f(jnp.asarray(logits)))
    want = scipy.stats.entropy(scipy.special.softmax(logits, axis=-1), axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_entropy_from_logits_is_stable_and_promotes_low_precision(rng):
    logits = rng.normal(size=(4, 1000)).astype(np.float32) * 3.0
    want = scipy.stats.entropy(scipy.special.softmax(logits.astype(np.float64), axis=-1), axis=-1)
    # A huge common offset must not matter (no overflow in exp).
    got = np.asarray(entropy_from_logits(jnp.asarray(logits) + 1e4))
    np.testing.assert_allclose(got, want, rtol=2e-3)
    # bf16 logits are promoted: the result is float32 and close to the float64 value of the
    # rounded logits.
    bf = jnp.asarray(logits, jnp.bfloat16)
    h = entropy_from_logits(bf)
    assert h.dtype == jnp.float32
    want_bf = scipy.stats.entropy(scipy.special.softmax(np.asarray(bf, np.float64), axis=-1), axis=-1)
    np.testing.assert_allclose(np.asarray(h), want_bf, rtol=1e-5)


def test_entropy_from_logits_masked_vocabulary():
    logits = jnp.array([0.0, 0.0, -jnp.inf, -jnp.inf])
    np.testing.assert_allclose(float(entropy_from_logits(logits)), np.log(2.0), rtol=1e-6)
    one_hot = jnp.array([5.0, -jnp.inf, -jnp.inf])
    assert float(entropy_from_logits(one_hot)) == 0.0


@pytest.mark.parametrize("jit", [False, True])
def test_kl_matches_scipy_rel_entr(x64, rng, jit):
    q = _probs(rng, (6, 40))
    q_hat = _probs(rng, (6, 40), zeros=False)
    f = jax.jit(kl) if jit else kl
    want = scipy.special.rel_entr(q, q_hat).sum(-1)
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(q), jnp.asarray(q_hat))), want, rtol=1e-12)
    log_form = kl_from_log(jnp.asarray(q), jnp.log(jnp.asarray(q_hat)))
    np.testing.assert_allclose(np.asarray(log_form), want, rtol=1e-11, atol=1e-15)


def test_kl_zero_conventions():
    q = jnp.array([0.5, 0.5, 0.0])
    assert float(kl(q, jnp.array([0.5, 0.5, 0.0]))) == 0.0  # 0 · log(0/0) = 0
    assert float(kl(q, jnp.array([1.0, 0.0, 0.0]))) == np.inf  # q > 0 where q̂ = 0
    # The log form stays finite where q̂ underflows but its log is known.
    log_q_hat = jnp.array([np.log(0.5), -800.0, np.log(0.5)])
    np.testing.assert_allclose(float(kl_from_log(q, log_q_hat)), 0.5 * (np.log(0.5) + 800.0), rtol=1e-6)
    g = jax.grad(lambda qh: kl(q, qh))(jnp.array([0.4, 0.4, 0.2]))
    assert np.all(np.isfinite(np.asarray(g)))


def test_kl_precision_for_nearby_distributions(x64):
    # A tiny divergence (≈2e-10 nats) keeps its relative accuracy: the reference uses log1p,
    # which is exact to rounding for such a perturbation.
    q1, q2, d = 0.3, 0.7, 1e-5
    q, q_hat = jnp.array([q1, q2]), jnp.array([q1 + d, q2 - d])
    want = -q1 * np.log1p(d / q1) - q2 * np.log1p(-d / q2)
    np.testing.assert_allclose(float(kl(q, q_hat)), want, rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_nan_inputs_propagate_and_exact_zeros_do_not(jit):
    nan, inf = np.nan, np.inf

    def f(fn, *static):
        return jax.jit(fn, static_argnames=static) if jit else fn

    ent, ent_l, kl_, kl_l = f(entropy, "axis"), f(entropy_from_logits, "axis"), f(kl), f(kl_from_log)
    # One NaN slice does not touch its neighbour; an exact zero still gives 0 · log 0 = 0.
    p = jnp.array([[0.5, nan, 0.5], [0.5, 0.5, 0.0]])
    got = np.asarray(ent(p))
    assert np.isnan(got[0]) and got[1] == pytest.approx(np.log(2.0), rel=1e-6)
    assert np.isnan(float(ent(jnp.array([0.5, nan]))))
    assert np.isnan(float(ent(jnp.array([1.5, -0.5]))))  # a negative entry is not a probability
    assert np.isnan(float(ent(jnp.array([[0.5, 0.5], [nan, 0.0]]), axis=0)[0]))
    # Logits: NaN anywhere, or +inf, makes the slice NaN; -inf stays a masked entry.
    assert np.isnan(float(ent_l(jnp.array([0.0, nan, -inf]))))
    assert np.isnan(float(ent_l(jnp.array([0.0, inf]))))
    assert float(ent_l(jnp.array([0.0, 0.0, -inf]))) == pytest.approx(np.log(2.0), rel=1e-6)
    # KL: NaN in q, or in q̂ even where q = 0, is NaN; q = 0 with q̂ = 0 stays exactly 0.
    q = jnp.array([0.5, 0.5, 0.0])
    assert float(kl_(q, jnp.array([0.5, 0.5, 0.0]))) == 0.0
    assert np.isnan(float(kl_(jnp.array([0.5, nan, 0.5]), jnp.full(3, 1 / 3))))
    assert np.isnan(float(kl_(q, jnp.array([0.5, 0.5, nan]))))
    assert np.isnan(float(kl_(q, jnp.array([1.5, -0.5, 0.0]))))
    assert float(kl_(q, jnp.array([1.0, 0.0, 0.0]))) == np.inf
    log_q_hat = jnp.log(jnp.array([0.5, 0.5, 0.0]))  # log 0 = -inf where q = 0: exactly 0
    assert float(kl_l(q, log_q_hat)) == 0.0
    assert np.isnan(float(kl_l(q, jnp.array([0.0, 0.0, nan]))))
    assert np.isnan(float(kl_l(jnp.array([nan, 1.0]), jnp.zeros(2))))


def test_gradients_stay_finite_at_exact_zeros_after_the_nan_rule():
    g = jax.grad(lambda p: entropy(p))(jnp.array([0.5, 0.5, 0.0]))
    assert np.all(np.isfinite(np.asarray(g)[:2]))
    g = jax.grad(lambda qh: kl(jnp.array([0.5, 0.5, 0.0]), qh))(jnp.array([0.4, 0.4, 0.0]))
    assert np.all(np.isfinite(np.asarray(g)))
    g = jax.grad(lambda lq: kl_from_log(jnp.array([0.5, 0.5, 0.0]), lq))(jnp.array([-1.0, -1.0, -jnp.inf]))
    assert np.all(np.isfinite(np.asarray(g)))
