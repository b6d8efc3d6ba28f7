"""Chapter 1 results as Markdown: Table 1 (with the difference to the published table) and the regimes around
it. The launchers, the notebook and the report print these."""

from __future__ import annotations

from entropy_jax.estimators import study

__all__ = ["regimes_markdown", "table1_markdown"]


def _fmt(v, se=None, digits=3):
    if v is None:
        return "—"
    s = f"{v:.{digits}f}"
    return s if se is None else f"{s} ± {se:.{digits}f}"


def table1_markdown(table: dict, *, published: dict | None = study.PUBLISHED_TABLE1) -> str:
    """Table 1 as Markdown: our values ± s.e., then the difference to the published values."""
    s = table["settings"]
    lines = [
        f"n = {s['n']}, z_k = k, prior ½Dir(a) + ½Dir(reversed a), a_k = {s['alpha0']} + {s['eps']}(k−1); "
        f"{s['n_priors']} prior draws × {s['n_samples']} samples per M, seed {s['seed']}.",
        "",
        f"Uniform baseline ⟨K[q, 1/n]⟩: {table['baseline']:.4f} ± {table['baseline_se']:.4f} "
        f"(Monte Carlo), {table['baseline_exact']:.4f} (closed form).",
        "",
        "| M | Bayes (mixture) | Bayes (single) | ML b_opt | b_opt | ML b=1 | MaxEnt | shrunk MaxEnt | ξ_opt | MaxEnt excluded |",
        "|---:|---|---|---|---:|---|---|---|---:|---:|",
    ]
    for r in table["rows"]:
        lines.append(
            f"| {r['M']} | {_fmt(r['bayes_mixture'], r['bayes_mixture_se'])} "
            f"| {_fmt(r['bayes_single'], r['bayes_single_se'])} | {_fmt(r['ml_bopt'], r['ml_bopt_se'])} "
            f"| {_fmt(r['b_opt'], digits=2)} | {_fmt(r['ml_b1'], r['ml_b1_se'])} "
            f"| {_fmt(r['maxent1'], r['maxent1_se'])} | {_fmt(r['maxent1_shrunk'], r['maxent1_shrunk_se'])} "
            f"| {_fmt(r['xi_opt'], digits=2)} | {r['maxent_excluded']} |"
        )
    if published is not None:
        cols = published["columns"]
        lines += [
            "",
            "Difference to the published Table 1 (ours − paper):",
            "",
            "| M | " + " | ".join(cols) + " |",
            "|---:|" + "---:|" * len(cols),
        ]
        for r in table["rows"]:
            pub = published["rows"].get(r["M"])
            if pub is None:
                continue
            cells = [
                "—" if p is None or r.get(c) is None else f"{r[c] - p:+.3f}" for c, p in zip(cols, pub)
            ]
            lines.append(f"| {r['M']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Entries are Monte-Carlo means ± one standard error (from the per-prior averages). "
        "MaxEnt excludes degenerate samples (all counts on z_1 or on z_n, where β = ±∞ and the "
        "KL is infinite); the last column counts them. MaxEnt is not reported at M = 1, as in the paper.",
    ]
    return "\n".join(lines) + "\n"


def _points_by_m(r: dict, **labels) -> list[dict]:
    """The regime's points with these labels, one per M in r["ms"] order."""
    return [next(p for p in r["points"] if p["M"] == m and all(p[k] == v for k, v in labels.items()))
            for m in r["ms"]]


def _m_table(first_cols: tuple[str, ...], ms, rows) -> list[str]:
    """A Markdown table with one column per M; rows are (labels, cells)."""
    head = "| " + " | ".join(first_cols) + " | " + " | ".join(f"M = {m}" for m in ms) + " |"
    rule = "|" + "---|" * len(first_cols) + "---:|" * len(ms)
    return [head, rule] + ["| " + " | ".join(labels) + " | " + " | ".join(cells) + " |" for labels, cells in rows]


def _cell(value, fmt: str = ".3f") -> str:
    return "—" if value is None else format(value, fmt)


def _summary_near_uniform(r: dict) -> list[str]:
    rows = [((f"{a:g}",), [_cell(None if p["maxent1"] is None else p["maxent1"] / p["baseline"], ".2f")
                           for p in _points_by_m(r, alpha=a)])
            for a in r["alphas"]]
    return ["First-moment MaxEnt risk / uniform-baseline risk (above 1: worse than ignoring the data):", ""] + \
        _m_table(("α",), r["ms"], rows)


def _summary_encodings(r: dict) -> list[str]:
    rows = [((f"MaxEnt, z = {enc}",), [_cell(p["maxent1"]) for p in _points_by_m(r, encoding=enc)])
            for enc in r["encodings"]]
    first = _points_by_m(r, encoding=r["encodings"][0])  # Bayes and ML do not depend on z
    rows += [(("ML, b_opt (any z)",), [_cell(p["ml_bopt"]) for p in first]),
             (("Bayes (any z)",), [_cell(p["bayes_mixture"]) for p in first])]
    return [f"Bayes risk (nats) under the Table 1 prior; uniform baseline {r['baseline_exact']:.3f}:", ""] + \
        _m_table(("encoding",), r["ms"], rows)


def _summary_moments(r: dict) -> list[str]:
    rows = []
    for name in r["priors"]:
        pts = _points_by_m(r, prior=name)
        for key, label in (("maxent1", "MaxEnt, 1st moment"), ("maxent2", "MaxEnt, 1st + 2nd"),
                           ("baseline", "uniform baseline")):
            rows.append(((name, label), [_cell(p.get(key)) for p in pts]))
    return ["Bayes risk (nats), first- vs second-moment MaxEnt:", ""] + \
        _m_table(("prior", "estimator"), r["ms"], rows)


def regimes_markdown(results: dict) -> str:
    """The regimes (`study.near_uniform_regime`, `encoding_regime`, `second_moment_regime` results by name) as
    Markdown tables, one column per M."""
    parts = []
    for name, fn in (("near_uniform", _summary_near_uniform), ("encodings", _summary_encodings),
                     ("moments", _summary_moments)):
        if name in results:
            parts += fn(results[name]) + [""]
    return "\n".join(parts)
