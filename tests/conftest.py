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

# Launchers run as subprocesses (`python -m launch.…`) would keep compiled programs in the user's cache
# (entropy_jax.runtime.configure); tests stay hermetic.
os.environ.setdefault("ENTROPY_JAX_COMPILATION_CACHE", "0")

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
