"""The package's shape: launchers install as `entropy_jax.launch` (no top-level `launch`), console scripts exist,
and the layers import one way (nothing imports `launch`; `thinking` never imports `train`)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _python_files(*tops: str):
    for top in tops:
        yield from (ROOT / top).rglob("*.py")


def test_the_package_list_is_the_tree_and_launch_is_a_subpackage():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "entropy_jax").rglob("__init__.py")}
    assert listed == on_disk | {"entropy_jax.launch"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"entropy_jax.launch": "launch"}
    assert not any(p == "launch" or p.startswith("launch.") for p in listed)


def test_imports_point_one_way():
    outside = [p for p in _python_files("entropy_jax", "bench", "tests", "colab", "data")
               if any(m == "launch" or m.startswith("launch.") for m in _imports(p))
               and not p.is_relative_to(ROOT / "tests" / "launch")]
    assert outside == [], "only launch/ and the launchers' own tests (tests/launch/) may import launch"
    for p in (ROOT / "entropy_jax").rglob("*.py"):
        assert not any(m == "launch" or m.startswith("launch.") for m in _imports(p)), p
    for p in (ROOT / "entropy_jax" / "thinking").rglob("*.py"):
        assert not any(m.startswith("entropy_jax.train") for m in _imports(p)), p
    for nb in (ROOT / "colab").glob("*.ipynb"):  # notebooks call the library
        cells = ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        assert not any("from launch" in c or "import launch" in c for c in cells), nb
    for p in (ROOT / "launch").glob("*.py"):  # launchers reach each other relatively (also as entropy_jax.launch)
        assert not any(m == "launch" or m.startswith("launch.") for m in _imports(p)), p


@pytest.mark.slow
def test_an_install_has_no_top_level_launch(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(ROOT)], check=True, capture_output=True, timeout=600, cwd=tmp_path)
    assert not (target / "launch").exists()
    assert (target / "entropy_jax" / "launch" / "mcqa_entropy.py").exists()
    assert (target / "bin" / "entropy-jax-reproduce").exists()
    shown = subprocess.run([sys.executable, "-m", "entropy_jax.launch.frontier", "--help"], cwd=tmp_path,
                           env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0 and "--sweep" in shown.stdout, shown.stderr
