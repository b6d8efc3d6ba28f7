"""A non-editable install works: what the library reads at run time travels inside the package.

The notebooks install the package as a user of the library would (`pip install git+URL`); such an install
has no checkout beside it. So: `pip install --no-deps --target DIR .`, then, from a directory outside the
checkout with DIR first on the path, the demo set loads and every notebook's first code cells (install
guard and imports) run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory, repo_root):
    target = tmp_path_factory.mktemp("site")
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(repo_root)], check=False, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return target


def _run(code: str, target, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(target), JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_installed_package_has_no_checkout_paths(installed):
    assert (installed / "entropy_jax" / "data" / "mcqa_demo.jsonl").is_file()
    assert not (installed / "launch").exists(), "a top-level `launch` package would shadow users' own"


def test_demo_set_loads_from_a_wheel_install(installed, tmp_path, repo_root):
    res = _run("import entropy_jax, pathlib\n"
               "from entropy_jax.data import mcqa\n"
               f"assert pathlib.Path(entropy_jax.__file__).is_relative_to({str(installed)!r}), entropy_jax.__file__\n"
               "qs = mcqa.load('demo')\n"
               "print(len(qs), qs[0].id, sorted({q.stratum for q in qs}))", installed, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["480", "know-0001", "['knowledge',", "'reasoning']"]


@pytest.mark.parametrize("name", ["01_maxent_validity", "02_nmf_common_cause", "03_llm_uncertainty",
                                  "04_complexity_aware_finetuning", "05_thinker_answerer"])
def test_notebook_first_cells_run_from_a_wheel_install(installed, tmp_path, repo_root, name):
    nb = json.loads((repo_root / "colab" / f"{name}.ipynb").read_text())
    code_cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"][:2]
    # IPython magics (`%matplotlib inline`) are not Python; the rest of each cell runs as written
    source = "\n".join(line for cell in code_cells for line in cell.splitlines() if not line.lstrip().startswith("%"))
    res = _run(source + "\nimport entropy_jax, pathlib\n"
               f"assert pathlib.Path(entropy_jax.__file__).is_relative_to({str(installed)!r})\nprint('OK')",
               installed, tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert res.stdout.strip().endswith("OK")
