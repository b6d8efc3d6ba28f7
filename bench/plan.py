"""Ahead-of-time memory and FLOP plan: lower the real jitted function of a task on abstract parameters over a
device mesh, compile it, and say whether it fits a given accelerator's HBM — without any accelerator.

    python -m bench.plan --model qwen3-14b --task answer --batch 1 --tokens 32768 --json
    python -m bench.plan --model qwen3-8b --task decode --batch 8 --tokens 32768 --tensor 2 --json
    python -m bench.plan --model phi4-mini --task train --batch 8 --tokens 4096 --fsdp 8 --json
    python -m bench.plan --model phi4-mini --task train --batch 8 --tokens 8192 --fsdp 8 --lora-rank 16 --json
    python -m bench.plan --model qwen3-14b --task answer --batch 1 --tokens 32768 --find-mesh H100-80GB

Tasks (the library functions the LanguageModel / trainer jit, with the same shardings: parameters by
`llm.sharding.PARAM_RULES`, batch over (data, fsdp), KV cache heads over tensor, activations pinned to the
batch sharding):
  answer   `model.forward_last` on B × T left-padded tokens (Chapter 3/5 answer-step scoring);
  prefill  `generate.prefill` of B × T tokens into a cache of S = --cache slots (default T);
  decode   one `generate.step` at live length T (--tokens) in a cache of S = --cache slots (default T);
  train    one `train.sft` step as `trainer.prepare` builds it (`train.plan.lower_train_step`: `make_step` +
           `jit_step`, the trainer's state shardings, donated state, AdamW): A = --accumulation micro-batches
           of B rows of T tokens, K = --loss-slots loss positions per row (default T/2); full fine-tuning or
           LoRA (--lora-rank; the frozen base in the compute dtype). Step options are the dissertation-scale
           defaults of `lower_train_step` — bfloat16 compute, precision bf16_master (bfloat16 weights + float32
           master and Adam moments), remat full, the layers as one scan, chunked cross-entropy of 256 loss
           positions per row — each changed with --step KEY=VALUE (`sft.StepConfig` fields; today's plain step
           is --step precision=fp32 --step remat=none --step scan_layers=false --step loss_chunk=0).

Mesh: --data/--fsdp/--tensor as the launchers take them; with none of them given, the smallest mesh of
`MESH_CANDIDATES` (serving: tensor 1, 2, 4, 8; training: fsdp first) that fits --find-mesh (default
H100-80GB) is searched and reported. How: the script sets
XLA_FLAGS=--xla_force_host_platform_device_count=N (N = data × fsdp × tensor, or 8 when searching) before
importing jax, builds the `(data, fsdp, tensor)` mesh over those simulated CPU
devices, lowers with `jax.ShapeDtypeStruct` params (`model.abstract`: nothing is allocated) and reads
`compiled.memory_analysis()` (per-device argument / temp / output / alias bytes) and `cost_analysis()`.
With `--tpu TOPOLOGY` (e.g. v5p:2x2x1) and `libtpu` importable it compiles for that TPU topology without a
TPU (`jax.experimental.topologies`), which keeps bf16 intermediates in bf16. libtpu is not a dependency:
`pip install --target DIR libtpu`, then PYTHONPATH=DIR (TPU_WORKER_HOSTNAMES=localhost quiets its start-up
errors); checked with libtpu 0.0.42.1, a TPU compile takes minutes on 2 cores.

Layers: the full model is compiled with --full; by default the model with 2 and with 4 layers is compiled
and every byte count and the XLA FLOPs are extrapolated linearly to the full depth (`extrapolated: true`;
one decoder layer adds the same program each time). --layers N plans a model truncated to N layers
(`extrapolated: false`). The extrapolation is checked against a full compile in bench/RESULTS.md.

Caveats: the CPU backend keeps bf16 intermediates in float32, so temp bytes of bf16 models are an upper
estimate of a GPU/TPU compile (arguments and outputs are exact). `flops` is the model's dense matmul count
(2 · weights · tokens, causal attention, ×3 for a full-fine-tuning train step, ×2 with LoRA); XLA's own count
(`flops_xla`) counts a loop body once and so misses most of the blockwise attention. `fits` compares
arguments + outputs + temp − aliased bytes with the usable HBM of each device (GPUs: 0.95 of the memory
the driver reports, the `XLA_PYTHON_CLIENT_MEM_FRACTION` `launch/gpu_cluster.sh` sets).

Runtime: a few seconds to a minute per compile on 2 cores (Qwen3-14B, 32k tokens, 2 + 4 layers: ≈ 30 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import sys
import time

PRESETS = {
    "smollm2-135m": "smollm2_135m", "qwen3-0.6b": "qwen3_0_6b", "qwen3-1.7b": "qwen3_1_7b",
    "qwen3-4b": "qwen3_4b", "qwen3-8b": "qwen3_8b", "qwen3-14b": "qwen3_14b", "qwen2.5-3b": "qwen2_5_3b",
    "phi4-mini": "phi4_mini", "llama3-8b": "llama3_8b", "mistral-small-24b": "mistral_small_24b",
}
TASKS = ("answer", "prefill", "decode", "train")
# name → (bytes the device reports, usable fraction): H100/H200 as nvidia-smi reports them (81,559 and
# 143,771 MiB), TPU v5p 95 GiB per chip
HBM = {"H100-80GB": (81559 * 2**20, 0.95), "H200-141GB": (143771 * 2**20, 0.95), "TPUv5p-95GB": (95 * 2**30, 1.0)}
EXTRAPOLATE_FROM = (2, 4)
MESH_CANDIDATES = {  # (data, fsdp, tensor), smallest first: serving shards heads, training the model dimension
    "serve": ((1, 1, 1), (1, 1, 2), (1, 1, 4), (1, 1, 8)),
    "train": ((1, 1, 1), (1, 2, 1), (1, 4, 1), (1, 8, 1), (1, 4, 2)),
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.plan", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=sorted(PRESETS))
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--batch", type=int, required=True, help="rows B (train: rows per micro-batch)")
    p.add_argument("--tokens", type=int, required=True, help="T: tokens per row (decode: live length)")
    p.add_argument("--cache", type=int, default=None, help="KV cache slots S (prefill/decode; default T)")
    p.add_argument("--data", type=int, default=None, help="mesh axes (default 1 each when any is given; "
                   "with none given the smallest mesh that fits --find-mesh, default H100-80GB, is searched)")
    p.add_argument("--fsdp", type=int, default=None)
    p.add_argument("--tensor", type=int, default=None)
    p.add_argument("--layers", type=int, default=None, help="plan a model truncated to N layers")
    p.add_argument("--full", action="store_true", help="compile every layer instead of extrapolating")
    p.add_argument("--lora-rank", type=int, default=0, help="train: LoRA adapters of this rank on q,k,v,o,gate,up,down")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                   help="parameter/compute dtype (train: the compute dtype; how weights are kept is --step "
                        "precision=..., default bf16_master with bfloat16 compute, fp32 with float32)")
    p.add_argument("--attention", default="auto", help="AttentionConfig.impl (auto, blockwise, reference, ...)")
    p.add_argument("--accumulation", type=int, default=1, help="train: micro-batches per step (A)")
    p.add_argument("--loss-slots", type=int, default=None, help="train: loss positions per row K (default T/2)")
    p.add_argument("--step", action="append", default=[], metavar="KEY=VALUE",
                   help="train: an sft.StepConfig field (repeatable): remat=none|full|dots, loss_chunk=N (0 = "
                        "unchunked), precision=fp32|bf16_master|bf16, scan_layers=true|false, compute_dtype=...")
    p.add_argument("--find-mesh", choices=sorted(HBM), default=None,
                   help="try the meshes of MESH_CANDIDATES (up to 8 devices) and report the first that fits "
                        "this HBM (the default when no mesh axis is given)")
    p.add_argument("--tpu", default=None, metavar="TOPOLOGY", help="deviceless TPU compile, e.g. v5p:2x2x1")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.data is None and args.fsdp is None and args.tensor is None and args.find_mesh is None:
        args.find_mesh = "H100-80GB"
    args.data, args.fsdp, args.tensor = (1 if x is None else x for x in (args.data, args.fsdp, args.tensor))
    for name in ("batch", "tokens", "data", "fsdp", "tensor"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be ≥ 1, got {getattr(args, name)}")
    if args.cache is not None and args.cache < args.tokens and args.task in ("prefill", "decode"):
        p.error(f"--cache {args.cache} is shorter than --tokens {args.tokens}")
    if args.lora_rank and args.task != "train":
        p.error("--lora-rank applies to --task train")
    return args


def _setup_devices(n: int, tpu: str | None) -> None:
    """Before jax is imported: N simulated CPU devices (or leave the platform to the TPU compile)."""
    if "jax" in sys.modules:
        return  # imported as a library (tests): the caller's devices stand
    if tpu is None:
        os.environ["JAX_PLATFORMS"] = "cpu"
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={n}"])


# ---------------------------------------------------------------------------------------------- lowering
def _step_options(pairs: list[str]) -> dict:
    from entropy_jax.train import sft

    fields = {f.name: f for f in dataclasses.fields(sft.StepConfig)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--step {pair!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        default = fields[key].default
        if isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            out[key] = int(value)
        elif isinstance(default, float):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def lower(config, args, mesh):
    """The task's jitted function lowered on abstract inputs over `mesh` (jax.stages.Lowered)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from entropy_jax.llm import generate as gen
    from entropy_jax.llm import model as mdl
    from entropy_jax.llm import sharding as shd
    from entropy_jax.llm.attention import AttentionConfig

    sds = jax.ShapeDtypeStruct
    attention = AttentionConfig(args.attention)
    dtype = jnp.dtype(args.dtype)
    b, t = args.batch, args.tokens
    s = args.cache or t
    rep = NamedSharding(mesh, P())
    act = NamedSharding(mesh, P(shd.BATCH, None, None))
    multiple = shd.batch_multiple(mesh)

    def constrain(x):  # as LanguageModel pins activations to the batch sharding, layer after layer
        return jax.lax.with_sharding_constraint(x, act) if x.shape[0] % multiple == 0 else x

    if args.task == "train":
        return _lower_train(config, args, mesh, attention)
    graphdef, params = mdl.abstract(config, dtype, attention=attention)
    ps = shd.param_shardings(params, mesh)
    b1, b2 = shd.batch_sharding(mesh, 1, b), shd.batch_sharding(mesh, 2, b)
    cache_spec = shd.fit_spec(P(shd.BATCH, "tensor", None, None), (b, config.num_kv_heads, s, config.head_dim), mesh)
    cache_s = tuple((NamedSharding(mesh, cache_spec),) * 2 for _ in range(config.num_layers))
    ids, mask = sds((b, t), jnp.int32), sds((b, t), jnp.bool_)
    if args.task == "answer":
        fn = jax.jit(lambda p, x, m: mdl.forward_last(graphdef, p, x, m, constrain=constrain),
                     in_shardings=(ps, b2, b2), out_shardings=rep)
        return fn.lower(params, ids, mask)
    if args.task == "prefill":
        fn = jax.jit(lambda p, x, m: gen.prefill(graphdef, p, x, m, cache_len=s, constrain=constrain),
                     in_shardings=(ps, b2, b2), out_shardings=(b2, cache_s))
        return fn.lower(params, ids, mask)
    # decode: one step at live length t (the slot it writes) over a cache of s slots, cache donated
    cache = tuple((sds((b, config.num_kv_heads, s, config.head_dim), dtype),) * 2 for _ in range(config.num_layers))
    fn = jax.jit(lambda p, c, tok, pos, kv, slot: gen.step(graphdef, p, c, tok, pos, kv, slot, constrain=constrain),
                 in_shardings=(ps, cache_s, b1, b1, b2, rep), out_shardings=(b2, cache_s), donate_argnums=(1,))
    return fn.lower(params, cache, sds((b,), jnp.int32), sds((b,), jnp.int32), sds((b, s), jnp.bool_),
                    sds((), jnp.int32))


def train_options(args) -> dict:
    """`train.plan.lower_train_step`'s step options from the flags: its dissertation-scale defaults (bf16_master,
    remat full, layers scanned, 256 loss positions per chunk) with --dtype as the compute dtype (float32:
    precision fp32) and any --step KEY=VALUE on top."""
    from entropy_jax.train import plan as train_plan

    options = _step_options(args.step)
    if "lora" in options:
        raise SystemExit("--step lora=...: use --lora-rank")
    options.setdefault("compute_dtype", args.dtype)
    if options["compute_dtype"] != "bfloat16":
        options.setdefault("precision", "fp32")  # the bfloat16 weight options need bfloat16 compute
    defaults = {k: v.default for k, v in inspect.signature(train_plan.lower_train_step).parameters.items()
                if k in ("remat", "precision", "loss_chunk", "scan_layers")}
    return {**defaults, **options}


def _lower_train(config, args, mesh, attention):
    from entropy_jax.train import plan as train_plan

    lowered, _ = train_plan.lower_train_step(
        config, batch=args.batch, seq_len=args.tokens, mesh=mesh, loss_slots=args.loss_slots or max(1, args.tokens // 2),
        accumulation=args.accumulation, lora_rank=args.lora_rank, lora_alpha=2.0 * args.lora_rank,
        attention=attention, **train_options(args))
    return lowered


# ---------------------------------------------------------------------------------------------- measuring
def measure(compiled) -> dict:
    ma = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    out = {"argument_bytes": int(ma.argument_size_in_bytes), "temp_bytes": int(ma.temp_size_in_bytes),
           "output_bytes": int(ma.output_size_in_bytes), "alias_bytes": int(ma.alias_size_in_bytes)}
    out["total_bytes"] = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    return {"per_device": out, "flops_xla": float((cost or {}).get("flops", 0.0))}


def model_flops(config, args) -> float:
    """Dense matmul FLOPs of the task over all devices (2 per multiply-add; causal attention)."""
    c = config
    per_token = c.num_layers * (2 * c.hidden_size * (c.num_heads + c.num_kv_heads) * c.head_dim
                                + 3 * c.hidden_size * c.intermediate_size)
    head = c.hidden_size * c.vocab_size
    attn = 2 * c.num_layers * c.num_heads * c.head_dim  # q·k and p·v per (query, key) pair, per layer
    b, t = args.batch, args.tokens
    if args.task == "decode":
        return 2.0 * b * (per_token + head + attn * t)
    forward = 2.0 * b * (t * per_token + attn * t * (t + 1) / 2)
    if args.task in ("answer", "prefill"):
        return forward + 2.0 * b * head
    k = args.loss_slots or max(1, t // 2)
    return args.accumulation * (2 if args.lora_rank else 3) * (forward + 2.0 * b * k * head)


def fits(total_bytes: int) -> dict:
    return {name: total_bytes <= cap * frac for name, (cap, frac) in HBM.items()}


def _mesh(jax, data, fsdp, tensor, tpu):
    from entropy_jax.llm import sharding as shd

    n = data * fsdp * tensor
    if tpu is not None:
        from jax.experimental import topologies

        devices = topologies.get_topology_desc(platform="tpu", topology_name=tpu).devices
    else:
        devices = jax.devices()
    if len(devices) < n:
        raise SystemExit(f"mesh data={data} × fsdp={fsdp} × tensor={tensor} needs {n} devices, "
                         f"have {len(devices)}")
    return shd.make_mesh(data, fsdp, tensor, devices=devices[:n])


def plan(args, mesh_shape=None) -> dict:
    """The plan's JSON object (see the module docstring)."""
    import jax

    from entropy_jax.llm import LlmConfig

    data, fsdp, tensor = mesh_shape or (args.data, args.fsdp, args.tensor)
    mesh = _mesh(jax, data, fsdp, tensor, args.tpu)
    full = getattr(LlmConfig, PRESETS[args.model])()
    depth = args.layers or full.num_layers
    if args.layers is not None or args.full:
        counts = (depth,)
    else:
        counts = tuple(n for n in EXTRAPOLATE_FROM if n < depth) or (depth,)
    measured, seconds = [], 0.0
    for n in counts:
        t0 = time.perf_counter()
        compiled = lower(full.replace(num_layers=n, sliding_windows=None if full.sliding_windows is None
                                      else full.sliding_windows[:n]), args, mesh).compile()
        seconds += time.perf_counter() - t0
        measured.append({"layers": n, **measure(compiled)})
    extrapolated = counts[-1] != depth
    if extrapolated:
        (n1, m1), (n2, m2) = ((m["layers"], m) for m in measured[-2:])

        def line(v1, v2):
            return round(v1 + (v2 - v1) / (n2 - n1) * (depth - n1))

        per_device = {k: line(m1["per_device"][k], m2["per_device"][k]) for k in m1["per_device"]}
        flops_xla = float(line(m1["flops_xla"], m2["flops_xla"]))
    else:
        per_device, flops_xla = measured[-1]["per_device"], measured[-1]["flops_xla"]
    config = full.replace(num_layers=depth)
    return {
        "model": args.model, "task": args.task, "batch": args.batch, "tokens": args.tokens,
        "cache": args.cache or args.tokens if args.task in ("prefill", "decode") else None,
        "accumulation": args.accumulation if args.task == "train" else None,
        "lora_rank": args.lora_rank or None, "dtype": args.dtype, "attention": args.attention,
        "step": train_options(args) if args.task == "train" else None,
        "mesh": {"data": data, "fsdp": fsdp, "tensor": tensor}, "devices": data * fsdp * tensor,
        "backend": f"tpu ({args.tpu}, deviceless)" if args.tpu else "cpu (simulated devices)",
        "layers": depth, "layers_compiled": counts[-1], "extrapolated": extrapolated,
        "per_device": per_device, "flops": model_flops(config, args), "flops_xla": flops_xla,
        "fits": fits(per_device["total_bytes"]),
        "hbm_usable_bytes": {name: int(cap * frac) for name, (cap, frac) in HBM.items()},
        "measured": measured, "compile_seconds": round(seconds, 1),
    }


def find_mesh(args) -> dict:
    """Plans over MESH_CANDIDATES until one fits `args.find_mesh`; the last plan when none does."""
    result, tried = None, []
    for shape in MESH_CANDIDATES["train" if args.task == "train" else "serve"]:
        if math.prod(shape) > 8 or (args.batch % (shape[0] * shape[1]) and args.task == "train"):
            continue
        try:
            result = plan(args, shape)
        except SystemExit:  # the topology has fewer devices
            break
        tried.append(list(shape))
        if result["fits"][args.find_mesh]:
            break
    result["tried"] = tried
    return result


def _gib(x: int) -> str:
    return f"{x / 2**30:.2f} GiB"


def main(argv=None) -> int:
    args = parse(argv)
    n = 8 if args.find_mesh else args.data * args.fsdp * args.tensor
    _setup_devices(n, args.tpu)
    result = find_mesh(args) if args.find_mesh else plan(args)
    if args.json:
        print(json.dumps(result))
        return 0
    d, m = result["per_device"], result["mesh"]
    how = ("extrapolated from " + " and ".join(str(x["layers"]) for x in result["measured"]) + " layers"
           if result["extrapolated"] else "compiled")
    print(f"{result['model']} {result['task']} B={result['batch']} T={result['tokens']}"
          + (f" S={result['cache']}" if result["cache"] else "")
          + f" on data={m['data']} × fsdp={m['fsdp']} × tensor={m['tensor']} ({result['backend']}), "
          f"{result['layers']} layers ({how})")
    print(f"  per device: arguments {_gib(d['argument_bytes'])}, temp {_gib(d['temp_bytes'])}, outputs "
          f"{_gib(d['output_bytes'])}, aliased {_gib(d['alias_bytes'])} → {_gib(d['total_bytes'])}")
    print(f"  model FLOPs {result['flops']:.3e} (XLA cost analysis {result['flops_xla']:.3e})")
    print("  fits: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["fits"].items())
          + f"   (compile {result['compile_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
