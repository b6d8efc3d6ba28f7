"""Process set-up of the launchers: nothing at import, CPU devices and the persistent compilation cache on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = """
import json, os, sys
import launch, launch.mcqa_entropy  # importing launchers changes nothing
before = os.environ.get("XLA_FLAGS")
from entropy_jax import runtime
runtime.MIN_COMPILE_SECONDS = 0.0  # cache even this tiny program
done = runtime.configure(cpu_devices=int(sys.argv[1]))
import jax, jax.numpy as jnp
jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()
print(json.dumps({"before": before, "done": done, "devices": jax.device_count(),
                  "cache_dir": jax.config.jax_compilation_cache_dir}))
"""


def _run(tmp_path, devices: int, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "ENTROPY_JAX_COMPILATION_CACHE")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(devices)], capture_output=True, text=True, timeout=300,
                         env=clean | {"ENTROPY_JAX_CACHE": str(tmp_path), "JAX_PLATFORMS": "cpu"} | env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_configure_sets_cpu_devices_and_caches_compiled_programs(tmp_path, repo_root):
    res = _run(tmp_path, 3, PYTHONPATH=str(repo_root))
    assert res["before"] is None and res["devices"] == 3 and res["done"]["cpu_devices"] == 3
    assert res["cache_dir"] == str(tmp_path / "xla") == res["done"]["compilation_cache"]
    assert any((tmp_path / "xla").iterdir())  # the compiled program is on disk


def test_an_explicit_device_count_and_the_cache_switch_win(tmp_path, repo_root):
    res = _run(tmp_path, 3, PYTHONPATH=str(repo_root), XLA_FLAGS="--xla_force_host_platform_device_count=2",
               ENTROPY_JAX_COMPILATION_CACHE="0")
    assert res["devices"] == 2 and res["done"] == {"cpu_devices": None, "compilation_cache": None}
    assert not (tmp_path / "xla").exists()


def test_cpu_device_flags_replace_any_count_and_keep_the_other_flags():
    from entropy_jax import runtime

    flags = "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count=8 --xla_dump_to=/tmp/d"
    kept = "--xla_backend_optimization_level=0 --xla_dump_to=/tmp/d"
    assert runtime.cpu_device_flags(2, flags) == kept + " --xla_force_host_platform_device_count=2"
    assert runtime.cpu_device_flags(None, flags) == kept
    assert runtime.cpu_device_flags(1, flags) == kept
    assert runtime.cpu_device_flags(3, "") == "--xla_force_host_platform_device_count=3"
    assert runtime.cpu_device_flags(None) == runtime.cpu_device_flags(None, os.environ.get("XLA_FLAGS", ""))
