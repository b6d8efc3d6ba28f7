"""Chapter 1 entry points end to end at tiny size: files, JSON schema, resume, report."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from entropy_jax import _validate as check
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
def test_reproduce_writes_the_report(tmp_path):
    # `make demo`'s machinery (`reproduce.main`) on its first three sections at the smoke sizes, the LLM core on
    # the embedded SmolLM2 (the quick sizes are `make demo` itself; CI's demo smoke runs every section again in
    # a venv without test extras); Chapters 3, 4 and 5 from tiny models in tests/launch/test_mcqa_launch.py,
    # test_finetune_launch.py and test_thinker_answerer_launch.py.
    sections = ("Chapter 1", "Chapter 2", "LLM core")
    path = reproduce.main(reproduce.Config(smoke=True, out=tmp_path, progress=False, sections=sections))
    text = path.read_text()
    assert "## Chapter 1" in text and "| M |" in text and "acceptance: 0.015" in text
    # Every figure the report links exists next to it.
    figures = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(figures) >= 10
    for fig in figures:
        assert (tmp_path / fig).stat().st_size > 0, fig
    assert "## LLM core" in text and "| # | token | entropy (nats) | log p |" in text
    assert "Paris" in text  # the embedded SmolLM2 answers the demo question
    assert "## Chapter 3" not in text and "## Chapter 4" not in text and "## Chapter 5" not in text
    with pytest.raises(ValueError, match="unknown sections"):
        reproduce.main(reproduce.Config(out=tmp_path, sections=("Chapter 9",)))


# ---------------------------------------------------------------------------------------------
# Flags are checked before any work: a ConfigError naming the flag, and no output directory.


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"ms": ()}, "--ms: needs at least one value"),
        ({"ms": (3, 0)}, r"--ms: must be an integer >= 1 \(got 0\)"),
        ({"ms": (3, 3)}, "--ms: lists 3 twice"),
        ({"priors": 0}, r"--priors: must be an integer >= 1 \(got 0\)"),
        ({"samples": -5}, r"--samples: must be an integer >= 1 \(got -5\)"),
        ({"seed": -1}, "--seed: must be an integer in"),
        ({"n": 1}, "--n: must be an integer >= 2"),
        ({"alpha0": 0.0}, r"--alpha0: must be a number > 0 \(got 0.0\)"),
        ({"eps": float("nan")}, "--eps: must be a finite number"),
    ],
)
def test_table1_flags_are_checked_before_any_work(tmp_path, kw, message):
    out = tmp_path / "run"
    with pytest.raises(check.ConfigError, match=message):
        maxent_table1.main(maxent_table1.Config(out=out, progress=False, **kw))
    assert not out.exists()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"regime": "everything"}, "--regime: must be one of all, near_uniform, encodings, moments"),
        ({"alphas": (0.5, -1.0)}, r"--alphas: must be a number > 0 \(got -1.0\)"),
        ({"alphas": ()}, "--alphas: needs at least one value"),
        ({"encodings": ("linear", "sideways")}, "--encodings: must be one of linear, log, cubic, exp, permuted"),
        ({"ms": ()}, "--ms: needs at least one value"),
        ({"priors": 0}, "--priors"),
    ],
)
def test_regimes_flags_are_checked_before_any_work(tmp_path, kw, message):
    out = tmp_path / "run"
    with pytest.raises(check.ConfigError, match=message):
        maxent_regimes.main(maxent_regimes.Config(out=out, progress=False, **kw))
    assert not out.exists()


def test_out_must_be_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(check.ConfigError, match="--out: .*exists and is not a directory"):
        maxent_table1.main(maxent_table1.Config(out=tmp_path / "file" / "run", progress=False))


def test_damaged_files_in_out_are_named(tmp_path):
    partial = tmp_path / "table1.partial.json"
    partial.write_text('{"settings": {"priors": 1')
    with pytest.raises(check.ConfigError, match=re.escape(f"--resume: {partial}, line 1: invalid JSON")):
        maxent_table1.main(maxent_table1.Config(out=tmp_path, progress=False))
    (tmp_path / "regimes.json").write_bytes(b'{"near_uniform": "\xff"}')
    with pytest.raises(check.ConfigError, match=re.escape(f"--out: {tmp_path / 'regimes.json'}, line 1: not UTF-8")):
        maxent_regimes.main(maxent_regimes.Config(out=tmp_path, progress=False))


@pytest.mark.entry
def test_cli_reports_a_bad_flag_without_a_traceback(repo_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.maxent_table1", "--ms", "--out", str(tmp_path / "run")],
        cwd=repo_root, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: --ms: needs at least one value (a list of integers) (got [])"
    assert not (tmp_path / "run").exists()
