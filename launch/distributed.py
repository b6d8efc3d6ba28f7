"""Multi-host start-up for launch/ experiments: `initialize()` before any JAX work, then `mesh_from_flags()`.

On a TPU pod slice or a multi-node GPU cluster every host runs the same command (launch/tpu_pod.sh,
launch/gpu_cluster.sh, docs/clusters.md). Each process must call `jax.distributed.initialize()` before its
first computation, so that `jax.devices()` lists the devices of all hosts and one mesh can span them. On a
single machine the call must not happen: with no cluster to detect it fails for want of a coordinator, and
with a half-described one it waits for peers that never come. So it runs only when asked for, or when the
environment describes a job of several processes unambiguously.
"""

from __future__ import annotations

import os

import jax
from jax.sharding import Mesh

from entropy_jax.llm import make_mesh

ENV_FLAG = "ENTROPY_JAX_DISTRIBUTED"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _count(name: str) -> int:
    """An integer environment variable (0 when unset or malformed)."""
    try:
        return int(os.environ.get(name, "").strip() or 0)
    except ValueError:
        return 0


def _hosts(name: str) -> int:
    return len([h for h in os.environ.get(name, "").split(",") if h.strip()])


def detect() -> str | None:
    """Why the environment looks like one process of several (a short reason), or None."""
    flag = os.environ.get(ENV_FLAG, "").strip().lower()
    if flag in _TRUE:
        return f"{ENV_FLAG}={flag}"
    if flag in _FALSE:
        return None  # an explicit opt-out beats every cluster variable below
    if _count("JAX_NUM_PROCESSES") > 1:
        return "JAX_NUM_PROCESSES > 1"
    # sbatch also exports SLURM_NTASKS to the batch script itself, where one process runs the command;
    # only srun's job steps add SLURM_STEP_NODELIST (which JAX needs to find the coordinator anyway).
    if _count("SLURM_NTASKS") > 1 and "SLURM_STEP_NODELIST" in os.environ:
        return "SLURM step with SLURM_NTASKS > 1"
    if _count("OMPI_COMM_WORLD_SIZE") > 1:
        return "Open MPI with OMPI_COMM_WORLD_SIZE > 1"
    # GKE (and some TPU VM images) list the slice's hosts; one host needs no coordinator. Plain TPU VMs
    # publish this only through the metadata server, hence ENTROPY_JAX_DISTRIBUTED=1 in launch/tpu_pod.sh.
    for name in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
        if _hosts(name) > 1:
            return f"{name} lists several hosts"
    return None


def initialize(enabled: bool | None = None) -> bool:
    """Call `jax.distributed.initialize()` once if this is (or is declared to be) a multi-process job.

    Args:
      enabled: True forces the call (e.g. a single-host TPU VM that still wants the metadata-based set-up),
        False never calls it, None (default) follows `detect()`.

    Returns whether the distributed runtime is up. Safe to call twice: a second call returns True without
    touching JAX. Must come before anything that initialises a backend (`jax.devices()`, a computation).
    `JAX_COORDINATOR_ADDRESS` is read by JAX itself; `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` are not, so
    they are passed on here (launch/gpu_cluster.sh's `multinode` mode sets all three).
    """
    if jax.distributed.is_initialized():
        return True
    if enabled is False or (enabled is None and detect() is None):
        return False
    kwargs = {}
    for env, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(env, "").strip():
            kwargs[arg] = int(os.environ[env])
    jax.distributed.initialize(**kwargs)
    return True


def mesh_from_flags(data: int = 1, fsdp: int = 1, tensor: int = 1) -> Mesh | None:
    """The (data, fsdp, tensor) mesh for launcher flags; None (the default device) when all are 1.

    One size may be -1 (all remaining devices). The mesh spans every process's devices, so on a multi-host
    run call `initialize()` first; with all flags at 1 each process would otherwise run alone on its first
    local device.
    """
    if (data, fsdp, tensor) == (1, 1, 1):
        return None
    return make_mesh(data, fsdp, tensor)
