"""NMF updates, losses and initialisations against scikit-learn; jit/vmap/compile behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.decomposition._nmf as sk_nmf
from sklearn.decomposition import NMF

from entropy_jax import nmf
from entropy_jax.nmf import core


def _data(rng, pixels=40, images=30):
    # Squares keep some entries tiny but none in (0, ε], where sklearn's loss drops them.
    return rng.random((pixels, images)) ** 2 + 1e-3


@pytest.mark.parametrize("kind, beta", [("kl", "kullback-leibler"), ("frobenius", "frobenius")])
def test_updates_match_sklearn_mu(x64, rng, kind, beta):
    """Same (B0, W0), same iterations: same factors and loss (sklearn's X is Pᵀ, W first)."""
    P = _data(rng)
    rank, iters = 5, 200
    B0, W0 = rng.random((40, rank)), rng.random((rank, 30))
    res = nmf.fit(jnp.asarray(P), rank, n_iter=iters, loss=kind, init=(B0, W0))
    model = NMF(rank, solver="mu", beta_loss=beta, init="custom", tol=0, max_iter=iters)
    W_sk = model.fit_transform(P.T, W=W0.T.copy(), H=B0.T.copy())
    H_sk = model.components_
    assert model.n_iter_ == iters
    np.testing.assert_allclose(np.asarray(res.B), H_sk.T, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(np.asarray(res.W), W_sk.T, rtol=1e-5, atol=1e-12)
    sk_loss = sk_nmf._beta_divergence(P.T, W_sk, H_sk, beta)
    assert float(res.loss[-1]) == pytest.approx(sk_loss, rel=1e-5)
    assert float(nmf.loss(jnp.asarray(P), res.B, res.W, kind)) == pytest.approx(sk_loss, rel=1e-8)


@pytest.mark.parametrize("kind", ["kl", "frobenius"])
def test_step_jit_and_no_jit_agree_and_loss_decreases(x64, rng, kind):
    P = jnp.asarray(_data(rng))
    B, W = nmf.init_random(jax.random.key(1), P, 4)
    with jax.disable_jit():
        B1, W1 = nmf.step(P, B, W, kind)
    B2, W2 = jax.jit(nmf.step, static_argnums=3)(P, B, W, kind)
    np.testing.assert_allclose(np.asarray(B1), np.asarray(B2), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(W1), np.asarray(W2), rtol=1e-12)
    # Multiplicative updates never increase their loss (Lee & Seung).
    trace = np.asarray(nmf.fit(P, 4, key=jax.random.key(2), n_iter=300, loss=kind).loss)
    assert np.all(np.diff(trace) <= 1e-9 * np.abs(trace[:-1]))


def test_nndsvda_matches_sklearn_with_an_exact_svd(x64, rng, monkeypatch):
    # sklearn takes a randomized SVD; with the exact one both constructions coincide.
    def exact_svd(M, n_components, **kwargs):
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        return U[:, :n_components], S[:n_components], Vt[:n_components]

    monkeypatch.setattr(sk_nmf, "_randomized_svd", exact_svd)
    P = rng.random((30, 20))
    B, W = nmf.init_nndsvda(jnp.asarray(P), 6)
    W_sk, H_sk = sk_nmf._initialize_nmf(P.T, 6, init="nndsvda", random_state=0)
    np.testing.assert_allclose(np.asarray(B), H_sk.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(W), W_sk.T, rtol=1e-10, atol=1e-12)


def test_random_init_scale_and_nonnegativity(rng):
    P = jnp.asarray(_data(rng), jnp.float32)
    B, W = nmf.init_random(jax.random.key(0), P, 7)
    assert B.shape == (40, 7) and W.shape == (7, 30)
    assert float(B.min()) >= 0 and float(W.min()) >= 0
    # E|N(0,1)| = sqrt(2/π): the mean of the factors matches sklearn's scale sqrt(mean(P)/R).
    scale = np.sqrt(float(P.mean()) / 7) * np.sqrt(2 / np.pi)
    assert float(jnp.concatenate([B.ravel(), W.ravel()]).mean()) == pytest.approx(scale, rel=0.1)


def test_vmap_over_seeds_and_noise_draws_equals_single_fits(rng):
    P = jnp.asarray(_data(rng), jnp.float32)
    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.vmap(lambda k: nmf.fit(P, 3, key=k, n_iter=50))(keys)
    for i, k in enumerate(keys):
        single = nmf.fit(P, 3, key=k, n_iter=50)
        np.testing.assert_allclose(np.asarray(batched.B[i]), np.asarray(single.B), rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(batched.loss[i]), np.asarray(single.loss), rtol=2e-5)
    # Over data matrices too (noise draws), with one key.
    Ps = jnp.stack([P, P * 0.5, P**2])
    per_data = jax.vmap(lambda p: nmf.fit(p, 3, key=keys[0], n_iter=20))(Ps)
    assert per_data.B.shape == (3, 40, 3) and per_data.loss.shape == (3, 20)


def test_one_compilation_per_rank(rng):
    P = jnp.asarray(_data(rng), jnp.float32)
    nmf.fit(P, 3, key=jax.random.key(0), n_iter=10)
    before = core._fit_init._cache_size()
    nmf.fit(P, 3, key=jax.random.key(1), n_iter=10)  # new seed: no compilation
    nmf.fit(P * 2.0, 3, key=jax.random.key(2), n_iter=10)  # new data values: none either
    assert core._fit_init._cache_size() == before
    nmf.fit(P, 4, key=jax.random.key(1), n_iter=10)
    assert core._fit_init._cache_size() == before + 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda P: nmf.fit(-P, 3, key=jax.random.key(0)), "negative"),
        (lambda P: nmf.fit(P.at[0, 0].set(jnp.nan), 3, key=jax.random.key(0)), "NaN"),
        (lambda P: nmf.fit(P, 31, key=jax.random.key(0)), "rank"),
        (lambda P: nmf.fit(P, 0, key=jax.random.key(0)), "rank"),
        (lambda P: nmf.fit(P * 0, 3, key=jax.random.key(0)), "all zeros"),
        (lambda P: nmf.fit(P[0], 3, key=jax.random.key(0)), "2-D"),
        (lambda P: nmf.fit(P, 3), "key"),
        (lambda P: nmf.fit(P, 3, key=jax.random.key(0), loss="l1"), "loss"),
        (lambda P: nmf.fit(P, 3, init="svd"), "init"),
        (lambda P: nmf.fit(P, 3, init=(jnp.ones((40, 2)), jnp.ones((3, 30)))), "shapes"),
        (lambda P: nmf.fit(P, 3, init=(-jnp.ones((40, 3)), jnp.ones((3, 30)))), "nonnegative"),
    ],
)
def test_bad_input_is_rejected_with_a_named_reason(rng, make, message):
    P = jnp.asarray(_data(rng), jnp.float32)
    with pytest.raises(ValueError, match=message):
        make(P)


def test_all_zero_images_and_pixels_stay_zero_and_are_flagged(rng):
    """Zero columns/rows are allowed: their reconstruction stays zero, nothing becomes NaN."""
    P = np.asarray(_data(rng), np.float32)
    P[:, 3] = 0.0  # an empty image
    P[7, :] = 0.0  # a pixel that is never on
    res = nmf.fit(jnp.asarray(P), 4, key=jax.random.key(0), n_iter=200)
    BW = np.asarray(res.B @ res.W)
    assert np.all(np.isfinite(BW)) and np.all(np.isfinite(np.asarray(res.loss)))
    assert np.abs(BW[:, 3]).max() < 1e-3 and np.abs(BW[7]).max() < 1e-3
    cond, empty = nmf.prob.image_conditional(jnp.asarray(P))
    assert bool(empty[3]) and int(empty.sum()) == 1
    np.testing.assert_allclose(np.asarray(cond[:, 3]), 1 / 40)


@pytest.mark.parametrize("kind", ["kl", "frobenius"])
def test_trace_every_thins_the_trace_without_changing_the_iterates(x64, rng, kind):
    P = jnp.asarray(_data(rng))
    full = nmf.fit(P, 3, key=jax.random.key(0), n_iter=40, loss=kind)
    thin = nmf.fit(P, 3, key=jax.random.key(0), n_iter=40, loss=kind, trace_every=10)
    final = nmf.fit(P, 3, key=jax.random.key(0), n_iter=40, loss=kind, trace_every=40)
    assert full.loss.shape == (40,) and thin.loss.shape == (4,) and final.loss.shape == (1,)
    np.testing.assert_allclose(np.asarray(thin.B), np.asarray(full.B), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(thin.loss), np.asarray(full.loss[9::10]), rtol=1e-10)
    np.testing.assert_allclose(float(final.loss[0]), float(full.loss[-1]), rtol=1e-10)
    with pytest.raises(ValueError, match="trace_every"):
        nmf.fit(P, 3, key=jax.random.key(0), n_iter=40, trace_every=7)
