"""Test configuration: CPU only, 8 simulated devices, float32 unless a test asks for x64."""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

# Must happen before jax is imported anywhere in the test process.
os.environ["JAX_PLATFORMS"] = "cpu"
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
# The suite's programs are tiny and compiled once each (hundreds of them op by op, in the no-jit paths), so the
# CPU compiler's fixed cost per program dominates: LLVM's optimisation passes and the MLIR fusion emitters (the
# legacy elemental emitters take half the time per small program) cost more than they save. Measured on 2 idle
# cores: 1033 s of pytest with the defaults, 908 s without LLVM's passes, 664 s with the legacy emitters too
# (backend compilation 714 → 353 CPU-s over the suite). Eigen runs single-threaded: two workers on two cores,
# each with a pool of two spinning threads, burnt ~10% more CPU than they computed (19.0 → 17.2 CPU-min; the
# run-to-run spread of this shared machine is ±15%). XLA's HLO passes run as before and there is no fast-math:
# results can differ from the default build in rounding only (a single-threaded dot may sum in another order),
# and every comparison in the suite is against an independent reference at its tolerance or between programs
# compiled alike. ENTROPY_JAX_TEST_XLA_OPT=1 keeps the backend's defaults (the users' programs).
_FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
                 "--xla_cpu_multi_thread_eigen=false")


def _accepted(flags: str) -> bool:
    # XLA aborts the process on a flag it does not know; a newer jaxlib (`make lock` resolves the newest) may
    # drop the legacy emitters' switch, so the session asks a throwaway process once (the xdist workers and
    # the suite's subprocesses inherit the answer through XLA_FLAGS)
    import subprocess

    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True, text=True,
                           env=dict(os.environ, XLA_FLAGS=flags), timeout=120)
    return probe.returncode == 0


_missing = [f for f in _FAST_COMPILE if f.split("=")[0] not in os.environ["XLA_FLAGS"]]
if os.environ.get("ENTROPY_JAX_TEST_XLA_OPT", "0") != "1" and _missing:
    _take = _missing if _accepted(" ".join([os.environ["XLA_FLAGS"], *_missing])) else [
        f for f in _missing if _accepted(f"{os.environ['XLA_FLAGS']} {f}")]
    for _f in sorted(set(_missing) - set(_take)):
        print(f"tests/conftest.py: this XLA refuses {_f}; compiling without it", file=sys.stderr)
    os.environ["XLA_FLAGS"] = " ".join([os.environ["XLA_FLAGS"], *_take])

# One persistent compilation cache for the whole session, shared by the xdist workers, the launchers run as
# subprocesses (entropy_jax.runtime.configure reads ENTROPY_JAX_CACHE) and the notebook kernels (JAX reads the
# JAX_* variables): the same programs (the embedded model's forward, decode and train steps) are compiled by many
# tests in many processes, and only the first pays. It lives in a temporary directory made by the controller
# (workers inherit the variable) and removed when the session ends, so tests never touch the user's cache and
# never see programs of another session. Compilation only: results cannot depend on it.
if "ENTROPY_JAX_TEST_CACHE" not in os.environ:
    import tempfile

    os.environ["ENTROPY_JAX_TEST_CACHE"] = tempfile.mkdtemp(prefix="entropy-jax-test-cache-")
os.environ["ENTROPY_JAX_CACHE"] = os.environ["ENTROPY_JAX_TEST_CACHE"]
os.environ.pop("ENTROPY_JAX_COMPILATION_CACHE", None)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.environ["ENTROPY_JAX_TEST_CACHE"], "xla")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

ROOT = Path(__file__).resolve().parents[1]
# `launch/` and `bench/` (reference implementations) are imported from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _seed(request) -> int:
    # Stable per-test seed: the same test always sees the same randomness, different tests differ.
    return zlib.crc32(request.node.nodeid.encode()) & 0x7FFFFFFF


@pytest.fixture
def key(request) -> jax.Array:
    """A PRNG key seeded from the test's node id."""
    return jax.random.key(_seed(request))


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy generator seeded from the test's node id."""
    return np.random.default_rng(_seed(request))


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (and restores the default afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def pytest_sessionfinish(session, exitstatus):
    # the controller (not an xdist worker) made the session's compilation cache; it removes it
    if not hasattr(session.config, "workerinput") and os.environ.get("ENTROPY_JAX_TEST_CACHE"):
        import shutil

        shutil.rmtree(os.environ["ENTROPY_JAX_TEST_CACHE"], ignore_errors=True)


def pytest_collection_modifyitems(session, config, items):
    # Modules holding slow tests (`@pytest.mark.slow`, ~20 s or more each) go first, so that the two workers do
    # not end on one long module while the other idles (under `--dist loadfile` a file is one unit of work).
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.module.__name__ not in slow)
