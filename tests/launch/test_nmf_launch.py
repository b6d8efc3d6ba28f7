"""Chapter 2 entry points end to end at tiny size: files, JSON schema, resume."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from entropy_jax import _validate as check
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


# ---------------------------------------------------------------------------------------------
# Flags and data are checked before any work: a ConfigError naming the flag, and no output directory.


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"loss": "l1"}, r"--loss: must be one of kl, frobenius \(got 'l1'\)"),
        ({"noise": 1.5}, r"--noise: must be a number in \[0, 1\] \(got 1.5\)"),
        ({"noise": -0.1}, "--noise: must be a number in"),
        ({"tau": 2.0}, "--tau: must be a number in"),
        ({"ranks": "5:2"}, r"--ranks: .*hi = 2 < lo = 5 \(got '5:2'\)"),
        ({"ranks": "abc"}, r"--ranks: .*'abc' is not an integer \(got 'abc'\)"),
        ({"ranks": "0:3"}, r"--ranks: .*rank 0 < 1 \(got '0:3'\)"),
        ({"ranks": "2:100", "data": "bars"}, r"--ranks: rank 100 exceeds min\(pixels, images\) = 64 of bars"),
        ({"seeds": 1}, r"--seeds: must be an integer >= 2 \(got 1\)"),
        ({"n_iter": 0}, r"--n-iter: must be an integer >= 1 \(got 0\)"),
        ({"size": (0, 50)}, r"--size: must be an integer >= 1 \(got 0\)"),
        ({"data": "imagenet"}, r"--data: must be one of lfw, digits, bars, swimmer or folder:PATH"),
        ({"data": "folder:/no/such/folder"}, "--data: folder:PATH needs an existing folder"),
    ],
)
def test_nmf_rank_flags_are_checked_before_any_work(tmp_path, kw, message):
    out = tmp_path / "run"
    with pytest.raises(check.ConfigError, match=message):
        nmf_rank.main(nmf_rank.Config(out=out, progress=False, **{"ranks": "2:3", **kw}))
    assert not out.exists()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"noise": 1.5}, r"--noise: must be a number in \[0, 1\] \(got 1.5\)"),
        ({"loss": "l1"}, "--loss: must be one of kl, frobenius"),
        ({"rank": 0}, r"--rank: must be an integer >= 1 \(got 0\)"),
        ({"rank": 150, "data": "swimmer"}, r"--rank: exceeds min\(pixels, images in a half\) = 128 of swimmer"),
        ({"rank": 300, "data": "bars"}, r"--rank: rank 300 exceeds min\(pixels, images\) = 64"),
        ({"seeds": 0}, "--seeds: must be an integer >= 1"),
        ({"n_iter": -1}, "--n-iter"),
    ],
)
def test_nmf_stability_flags_are_checked_before_any_work(tmp_path, kw, message):
    out = tmp_path / "run"
    with pytest.raises(check.ConfigError, match=message):
        nmf_stability.main(nmf_stability.Config(out=out, **kw))
    assert not out.exists()


def test_unreadable_folder_images_are_named_before_any_work(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "a.jpg").write_text("not a JPEG")
    out = tmp_path / "run"
    with pytest.raises(check.ConfigError, match=re.escape(f"--data: {folder / 'a.jpg'}: cannot read it as an image")):
        nmf_rank.main(nmf_rank.Config(data=f"folder:{folder}", ranks="2:3", out=out, progress=False))
    assert not out.exists()


@pytest.mark.entry
def test_cli_reports_a_bad_flag_without_a_traceback(repo_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.nmf_rank", "--noise", "1.5", "--out", str(tmp_path / "run")],
        cwd=repo_root, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: --noise: must be a number in [0, 1] (got 1.5)"
    assert not (tmp_path / "run").exists()
