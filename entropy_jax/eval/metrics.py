"""Error-detection and calibration metrics for multiple-choice QA (Chapter 3).

Every function takes small per-question arrays (one entry per question, length n) and works in
NumPy float64; none of them touches JAX.

Conventions, shared by every function here:

* **uncertainty / score**: higher means *less* confident, i.e. more likely wrong (next-token
  entropy, −log max letter probability, ...). A *confidence* c (e.g. the max letter probability)
  is turned into an uncertainty by passing ``-c`` or ``1 - c``: every ranking metric here
  (ROC-AUC, risk–coverage, AURC, PRR) depends on the order of the values only, so both give
  identical numbers. Values may be ±inf (they are ranked); NaN is an error.
* **correct**: bool or 0/1 per question, True/1 = the model's answer is right.
* **error = positive class**: ROC-AUC measures how well the uncertainty detects *errors*; an
  uninformative signal scores 0.5, a perfect one 1.
* **ties** in the uncertainty are never broken by input order: ROC-AUC counts a tied
  (error, correct) pair as 1/2 (midranks), and the risk–coverage curve, AURC and PRR are the
  exact averages over all orderings of tied questions.
* metrics that are undefined on the given data (ROC-AUC or PRR with only one class present)
  return NaN rather than raise, so that bootstrap resamples can be dropped and counted; malformed
  input (length mismatch, NaN, labels other than 0/1, confidence outside [0, 1]) raises
  ``ValueError``.

Names and conventions against LM-Polygraph 0.7.0 (`lm_polygraph.ue_metrics`, checked numerically;
netcal 1.4.0 and scikit-learn where they apply):

* ``roc_auc(u, ~correct)`` is LM-Polygraph's ``ROCAUC`` and ``sklearn.metrics.roc_auc_score``: a tied
  (error, correct) pair counts 1/2, which is the average of the AUC over all orders of the tied
  values. (LM-Polygraph maps ±inf to max + 1 / min − 1 first: the same ranks.)
* ``prr`` is LM-Polygraph's **``prr_normalized``** (the ``UEManager`` key), not its ``prr``: the
  ``PredictionRejectionArea`` metric that LM-Polygraph reports as ``prr`` is the raw area
  PRA = mean accuracy of the kept questions over the rejection levels, and ``prr_normalized`` =
  (PRA − PRA_random) / (PRA_oracle − PRA_random) is what ``prr`` returns here. Likewise
  ``prr(..., max_rejection=0.5)`` (``prr_50`` in `error_detection_report`) is ``prr_0.5_normalized``.
  Two deliberate differences: PRA_random is its exact expectation (the accuracy) where LM-Polygraph
  averages 1000 shuffles (seed 42; on 300 questions 0.47439 here vs 0.47494 there, and equal to 1e-12
  with the exact baseline), and ties are averaged over all orders where its ``np.argsort`` breaks
  them arbitrarily. With one class only (oracle = random) LM-Polygraph returns the raw area; we NaN.
* ``aurc`` is LM-Polygraph's ``rcc-auc`` (``RiskCoverageCurveAUC``, normalize=True): the mean over k
  of the error rate of the k most certain questions; its sort keeps input order among ties, ours
  averages over them.
* ``ece`` takes a **confidence** in [0, 1] (here the renormalised letter probability of the
  predicted option) and bins it into equal-width bins [lo, hi), the last bin [lo, 1] — netcal's
  ``ECE(bins=n)`` convention, equal to it also for values on bin edges. LM-Polygraph's ``ECE`` takes an
  *uncertainty* estimator and uses −estimator as the confidence (for estimators that are negated
  probabilities, e.g. maximum sequence probability, that is the probability itself); it min–max
  normalises that confidence only with ``normalize=True`` (default False); its default is 20 bins;
  and its bins are right-closed (lo, hi] (the first [0, hi]). With the same confidence and bin count
  the two agree except for confidences lying exactly on a bin edge (such as 0.2 with 15 bins).

`bootstrap` recognises `roc_auc`, `aurc`, `prr` and `ece` (also wrapped in `functools.partial`
with keyword arguments) and evaluates all resamples at once through weighted kernels: a resample
is a vector of per-question multiplicities, and each metric is computed from per-tie-group
weighted sums over the one sort of the original data. Any other callable is called once per
resample on the resampled rows; both paths draw the same resamples from the same seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

__all__ = [
    "BootstrapCI",
    "aurc",
    "bootstrap",
    "ece",
    "error_detection_report",
    "prr",
    "reliability",
    "risk_coverage",
    "roc_auc",
    "summary_by",
]

# Bootstrap weights are materialised in chunks of at most this many entries (rows × n).
_CHUNK_ENTRIES = 2_000_000


# ----------------------------------------------------------------------------- validation


def _vector(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (one entry per question); got shape {a.shape}.")
    if a.size == 0:
        raise ValueError(f"`{name}` is empty; need at least one question.")
    return a


def _real(name: str, x) -> np.ndarray:
    """1-D real values; ±inf allowed (they are ranked), NaN rejected with its count."""
    a = _vector(name, x)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"`{name}` must be real numbers; got dtype {a.dtype}.")
    a = a.astype(np.float64)
    n_nan = int(np.count_nonzero(np.isnan(a)))
    if n_nan:
        raise ValueError(f"`{name}` has {n_nan} NaN entries (of {a.size}); drop or impute them first.")
    return a


def _binary(name: str, x) -> np.ndarray:
    """1-D bool, or numbers that are all exactly 0 or 1 → bool."""
    a = _vector(name, x)
    if a.dtype == bool:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"`{name}` must be bool or 0/1; got dtype {a.dtype}.")
    ok = (a == 0) | (a == 1)
    if not np.all(ok):
        bad = a[~ok]
        raise ValueError(
            f"`{name}` must be bool or 0/1; {bad.size} entries are not (first: {bad[0]!r})."
        )
    return a == 1


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"`{k}` has {v}" for k, v in lengths.items())
        raise ValueError(f"length mismatch: {desc} entries.")
    return next(iter(lengths.values()))


def _probability(name: str, x) -> np.ndarray:
    a = _real(name, x)
    bad = (a < 0) | (a > 1)
    if np.any(bad):
        raise ValueError(
            f"`{name}` must be probabilities in [0, 1]; {int(bad.sum())} entries are outside "
            f"(min {a.min()}, max {a.max()}). Pass a probability, not an uncertainty."
        )
    return a


def _n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive integer; got {n_bins!r}.")
    return int(n_bins)


# ----------------------------------------------------------------------------- weighted kernels
#
# A kernel validates its inputs once and returns f(W) -> (B,) float64, where W (B, n) holds the
# multiplicity of every question in each of B resamples (all ones for the plain metric). The
# data are sorted once; per-tie-group sums of W are all that changes between resamples.


def _tie_groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable ascending order of x and the start (in sorted position) of each run of equal values."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.ones(xs.size, dtype=bool)
    new[1:] = xs[1:] != xs[:-1]
    return order, np.flatnonzero(new)


def _group_sums(w_sorted: np.ndarray, starts: np.ndarray) -> np.ndarray:
    if starts.size == w_sorted.shape[1]:  # no ties: every group is one question
        return w_sorted
    return np.add.reduceat(w_sorted, starts, axis=1)


def _safe_div(num: np.ndarray, den: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.shape(num), np.nan), where=ok)


def _roc_auc_kernel(scores, labels) -> Callable[[np.ndarray], np.ndarray]:
    s = _real("scores", scores)
    pos = _binary("labels", labels)
    _same_length(scores=s, labels=pos)
    order, starts = _tie_groups(s)
    pos_sorted = pos[order].astype(np.float64)

    def f(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        p = _group_sums(ws * pos_sorted, starts)  # positive (error) weight per tie group
        q = _group_sums(ws * (1.0 - pos_sorted), starts)
        q_below = np.cumsum(q, axis=1) - q
        num = np.sum(p * (q_below + 0.5 * q), axis=1)
        den = p.sum(axis=1) * q.sum(axis=1)
        return _safe_div(num, den, den > 0)

    return f


class _RiskCurve:
    """Tie-averaged cumulative errors of the k most certain questions, for integer weights W.

    Sorting by uncertainty gives tie groups g with weight m_g and error weight e_g; M_g, E_g are
    their running sums. Averaged over all orders inside a group, the errors among the k most
    certain are E(k) = E_{g-1} + (k − M_{g-1}) e_g / m_g for M_{g-1} < k ≤ M_g. Sums of E(k)/k
    over a group then reduce to harmonic numbers: Σ 1/k = H_b − H_a.
    """

    def __init__(self, uncertainty, correct):
        u = _real("uncertainty", uncertainty)
        c = _binary("correct", correct)
        self.n = _same_length(uncertainty=u, correct=c)
        self.order, self.starts = _tie_groups(u)
        self.err_sorted = (~c[self.order]).astype(np.float64)
        self.harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, self.n + 1))])

    def groups(self, w: np.ndarray):
        ws = w[:, self.order]
        m = _group_sums(ws, self.starts)
        e = _group_sums(ws * self.err_sorted, self.starts)
        m_cum = np.rint(np.cumsum(m, axis=1)).astype(np.int64)
        e_cum = np.cumsum(e, axis=1)
        return m, e, m_cum, e_cum

    def tail_sum(self, w: np.ndarray, k0: int) -> tuple[np.ndarray, np.ndarray]:
        """Σ_{k=k0+1}^{n} E(k)/k per resample, and the total error weight per resample."""
        m, e, m_cum, e_cum = self.groups(w)
        m_prev = m_cum - np.rint(m).astype(np.int64)
        e_prev = e_cum - e
        rate = np.divide(e, m, out=np.zeros_like(e), where=m > 0)  # error rate inside each group
        a = np.maximum(m_prev, k0)
        b = np.maximum(m_cum, k0)
        h = self.harmonic
        total = np.sum((e_prev - m_prev * rate) * (h[b] - h[a]) + rate * (b - a), axis=1)
        return total, e_cum[:, -1]

    def curve(self) -> np.ndarray:
        """E(k)/k for k = 1..n with unit weights."""
        m, e, m_cum, e_cum = (v[0] for v in self.groups(np.ones((1, self.n))))
        g = np.searchsorted(m_cum, np.arange(1, self.n + 1), side="left")  # group holding k
        m_prev = (m_cum - m)[g]
        e_prev = (e_cum - e)[g]
        k = np.arange(1, self.n + 1, dtype=np.float64)
        return (e_prev + (k - m_prev) * e[g] / m[g]) / k


def _aurc_kernel(uncertainty, correct) -> Callable[[np.ndarray], np.ndarray]:
    rc = _RiskCurve(uncertainty, correct)

    def f(w: np.ndarray) -> np.ndarray:
        total, _ = rc.tail_sum(w, 0)
        return total / rc.n

    return f


def _num_rejected(max_rejection, n: int) -> int:
    if isinstance(max_rejection, bool) or not 0.0 < float(max_rejection) <= 1.0:
        raise ValueError(f"`max_rejection` must be in (0, 1]; got {max_rejection!r}.")
    return int(float(max_rejection) * n)  # LM-Polygraph's truncation


def _prr_kernel(uncertainty, correct, max_rejection: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    rc = _RiskCurve(uncertainty, correct)
    n = rc.n
    n_rej = _num_rejected(max_rejection, n)
    k0 = n - n_rej
    h = rc.harmonic

    def f(w: np.ndarray) -> np.ndarray:
        if n_rej == 0:
            return np.full(w.shape[0], np.nan)
        tail, n_err = rc.tail_sum(w, k0)
        n_err_i = np.rint(n_err).astype(np.int64)
        n_cor = n - n_err_i
        base = n_err / n  # random rejection: the error rate at every coverage
        risk_ue = tail / n_rej
        # base − oracle risk, summed over kept sizes k in (k0, n]: for k ≤ C the oracle keeps only
        # correct answers (risk 0); for k > C its risk is 1 − C/k, so base − risk = C(1/k − 1/n).
        a = np.maximum(k0, n_cor)
        tail_or = np.where(a < n - 1, h[n] - h[a] - (n - a) / n, 0.0)
        den = (base * np.maximum(0, n_cor - k0) + n_cor * tail_or) / n_rej
        ok = (n_err_i > 0) & (n_cor > 0) & (den > 0)
        return _safe_div(base - risk_ue, den, ok)

    return f


def _ece_bins(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i is [edges[i], edges[i+1]); the last bin also holds 1.0.
    return edges, np.searchsorted(edges[1:-1], conf, side="right")


def _ece_kernel(confidence, correct, n_bins: int = 15) -> Callable[[np.ndarray], np.ndarray]:
    conf = _probability("confidence", confidence)
    c = _binary("correct", correct)
    n = _same_length(confidence=conf, correct=c)
    nb = _n_bins(n_bins)
    _, idx = _ece_bins(conf, nb)
    onehot = np.zeros((n, nb))
    onehot[np.arange(n), idx] = 1.0
    gap = c.astype(np.float64) - conf

    def f(w: np.ndarray) -> np.ndarray:
        # Σ_b (n_b/N)|acc_b − conf_b| = Σ_b |Σ_{i∈b} w_i (correct_i − conf_i)| / N.
        return np.abs((w * gap) @ onehot).sum(axis=1) / w.sum(axis=1)

    return f


def _scalar(kernel_fn: Callable[[np.ndarray], np.ndarray], n: int) -> float:
    return float(kernel_fn(np.ones((1, n)))[0])


# ----------------------------------------------------------------------------- public metrics


def roc_auc(scores, labels) -> float:
    """ROC-AUC of `scores` for detecting the positive class, ties counted as 1/2 (midranks).

    In this codebase the positive class is an **error** (the model's answer is wrong) and the
    score is an **uncertainty** (higher = more likely wrong): call ``roc_auc(u, ~correct)``.
    Equals ``sklearn.metrics.roc_auc_score(labels, scores)`` and LM-Polygraph's ``ROCAUC``: the
    probability that a random positive scores higher than a random negative, plus half the
    probability of a tie (= the AUC averaged over all orders of tied scores).

    Args:
      scores: shape (n,), real; ±inf allowed (ranked), NaN raises.
      labels: shape (n,), bool or 0/1; True/1 = positive (error).

    Returns:
      ROC-AUC in [0, 1] (0.5 = uninformative); NaN (no exception) when only one class is present.

    Raises:
      ValueError: length mismatch, NaN scores (the message gives the count), non-0/1 labels.
    """
    return _scalar(_roc_auc_kernel(scores, labels), np.size(scores))


def risk_coverage(uncertainty, correct) -> tuple[np.ndarray, np.ndarray]:
    """Risk–coverage curve: error rate among the k most certain questions, k = 1..n.

    Questions are kept in order of increasing uncertainty. Questions with equal uncertainty are
    not ordered arbitrarily: the risk at each k is the exact average over all orders of every
    tied group (the kept part of a partially kept group contributes its group's error rate), so
    the curve does not depend on the input order.

    Args:
      uncertainty: shape (n,), higher = less confident; NaN raises.
      correct: shape (n,), bool or 0/1, True = right answer.

    Returns:
      (coverage, risk), both shape (n,) float64: coverage[k-1] = k/n (ascending, ends at 1) and
      risk[k-1] = expected number of errors among the k most certain / k (ends at the error rate).
    """
    rc = _RiskCurve(uncertainty, correct)
    coverage = np.arange(1, rc.n + 1, dtype=np.float64) / rc.n
    return coverage, rc.curve()


def aurc(uncertainty, correct) -> float:
    """Area under the risk–coverage curve (lower is better).

    Exactly ``AURC = (1/n) Σ_{k=1..n} risk(k)``, with risk(k) the error rate among the k most
    certain questions as returned by `risk_coverage` (ties averaged over all orders of the tied
    questions). An oracle reaches Σ_{k>C} (1 − C/k) / n for C correct answers; a random order
    reaches the error rate. Same shapes and conventions as `risk_coverage`. Unlike ROC-AUC it is
    defined for one-class input (0 when all are right, 1 when all are wrong).
    """
    rc_kernel = _aurc_kernel(uncertainty, correct)
    return _scalar(rc_kernel, np.size(uncertainty))


def prr(uncertainty, correct, max_rejection: float = 1.0) -> float:
    """Normalised prediction-rejection ratio: LM-Polygraph's ``prr_normalized`` (higher is better; 1 = oracle).

    LM-Polygraph's plain ``prr`` is the raw area PRA below, not this ratio (module docstring).

    Reject the most uncertain questions first; the rejection curve is the accuracy of the kept
    questions. With r = int(max_rejection · n) (LM-Polygraph truncates the same way) the curve is
    averaged over the kept sizes k = n − r + 1, ..., n (rejecting 0 .. r − 1 questions):
    ``PRA = (1/r) Σ_k acc(k)``, and

        PRR = (PRA_uncertainty − PRA_random) / (PRA_oracle − PRA_random),

    the area between the random and the uncertainty's rejection curves divided by the area
    between random and the oracle (which rejects every error first). ``max_rejection=0.5`` gives
    LM-Polygraph's ``prr_0.5_normalized``. With max_rejection = 1, PRR = (ε − AURC) / (ε − AURC_oracle) for
    error rate ε. A perfect ranking gives 1, a random one 0 in expectation, a reversed one < 0.

    Differences from LM-Polygraph, both deliberate: PRA_random is its exact expectation, the
    accuracy at every k (LM-Polygraph averages 1000 random shuffles), and ties in the uncertainty
    are averaged over all orders (LM-Polygraph's ``np.argsort`` breaks them arbitrarily).

    Args:
      uncertainty: shape (n,), higher = less confident; NaN raises.
      correct: shape (n,), bool or 0/1, True = right answer (LM-Polygraph's quality target).
      max_rejection: largest fraction rejected, in (0, 1].

    Returns:
      PRR as a float; NaN (no exception) when oracle and random coincide: one class only (where
      LM-Polygraph would return the unnormalised area) or fewer than 2 rejection levels (r ≤ 1).
    """
    return _scalar(_prr_kernel(uncertainty, correct, max_rejection), np.size(uncertainty))


def ece(confidence, correct, n_bins: int = 15) -> float:
    """Expected calibration error with `n_bins` equal-width bins on [0, 1].

    ``ECE = Σ_b (n_b / n) |accuracy_b − mean confidence_b|`` over the non-empty bins; bin b is
    [b/n_bins, (b+1)/n_bins), the last bin also holding 1.0 (netcal's convention). `confidence` is a
    **probability**, e.g. the renormalised letter probability of the predicted option, so this is the
    calibration of the stated confidence itself. LM-Polygraph's ``ECE`` gets the same number from
    the uncertainty −confidence (it uses −estimator as the confidence, no min–max scaling unless
    ``normalize=True``) with the same ``n_bins`` (its default is 20), except for confidences exactly on
    a bin edge: its bins are (lo, hi]. See `reliability` for the per-bin table.

    Args:
      confidence: shape (n,), probabilities in [0, 1] (anything else raises).
      correct: shape (n,), bool or 0/1, True = right answer.
      n_bins: number of equal-width bins.

    Returns:
      ECE in [0, 1], as a float.
    """
    return _scalar(_ece_kernel(confidence, correct, n_bins), np.size(confidence))


def reliability(confidence, correct, n_bins: int = 15) -> dict:
    """Per-bin table for a reliability diagram (same bins and inputs as `ece`).

    Returns:
      dict of plain Python lists (ready for ``metrics.json``; ``np.asarray`` them for arithmetic):
      ``edges`` (n_bins + 1 floats), ``count`` (n_bins ints), ``mean_confidence`` and
      ``accuracy`` (n_bins floats, NaN in empty bins), and ``ece`` (float) — the same number
      `ece` returns.
    """
    conf = _probability("confidence", confidence)
    c = _binary("correct", correct)
    n = _same_length(confidence=conf, correct=c)
    nb = _n_bins(n_bins)
    edges, idx = _ece_bins(conf, nb)
    counts = np.bincount(idx, minlength=nb)
    conf_sum = np.bincount(idx, weights=conf, minlength=nb)
    acc_sum = np.bincount(idx, weights=c.astype(np.float64), minlength=nb)
    nonempty = counts > 0
    return {
        "edges": edges.tolist(),
        "count": counts.tolist(),
        "mean_confidence": _safe_div(conf_sum, counts.astype(np.float64), nonempty).tolist(),
        "accuracy": _safe_div(acc_sum, counts.astype(np.float64), nonempty).tolist(),
        "ece": float(np.abs(acc_sum - conf_sum).sum() / n),
    }


# ----------------------------------------------------------------------------- bootstrap


class _Interval(NamedTuple):
    point: float
    lo: float
    hi: float


class BootstrapCI(_Interval):
    """``(point, lo, hi)``: unpacks as a 3-tuple; also carries ``n_boot`` (resamples drawn) and
    ``n_dropped`` (resamples where the metric was NaN, excluded from the interval)."""

    n_boot: int
    n_dropped: int

    def __new__(cls, point: float, lo: float, hi: float, *, n_boot: int, n_dropped: int):
        self = super().__new__(cls, point, lo, hi)
        self.n_boot = n_boot
        self.n_dropped = n_dropped
        return self

    def __repr__(self) -> str:
        return (
            f"BootstrapCI(point={self.point!r}, lo={self.lo!r}, hi={self.hi!r}, "
            f"n_boot={self.n_boot}, n_dropped={self.n_dropped})"
        )


_KERNELS: dict[Callable, Callable] = {
    roc_auc: _roc_auc_kernel,
    aurc: _aurc_kernel,
    prr: _prr_kernel,
    ece: _ece_kernel,
}


def _fast_kernel(metric_fn: Callable, arrays: tuple[np.ndarray, ...]):
    fn, kwargs = metric_fn, {}
    if isinstance(fn, functools.partial) and not fn.args:
        fn, kwargs = fn.func, dict(fn.keywords)
    maker = _KERNELS.get(fn)
    if maker is None or any(a.ndim != 1 for a in arrays):
        return None
    return maker(*arrays, **kwargs)


def _resamples(rng: np.random.Generator, n: int, n_boot: int):
    """Row indices of the bootstrap resamples, in chunks of bounded size (same stream for any path)."""
    chunk = max(1, _CHUNK_ENTRIES // n)
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def _multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    rows = idx.shape[0]
    flat = (idx + (np.arange(rows) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap(
    metric_fn: Callable[..., float],
    *arrays,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap interval of ``metric_fn(*arrays)``, resampling rows jointly.

    Each resample draws n row indices with replacement (``numpy.random.default_rng(seed)``) and
    applies them to every array along axis 0, so paired per-question values stay paired. Calls
    with the same n, `n_boot` and `seed` draw the same resamples, so intervals of different
    signals on the same questions are paired too. Resamples where the metric is NaN (for
    ROC-AUC/PRR: only one class drawn) are dropped and counted in ``n_dropped``; the interval is
    the (α/2, 1 − α/2) percentiles (linear interpolation) of the rest.

    `roc_auc`, `aurc`, `prr` and `ece` (or a ``functools.partial`` of them with keyword
    arguments) are evaluated for all resamples at once (7–16 ms for 1000 resamples of 300
    questions); any other callable is called once per resample.

    Args:
      metric_fn: f(*arrays) -> float.
      *arrays: arrays with the same length n along axis 0.
      n_boot: number of resamples.
      alpha: 1 − confidence level of the interval.
      seed: seed of the resampling.

    Returns:
      `BootstrapCI` ``(point, lo, hi)`` with ``.n_boot``, ``.n_dropped``: point = metric on the
      full data; lo = hi = NaN when every resample is NaN.
    """
    if not arrays:
        raise ValueError("bootstrap needs at least one array to resample.")
    arrs = tuple(np.asarray(a) for a in arrays)
    if any(a.ndim == 0 for a in arrs):
        raise ValueError("bootstrap resamples rows along axis 0; got a scalar array.")
    n = _same_length(**{f"arrays[{i}]": a for i, a in enumerate(arrs)})
    if n == 0:
        raise ValueError("bootstrap got empty arrays.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"`n_boot` must be a positive integer; got {n_boot!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`alpha` must be in (0, 1); got {alpha!r}.")

    point = float(metric_fn(*arrs))  # validates the data (NaN, lengths) before any resampling
    kernel = _fast_kernel(metric_fn, arrs)
    rng = np.random.default_rng(seed)
    values = []
    for idx in _resamples(rng, n, int(n_boot)):
        if kernel is not None:
            values.append(kernel(_multiplicities(idx, n)))
        else:
            values.append(np.array([float(metric_fn(*(a[i] for a in arrs))) for i in idx]))
    vals = np.concatenate(values)
    valid = vals[~np.isnan(vals)]
    n_dropped = int(vals.size - valid.size)
    if valid.size == 0:
        lo = hi = float("nan")
    else:
        lo, hi = (float(v) for v in np.percentile(valid, [50.0 * alpha, 100.0 - 50.0 * alpha]))
    return BootstrapCI(point, lo, hi, n_boot=int(n_boot), n_dropped=n_dropped)


# ----------------------------------------------------------------------------- reports


def error_detection_report(
    signals: Mapping[str, np.ndarray],
    correct,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict]:
    """Error-detection table, one entry per uncertainty signal (Chapter 3's ``metrics.json``).

    Every signal must be an **uncertainty** (higher = less confident): entropy as is, but a
    confidence such as the max letter probability p must be passed as ``-p`` or ``1 - p`` (the
    metrics are rank-based, so both give the same numbers). The positive class of ROC-AUC is an
    error. Intervals use the same resamples for every signal (same `seed`), so they are paired.

    Args:
      signals: name -> uncertainty, each shape (n,); NaN raises, naming the signal.
      correct: shape (n,), bool or 0/1, True = right answer.
      n_boot, seed, alpha: as in `bootstrap` (default 95% intervals).

    Returns:
      ``{name: {...}}`` with keys ``n``, ``n_errors``, ``accuracy``, ``roc_auc`` and
      ``roc_auc_ci`` ([lo, hi]), ``prr`` and ``prr_ci`` (LM-Polygraph's ``prr_normalized``),
      ``prr_50`` (max_rejection 0.5: ``prr_0.5_normalized``), ``aurc`` (LM-Polygraph's ``rcc-auc``)
      and ``aurc_ci``, ``ci_level``, ``n_boot`` and ``n_boot_dropped`` (one-class resamples,
      NaN for ROC-AUC and PRR). Values are Python floats/ints and lists; undefined values (one
      class: ROC-AUC, PRR and their intervals) are NaN, which ``entropy_jax.stores.write_json``
      writes as null.
    """
    c = _binary("correct", correct)
    n = c.size
    n_errors = int(np.count_nonzero(~c))
    report: dict[str, dict] = {}
    for name, values in signals.items():
        try:
            u = _real("uncertainty", values)
            _same_length(uncertainty=u, correct=c)
        except ValueError as e:
            raise ValueError(f"signal {name!r}: {e}") from None
        auc = bootstrap(roc_auc, u, ~c, n_boot=n_boot, alpha=alpha, seed=seed)
        pr = bootstrap(prr, u, c, n_boot=n_boot, alpha=alpha, seed=seed)
        ar = bootstrap(aurc, u, c, n_boot=n_boot, alpha=alpha, seed=seed)
        report[name] = {
            "n": int(n),
            "n_errors": n_errors,
            "accuracy": float(1.0 - n_errors / n),
            "roc_auc": float(auc.point),
            "roc_auc_ci": [float(auc.lo), float(auc.hi)],
            "prr": float(pr.point),
            "prr_ci": [float(pr.lo), float(pr.hi)],
            "prr_50": float(prr(u, c, max_rejection=0.5)),
            "aurc": float(ar.point),
            "aurc_ci": [float(ar.lo), float(ar.hi)],
            "ci_level": 1.0 - alpha,
            "n_boot": int(n_boot),
            "n_boot_dropped": auc.n_dropped,
        }
    return report


def summary_by(groups, fn: Callable[..., object], *arrays) -> dict:
    """``{g: fn(*(a[groups == g] for a in arrays))}`` for every distinct value g of `groups`.

    For per-stratum metrics, e.g. ``summary_by(subject, roc_auc, entropy, ~correct)``. Keys are
    sorted Python scalars (JSON-friendly); `arrays` share the length of `groups` along axis 0.
    """
    g = _vector("groups", groups)
    arrs = tuple(np.asarray(a) for a in arrays)
    _same_length(groups=g, **{f"arrays[{i}]": a for i, a in enumerate(arrs)})
    out = {}
    for value in np.unique(g):
        mask = g == value
        out[value.item()] = fn(*(a[mask] for a in arrs))
    return out
