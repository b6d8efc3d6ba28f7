"""torch is a test-only reference: the run-time paths must work where `import torch` fails.

The test venv has torch installed (the parity tests need it), which is exactly what hid a broken `make demo`
once: so the check runs in a subprocess whose meta-path finder hides torch (every `import torch…` raises
ModuleNotFoundError, and probes such as `importlib.util.find_spec` see no torch), whatever the machine has
installed. `.ci/run` additionally runs the demo smoke in a venv that never saw the test extras.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from entropy_jax import runtime
from tests.subprocess_snippets import SOURCE as HIDE_TORCH

pytestmark = pytest.mark.slow

SCRIPT = HIDE_TORCH + textwrap.dedent(r"""
    import importlib.machinery, sys

    try:
        import torch  # noqa: F401
        raise SystemExit("torch is still importable")
    except ModuleNotFoundError:
        pass

    import entropy_jax.llm as llm
    from entropy_jax.data import mcqa
    from entropy_jax.llm import scoring

    lm = llm.load("smollm2-135m-instruct")
    out = lm.generate(["What is the capital of France?"], chat=True, max_new_tokens=6)
    assert out.valid[0].sum() >= 1 and out.texts[0].strip(), out.texts
    q = mcqa.load("demo", limit=1)
    (_, scored), = scoring.score_questions(lm, q, batch_size=1)
    assert 0.0 < scored[0].entropy < 11.0, scored[0]
    assert "torch" not in sys.modules
    print("OK", repr(out.texts[0]), round(scored[0].entropy, 4))
""")


def test_embedded_model_loads_generates_and_scores_without_torch(repo_root):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=runtime.cpu_device_flags(None))
    env.pop("PYTHONPATH", None)
    res = subprocess.run([sys.executable, "-c", SCRIPT], check=False, cwd=repo_root, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("OK"), res.stdout
