"""Chapter 2 results as Markdown: the rank scan and the stability study. The launchers, the notebook and the
report print these."""

from __future__ import annotations

__all__ = ["rank_scan_markdown", "stability_markdown"]


def rank_scan_markdown(result: dict) -> str:
    """A rank scan (`study.rank_scan`, with the data's "data", "shape" and "n_images" added) as Markdown: the
    effective rank and one row of criteria per rank."""
    s = result["settings"]
    rc = result["effective_rank"]
    lines = [
        f"Data `{result['data']}` ({result['shape'][0]}×{result['shape'][1]} pixels, {result['n_images']} images), "
        f"{s['seeds']} seeds × {s['n_iter']} {s['loss']} iterations per rank, noise ξ = {s['noise']:g}.",
        "",
        f"Effective rank R_c(τ = {s['tau']:g}): {rc['weighted']} (p(π, i)-weighted violations), "
        f"{rc['unweighted']} (unweighted).",
        "",
        "| R | violations (weighted) | explained variance | cophenetic | dispersion | seed distance | S_i ≤ Ŝ_i | H(π|b) | Hoyer |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["per_rank"]:
        lines.append(
            f"| {r['rank']} | {r['v_weighted']['mean']:.4f} | {r['explained_variance']['mean']:.3f} "
            f"| {r['cophenetic']:.3f} | {r['dispersion']:.3f} | {r['stability']['mean']:.3f} "
            f"| {100 * r['smoothing']['mean']:.0f}% | {r['basis_entropy']['mean']:.2f} | {r['hoyer']['mean']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def stability_markdown(result: dict) -> str:
    """A stability study (`study.stability_study`) as Markdown: matched distances, the noise curve, smoothing."""
    h = result["halves"]["matched_distance"]
    c = result["noise_curve"]
    sm = result["smoothing"]
    curve = ", ".join(f"ξ = {x:g}: {m:.3f}" for x, m in zip(c["levels"], c["mean"]))
    return (
        f"Rank {result['rank']}: clean half ({result['halves']['sizes'][0]} images) vs half with noise "
        f"ξ = {result['noise']:g} ({result['halves']['sizes'][1]} images), another seed. Matched cosine "
        f"distance: mean {h['mean']:.3f}, median {h['median']:.3f}, max {h['max']:.3f}.\n\n"
        f"Clean vs noisy fits of all images (mean over {result['settings']['seeds']} seeds): {curve}.\n\n"
        f"Entropy: {100 * sm['fraction_S_le_S_hat']:.0f}% of images have S_i ≤ Ŝ_i "
        f"(mean S = {sm['mean_S']:.3f}, mean Ŝ = {sm['mean_S_hat']:.3f} nats).\n"
    )
