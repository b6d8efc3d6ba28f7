"""Thin experiment entry points: `python -m launch.<name> --help`. Each exposes `main(config)`.

XLA runs each CPU operation of a small program on few threads, so matrix-heavy work (the NMF
fits of Chapter 2) runs 1.3–1.7× faster on 2 cores when each core is its own XLA device and the
seeds are sharded over them (`launch._common.data_mesh`; measured in bench/RESULTS.md). Launchers therefore ask for one XLA
CPU device per core, unless XLA_FLAGS already sets a count or JAX is already initialised. Only
the CPU platform is affected; GPU and TPU backends are not.
"""

import os as _os
import sys as _sys

_FLAG = "--xla_force_host_platform_device_count"
if "jax" not in _sys.modules and _FLAG not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + f" {_FLAG}={max(1, _os.cpu_count() or 1)}"
    ).strip()
