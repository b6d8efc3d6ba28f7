"""Process set-up for entry points (launchers, benchmarks): CPU devices, the persistent compilation cache,
multi-host start-up and meshes from launcher flags. Nothing here runs at import; a launcher calls
`configure()` first thing on its command-line path, and library code never calls it.

CPU devices: XLA runs each CPU operation of a small program on few threads, so matrix-heavy work (the NMF fits
of Chapter 2) runs 1.3–1.7× faster on 2 cores when each core is its own XLA device and the seeds are sharded
over them (`data_mesh`; bench/RESULTS.md). `configure(cpu_devices="auto")` asks for one XLA CPU device per core
unless XLA_FLAGS already sets a count; only the CPU platform is affected, and only before JAX first lists
its devices.

Compilation cache: compiled XLA programs are kept on disk, so a second run of a launcher skips most of its
compilation (seconds per program for the LLM forward and decode loops). The directory is
`$ENTROPY_JAX_CACHE/xla` (default `~/.cache/entropy_jax/xla`); `ENTROPY_JAX_COMPILATION_CACHE=0` turns it off.
Programs that compile in more than `MIN_COMPILE_SECONDS` are cached.

Multi-host: on a TPU pod slice or a multi-node GPU cluster every host runs the same command (launch/tpu_pod.sh,
launch/gpu_cluster.sh, docs/clusters.md). Each process must call `jax.distributed.initialize()` before its first
computation, so that `jax.devices()` lists the devices of all hosts and one mesh can span them. On a single
machine the call must not happen: with no cluster to detect it fails for want of a coordinator, and with a
half-described one it waits for peers that never come. So `initialize` calls it only when asked for, or when the
environment describes a job of several processes unambiguously.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh

DEVICE_FLAG = "--xla_force_host_platform_device_count"
CACHE_ENV = "ENTROPY_JAX_COMPILATION_CACHE"
MIN_COMPILE_SECONDS = 0.2
ENV_FLAG = "ENTROPY_JAX_DISTRIBUTED"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def cache_root() -> Path:
    """$ENTROPY_JAX_CACHE or ~/.cache/entropy_jax (converted GGUF metadata, compiled programs)."""
    return Path(os.environ.get("ENTROPY_JAX_CACHE", Path.home() / ".cache" / "entropy_jax"))


def configure(*, cpu_devices: int | str | None = "auto", compilation_cache: bool | str | Path | None = True) -> dict:
    """Set up this process for a launcher; returns what was done.

    Args:
      cpu_devices: "auto" = one XLA CPU device per core, an int = that many, None = leave XLA_FLAGS alone. A
        count already in XLA_FLAGS always wins. Takes effect only before JAX first lists its devices.
      compilation_cache: True = the default directory (`cache_root() / "xla"`), a path = that directory,
        False/None = off. `ENTROPY_JAX_COMPILATION_CACHE=0` in the environment turns it off in every case.
    """
    done: dict = {"cpu_devices": None, "compilation_cache": None}
    if cpu_devices is not None and DEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):
        n = max(1, os.cpu_count() or 1) if cpu_devices == "auto" else int(cpu_devices)
        if n < 1:
            raise ValueError(f"cpu_devices must be 'auto', None or ≥ 1, got {cpu_devices!r}")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {DEVICE_FLAG}={n}").strip()
        done["cpu_devices"] = n
    off = os.environ.get(CACHE_ENV, "").strip().lower() in _FALSE
    if compilation_cache and not off:
        directory = cache_root() / "xla" if compilation_cache is True else Path(compilation_cache)
        directory.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        done["compilation_cache"] = str(directory)
    return done


def cpu_device_flags(devices: int | None, flags: str | None = None) -> str:
    """XLA_FLAGS `flags` (default: this process's) with exactly `devices` simulated CPU devices instead of any count
    they set (None or 1: no count, XLA's one device); for a child process's environment."""
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    kept = [f for f in flags.split() if not f.startswith(DEVICE_FLAG)]
    return " ".join(kept + ([f"{DEVICE_FLAG}={devices}"] if devices is not None and devices > 1 else []))


def data_mesh() -> Mesh | None:
    """A 1-D ("data",) mesh over every device of the default backend, or None for one device."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return Mesh(np.array(devices), ("data",))


# ------------------------------------------------------------------------------------------------ multi-host
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
    from entropy_jax.llm import make_mesh

    return make_mesh(data, fsdp, tensor)


def is_writer() -> bool:
    """Whether this process writes a run's files: the only process, or process 0 of a multi-process job (every
    process runs the same program and holds the same results; one writes them, on its host's disk)."""
    return jax.process_index() == 0


def check_same_everywhere(value, what: str) -> None:
    """In a multi-process job, fail unless every process holds the same `value` (JSON-able; compared by
    CRC-32): e.g. the work a resumed run has left, which each process reads from the files it sees. Processes
    that disagree would otherwise wait for each other forever in the first computation that differs. A no-op
    with one process; with several it is a collective: every process must call it at the same point."""
    if jax.process_count() == 1:
        return
    import json
    import zlib

    from jax.experimental import multihost_utils

    digest = np.uint32(zlib.crc32(json.dumps(value, sort_keys=True, default=str).encode("utf-8")))
    multihost_utils.assert_equal(digest, f"the processes of this job see different {what} (a resumed "
                                 "multi-host run needs its output files on a file system every host reads)")
