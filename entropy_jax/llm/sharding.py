"""Device mesh and partition rules for the decoder.

Mesh axes: `data` (replicas over batch), `fsdp` (batch, and parameters sharded along their model dimension D),
`tensor` (Megatron-style: heads / MLP columns / vocabulary). Parameters get a `PartitionSpec` from the first
rule whose regex matches their dotted path; an axis that does not divide the dimension it would shard is
dropped for that parameter (so tiny test models and odd head counts still shard, only less). Activations are
sharded over the batch on (data, fsdp).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")

# (regex over "layers.3.attn.q.kernel"-style paths, spec). Kernels are [in, out].
PARAM_RULES: tuple[tuple[str, P], ...] = (
    (r"embed\.embedding", P("tensor", "fsdp")),
    (r".*attn\.[qkv]\.kernel", P("fsdp", "tensor")),
    (r".*attn\.[qkv]\.bias", P("tensor")),
    (r".*attn\.o\.kernel", P("tensor", "fsdp")),
    (r".*mlp\.(gate|up)\.kernel", P("fsdp", "tensor")),
    (r".*mlp\.(gate|up)\.bias", P("tensor")),
    (r".*mlp\.down\.kernel", P("tensor", "fsdp")),
    (r"lm_head\.kernel", P("fsdp", "tensor")),
    (r".*", P()),
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all, across hosts); one size may be -1 (the rest)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got data={data}, fsdp={fsdp}, tensor={tensor}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not split into fsdp×tensor×data with {sizes}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh data={sizes[0]} × fsdp={sizes[1]} × tensor={sizes[2]} needs "
                         f"{math.prod(sizes)} devices, have {len(devices)}")
    return Mesh(np.asarray(devices, dtype=object).reshape(sizes), AXES)


def fit_spec(spec: P, shape: tuple[int, ...], mesh: Mesh) -> P:
    """`spec` cut to what `shape` allows on `mesh`: axes the mesh lacks are dropped, and a dimension keeps only
    as many of its axes as divide it (a dimension no axis divides is replicated)."""
    entries = list(spec) + [None] * (len(shape) - len(spec))
    out = []
    for dim, entry in zip(shape, entries[: len(shape)]):
        names = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        kept = tuple(n for n in names if n in mesh.shape)
        while kept and dim % math.prod(mesh.shape[n] for n in kept):
            kept = kept[:-1]
        out.append(None if not kept else kept if len(kept) > 1 else kept[0])
    while out and out[-1] is None:
        out.pop()
    return P(*out)


def param_spec(path: str, shape: tuple[int, ...], mesh: Mesh, rules=PARAM_RULES) -> P:
    for pattern, spec in rules:
        if re.fullmatch(pattern, path):
            return fit_spec(spec, shape, mesh)
    return P()


def param_shardings(abstract_params: Mapping, mesh: Mesh, rules=PARAM_RULES):
    """NamedSharding for every leaf of a params pytree (nested dict), by path."""

    def walk(node, prefix):
        return {
            k: walk(v, f"{prefix}{k}.") if isinstance(v, Mapping)
            else NamedSharding(mesh, param_spec(f"{prefix}{k}", tuple(v.shape), mesh, rules))
            for k, v in node.items()
        }

    return walk(abstract_params, "")


def batch_sharding(mesh: Mesh, ndim: int, batch: int | None = None) -> NamedSharding:
    """Shard dimension 0 over (data, fsdp) (over as many of them as divide `batch`); replicate the rest."""
    axes = BATCH if batch is None else fit_spec(P(BATCH), (batch,), mesh)[0]
    return NamedSharding(mesh, P(axes, *([None] * (ndim - 1))))


def batch_multiple(mesh: Mesh | None) -> int:
    """Batch sizes are padded to a multiple of this so the batch shards evenly."""
    return 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]


def place(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Host array → global jax.Array with `sharding`; each process only transfers its own shards (multi-host)."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])
