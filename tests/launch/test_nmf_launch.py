"""Chapter 2 entry points end to end at tiny size: files, JSON schema, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entropy_jax.stores import Partial
from launch import nmf_rank, nmf_stability


@pytest.mark.entry
def test_nmf_rank_main_writes_results_and_resumes(tmp_path, monkeypatch):
    cfg = nmf_rank.Config(data="swimmer", ranks="3:5", seeds=2, n_iter=20, out=tmp_path, progress=False)
    result = nmf_rank.main(cfg)
    saved = json.loads((tmp_path / "rank_scan.json").read_text())
    assert saved["ranks"] == [3, 4, 5] and saved["data"] == "swimmer" and saved["shape"] == [13, 13]
    row = saved["per_rank"][0]
    for key in ("v_weighted", "v_unweighted", "explained_variance", "stability", "smoothing", "loss"):
        assert {"mean", "sd", "min", "max"} <= set(row[key]), key
    assert 0.0 <= row["dispersion"] <= 1.0 and -1.0 <= row["cophenetic"] <= 1.0
    assert set(saved["effective_rank"]) == {"weighted", "unweighted"}
    assert (tmp_path / "rank_curves.png").stat().st_size > 0
    assert "| R |" in nmf_rank.markdown(result)
    assert not (tmp_path / "rank_scan.partial.json").exists()

    # Resume: ranks saved by an interrupted run are not fitted again.
    partial = Partial(tmp_path / "rank_scan.partial.json", nmf_rank.run_settings(cfg))
    for r in result["per_rank"]:
        partial.put(r["rank"], r)

    def boom(*args, **kwargs):
        raise AssertionError("a saved rank was fitted again")

    monkeypatch.setattr(nmf_rank.study, "_scan_one_rank", boom)
    again = nmf_rank.main(cfg)
    assert again["per_rank"] == json.loads(json.dumps(result["per_rank"]))


@pytest.mark.entry
def test_nmf_stability_main_writes_figure_one(tmp_path):
    cfg = nmf_stability.Config(data="bars", rank=4, noise=0.1, seeds=2, n_iter=20, out=tmp_path)
    result = nmf_stability.main(cfg)
    for name in ("stability.json", "stability_arrays.npz", "matched_pairs.png", "entropy_scatter.png",
                 "noise_curve.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    arrays = np.load(tmp_path / "stability_arrays.npz")
    assert arrays["basis_a"].shape == (64, 4) == arrays["basis_b"].shape
    assert list(arrays["distances"]) == sorted(arrays["distances"])
    assert "Matched cosine distance" in nmf_stability.markdown(result)
