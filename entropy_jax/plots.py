"""Matplotlib figures shared by launch/ scripts, notebooks and the report.

Every function takes the JSON-ready results the studies return, draws on a new figure, saves it
when `path` is given (PNG, 150 dpi) and returns the figure (callers that only save should close
it). matplotlib is imported lazily, so importing the library does not pull it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "basis_pairs",
    "encoding_regime",
    "entropy_scatter",
    "near_uniform_regime",
    "nmf_rank_curves",
    "noise_curve",
    "pyplot",
    "risk_vs_m",
    "second_moment_regime",
    "xi_curves",
]

_STYLE = {
    "bayes_mixture": ("Bayes (true mixture prior)", "C0", "o"),
    "bayes_single": ("Bayes (collapsed single Dirichlet)", "C1", "s"),
    "ml_bopt": ("ML, b = b_opt", "C2", "^"),
    "ml_b1": ("ML, b = 1", "C3", "v"),
    "maxent1": ("MaxEnt (1st moment)", "C4", "D"),
    "maxent1_shrunk": ("shrunk MaxEnt, ξ = ξ_opt", "C5", "P"),
    "maxent2": ("MaxEnt (1st + 2nd moments)", "C6", "X"),
}


def pyplot():
    """matplotlib.pyplot, imported on first use."""
    # Headless machines fall back to Agg by themselves; notebooks keep their inline backend.
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def _m_axis(ax, ms):
    """Log-scaled sample-length axis labelled at the M values themselves."""
    ax.set_xscale("log")
    ax.set_xticks(list(ms))
    ax.set_xticklabels([str(int(m)) for m in ms])
    ax.minorticks_off()
    ax.set_xlabel("sample length M")


def risk_vs_m(
    table: Mapping,
    *,
    published: Mapping | None = None,
    path: str | Path | None = None,
):
    """Bayes risk (nats) of every estimator against the sample length M, with ±1 s.e. bars.

    Args:
      table: the dict returned by `entropy_jax.estimators.study.table1`.
      published: `PUBLISHED_TABLE1` to overlay the paper's values as hollow markers.
      path: where to save the PNG.
    """
    plt = pyplot()
    rows = sorted(table["rows"], key=lambda r: r["M"])
    ms = np.array([r["M"] for r in rows])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for key, (label, color, marker) in _STYLE.items():
        vals = [r.get(key) for r in rows]
        if all(v is None for v in vals):
            continue
        y = np.array([np.nan if v is None else v for v in vals], float)
        se = np.array([np.nan if r.get(key + "_se") is None else r[key + "_se"] for r in rows])
        ax.errorbar(ms, y, yerr=se, color=color, marker=marker, ms=5, lw=1.5, capsize=2, label=label)
        if published is not None and key in published["columns"]:
            j = published["columns"].index(key)
            pm = [m for m in ms if published["rows"].get(int(m), [None] * 7)[j] is not None]
            pv = [published["rows"][int(m)][j] for m in pm]
            ax.plot(pm, pv, ls="none", marker=marker, mfc="none", mec=color, ms=9, mew=1.2)
    ax.axhline(table["baseline_exact"], color="k", ls="--", lw=1, label="uniform baseline ⟨K[q, 1/n]⟩")
    _m_axis(ax, ms)
    ax.set_ylabel("Bayes risk ⟨K[q, q̂]⟩ (nats)")
    s = table.get("settings", {})
    title = f"Table 1 prior, n = {s.get('n', '?')}, {s.get('n_priors', '?')} priors × {s.get('n_samples', '?')} samples"
    if published is not None:
        title += "\n(hollow markers: published values)"
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def xi_curves(curves: Sequence[Mapping], *, path: str | Path | None = None):
    """Shrunk-MaxEnt risk against ξ for several M (curves: dicts with M, xi, risk, xi_opt)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for c in curves:
        (line,) = ax.plot(c["xi"], c["risk"], lw=1.5, label=f"M = {c['M']}")
        if c.get("xi_opt") is not None:
            ax.axvline(c["xi_opt"], color=line.get_color(), lw=0.8, ls=":")
    if curves and curves[0].get("baseline") is not None:
        ax.axhline(curves[0]["baseline"], color="k", ls="--", lw=1, label="uniform baseline")
    ax.set_xlabel("shrinkage ξ (ξ = 0: uniform, ξ = 1: MaxEnt)")
    ax.set_ylabel("Bayes risk (nats)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def near_uniform_regime(result: Mapping, *, path: str | Path | None = None):
    """Risk relative to the uniform baseline against the symmetric-Dirichlet α, per M.

    Values above 1 mean the estimator is worse than ignoring the data.
    """
    plt = pyplot()
    ms = result["ms"]
    fig, axes = plt.subplots(1, len(ms), figsize=(3.2 * len(ms), 3.6), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], ms):
        pts = [p for p in result["points"] if p["M"] == m]
        alphas = np.array([p["alpha"] for p in pts])
        for key in ("maxent1", "maxent1_shrunk", "ml_bopt", "bayes_mixture"):
            label, color, marker = _STYLE[key]
            ratio = np.array([np.nan if p[key] is None else p[key] / p["baseline"] for p in pts])
            ax.plot(alphas, ratio, color=color, marker=marker, ms=4, lw=1.3, label=label)
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_title(f"M = {m}", fontsize=10)
        ax.set_xlabel("Dirichlet α (large: near-uniform q)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("⟨K⟩ / ⟨K[q, 1/n]⟩")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"Symmetric Dirichlet priors, n = {result['n']}: above 1 = worse than uniform", fontsize=10)
    return _save(fig, path)


def encoding_regime(result: Mapping, *, path: str | Path | None = None):
    """Bayes risk per encoding of the outcomes (same prior and samples), for each M."""
    plt = pyplot()
    encs = result["encodings"]
    ms = result["ms"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.8 / (len(encs) + 2)
    x = np.arange(len(ms))
    # Bayes and ML do not use z: one bar each, from the first encoding's rows.
    first = {p["M"]: p for p in result["points"] if p["encoding"] == encs[0]}
    ax.bar(x - width * (len(encs) + 1) / 2, [first[m]["bayes_mixture"] for m in ms], width,
           color=_STYLE["bayes_mixture"][1], label="Bayes (true prior), any z")
    ax.bar(x - width * (len(encs) - 1) / 2, [first[m]["ml_bopt"] for m in ms], width,
           color=_STYLE["ml_bopt"][1], label="ML b_opt, any z")
    for i, enc in enumerate(encs):
        pts = {p["M"]: p for p in result["points"] if p["encoding"] == enc}
        vals = [np.nan if pts[m]["maxent1"] is None else pts[m]["maxent1"] for m in ms]
        ax.bar(x + width * (i + 1 - (len(encs) - 1) / 2), vals, width, label=f"MaxEnt, z = {enc}",
               color=f"C{4 + i}", alpha=0.85)
    ax.axhline(result["baseline_exact"], color="k", ls="--", lw=1, label="uniform baseline")
    ax.set_xticks(x)
    ax.set_xticklabels([f"M = {m}" for m in ms])
    ax.set_yscale("log")
    ax.set_ylabel("Bayes risk (nats)")
    ax.set_title("Representation dependence: first-moment MaxEnt under different encodings z", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def second_moment_regime(result: Mapping, *, path: str | Path | None = None):
    """First- vs first+second-moment MaxEnt against M, for each prior of the study."""
    plt = pyplot()
    names = result["priors"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = sorted((p for p in result["points"] if p["prior"] == name), key=lambda p: p["M"])
        ms = [p["M"] for p in pts]
        for key in ("maxent1", "maxent2", "ml_bopt", "bayes_mixture"):
            label, color, marker = _STYLE[key]
            vals = [np.nan if p[key] is None else p[key] for p in pts]
            ax.plot(ms, vals, color=color, marker=marker, ms=4, lw=1.3, label=label)
        ax.axhline(pts[0]["baseline"], color="k", ls="--", lw=1, label="uniform baseline")
        _m_axis(ax, ms)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Bayes risk (nats)")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------
# Chapter 2: NMF.


def nmf_rank_curves(scan: Mapping, *, title: str = "", path: str | Path | None = None):
    """The rank-selection criteria of `entropy_jax.nmf.study.rank_scan` on one figure.

    Panels: predictability violations v(R) (weighted and unweighted, ±1 sd over seeds, τ and
    R_c marked); explained variance; consensus cophenetic correlation and dispersion;
    seed-to-seed matched cosine distance; basis entropy and Hoyer sparseness.
    """
    plt = pyplot()
    rows = scan["per_rank"]
    r = np.array([row["rank"] for row in rows])

    def band(ax, key, label, color):
        m = np.array([row[key]["mean"] for row in rows])
        s = np.array([row[key]["sd"] for row in rows])
        ax.plot(r, m, color=color, marker="o", ms=3, lw=1.4, label=label)
        ax.fill_between(r, m - s, m + s, color=color, alpha=0.2, lw=0)

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.8))
    ax = axes[0, 0]
    band(ax, "v_weighted", "weighted by p(π, i)", "C0")
    band(ax, "v_unweighted", "unweighted", "C1")
    tau = scan["settings"]["tau"]
    ax.axhline(tau, color="k", ls="--", lw=1, label=f"τ = {tau:g}")
    for kind, color in (("weighted", "C0"), ("unweighted", "C1")):
        rc = scan["effective_rank"].get(kind)
        if rc is not None:
            ax.axvline(rc, color=color, ls=":", lw=1.2)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylim(bottom=0)
    ax.set_title("predictability violations v(R)", fontsize=10)
    ax.legend(fontsize=7)
    band(axes[0, 1], "explained_variance", "1 − ‖P − BW‖² / ‖P‖²", "C2")
    axes[0, 1].set_title("explained variance", fontsize=10)
    ax = axes[0, 2]
    ax.plot(r, [row["cophenetic"] for row in rows], "o-", ms=3, color="C3", label="cophenetic correlation")
    ax.plot(r, [row["dispersion"] for row in rows], "s-", ms=3, color="C4", label="dispersion")
    ax.set_title("consensus over seeds", fontsize=10)
    ax.legend(fontsize=7)
    band(axes[1, 0], "stability", "mean matched cosine distance", "C5")
    axes[1, 0].set_title("seed-to-seed instability (lower = stable)", fontsize=10)
    band(axes[1, 1], "basis_entropy", "mean H(π|b) (nats)", "C6")
    axes[1, 1].set_title("basis entropy", fontsize=10)
    band(axes[1, 2], "hoyer", "mean Hoyer sparseness of B", "C7")
    axes[1, 2].set_title("basis sparseness", fontsize=10)
    for ax in axes.ravel():
        ax.set_xlabel("rank R")
        ax.grid(alpha=0.3)
    s = scan["settings"]
    fig.suptitle(
        f"{title} rank scan: {s['seeds']} seeds × {s['n_iter']} {s['loss']} iterations, noise ξ = {s['noise']:g}",
        fontsize=11,
    )
    fig.tight_layout()
    return _save(fig, path)


def basis_pairs(
    basis_a: np.ndarray,
    basis_b: np.ndarray,
    distances: np.ndarray,
    shape: tuple[int, int],
    *,
    title: str = "",
    columns: int = 6,
    path: str | Path | None = None,
):
    """The Figure-1 analogue: matched basis-image pairs (left: run A, right: run B), sorted by
    cosine distance, `columns` pairs per row."""
    plt = pyplot()
    n = basis_a.shape[1]
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(1.3 * 2 * columns, 1.45 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(n):
        i, j = divmod(k, columns)
        for side, basis in enumerate((basis_a, basis_b)):
            ax = axes[i, 2 * j + side]
            ax.imshow(basis[:, k].reshape(shape), cmap="gray")
        axes[i, 2 * j].set_title(f"d = {distances[k]:.2f}", fontsize=7, loc="left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def entropy_scatter(S: np.ndarray, S_hat: np.ndarray, *, title: str = "", path: str | Path | None = None):
    """Per-image entropy of the data S_i against the reconstruction's Ŝ_i (nats)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(S, S_hat, s=10, alpha=0.7)
    lo, hi = float(min(S.min(), S_hat.min())), float(max(S.max(), S_hat.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="S_i = Ŝ_i")
    frac = float(np.mean(S <= S_hat))
    ax.set_xlabel("S_i = H(p(π|i)) (nats)")
    ax.set_ylabel("Ŝ_i = H(p̂(π|i)) (nats)")
    ax.set_title(f"{title}\n{100 * frac:.0f}% of images have S_i ≤ Ŝ_i (smoothing)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def noise_curve(curve: Mapping, *, title: str = "", path: str | Path | None = None):
    """Matched cosine distance between clean and noisy fits against the flip probability ξ."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    x, m, s = (np.asarray(curve[k]) for k in ("levels", "mean", "sd"))
    ax.errorbar(x, m, yerr=s, marker="o", capsize=3)
    ax.set_xlabel("pixel-flip probability ξ")
    ax.set_ylabel("mean matched cosine distance")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def token_entropy(token_strings: Sequence[str], entropy: Sequence[float], *, title: str = "",
                  path: str | Path | None = None):
    """Per-token full-vocabulary entropy (nats) of a generated completion, one bar per token."""
    plt = pyplot()
    n = len(entropy)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * n + 1.5), 3.2))
    ax.bar(np.arange(n), entropy, color="tab:blue")
    ax.set_xticks(np.arange(n))
    ax.set_xticklabels([repr(s)[1:-1] for s in token_strings], rotation=90, fontsize=7)
    ax.set_ylabel("entropy (nats)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def entropy_histograms(groups: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str = "",
                       path: str | Path | None = None):
    """Answer-step entropy of correct vs wrong answers, one panel per group: {name: (entropy, correct)}."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    all_h = np.concatenate([np.asarray(h, float) for h, _ in groups.values()])
    bins = np.linspace(0.0, float(all_h.max()) if all_h.size else 1.0, 25)
    for ax, (name, (h, ok)) in zip(axes[0], groups.items()):
        h, ok = np.asarray(h, float), np.asarray(ok, bool)
        ax.hist(h[ok], bins=bins, alpha=0.6, label=f"correct ({ok.sum()})", color="tab:green")
        ax.hist(h[~ok], bins=bins, alpha=0.6, label=f"wrong ({(~ok).sum()})", color="tab:red")
        ax.set_xlabel("entropy at the answer step (nats)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("questions")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def reliability_diagram(tables: Mapping[str, Mapping], *, title: str = "", path: str | Path | None = None):
    """Accuracy against mean confidence per bin; tables {name: {"mean_confidence", "accuracy", "count"}}."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for name, t in tables.items():
        conf, acc, n = (np.asarray(t[k], float) for k in ("mean_confidence", "accuracy", "count"))
        keep = n > 0
        ax.plot(conf[keep], acc[keep], marker="o", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (letter probability of the prediction)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def risk_coverage_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str = "",
                         path: str | Path | None = None):
    """Error rate among the kept most-certain questions against the fraction kept: {signal: (coverage, risk)}."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    for name, (coverage, risk) in curves.items():
        ax.plot(coverage, risk, label=name)
    ax.set_xlabel("coverage (fraction answered)")
    ax.set_ylabel("risk (error rate)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def frontier(curves: Mapping[str, Sequence[Mapping]], *, xlabel: str = "loss-bearing tokens", title: str = "",
             path: str | Path | None = None):
    """Accuracy against cumulative training tokens, one line per policy: {policy: [{"tokens", "accuracy",
    "epoch"}, ...]} (the Chapter 4 accuracy–token frontier; epoch numbers annotate the points)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for i, (name, pts) in enumerate(curves.items()):
        x = [p["tokens"] for p in pts]
        y = [p["accuracy"] for p in pts]
        ax.plot(x, y, marker="o", color=f"C{i}", label=name)
        for p in pts[1:]:
            ax.annotate(str(p["epoch"]), (p["tokens"], p["accuracy"]), textcoords="offset points", xytext=(3, 3),
                        fontsize=6, color=f"C{i}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_matrix(acc: np.ndarray, thinkers: Sequence[str], answerers: Sequence[str], *, title: str = "",
                    path: str | Path | None = None):
    """Heatmap of a thinker × answerer accuracy matrix [T, A] (rows thinkers), with the row means (per
    thinker) as an extra column and the column means (per answerer) as an extra row, each cell annotated."""
    plt = pyplot()
    acc = np.asarray(acc, float)
    t, a = acc.shape
    full = np.full((t + 1, a + 1), np.nan)
    full[:t, :a] = acc
    full[:t, a] = np.nanmean(acc, axis=1)
    full[t, :a] = np.nanmean(acc, axis=0)
    fig, ax = plt.subplots(figsize=(1.3 * (a + 1) + 2.4, 0.55 * (t + 1) + 1.6))
    im = ax.imshow(np.ma.masked_invalid(full), cmap="viridis", vmin=0.0, vmax=max(1e-9, np.nanmax(full)))
    for i in range(t + 1):
        for j in range(a + 1):
            if np.isfinite(full[i, j]):
                v = full[i, j]
                ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if v < 0.6 * np.nanmax(full) else "black",
                        fontweight="bold" if i == t or j == a else "normal")
    ax.axhline(t - 0.5, color="white", lw=2)
    ax.axvline(a - 0.5, color="white", lw=2)
    ax.set_xticks(range(a + 1), [*answerers, "row mean"], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(t + 1), [*thinkers, "column mean"], fontsize=8)
    ax.set_xlabel("answerer")
    ax.set_ylabel("thinker")
    ax.set_title(title or "accuracy (%)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="accuracy")
    return _save(fig, path)
