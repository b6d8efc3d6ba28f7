"""Executes the Colab notebooks end to end at tiny size, so that they cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
COLAB = ROOT / "colab"


def _execute(name: str, out: Path, monkeypatch) -> nbformat.NotebookNode:
    # The kernel subprocess inherits the test process's environment.
    monkeypatch.setenv("ENTROPY_JAX_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("ENTROPY_JAX_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(COLAB / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(COLAB)}}
    )
    client.execute()
    return nb


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.entry
@pytest.mark.slow
def test_maxent_validity_notebook(tmp_path, monkeypatch):
    nb = _execute("01_maxent_validity.ipynb", tmp_path, monkeypatch)
    outputs = _outputs(nb)

    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5, f"only {len(images)} figures displayed"
    markdowns = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| M |" in m for m in markdowns), "Table 1 was not displayed"

    table = json.loads((tmp_path / "table1.json").read_text())
    rows = table["rows"]
    assert len(rows) == 4
    assert {r["M"] for r in rows} == {35, 7, 3, 1}
    for r in rows:
        assert (r["maxent1"] is None) == (r["M"] == 1), r

    regimes = json.loads((tmp_path / "regimes.json").read_text())
    assert set(regimes) == {"near_uniform", "encodings", "moments"}
    for result in regimes.values():
        assert result["points"]


@pytest.mark.entry
@pytest.mark.slow
def test_nmf_common_cause_notebook(tmp_path, monkeypatch):
    nb = _execute("02_nmf_common_cause.ipynb", tmp_path, monkeypatch)
    outputs = _outputs(nb)

    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6, f"only {len(images)} figures displayed"
    markdowns = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| R |" in m for m in markdowns), "the rank-scan table was not displayed"

    scan = json.loads((tmp_path / "rank_scan.json").read_text())
    assert scan["ranks"] == [2, 4, 6]
    assert "effective_rank" in scan
    assert (tmp_path / "stability.json").exists()
    assert (tmp_path / "stability_arrays.npz").exists()


@pytest.mark.entry
@pytest.mark.slow
def test_llm_uncertainty_notebook(tmp_path, monkeypatch):
    nb = _execute("03_llm_uncertainty.ipynb", tmp_path, monkeypatch)
    outputs = _outputs(nb)

    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"only {len(images)} figures displayed"  # top-10 tokens + the launcher's three PNGs
    markdowns = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| knowledge |" in m and "| reasoning |" in m for m in markdowns), "the metrics table was not displayed"

    run = tmp_path / "mcqa"
    rows = [json.loads(line) for line in (run / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 16
    assert {r["stratum"] for r in rows} == {"knowledge", "reasoning"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 16 and metrics["n_scored"] == 16
    assert set(metrics["by_stratum"]) == {"knowledge", "reasoning"}
    assert metrics["entropy_settings"]["vocabulary"].startswith("full")
    for fig in ("entropy_hist.png", "reliability.png", "risk_coverage.png"):
        assert (run / fig).stat().st_size > 0


@pytest.mark.entry
@pytest.mark.slow
def test_complexity_aware_finetuning_notebook(tmp_path, monkeypatch):
    nb = _execute("04_complexity_aware_finetuning.ipynb", tmp_path, monkeypatch)
    outputs = _outputs(nb)

    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, f"only {len(images)} figures displayed"  # entropy histogram, mask, loss, frontier
    markdowns = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| gated |" in m and "| sft |" in m for m in markdowns), "the policy table was not displayed"

    for name in ("sft", "gated"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["status"] == "finished" and len(summary["history"]) == 1
        assert summary["n_train"] == 8 and summary["n_eval"] == 8
    assert (tmp_path / "gated" / "final" / "config.json").exists()
    front = json.loads((tmp_path / "frontier.json").read_text())
    assert {r["policy"] for r in front["runs"]} == {"sft", "gated"}


@pytest.mark.entry
@pytest.mark.slow
def test_thinker_answerer_notebook(tmp_path, monkeypatch):
    nb = _execute("05_thinker_answerer.ipynb", tmp_path, monkeypatch)
    outputs = _outputs(nb)

    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"only {len(images)} figures displayed"  # token entropy, matrix, entropy scatter
    markdowns = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| thinker ↓ / answerer → |" in m and "| shuffled |" in m for m in markdowns), "no matrix table"

    matrix = json.loads((tmp_path / "matrix" / "matrix.json").read_text())
    assert matrix["thinkers"] == ["none", "gold", "shuffled", "tiny-random"] and matrix["answerers"] == ["tiny-random"]
    assert all(n == [8] for n in matrix["n"])
    from entropy_jax.thinking.matrix import trace_path

    traces = trace_path(tmp_path / "matrix", "tiny-random").read_text().splitlines()
    assert len(traces) == 8 and all(0 < json.loads(t)["n_tokens"] <= 16 for t in traces)
