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
    "encoding_regime",
    "near_uniform_regime",
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


def _plt():
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
    plt = _plt()
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
    plt = _plt()
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
    plt = _plt()
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
    plt = _plt()
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
    plt = _plt()
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
