"""Chapter 2 argument checks: data checked before a vmap, NaN that propagates instead of being
counted as "no violation", and studies that check everything before the first fit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropy_jax import nmf
from entropy_jax.nmf import diagnostics, match, perturb, rank, study


def _stack(rng, draws=3, pixels=6, images=5):
    return np.asarray(0.98 * rng.random((draws, pixels, images)) + 0.01, np.float32)  # inside (0, 1)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda P: P.__setitem__((1, 2, 3), np.nan), r"`P`\[1\] has 1 NaN entries \(first at pixel 2, image 3\)"),
        (lambda P: P.__setitem__((2, 0, 1), -0.5), r"`P`\[2\] has 1 negative entries \(min -0.5\)"),
        (lambda P: P.__setitem__((0, 4, 4), np.inf), r"`P`\[0\] has 1 infinite entries"),
        (lambda P: P.__setitem__(1, 0.0), r"`P`\[1\] is all zeros"),
    ],
)
def test_check_input_names_the_bad_matrix_of_a_stack(rng, corrupt, message):
    P = _stack(rng)
    nmf.check_input(P, 5)  # a clean stack passes
    corrupt(P)
    with pytest.raises(ValueError, match=message):
        nmf.check_input(P)


def test_check_input_shapes_and_ranks(rng):
    P = _stack(rng)
    with pytest.raises(ValueError, match=r"`rank` must be in \[1, min\(P.shape\) = 5\]; got 6"):
        nmf.check_input(P, 6)
    with pytest.raises(ValueError, match="`rank` must be in"):
        nmf.check_input(P[0], 0)
    with pytest.raises(TypeError, match="`rank` must be an integer"):
        nmf.check_input(P[0], 2.5)
    with pytest.raises(ValueError, match="matrix or a stack"):
        nmf.check_input(P[0, 0])
    with pytest.raises(ValueError, match=r"^`P` has 1 NaN entries"):  # one matrix: no batch index
        nmf.check_input(np.where(np.arange(30).reshape(6, 5) == 7, np.nan, P[0]))
    # Traced: the shape checks still run, the value checks cannot.
    jax.jit(lambda p: nmf.check_input(p, 3) or p)(P)


def test_fit_points_stacks_to_check_input(rng):
    with pytest.raises(ValueError, match="check_input"):
        nmf.fit(_stack(rng), 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="`n_iter` must be >= 1"):
        nmf.fit(_stack(rng)[0], 2, key=jax.random.key(0), n_iter=0)


@pytest.mark.parametrize("kind", ["kl", "frobenius"])
def test_vmapped_fit_over_bad_draws_is_nan_not_plausible(rng, kind):
    P = _stack(rng)
    P[1, 0, 0] = -0.5  # a negative pixel: no check can run inside the vmap
    P[2, 3, 1] = np.nan
    res = jax.vmap(lambda p: nmf.fit(p, 2, key=jax.random.key(0), n_iter=4, loss=kind))(jnp.asarray(P))
    loss = np.asarray(res.loss)
    assert np.all(np.isfinite(loss[0])) and np.all(np.isfinite(np.asarray(res.B[0])))
    assert np.all(np.isnan(loss[1:])) and np.all(np.isnan(np.asarray(res.B[1:])))
    assert np.all(np.isnan(np.asarray(res.W[1:])))


def test_loss_propagates_nan_and_negative_data(rng):
    P = jnp.asarray(_stack(rng)[0])
    B, W = jnp.ones((6, 2)), jnp.ones((2, 5))
    assert np.isfinite(float(nmf.loss(P, B, W)))
    assert np.isnan(float(nmf.loss(P.at[0, 0].set(jnp.nan), B, W)))  # was dropped as "absent" before
    assert np.isnan(float(nmf.loss(P.at[0, 0].set(-1.0), B, W)))
    assert np.isnan(float(nmf.loss(P.at[0, 0].set(jnp.nan), B, W, kind="frobenius")))
    assert float(nmf.loss(P.at[0, 0].set(0.0), B, W)) > 0  # an exact zero is still absent, not NaN


@pytest.mark.parametrize("jit", [False, True])
def test_flip_noise_checks_concretely_and_poisons_under_jit(key, jit):
    P = jnp.full((4, 3), 0.25)
    if not jit:
        with pytest.raises(ValueError, match="`P` has NaN"):
            perturb.flip_noise(key, P.at[0, 0].set(jnp.nan), 0.1)
        with pytest.raises(ValueError, match=r"`xi` must lie in \[0, 1\]"):
            perturb.flip_noise(key, P, 1.5)
        with pytest.raises(ValueError, match="`xi` must be a scalar"):
            perturb.flip_noise(key, P, jnp.array([0.1, 0.2]))
        return
    noisy = jax.jit(perturb.flip_noise)
    assert np.all(np.isfinite(noisy(key, P, 0.5)))
    assert np.all(np.isnan(noisy(key, P, 1.5)))  # not "every pixel flipped"
    assert np.all(np.isnan(noisy(key, P, -0.1)))
    out = np.asarray(noisy(key, P.at[0, 0].set(2.0), 0.0))
    assert np.isnan(out[0, 0]) and np.all(np.isfinite(out.ravel()[1:]))


def test_rank_criteria_do_not_count_nan_as_no_violation(rng):
    P = jnp.asarray(_stack(rng)[0])
    B, W = jnp.asarray(rng.random((6, 2))), jnp.asarray(rng.random((2, 5)))
    v = rank.predictability_violations(P, B, W)
    assert np.isfinite(float(v["weighted"])) and np.isfinite(float(v["unweighted"]))
    v = rank.predictability_violations(P, B.at[0, 0].set(jnp.nan), W)
    assert np.isnan(float(v["weighted"])) and np.isnan(float(v["unweighted"]))
    smooth = diagnostics.smoothing(P.at[0, 0].set(jnp.nan), B, W)
    assert np.isnan(float(smooth["fraction_smoothed"]))
    f = nmf.normalize(B.at[0, 0].set(jnp.nan), W)  # NaN is not a dead component
    assert not bool(f.dead[0]) and np.all(np.isnan(np.asarray(f.p_pixel[:, 0]))) and np.isnan(float(f.p_b[0]))
    with pytest.raises(ValueError, match="rank 4 is NaN"):
        rank.effective_rank([2, 4, 6], [0.5, float("nan"), 0.0], 0.01)
    with pytest.raises(ValueError, match="differ in length"):
        rank.effective_rank([2, 4, 6], [0.5, 0.0], 0.01)
    with pytest.raises(ValueError, match="`tau`"):
        rank.effective_rank([2], [0.5], 1.5)
    with pytest.raises(ValueError, match="`consensus` has NaN"):
        rank.cophenetic_correlation(np.where(np.eye(4) > 0, np.nan, 0.5))
    with pytest.raises(ValueError, match="same shape"):
        match.match(B, B[:, :1])
    with pytest.raises(ValueError, match="at least 2 entries"):
        diagnostics.hoyer_sparseness(jnp.ones((1, 3)), axis=0)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("5:2", "hi = 2 < lo = 5"),
        ("abc", "'abc' is not an integer"),
        ("0:3", "rank 0 < 1"),
        ("2:x", "'x' is not an integer"),
        ("2:8:0", "step = 0"),
        ("", "no ranks"),
        (",", "no ranks"),
        ("3,-1", "rank -1 < 1"),
        ([2, 2.5], "2.5 is not an integer"),
    ],
)
def test_parse_ranks_says_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        study.parse_ranks(spec)


@pytest.fixture
def no_fits(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a fit started before the arguments were checked")

    for name in ("_scan_one_rank", "_fit_pair", "_noise_curve"):
        monkeypatch.setattr(study, name, boom)


@pytest.mark.parametrize(
    "kw, error, message",
    [
        ({"loss": "l1"}, ValueError, "`loss` must be 'kl' or 'frobenius'; got 'l1'"),
        ({"noise": 1.5}, ValueError, "`noise` must be a number in"),
        ({"tau": -0.1}, ValueError, "`tau` must be a number in"),
        ({"seeds": 1}, ValueError, "`seeds` must be >= 2"),
        ({"n_iter": 0}, ValueError, "`n_iter` must be >= 1"),
        ({"ranks": "0:3"}, ValueError, "`ranks`: .*rank 0 < 1"),
        ({"ranks": "2:9"}, ValueError, r"`rank` must be in \[1, min\(P.shape\) = 5\]"),
    ],
)
def test_rank_scan_checks_everything_before_the_first_fit(no_fits, rng, kw, error, message):
    args = {"ranks": "2:3", "key": jax.random.key(0), "seeds": 2, "n_iter": 4} | kw
    with pytest.raises(error, match=message):
        study.rank_scan(_stack(rng)[0], args.pop("ranks"), **args)


def test_rank_scan_rejects_bad_data_before_the_first_fit(no_fits, rng):
    P = _stack(rng)[0]
    P[1, 1] = np.nan
    with pytest.raises(ValueError, match="`P` has 1 NaN entries"):
        study.rank_scan(P, [2], key=jax.random.key(0), seeds=2)
    with pytest.raises(ValueError, match=r"`P` must lie in \[0, 1\]"):
        study.rank_scan(_stack(rng)[0] * 5, [2], key=jax.random.key(0), seeds=2, noise=0.1)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"noise": 1.5}, "`noise` must be a number in"),
        ({"levels": (0.0, 2.0)}, "`levels entry` must be a number in"),
        ({"levels": ()}, "`levels` is empty"),
        ({"seeds": 0}, "`seeds` must be >= 1"),
        ({"loss": "l1"}, "`loss`"),
        ({"rank_": 3}, "`rank_` = 3 exceeds min\\(pixels, images in a half\\) = 2"),
    ],
)
def test_stability_study_checks_everything_before_the_first_fit(no_fits, rng, kw, message):
    args = {"rank_": 2, "key": jax.random.key(0), "n_iter": 4} | kw
    with pytest.raises(ValueError, match=message):
        study.stability_study(_stack(rng)[0], args.pop("rank_"), **args)


def test_stability_study_needs_data_in_the_unit_interval(no_fits, rng):
    with pytest.raises(ValueError, match=r"`P` must lie in \[0, 1\]"):
        study.stability_study(_stack(rng)[0] * 5, 2, key=jax.random.key(0))


def test_an_unknown_loss_never_falls_back_to_another(rng):
    # The traced fit itself refuses it too (it used to run Frobenius for any name but "kl").
    from entropy_jax.nmf import core

    with pytest.raises(ValueError, match="`loss` must be 'kl' or 'frobenius'; got 'l1'"):
        core.fit_seeded(jnp.asarray(_stack(rng)[0]), jax.random.key(0), rank=2, n_iter=2, kind="l1", init="random")
