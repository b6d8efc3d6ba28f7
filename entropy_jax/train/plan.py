"""The train step planned ahead of time: compile the real step on abstract parameters, read its memory.

    plan = train_step_plan(LlmConfig.phi4_mini(), batch=8, seq_len=4096, mesh=make_mesh(fsdp=8), layers=2)
    plan["bytes"]["peak"]          # per device: arguments + outputs − donated aliases + temporaries

`train_step_plan` builds exactly what `trainer.prepare` runs — `sft.make_step` jitted by `sft.jit_step` with
`sft.state_shardings` over the mesh, the same precision, rematerialisation, chunked loss and LoRA options —
but on `jax.ShapeDtypeStruct` parameters (`model.abstract`, `jax.eval_shape` of the state), lowers it with an
abstract [A, B, T] batch and returns `compiled.memory_analysis()` and `cost_analysis()` per device. Nothing
of the model's size is allocated, so a 4B model plans on a laptop. The numbers are what the backend of the
mesh's devices would allocate: a CPU mesh (`--xla_force_host_platform_device_count`) compiles with the CPU
backend, which keeps some bfloat16 intermediates in float32, so its bytes are an upper bound of an
accelerator's; a deviceless TPU topology (`jax.experimental.topologies`) gives the TPU compiler's own.

`lower_train_step` stops before compiling (`bench.plan --task train` lowers through it and extrapolates
itself). A full-depth model takes long to compile on a CPU: plan 2 and 4 layers (`layers=`) and `extrapolate`
linearly in the layer count (every per-layer buffer — weights, moments, saved activations — scales with it;
the embedding, the loss and the largest per-layer temporaries do not). `plan_extrapolated` does both.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from entropy_jax.llm import model as mdl
from entropy_jax.llm import sharding as shd
from entropy_jax.llm.attention import DEFAULT_ATTENTION, AttentionConfig
from entropy_jax.llm.config import LlmConfig
from entropy_jax.train import lora as lora_lib
from entropy_jax.train import packing, sft

BYTE_FIELDS = ("argument", "output", "alias", "temp", "code", "peak")


def with_layers(config: LlmConfig, layers: int | None) -> LlmConfig:
    """`config` cut to its first `layers` layers (None: unchanged); per-layer settings are cut alike."""
    if layers is None or layers == config.num_layers:
        return config
    if not 1 <= layers <= config.num_layers:
        raise ValueError(f"layers={layers}: the model has {config.num_layers} layers")
    windows = None if config.sliding_windows is None else config.sliding_windows[:layers]
    return dataclasses.replace(config, num_layers=layers, sliding_windows=windows)


def _structs(tree, dtype=None):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, dtype or x.dtype), tree)


def lower_train_step(config: LlmConfig, *, batch: int, seq_len: int, mesh: Mesh, loss_slots: int | None = None,
                     accumulation: int = 1, lora_rank: int = 0, lora_alpha: float = 16.0,
                     lora_targets: tuple[str, ...] = lora_lib.PROJECTIONS, remat: str = "full",
                     precision: str = "bf16_master", compute_dtype: str = "bfloat16", loss_chunk: int = 256,
                     scan_layers: bool = True, layers: int | None = None, weight_decay: float = 0.0,
                     clip_norm: float | None = 1.0, attention: AttentionConfig = DEFAULT_ATTENTION):
    """The train step of `config` (its first `layers` layers) lowered on abstract parameters and an abstract
    batch over `mesh`, without compiling: (`jax.stages.Lowered`, the plan's settings and parameter counts).
    Arguments as `train_step_plan`'s."""
    if batch % shd.batch_multiple(mesh):
        raise ValueError(f"batch={batch} is not a multiple of the mesh's data × fsdp = {shd.batch_multiple(mesh)}")
    k = seq_len if loss_slots is None else int(loss_slots)
    if not 1 <= k <= seq_len:
        raise ValueError(f"loss_slots={loss_slots} must be in 1..seq_len={seq_len}")
    cfg = with_layers(config, layers)
    lora = lora_rank > 0
    step_cfg = sft.StepConfig(compute_dtype=compute_dtype, lora=lora, remat=remat, loss_chunk=loss_chunk,
                              precision=precision, scan_layers=scan_layers)
    compute = sft.COMPUTE_DTYPES[compute_dtype]
    tx = sft.optimizer(sft.OptimConfig(weight_decay=weight_decay, clip_norm=clip_norm))
    _, base = mdl.abstract(cfg, jnp.float32)
    if lora:
        lcfg = lora_lib.LoraConfig(rank=lora_rank, alpha=lora_alpha, targets=tuple(lora_targets))
        trainable = jax.eval_shape(lambda: lora_lib.init(jax.random.key(0), base, lcfg))
        frozen = _structs(base, jnp.float32 if precision == "fp32" else compute)  # as trainer.prepare keeps it
        spec = lora_lib.spec(lcfg, trainable)
    else:
        trainable, frozen, spec = base, None, None
    graphdef, _ = mdl.abstract(cfg, compute, lora=spec, attention=attention)
    state = jax.eval_shape(functools.partial(sft.init_state, tx=tx, precision=precision), trainable)
    state_s = sft.state_shardings(state, mesh, lora=lora)
    frozen_s = None if frozen is None else shd.param_shardings(frozen, mesh)
    step = sft.jit_step(sft.make_step(graphdef, tx, step_cfg, mesh), mesh=mesh, state_sharding=state_s,
                        frozen_sharding=frozen_s)
    width = {f: k if f.startswith("loss_") else seq_len for f in packing.FIELDS}
    batch_abs = {f: jax.ShapeDtypeStruct((accumulation, batch, width[f]),
                                         jnp.float32 if f == "loss_weights" else jnp.int32) for f in packing.FIELDS}
    lowered = step.lower(state, frozen, batch_abs, jax.ShapeDtypeStruct((), jnp.float32))

    def count(tree):
        return int(sum(x.size for x in jax.tree.leaves(tree)))

    info = {
        "layers": cfg.num_layers, "model_layers": config.num_layers, "batch": batch, "seq_len": seq_len,
        "loss_slots": k, "accumulation": accumulation, "mesh": {a: int(n) for a, n in mesh.shape.items()},
        "lora_rank": lora_rank, "remat": remat, "precision": precision, "compute_dtype": compute_dtype,
        "loss_chunk": loss_chunk, "scan_layers": scan_layers, "backend": mesh.devices.flat[0].platform,
        "device_kind": getattr(mesh.devices.flat[0], "device_kind", "?"), "params": count(base),
        "trainable": count(trainable),
    }
    return lowered, info


def memory(compiled) -> dict:
    """Per-device bytes of a compiled program: argument, output, alias (donated, counted once), temp, code and
    peak = argument + output − alias + temp."""
    mem = compiled.memory_analysis()
    b = {"argument": int(mem.argument_size_in_bytes), "output": int(mem.output_size_in_bytes),
         "alias": int(mem.alias_size_in_bytes), "temp": int(mem.temp_size_in_bytes),
         "code": int(mem.generated_code_size_in_bytes)}
    b["peak"] = b["argument"] + b["output"] - b["alias"] + b["temp"]
    return b


def train_step_plan(config: LlmConfig, **kwargs) -> dict:
    """Compile the train step of `config` (its first `layers` layers) for A = `accumulation` micro-batches of
    `batch` rows of `seq_len` tokens with `loss_slots` (K, default `seq_len`: every position supervised)
    loss positions per row, over `mesh`, and return per-device numbers:

      {"bytes": {argument, output, alias (donated, counted once), temp, code, peak = argument + output −
       alias + temp}, "flops", "bytes_accessed" (cost analysis; None where the backend gives none),
       "params" / "trainable" (counts), "compile_s", "backend", and the settings}.

    Keyword arguments (`lower_train_step`): batch, seq_len, mesh, loss_slots, accumulation, lora_rank /
    lora_alpha / lora_targets (LoRA when rank > 0), remat, precision, compute_dtype, loss_chunk, scan_layers,
    layers, weight_decay, clip_norm, attention. Defaults are the dissertation-scale settings: bfloat16
    compute, bfloat16 weights with a float32 master (`precision`), full rematerialisation, the layers as one
    scan, 256 loss positions per row per vocabulary chunk. `batch` must be a multiple of the mesh's data ×
    fsdp size."""
    lowered, info = lower_train_step(config, **kwargs)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, list | tuple) and cost else cost) or {}
    return {**info, "bytes": memory(compiled), "compile_s": compile_s,
            "flops": None if cost.get("flops") is None else float(cost["flops"]),
            "bytes_accessed": None if cost.get("bytes accessed") is None else float(cost["bytes accessed"])}


def extrapolate(plans: Sequence[dict], num_layers: int) -> dict:
    """Linear extrapolation in the layer count from two plans of the same settings at different depths:
    every byte field and the flops as a + b · layers, evaluated at `num_layers`. Returns the first plan's
    settings with the extrapolated numbers, "per_layer" slopes, "extrapolated_from" (the layer counts) and
    "params" of the full model."""
    if len(plans) != 2 or plans[0]["layers"] == plans[1]["layers"]:
        raise ValueError("extrapolate needs two plans at different layer counts")
    p, q = sorted(plans, key=lambda x: x["layers"])
    span = q["layers"] - p["layers"]

    def line(a, b):
        if a is None or b is None:
            return None, None
        slope = (b - a) / span
        return a + slope * (num_layers - p["layers"]), slope

    out = dict(p)
    out["bytes"], out["per_layer"] = {}, {}
    for f in BYTE_FIELDS:
        out["bytes"][f], out["per_layer"][f] = line(p["bytes"][f], q["bytes"][f])
    out["flops"], out["per_layer"]["flops"] = line(p["flops"], q["flops"])
    out["bytes_accessed"], _ = line(p["bytes_accessed"], q["bytes_accessed"])
    for f in ("params", "trainable"):
        out[f], _ = line(p[f], q[f])
        out[f] = round(out[f])
    out.update(layers=num_layers, extrapolated_from=[p["layers"], q["layers"]],
               compile_s=p["compile_s"] + q["compile_s"])
    return out


def plan_extrapolated(config: LlmConfig, *, layer_counts: tuple[int, int] = (2, 4), **kwargs) -> dict:
    """`train_step_plan` at two depths (`layer_counts`), extrapolated to `config.num_layers` layers; the two
    measured plans are under "measured"."""
    plans = [train_step_plan(config, layers=n, **kwargs) for n in layer_counts]
    out = extrapolate(plans, config.num_layers)
    out["measured"] = plans
    return out


def fits(plan: dict, device_bytes: float = 80e9) -> bool:
    """Whether the plan's per-device peak is within `device_bytes` (80 GB by default)."""
    return plan["bytes"]["peak"] <= device_bytes
