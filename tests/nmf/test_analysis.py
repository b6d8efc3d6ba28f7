"""Probabilistic reading, entropy diagnostics, matching, rank criteria, perturbations and data
sets: against SciPy / closed forms, plus rank recovery on synthetic parts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from entropy_jax import data
from entropy_jax.nmf import diagnostics, match, perturb, prob, rank, study


def test_normalize_is_a_rescaling_of_the_product(x64, rng):
    B, W = rng.random((20, 4)), rng.random((4, 15))
    f = prob.normalize(jnp.asarray(B), jnp.asarray(W))
    np.testing.assert_allclose(np.asarray(f.p_pixel.sum(0)), 1.0)
    np.testing.assert_allclose(np.asarray(f.p_image.sum(1)), 1.0)
    np.testing.assert_allclose(float(f.p_b.sum()), 1.0)
    BW = B @ W
    np.testing.assert_allclose(np.asarray(prob.reconstruction(f)), BW / BW.sum(), rtol=1e-12)


def test_normalize_flags_dead_components(x64, rng):
    B, W = rng.random((20, 3)), rng.random((3, 15))
    B[:, 1] = 0.0
    f = prob.normalize(jnp.asarray(B), jnp.asarray(W))
    np.testing.assert_array_equal(np.asarray(f.dead), [False, True, False])
    assert float(f.p_b[1]) == 0.0
    np.testing.assert_allclose(np.asarray(f.p_pixel[:, 1]), 1 / 20)
    assert np.all(np.isfinite(np.asarray(f.p_pixel)))


def test_entropies_match_scipy(x64, rng):
    P, B, W = rng.random((30, 12)), rng.random((30, 4)), rng.random((4, 12))
    np.testing.assert_allclose(np.asarray(diagnostics.image_entropies(jnp.asarray(P))),
                               scipy.stats.entropy(P, axis=0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(diagnostics.reconstruction_entropies(jnp.asarray(B), jnp.asarray(W))),
                               scipy.stats.entropy(B @ W, axis=0), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(diagnostics.basis_entropies(jnp.asarray(B))),
                               scipy.stats.entropy(B, axis=0), rtol=1e-12)
    s = diagnostics.smoothing(jnp.asarray(P), jnp.asarray(B), jnp.asarray(W))
    want = np.mean(scipy.stats.entropy(P, axis=0) <= scipy.stats.entropy(B @ W, axis=0))
    assert float(s["fraction_smoothed"]) == pytest.approx(want)


def test_hoyer_sparseness_closed_forms(x64):
    x = jnp.stack([jnp.eye(5)[2], jnp.ones(5), jnp.zeros(5), jnp.array([3.0, 4.0, 0, 0, 0])], axis=1)
    h = np.asarray(diagnostics.hoyer_sparseness(x, axis=0))
    n = 5
    want_last = (np.sqrt(n) - 7 / 5) / (np.sqrt(n) - 1)
    np.testing.assert_allclose(h, [1.0, 0.0, 0.0, want_last], atol=1e-12)


@pytest.mark.parametrize("size", [2, 7, 24])
def test_matching_equals_scipy_linear_sum_assignment(x64, rng, size):
    B1, B2 = rng.random((50, size)), rng.random((50, size))
    m = match.match(jnp.asarray(B1), jnp.asarray(B2))
    cost = np.asarray(match.cosine_distances(jnp.asarray(B1), jnp.asarray(B2)))
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    assert float(m.total) == pytest.approx(cost[rows, cols].sum(), rel=1e-10)
    assert sorted(np.asarray(m.perm).tolist()) == list(range(size))
    np.testing.assert_allclose(np.asarray(m.distances), cost[np.arange(size), np.asarray(m.perm)])
    # Cosine distance against SciPy's definition.
    np.testing.assert_allclose(cost[0, 1], scipy.spatial.distance.cosine(B1[:, 0], B2[:, 1]), rtol=1e-10)


def test_matching_recovers_a_permutation_and_vmaps(x64, rng):
    B = rng.random((40, 6))
    perm = rng.permutation(6)
    m = match.match(jnp.asarray(B), jnp.asarray(B[:, perm] * 3.0))  # scale does not matter
    np.testing.assert_array_equal(np.asarray(perm)[np.asarray(m.perm)], np.arange(6))
    assert float(m.total) == pytest.approx(0.0, abs=1e-10)
    pairs = match.match_pairs(jnp.stack([jnp.asarray(B)] * 3), jnp.stack([jnp.asarray(B[:, perm])] * 3))
    assert pairs.perm.shape == (3, 6)


def test_predictability_of_an_exact_factorization_has_no_violations(x64, rng):
    B, W = rng.random((25, 5)), rng.random((5, 40))
    v = rank.predictability_violations(jnp.asarray(B @ W), jnp.asarray(B), jnp.asarray(W))
    assert float(v["weighted"]) == 0.0 and float(v["unweighted"]) == 0.0


def test_predictability_counts_sharper_data_by_hand():
    # Two pixels, two images; one basis that is flat: an image concentrated on pixel 0 violates.
    P = jnp.array([[0.9, 0.5], [0.1, 0.5]])
    B = jnp.array([[1.0], [1.0]])
    W = jnp.array([[0.5, 0.5]])
    v = rank.predictability_violations(P, B, W)
    assert float(v["unweighted"]) == pytest.approx(0.25)  # only (pixel 0, image 0)
    assert float(v["weighted"]) == pytest.approx(0.9 / 2.0)


def test_rank_criteria_closed_forms():
    assert rank.effective_rank([2, 4, 8], [0.5, 0.04, 0.001], 0.05) == 4
    assert rank.effective_rank([2, 4], [0.5, 0.4], 0.05) is None
    blocks = np.kron(np.eye(2), np.ones((3, 3)))  # a perfectly consistent consensus
    assert rank.dispersion(blocks) == pytest.approx(1.0)
    assert rank.dispersion(np.full((6, 6), 0.5)) == pytest.approx(0.0)
    assert rank.cophenetic_correlation(0.9 * blocks + 0.05) == pytest.approx(1.0)
    W = jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(rank.connectivity(W)), [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    P = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert float(rank.explained_variance(P, P, jnp.eye(2))) == pytest.approx(1.0)


def test_flip_noise_statistics_and_validation(key):
    P = jnp.asarray(np.random.default_rng(0).random((200, 300)), jnp.float32)
    noisy = perturb.flip_noise(key, P, 0.25)
    flipped = np.isclose(np.asarray(noisy), 1.0 - np.asarray(P)) & ~np.isclose(np.asarray(P), 0.5)
    assert abs(flipped.mean() - 0.25) < 0.01
    assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0
    binary = perturb.binarize(P)
    assert set(np.unique(np.asarray(perturb.flip_noise(key, binary, 0.5)))) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="xi"):
        perturb.flip_noise(key, P, 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        perturb.flip_noise(key, P * 3.0, 0.1)


def test_random_halves_partition_the_images(key):
    a, b = perturb.random_halves(key, 11)
    assert len(a) == 6 and len(b) == 5
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(11))


def test_datasets(tmp_path):
    faces = data.lfw_faces()
    assert faces.P.shape == (625, 100) and faces.shape == (25, 25)
    assert 0.0 <= faces.P.min() and faces.P.max() <= 1.0
    digits = data.digits()
    assert digits.P.shape == (64, 1797) and digits.P.max() == 1.0
    swim = data.swimmer()
    assert swim.P.shape == (169, 256) and set(np.unique(swim.P)) == {0.0, 1.0}
    assert np.linalg.matrix_rank(swim.P) == 13  # 1 + 4 × 3: linear rank below the 17 parts
    bars = data.bars(size=5, n_images=50, seed=1)
    assert bars.P.shape == (25, 50) and np.all(bars.P.sum(0) > 0)
    # A folder of RGB, grey and RGBA images of different sizes (UTKFace as users have it).
    from skimage import io

    rng = np.random.default_rng(0)
    io.imsave(tmp_path / "a.png", (rng.random((40, 30, 3)) * 255).astype(np.uint8), check_contrast=False)
    io.imsave(tmp_path / "b.png", (rng.random((20, 20)) * 255).astype(np.uint8), check_contrast=False)
    io.imsave(tmp_path / "c.png", (rng.random((16, 16, 4)) * 255).astype(np.uint8), check_contrast=False)
    (tmp_path / "notes.txt").write_text("not an image")
    folder = data.image_folder(tmp_path, size=(10, 12))
    assert folder.P.shape == (120, 3) and folder.labels == ("a.png", "b.png", "c.png")
    assert 0.0 <= folder.P.min() and folder.P.max() <= 1.0
    assert data.load(f"folder:{tmp_path}", size=(8, 8)).P.shape == (64, 3)
    with pytest.raises(ValueError, match="folder"):
        data.image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="name"):
        data.load("imagenet")


def test_parse_ranks():
    assert study.parse_ranks("2:6") == [2, 3, 4, 5, 6]
    assert study.parse_ranks("2:10:4") == [2, 6, 10]
    assert study.parse_ranks("8,4,4") == [4, 8]
    with pytest.raises(ValueError, match="ranks"):
        study.parse_ranks("1:2:3:4")


@pytest.mark.slow
def test_rank_recovery_on_bars():
    """8 bars (4 × 4 images): the fit becomes exact and the seeds agree at rank 8, not before."""
    bars = data.bars(size=4, n_images=200, seed=0)
    scan = study.rank_scan(bars.P.astype(np.float32), [5, 6, 7, 8, 9], key=jax.random.key(0), seeds=4,
                           n_iter=1500, tau=0.01)
    by = {row["rank"]: row for row in scan["per_rank"]}
    evar = {r: by[r]["explained_variance"]["min"] for r in by}
    exact = [r for r in sorted(evar) if evar[r] > 0.9999]
    assert exact and exact[0] == 8, evar
    assert by[8]["stability"]["max"] < 0.01, by[8]["stability"]  # every seed finds the 8 bars
    for r in (6, 7):
        assert by[r]["stability"]["mean"] > 5 * by[8]["stability"]["mean"]
    # Predictability: violations fall as the rank approaches the number of parts.
    assert by[5]["v_weighted"]["mean"] > by[8]["v_weighted"]["mean"]
    assert by[8]["v_weighted"]["mean"] <= 0.01
    assert scan["effective_rank"]["weighted"] <= 8


def test_rank_scan_sharded_over_8_devices_equals_unsharded(rng):
    P = np.asarray(rng.random((30, 40)), np.float32)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    kw = dict(key=jax.random.key(0), seeds=8, n_iter=30, noise=0.1)
    plain = study.rank_scan(P, [3], **kw)
    sharded = study.rank_scan(P, [3], mesh=mesh, **kw)
    for name in ("loss", "v_weighted", "explained_variance", "stability"):
        assert sharded["per_rank"][0][name]["mean"] == pytest.approx(plain["per_rank"][0][name]["mean"], rel=1e-5)


def test_stability_study_small(rng):
    P = np.asarray(rng.random((36, 24)), np.float32)
    res = study.stability_study(P, 3, key=jax.random.key(0), noise=0.1, seeds=2, n_iter=40, levels=(0.0, 0.2))
    d = res["halves"]["matched_distance"]
    assert d["sorted"] == sorted(d["sorted"]) and 0.0 <= d["min"] <= d["max"] <= 2.0
    assert res["halves"]["sizes"] == [12, 12]
    assert res["arrays"]["basis_a"].shape == (36, 3) and res["arrays"]["S"].shape == (24,)
    assert len(res["noise_curve"]["mean"]) == 2
