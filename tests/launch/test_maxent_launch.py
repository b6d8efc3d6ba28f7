"""Chapter 1 entry points end to end at tiny size: files, JSON schema, resume, report."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from entropy_jax.stores import Partial
from launch import maxent_regimes, maxent_table1, reproduce

ROW_KEYS = {"M", "bayes_mixture", "bayes_single", "ml_bopt", "b_opt", "ml_b1", "maxent1",
            "maxent1_shrunk", "xi_opt"}


@pytest.mark.entry
def test_table1_main_writes_schema_and_resumes(tmp_path, monkeypatch):
    cfg = maxent_table1.Config(priors=6, samples=5, seed=3, out=tmp_path, ms=(9, 4, 1), progress=False)
    table = maxent_table1.main(cfg)
    for name in ("table1.json", "table1.md", "risk_vs_M.png", "xi_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "table1.json").read_text())
    assert [r["M"] for r in saved["rows"]] == [9, 4, 1]
    for row in saved["rows"]:
        assert ROW_KEYS <= set(row)
        assert all(row[k + "_se"] is not None for k in ("bayes_mixture", "ml_bopt"))
        maxent = [row[k] for k in ("maxent1", "maxent1_shrunk", "xi_opt")]
        assert (all(v is None for v in maxent) if row["M"] == 1 else all(v is not None for v in maxent))
        assert row["maxent_excluded"] >= 0
    assert saved["baseline"] > 0 and saved["baseline_exact"] == pytest.approx(0.2116, abs=1e-4)
    assert not (tmp_path / "table1.partial.json").exists()  # removed when the run completes

    # Resume: rows saved by an interrupted run are reused, not recomputed.
    partial = Partial(tmp_path / "table1.partial.json", maxent_table1.run_settings(cfg))
    for row in table["rows"]:
        partial.put(row["M"], row)

    def boom(*args, **kwargs):
        raise AssertionError("a saved row was recomputed")

    monkeypatch.setattr(maxent_table1.study, "risk_profile", boom)
    again = maxent_table1.main(cfg)
    assert [r["maxent1"] for r in again["rows"]] == [r["maxent1"] for r in table["rows"]]


@pytest.mark.entry
def test_regimes_main_tiny(tmp_path):
    cfg = maxent_regimes.Config(priors=5, samples=4, out=tmp_path, ms=(3, 9), alphas=(0.5, 50.0),
                                encodings=("linear", "permuted"), progress=False)
    res = maxent_regimes.main(cfg)
    assert set(res) == {"near_uniform", "encodings", "moments"}
    assert len(res["near_uniform"]["points"]) == 4
    assert len(res["encodings"]["points"]) == 4
    assert all(p["maxent2"] is not None for p in res["moments"]["points"])
    for name in ("regimes.json", "near_uniform.png", "encodings.png", "second_moment.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    # Bayes and ML ignore the encoding: identical across encodings on the same draws.
    by = {(p["encoding"], p["M"]): p for p in res["encodings"]["points"]}
    for m in (3, 9):
        assert by[("linear", m)]["ml_bopt"] == by[("permuted", m)]["ml_bopt"]
        assert by[("linear", m)]["bayes_mixture"] == by[("permuted", m)]["bayes_mixture"]
    assert "MaxEnt, z = permuted" in maxent_regimes.markdown(res)


@pytest.mark.entry
def test_cli_rejects_bad_arguments(repo_root):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.maxent_table1", "--priors", "many"],
        cwd=repo_root, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "priors" in proc.stderr


@pytest.mark.entry
@pytest.mark.slow
def test_reproduce_quick_writes_the_report(tmp_path):
    # `make demo`'s machinery on its first sections; Chapter 3 at a smaller size (its quick size is
    # `make demo`'s), Chapters 4 and 5 from tiny models (tests/launch/test_finetune_launch.py and
    # test_thinker_answerer_launch.py)
    sections = ("Chapter 1", "Chapter 2", "LLM core")
    path = reproduce.main(reproduce.Config(quick=True, out=tmp_path, progress=False, sections=sections))
    text = path.read_text()
    assert "## Chapter 1" in text and "| M |" in text
    # Every figure the report links exists next to it.
    figures = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(figures) >= 5
    for fig in figures:
        assert (tmp_path / fig).stat().st_size > 0, fig
    assert "acceptance: 0.015" in text
    assert "## LLM core" in text and "| # | token | entropy (nats) | log p |" in text
    assert "Paris" in text  # the embedded SmolLM2 answers the demo question
    assert "## Chapter 3" not in text and "## Chapter 4" not in text
    ch3 = reproduce.chapter3(reproduce.Config(quick=True, out=tmp_path, progress=False),
                             sizes=dict(limit=32, judge_limit=8))
    assert ch3.startswith("## Chapter 3") and "| knowledge | 16 |" in ch3 and "Judge replies parsed" in ch3
    for fig in re.findall(r"\]\(([^)]+\.png)\)", ch3):
        assert (tmp_path / fig).stat().st_size > 0, fig
    with pytest.raises(ValueError, match="unknown sections"):
        reproduce.main(reproduce.Config(out=tmp_path, sections=("Chapter 9",)))
