"""Chapter-3 metrics against sklearn, plain loops and brute force over tie orders."""

from __future__ import annotations

import functools
import itertools
import json
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import entropy_jax.eval as ev
from entropy_jax.eval import (
    aurc,
    bootstrap,
    ece,
    error_detection_report,
    prr,
    reliability,
    risk_coverage,
    roc_auc,
    summary_by,
)


def _qa(rng, n, *, ties=False, acc=0.6, signal=1.0):
    """Simulated MCQA run: correctness and an uncertainty that is higher on errors."""
    correct = rng.random(n) < acc
    u = rng.normal(size=n) + signal * (~correct)
    if ties:
        u = np.round(u).astype(np.int64)  # a handful of integer levels: many ties
    return u, correct


# ----------------------------------------------------------------------------- references


def _risk_curve_ordered(u, correct):
    """Risk of the k most certain, k = 1..n, with ties kept in input order (stable sort)."""
    order = np.argsort(u, kind="stable")
    err = (~np.asarray(correct, bool))[order].astype(float)
    return np.cumsum(err) / np.arange(1, len(u) + 1)


def _polygraph_pra(u, quality, max_rejection):
    """LM-Polygraph's prediction-rejection area: mean quality of the kept, over rejection levels."""
    n = len(u)
    n_rej = int(max_rejection * n)
    sorted_q = np.asarray(quality, float)[np.argsort(u, kind="stable")]
    cumsum = np.cumsum(sorted_q)[-n_rej:]
    return np.sum(cumsum / np.arange(n - n_rej + 1, n + 1)) / n_rej


def _polygraph_prr(u, correct, max_rejection, random_pra):
    q = np.asarray(correct, float)
    ue = _polygraph_pra(u, q, max_rejection)
    oracle = _polygraph_pra(-q, q, max_rejection)
    return (ue - random_pra) / (oracle - random_pra)


def _polygraph_prr_exact(u, correct, max_rejection):
    return _polygraph_prr(u, correct, max_rejection, random_pra=np.mean(correct))


def _tie_averaged(fn, u, correct):
    """Average of fn(u[perm], correct[perm]) over every permutation (ties resolved by position)."""
    vals = [fn(u[list(p)], correct[list(p)]) for p in itertools.permutations(range(len(u)))]
    return np.mean(vals, axis=0)


# ----------------------------------------------------------------------------- ROC-AUC


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n", [5, 40, 300])
def test_roc_auc_matches_sklearn(rng, ties, n):
    for _ in range(20):
        u, correct = _qa(rng, n, ties=ties)
        if correct.all() or not correct.any():
            continue
        errors = ~correct
        expected = roc_auc_score(errors, u)
        assert roc_auc(u, errors) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert roc_auc(u, errors.astype(int)) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert roc_auc(u.astype(float), errors.astype(float)) == pytest.approx(expected, rel=1e-12)


def test_roc_auc_extremes_and_infinities():
    errors = np.array([False, False, True, True])
    assert roc_auc([0.1, 0.2, 0.8, 0.9], errors) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], errors) == 0.0
    assert roc_auc([1.0, 1.0, 1.0, 1.0], errors) == 0.5
    assert roc_auc([-np.inf, 0.0, np.inf, np.inf], errors) == 1.0


def test_roc_auc_one_class_is_nan():
    u = np.arange(5.0)
    assert np.isnan(roc_auc(u, np.zeros(5, bool)))
    assert np.isnan(roc_auc(u, np.ones(5, int)))


# ----------------------------------------------------------------------------- ECE


def _ece_loop(conf, correct, n_bins):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        members = [
            i for i in range(len(conf))
            if lo <= conf[i] < hi or (b == n_bins - 1 and conf[i] == 1.0)
        ]
        if members:
            acc = np.mean([float(correct[i]) for i in members])
            mean_conf = np.mean([conf[i] for i in members])
            total += len(members) / len(conf) * abs(acc - mean_conf)
    return total


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_loop(rng, n_bins):
    n = 200
    conf = rng.random(n)
    conf[:20] = rng.integers(0, n_bins + 1, 20) / n_bins  # exactly on bin edges, incl. 0 and 1
    correct = rng.random(n) < conf
    expected = _ece_loop(conf, correct, n_bins)
    assert ece(conf, correct, n_bins) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    table = reliability(conf, correct, n_bins)
    assert table["ece"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    json.dumps(table)  # plain lists and floats
    edges, count, acc, mean_conf = (
        np.asarray(table[k]) for k in ("edges", "count", "accuracy", "mean_confidence")
    )
    np.testing.assert_array_equal(edges, np.linspace(0.0, 1.0, n_bins + 1))
    assert count.sum() == n
    assert np.all(np.isnan(acc[count == 0])) and not np.any(np.isnan(acc[count > 0]))
    recomputed = np.nansum(count / n * np.abs(acc - mean_conf))
    assert recomputed == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_ece_perfect_and_worst_calibration():
    assert ece([1.0, 1.0, 0.0], [True, True, False]) == 0.0
    assert ece([1.0, 1.0], [False, False]) == 1.0


# ----------------------------------------------------------------------------- risk–coverage, AURC


def test_aurc_without_ties_is_direct_mean(rng):
    u, correct = _qa(rng, 120)
    curve = _risk_curve_ordered(u, correct)
    cov, risk = risk_coverage(u, correct)
    np.testing.assert_allclose(cov, np.arange(1, 121) / 120)
    np.testing.assert_allclose(risk, curve, rtol=1e-12)
    assert aurc(u, correct) == pytest.approx(curve.mean(), rel=1e-12)
    # Riemann sum of the step curve over coverage.
    assert aurc(u, correct) == pytest.approx(np.sum(risk * np.diff(np.r_[0.0, cov])), rel=1e-12)


def test_aurc_ties_average_over_all_tie_orders(rng):
    for _ in range(3):
        u = rng.integers(0, 3, 7)
        correct = rng.random(7) < 0.5
        brute_curve = _tie_averaged(_risk_curve_ordered, u, correct)
        _, risk = risk_coverage(u, correct)
        np.testing.assert_allclose(risk, brute_curve, rtol=1e-12, atol=1e-15)
        assert aurc(u, correct) == pytest.approx(brute_curve.mean(), rel=1e-12, abs=1e-15)


def test_aurc_independent_of_input_order(rng):
    u, correct = _qa(rng, 300, ties=True)
    perm = rng.permutation(300)
    assert aurc(u[perm], correct[perm]) == pytest.approx(aurc(u, correct), rel=1e-13)
    assert prr(u[perm], correct[perm]) == pytest.approx(prr(u, correct), rel=1e-12)


def test_aurc_one_class_is_defined():
    assert aurc([0.3, 0.1, 0.2], [True, True, True]) == 0.0
    assert aurc([0.3, 0.1, 0.2], [0, 0, 0]) == 1.0


# ----------------------------------------------------------------------------- PRR


@pytest.mark.parametrize("max_rejection", [1.0, 0.5, 0.3])
def test_prr_matches_lm_polygraph_definition(rng, max_rejection):
    u, correct = _qa(rng, 200)  # continuous: no ties, so LM-Polygraph's argsort is unambiguous
    # Exact random baseline: a random order keeps the overall accuracy at every k.
    expected = _polygraph_prr(u, correct, max_rejection, random_pra=correct.mean())
    assert prr(u, correct, max_rejection) == pytest.approx(expected, rel=1e-10)
    # LM-Polygraph's Monte-Carlo random baseline agrees with the exact one.
    shuffles = np.random.default_rng(42)
    q = correct.astype(float)
    random_pra = np.mean([_polygraph_pra(shuffles.permutation(200), q, max_rejection) for _ in range(500)])
    assert random_pra == pytest.approx(correct.mean(), abs=0.01)


def test_prr_ties_average_over_all_tie_orders(rng):
    for max_rejection in (1.0, 0.5):
        u = rng.integers(0, 3, 7)
        correct = np.array([True, False, True, True, False, True, False])
        rng.shuffle(correct)
        brute = _tie_averaged(
            functools.partial(_polygraph_prr_exact, max_rejection=max_rejection), u, correct
        )
        assert prr(u, correct, max_rejection) == pytest.approx(brute, rel=1e-12, abs=1e-14)


def test_prr_oracle_random_reversed(rng):
    u, correct = _qa(rng, 300)
    errors = (~correct).astype(float)
    for max_rejection in (1.0, 0.5):
        assert prr(errors, correct, max_rejection) == pytest.approx(1.0, rel=1e-12)
        assert prr(errors + 1e-3 * rng.random(300), correct, max_rejection) == pytest.approx(1.0, rel=1e-12)
        assert prr(-errors, correct, max_rejection) < 0.0
    # Rank-based: the reversed oracle is as far below 0 as the oracle is above the random level.
    assert prr(-errors, correct) < -0.5
    # Random uncertainties: 0 in expectation (within 4 standard errors of the mean of 400).
    rand = np.array([prr(rng.random(300), correct) for _ in range(400)])
    assert abs(rand.mean()) < 4.0 * rand.std() / np.sqrt(rand.size)
    # Informative signal lies strictly between.
    assert 0.0 < prr(u, correct) < 1.0


def test_prr_relation_to_aurc(rng):
    u, correct = _qa(rng, 150, ties=True)
    eps = 1.0 - correct.mean()
    oracle = aurc((~correct).astype(float), correct)
    assert prr(u, correct) == pytest.approx((eps - aurc(u, correct)) / (eps - oracle), rel=1e-12)


def test_prr_undefined_cases_are_nan():
    u = np.array([0.1, 0.5, 0.2, 0.9])
    assert np.isnan(prr(u, [1, 1, 1, 1]))
    assert np.isnan(prr(u, [0, 0, 0, 0]))
    assert np.isnan(prr(u, [1, 0, 1, 0], max_rejection=0.25))  # one rejection level: no area
    assert np.isnan(prr(u, [1, 0, 1, 0], max_rejection=0.1))  # int(0.4) = 0 levels


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_contains_point_and_narrows(rng):
    widths = []
    for n in (100, 2000):
        u, correct = _qa(rng, n)
        res = bootstrap(roc_auc, u, ~correct, n_boot=500, seed=1)
        point, lo, hi = res
        assert lo <= point <= hi
        assert point == roc_auc(u, ~correct)
        assert res.n_boot == 500 and res.n_dropped == 0
        widths.append(hi - lo)
    assert widths[1] < 0.5 * widths[0]  # ~1/sqrt(n): ratio about 0.22


def test_bootstrap_deterministic_and_seeded(rng):
    u, correct = _qa(rng, 100)
    a = bootstrap(aurc, u, correct, n_boot=200, seed=3)
    assert tuple(a) == tuple(bootstrap(aurc, u, correct, n_boot=200, seed=3))
    assert tuple(a) != tuple(bootstrap(aurc, u, correct, n_boot=200, seed=4))


@pytest.mark.parametrize(
    "metric, kind",
    [
        (roc_auc, "errors"),
        (aurc, "correct"),
        (prr, "correct"),
        (functools.partial(prr, max_rejection=0.5), "correct"),
        (ece, "confidence"),
        (functools.partial(ece, n_bins=7), "confidence"),
    ],
)
def test_bootstrap_vectorised_equals_loop(rng, metric, kind):
    u, correct = _qa(rng, 60, ties=True)
    if kind == "errors":
        arrays = (u, ~correct)
    elif kind == "correct":
        arrays = (u, correct)
    else:
        arrays = (rng.random(60), correct)
    fast = bootstrap(metric, *arrays, n_boot=300, seed=5)
    loop = bootstrap(lambda *a: metric(*a), *arrays, n_boot=300, seed=5)
    assert fast.point == loop.point
    assert fast.lo == pytest.approx(loop.lo, rel=1e-10, abs=1e-12)
    assert fast.hi == pytest.approx(loop.hi, rel=1e-10, abs=1e-12)
    assert fast.n_dropped == loop.n_dropped


def test_bootstrap_drops_one_class_resamples():
    u = np.arange(10.0)
    correct = np.ones(10, bool)
    correct[3] = False  # one error: P(no error drawn) = 0.9^10 ≈ 0.35
    res = bootstrap(roc_auc, u, ~correct, n_boot=1000, seed=0)
    loop = bootstrap(lambda s, y: roc_auc(s, y), u, ~correct, n_boot=1000, seed=0)
    assert 250 < res.n_dropped < 450
    assert res.n_dropped == loop.n_dropped
    assert res.lo <= res.hi
    # Every resample one-class: point and interval NaN, no exception, no warning.
    point, lo, hi = res_all = bootstrap(roc_auc, u, np.zeros(10, bool), n_boot=50)
    assert np.isnan(point) and np.isnan(lo) and np.isnan(hi) and res_all.n_dropped == 50


def test_bootstrap_generic_rows_jointly(rng):
    x = rng.normal(size=(50, 3))
    y = x[:, 0].copy()
    # Rows are resampled jointly: the paired difference is identically 0 in every resample.
    res = bootstrap(lambda a, b: float(np.max(np.abs(a[:, 0] - b))), x, y, n_boot=100)
    assert tuple(res) == (0.0, 0.0, 0.0)


def test_bootstrap_roc_auc_is_fast(rng):
    u, correct = _qa(rng, 300, ties=True)
    bootstrap(roc_auc, u, ~correct, n_boot=10)  # warm-up
    t0 = time.perf_counter()
    bootstrap(roc_auc, u, ~correct, n_boot=1000)
    assert time.perf_counter() - t0 < 1.0


# ----------------------------------------------------------------------------- report, strata


def test_error_detection_report(rng):
    u, correct = _qa(rng, 200)
    p_max = 1.0 / (1.0 + np.exp(u))  # a confidence: must be passed as an uncertainty
    signals = {"entropy": u, "neg_p": -p_max, "one_minus_p": 1.0 - p_max}
    rep = error_detection_report(signals, correct, n_boot=200)
    json.dumps(rep, allow_nan=False)
    row = rep["entropy"]
    assert row["n"] == 200 and row["n_errors"] == int((~correct).sum())
    assert row["roc_auc"] == pytest.approx(roc_auc_score(~correct, u), rel=1e-12)
    assert row["prr"] == pytest.approx(prr(u, correct))
    assert row["prr_50"] == pytest.approx(prr(u, correct, max_rejection=0.5))
    assert row["aurc"] == pytest.approx(aurc(u, correct))
    lo, hi = row["roc_auc_ci"]
    assert lo <= row["roc_auc"] <= hi
    assert row["ci_level"] == pytest.approx(0.95)
    for key in ("roc_auc", "roc_auc_ci", "prr", "prr_50", "aurc", "aurc_ci"):
        assert rep["neg_p"][key] == pytest.approx(rep["one_minus_p"][key], rel=1e-12)
        assert rep["neg_p"][key] == pytest.approx(rep["entropy"][key], rel=1e-12)  # same ranking


def test_error_detection_report_one_class_gives_nan():
    rep = error_detection_report({"h": [0.1, 0.4, 0.3]}, [True, True, True], n_boot=20)
    assert np.isnan(rep["h"]["roc_auc"]) and np.isnan(rep["h"]["prr"])
    assert np.all(np.isnan(rep["h"]["roc_auc_ci"]))
    assert rep["h"]["aurc"] == 0.0 and rep["h"]["n_boot_dropped"] == 20


def test_summary_by(rng):
    u, correct = _qa(rng, 90)
    groups = np.repeat(["bio", "chem", "phys"], 30)
    out = summary_by(groups, roc_auc, u, ~correct)
    assert list(out) == ["bio", "chem", "phys"]
    assert out["chem"] == roc_auc(u[30:60], ~correct[30:60])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: roc_auc([0.1, 0.2, 0.3], [0, 1]), "length mismatch"),
        (lambda: roc_auc([0.1, np.nan, np.nan], [0, 1, 1]), "2 NaN entries"),
        (lambda: roc_auc([0.1, 0.2, 0.3], [0, 1, 2]), "bool or 0/1"),
        (lambda: roc_auc([[0.1, 0.2]], [[0, 1]]), "1-D"),
        (lambda: roc_auc([], []), "empty"),
        (lambda: aurc([0.1, np.nan], [True, False]), "1 NaN"),
        (lambda: risk_coverage([0.1, 0.2], [True]), "length mismatch"),
        (lambda: prr([0.1, 0.2], [True, False], max_rejection=0.0), "max_rejection"),
        (lambda: prr([0.1, 0.2], [True, False], max_rejection=1.5), "max_rejection"),
        (lambda: ece([0.5, 1.2], [True, False]), r"\[0, 1\]"),
        (lambda: ece([-0.1, 0.5], [True, False]), r"\[0, 1\]"),
        (lambda: ece([0.5, np.nan], [True, False]), "NaN"),
        (lambda: ece([0.5, 0.6], [True, False], n_bins=0), "n_bins"),
        (lambda: reliability([0.5, 0.6, 0.7], [True, False]), "length mismatch"),
        (lambda: bootstrap(roc_auc, [0.1, 0.2], [0, 1, 1]), "length mismatch"),
        (lambda: bootstrap(roc_auc, [0.1, np.nan], [0, 1]), "1 NaN"),
        (lambda: bootstrap(roc_auc, [0.1, 0.2], [0, 1], n_boot=0), "n_boot"),
        (lambda: error_detection_report({"h": [0.1, np.nan]}, [True, False]), "signal 'h'.*1 NaN"),
        (lambda: error_detection_report({"h": [0.1, 0.2, 0.3]}, [True, False]), "signal 'h'.*length"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_public_api_is_exported():
    for name in ev.__all__:
        assert getattr(ev, name) is getattr(ev.metrics, name)


def test_report_and_reliability_are_written_by_launch_write_json(rng, tmp_path):
    from entropy_jax.stores import write_json

    u, correct = _qa(rng, 40)
    result = {
        "error_detection": error_detection_report({"h": u, "one_class": u}, correct, n_boot=50),
        "one_class": error_detection_report({"h": u[:3]}, np.ones(3, bool), n_boot=10),
        "reliability": reliability(rng.random(40), correct, n_bins=15),
    }
    write_json(tmp_path / "metrics.json", result)
    back = json.loads((tmp_path / "metrics.json").read_text())
    assert back["one_class"]["h"]["roc_auc"] is None  # NaN → null
    assert back["error_detection"]["h"]["roc_auc"] == pytest.approx(roc_auc(u, ~correct))
    assert len(back["reliability"]["count"]) == 15


def test_score_row_metrics_drop_a_signal_some_rows_lack():
    """`mcqa_run.compute_metrics` on rows without entropy (lm-eval samples of another backend) or without option
    probabilities (generation samples): the missing signal is left out everywhere and named; the rest equal
    the metrics of the same rows with the signal removed from `SIGNALS` by hand."""
    from entropy_jax.eval import mcqa_run

    rng = np.random.default_rng(0)
    n = 40
    rows = [{"correct": bool(c), "entropy": float(e), "max_prob": float(p), "margin": float(m),
             "label_entropy": float(h), "label_mass": 0.9, "stratum": ("knowledge", "reasoning")[i % 2]}
            for i, (c, e, p, m, h) in enumerate(zip(rng.random(n) < 0.6, rng.random(n), 0.25 + 0.75 * rng.random(n),
                                                     rng.random(n), rng.random(n)))]
    full = mcqa_run.compute_metrics(rows, n_boot=30)
    assert full["dropped_signals"] == {} and full["overall"]["mean_entropy"] == pytest.approx(
        np.mean([r["entropy"] for r in rows]))
    no_entropy = [dict(r, entropy=None) for r in rows]
    got = mcqa_run.compute_metrics(no_entropy, n_boot=30)
    assert list(got["dropped_signals"]) == ["entropy"] and "40 of 40 rows" in got["dropped_signals"]["entropy"]
    for block, ref in [(got["overall"], full["overall"])] + [(got["by_stratum"][s], full["by_stratum"][s])
                                                             for s in ("knowledge", "reasoning")]:
        assert block["mean_entropy"] is None and "entropy" not in block["error_detection"]
        assert block["error_detection"] == {k: v for k, v in ref["error_detection"].items() if k != "entropy"}
        assert block["ece_15"] == ref["ece_15"] and block["accuracy"] == ref["accuracy"]
    one_missing = [dict(r, entropy=None) if i == 3 else r for i, r in enumerate(rows)]
    assert "1 of 40 rows" in mcqa_run.compute_metrics(one_missing, n_boot=30)["dropped_signals"]["entropy"]
    generation = [dict(r, max_prob=None, margin=None, label_entropy=None, label_mass=None) for r in rows]
    gen = mcqa_run.compute_metrics(generation, n_boot=30)
    assert set(gen["dropped_signals"]) == {"1 - max_prob", "-margin", "label_entropy"}
    assert gen["overall"]["ece_15"] is None and gen["overall"]["reliability"] is None
    assert gen["overall"]["error_detection"] == {"entropy": full["overall"]["error_detection"]["entropy"]}
    assert "| – |" in mcqa_run.markdown(gen) and "| – | " in mcqa_run.markdown(got)
