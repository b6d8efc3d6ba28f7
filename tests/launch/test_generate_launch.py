"""launch.generate end to end on the embedded SmolLM2, and the multi-host start-up rules (entropy_jax.runtime)."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from entropy_jax import runtime
from launch import generate

CLUSTER_ENV = ("ENTROPY_JAX_DISTRIBUTED", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS",
               "SLURM_STEP_NODELIST", "OMPI_COMM_WORLD_SIZE", "TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES")


@pytest.mark.entry
@pytest.mark.slow
def test_generate_main_returns_and_writes_completion_with_entropy(tmp_path):
    out = tmp_path / "gen.json"
    cfg = generate.Config(prompt="What is 2+2?", max_new_tokens=8, out=out)
    result = generate.main(cfg)

    assert isinstance(result["completion"], str) and result["completion"].strip()
    entropy = result["entropy"]
    assert len(entropy) == len(result["tokens"]) == len(result["log_prob"]) == result["n_tokens"]
    assert 1 <= result["n_tokens"] <= 8
    assert all(math.isfinite(h) and h >= 0 for h in entropy)
    assert all(math.isfinite(lp) and lp <= 0 for lp in result["log_prob"])
    assert result["mean_entropy"] == pytest.approx(float(np.mean(entropy)))
    assert result["same_as_first_call"]  # greedy: the timed warm call repeats the first
    t = result["timing"]
    assert t["first_call_s"] > 0 and t["warm_s"] > 0 and t["tokens_per_s"] > 0
    assert t["compile_s"] == pytest.approx(t["first_call_s"] - t["warm_s"])
    assert t["decode_steps"] == result["n_tokens"]

    saved = json.loads(out.read_text())
    assert saved["completion"] == result["completion"] and saved["entropy"] == pytest.approx(entropy)
    assert saved["entropy_settings"]["units"] == "nats" and saved["entropy_settings"]["vocab_size"] == 49152
    assert saved["sampling"]["temperature"] == 0.0 and saved["sampling"]["max_new_tokens"] == 8
    assert saved["settings"]["out"] == str(out)
    assert result["completion"] in generate.summary(result)


def test_mesh_from_flags():
    assert runtime.mesh_from_flags() is None
    assert runtime.mesh_from_flags(1, 1, 1) is None
    assert dict(runtime.mesh_from_flags(2, 2, 2).shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert dict(runtime.mesh_from_flags(1, -1, 2).shape) == {"data": 1, "fsdp": 4, "tensor": 2}


@pytest.fixture
def no_cluster(monkeypatch):
    """A single machine: no cluster variables; jax.distributed records calls instead of connecting."""
    for name in CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(runtime.jax.distributed, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(runtime.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    return calls


def test_initialize_does_nothing_on_a_single_machine(no_cluster, monkeypatch):
    assert runtime.detect() is None
    assert runtime.initialize() is False and runtime.initialize(False) is False
    # An sbatch script sees SLURM_NTASKS but runs one process: only an srun step means several.
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
    assert runtime.initialize() is False
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[01-04]")
    monkeypatch.setenv("ENTROPY_JAX_DISTRIBUTED", "0")  # the explicit opt-out wins
    assert runtime.initialize() is False
    assert no_cluster == []


def test_initialize_when_asked_or_in_a_cluster_and_only_once(no_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[01-04]")
    assert runtime.detect() and runtime.initialize() is True
    assert runtime.initialize(True) is True  # idempotent: JAX is initialised already
    assert no_cluster == [{}]

    no_cluster.clear()
    for name in ("SLURM_NTASKS", "SLURM_STEP_NODELIST"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")  # JAX itself reads only JAX_COORDINATOR_ADDRESS
    assert runtime.initialize() is True
    assert no_cluster == [{"num_processes": 2, "process_id": 1}]


@pytest.mark.parametrize("script", ["launch/tpu_pod.sh", "launch/gpu_cluster.sh"])
def test_cluster_scripts_parse_and_explain_themselves(script, repo_root):
    subprocess.run(["bash", "-n", script], cwd=repo_root, check=True)
    shown = subprocess.run(["bash", script, "-h"], cwd=repo_root, check=True, capture_output=True, text=True)
    assert "Usage" in shown.stdout and "launch." in shown.stdout
    bare = subprocess.run(["bash", script], cwd=repo_root, capture_output=True, text=True)
    assert bare.returncode == 2 and "Usage" in bare.stderr
