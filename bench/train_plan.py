"""Ahead-of-time memory plan of Chapter 4's train step at the dissertation's scale (`entropy_jax.train.plan`).

What it measures
----------------
For each student (`--models`: phi4-mini = `LlmConfig.phi4_mini()`, unit longrope factors; qwen2.5-3b =
`LlmConfig.qwen2_5_3b()`), each mode (`--modes`: full fine-tuning, LoRA rank 16 on all seven projections),
each row length (`--tokens` 2048 / 4096 / 8192) and each 8-device mesh (`--meshes`: fsdp 8, fsdp 4 × tensor
2), `plan.train_step_plan` compiles the REAL train step (`sft.make_step` + `sft.jit_step` with the trainer's
shardings) on abstract parameters and an abstract batch of `--batch` 8 rows (1 per device on fsdp 8) with
K = tokens / 2 loss positions per row (chain-of-thought targets filling half of each row), and reads
`compiled.memory_analysis()` per device: arguments (weights, master copy, Adam moments, frozen base, batch),
outputs, donated aliases and XLA temporaries (activations kept for the backward pass, gradients, the
largest transient buffers); peak = arguments + outputs − aliases + temporaries.  Settings (the
dissertation-scale defaults of `train_step_plan`): bfloat16 compute, `precision="bf16_master"`,
`remat="full"`, the layers as one `lax.scan` (`scan_layers`), chunked cross-entropy with 256 loss positions
per row per vocabulary chunk.  One baseline row per model, `--baseline` (today's step: float32 masters, no
remat, unrolled layers, unchunked loss), and one of the new settings with the layers unrolled (remat
without the scan), at 4096 tokens on fsdp 8.

Depth: every configuration is compiled at 2 and 4 layers (`--layer-counts`) and extrapolated linearly to
the model's layer count (`plan.extrapolate`): weights, moments and saved activations grow by a fixed amount
per layer; the slope is measured, never assumed.  The table says so ("extrapolated from 2, 4 layers").

Backend: `--backend cpu` (default) compiles for 8 simulated CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=8`, set here before jax is imported).  XLA's CPU
backend upcasts bfloat16 matmul operands to float32 and fuses less than an accelerator's compiler, so its
bytes are an UPPER BOUND of a GPU's.  `--backend tpu` compiles deviceless for a TPU topology
(`--tpu-topology v5p:2x2x2`, 8 chips, via `jax.experimental.topologies`; needs `libtpu` importable, e.g.
`pip install --target /tmp/libtpu_pkg "libtpu==0.0.42.*"` and `PYTHONPATH=/tmp/libtpu_pkg`): the TPU compiler's own
buffer assignment, bfloat16 kept as bfloat16 — the closer estimate of an 80 GB accelerator.
Fits = extrapolated peak ≤ 80·10⁹ bytes (`--device-gb`); on a GPU also leave XLA's preallocation room
(`XLA_PYTHON_CLIENT_MEM_FRACTION=0.95`).

Results are cached per configuration in `--cache` (JSON, default results/bench/train_plan.json) so runs of
subsets (and of both backends) add up; the section of bench/RESULTS.md is rendered from the cache.

Commands (from the repository root)::

    python -m bench.train_plan                                   # CPU, the whole grid (~1–2 h on 2 cores)
    python -m bench.train_plan --models phi4-mini --tokens 4096 --modes full --meshes fsdp8
    PYTHONPATH=/tmp/libtpu_pkg python -m bench.train_plan --backend tpu
    python -m bench.train_plan --render-only                     # rewrite the RESULTS.md section from the cache

Expected runtime: one compile of 2–4 layers takes 0.5–3 minutes on the 2-core machine (longer at 8192
tokens); the grid is 2 models × 2 modes × 3 lengths × 2 meshes × 2 depths = 48 compiles + 8 baseline.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

from bench._results import REPO, RESULTS, machine_info, write_section

SECTION = "## Chapter 4 — train-step memory plan, ahead of time (bench/train_plan.py)"
MODELS = {"phi4-mini": "phi4_mini", "qwen2.5-3b": "qwen2_5_3b"}
MESHES = {"fsdp8": (1, 8, 1), "fsdp4x2": (1, 4, 2)}
MODES = {"full": 0, "lora16": 16}
BASELINE = "baseline: today's step"
UNROLLED = "new settings, layers unrolled"
_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def key_of(backend, model, mode, tokens, mesh, batch, settings) -> str:
    return json.dumps([backend, model, mode, tokens, mesh, batch, settings], sort_keys=True)


def devices_for(backend: str, topology: str):
    import jax

    if backend == "cpu":
        devs = jax.devices("cpu")
        if len(devs) < 8:
            raise SystemExit(f"need 8 CPU devices, have {len(devs)} (XLA_FLAGS was set before this script could set "
                             f"{_DEVICE_FLAG}=8)")
        return devs[:8]
    from jax.experimental import topologies

    topo = topologies.get_topology_desc(topology_name=topology, platform="tpu")
    if len(topo.devices) != 8:
        raise SystemExit(f"--tpu-topology {topology} has {len(topo.devices)} devices, need 8")
    return topo.devices


def run_one(config, mesh, *, mode_rank, tokens, batch, settings, layer_counts):
    from entropy_jax.train import plan

    kw = dict(batch=batch, seq_len=tokens, loss_slots=tokens // 2, mesh=mesh, lora_rank=mode_rank, **settings)
    try:
        out = plan.plan_extrapolated(config, layer_counts=tuple(layer_counts), **kw)
    except Exception as e:  # a TPU compile that cannot fit its HBM fails here: record it
        msg = str(e).splitlines()[0][:400]
        if "RESOURCE_EXHAUSTED" not in str(e) and "memory" not in str(e).lower():
            raise
        return {"error": msg}
    out.pop("measured", None)
    return out


def render(cache: dict, args, info: dict, versions: dict) -> str:
    rows = sorted(cache.values(), key=lambda r: (r["backend"], r["model"], r["baseline"], r["mode"], r["mesh_name"],
                                                 r["tokens"]))
    budget = args.device_gb * 1e9
    depths = ", ".join(sorted({"/".join(map(str, r["extrapolated_from"])) for r in rows if "extrapolated_from" in r}))
    L = [SECTION, "",
         f"- Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
         (f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; Python {info['python']}, jax "
          f"{versions['jax']}, flax {versions['flax']}"),
         f"- Command: `{versions['cmd']}`",
         ("- What: the real train step (`sft.make_step` + `jit_step`, the trainer's shardings) compiled on abstract "
          "parameters by `entropy_jax.train.plan.train_step_plan`; per-device bytes from `compiled.memory_analysis()`; "
          "peak = arguments + outputs − donated aliases + temporaries. Batch of 8 rows per step (1 per device on "
          "fsdp 8, 2 on fsdp 4 × tensor 2), K = tokens / 2 loss positions per row, AdamW, clipping."),
         ("- Settings unless the row says otherwise: bfloat16 compute, bf16_master precision (bfloat16 weights + "
          "float32 master + float32 moments), remat full, layers as one `lax.scan`, chunked cross-entropy (256 loss "
          "positions per row per chunk). Baseline = today's step: float32 masters cast to bfloat16 inside the step, "
          "no remat, unrolled layers, all K positions projected at once."),
         (f"- Depth: compiled at {depths} layers and **extrapolated linearly** to the model's depth (Phi-4-mini 32, "
          "Qwen2.5-3B 36 layers); per-layer slope in the last column."),
         ("- Backends: `cpu` = 8 simulated CPU devices; XLA's CPU backend upcasts bfloat16 matmul operands to float32 "
          "and fuses less, so its bytes are an **upper bound** for a GPU. `tpu` = deviceless compile for TPU v5p "
          "(8 chips, `jax.experimental.topologies`): the TPU compiler's own buffer assignment, bfloat16 kept."),
         f"- Fits = extrapolated peak ≤ {args.device_gb:g}·10⁹ bytes per device.",
         "",
         "| backend | model | mode | mesh | tokens/row | weights+state (args) | temporaries | peak / device | per layer | fits 80 GB |",
         "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        mode = r["mode"] + (f" ({r['baseline']})" if r["baseline"] else "")
        if "error" in r:
            L.append(f"| {r['backend']} | {r['model']} | {mode} | {r['mesh_name']} | {r['tokens']} | — | — | — | — | "
                     f"no: compile failed ({r['error'][:120]}) |")
            continue
        b = r["bytes"]
        ok = b["peak"] <= budget
        L.append(f"| {r['backend']} | {r['model']} | {mode} | {r['mesh_name']} | {r['tokens']} | "
                 f"{b['argument'] / 1e9:.1f} GB | {b['temp'] / 1e9:.1f} GB | **{b['peak'] / 1e9:.1f} GB** | "
                 f"{r['per_layer']['peak'] / 1e9:.2f} GB | {'yes' if ok else 'no'} |")
    L.append("")
    for backend in sorted({r["backend"] for r in rows}):
        pick = {r["baseline"]: r for r in rows if r["backend"] == backend and r["model"] == "phi4-mini"
                and r["mode"] == "full" and r["tokens"] == 4096 and r["mesh_name"] == "fsdp8" and "error" not in r}
        if "" in pick and BASELINE in pick and UNROLLED in pick:
            a, b, c = (pick[k]["bytes"]["peak"] / 1e9 for k in (BASELINE, UNROLLED, ""))
            L.append(f"- Phi-4-mini full FT, 4,096 tokens, fsdp 8 ({backend}): today's step {a:.1f} GB per device "
                     f"({pick[BASELINE]['per_layer']['peak'] / 1e9:.2f} GB per layer: every layer's activations "
                     "kept for the backward — no T × T attention scores since the blockwise attention of issue 14; "
                     "with the einsum attention before it the same row compiled to 155.6 GB); remat + chunked loss "
                     "+ bf16_master with the "
                     f"layers unrolled {b:.1f} GB ({pick[UNROLLED]['per_layer']['peak'] / 1e9:.2f} GB per layer: "
                     "no saving — with the layers unrolled the compiler may run each layer's recomputation as early "
                     "as the forward pass, and this backend's scheduler does); the same with the layers as one "
                     f"`lax.scan` {c:.1f} GB ({pick['']['per_layer']['peak'] / 1e9:.2f} GB per layer: the backward "
                     "loop recomputes one layer per iteration, whatever the backend's scheduler).")
    L.append("")
    goals = []
    for backend in sorted({r["backend"] for r in rows}):
        def find(model, mode, tokens, mesh="fsdp8", baseline="", _b=backend):
            return next((r for r in rows if r["backend"] == _b and r["model"] == model and r["mode"] == mode
                         and r["tokens"] == tokens and r["mesh_name"] == mesh and r["baseline"] == baseline), None)

        for what, r in (("Phi-4-mini full FT, 4,096-token rows, batch 8 on fsdp 8", find("phi4-mini", "full", 4096)),
                        ("Phi-4-mini LoRA r16, 8,192-token rows, batch 8 on fsdp 8", find("phi4-mini", "lora16", 8192))):
            if r is None:
                continue
            if "error" in r:
                goals.append(f"- {what} fits 80 GB ({backend}): **not met** (compile failed).")
            else:
                ok = r["bytes"]["peak"] <= budget
                goals.append(f"- {what} fits 80 GB ({backend}, extrapolated): {r['bytes']['peak'] / 1e9:.1f} GB per "
                             f"device → {'**met**' if ok else '**not met**'}.")
    if goals:
        L += ["### Goals", ""] + goals
        L += ["", "The issue's checks, `python -m bench.plan --model phi4-mini --task train --batch 8 --tokens 4096 "
              "--fsdp 8 --json` and the same with `--lora-rank 16 --tokens 8192`, plan these two rows through the "
              "same `train.plan.lower_train_step` (its defaults are the settings above, K = T / 2) and the same "
              "2/4-layer extrapolation on 8 simulated CPU devices: `total_bytes` per device and `fits` "
              "(H100-80GB: 0.95 × 81,559 MiB) as in the rows above."]
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--tokens", nargs="+", type=int, default=[2048, 4096, 8192])
    p.add_argument("--meshes", nargs="+", default=list(MESHES), choices=list(MESHES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--layer-counts", nargs=2, type=int, default=[2, 4])
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also plan, at 4096 tokens on fsdp 8, today's step (fp32 masters, no remat, unchunked) and "
                        "the new settings with the layers unrolled (no scan)")
    p.add_argument("--backend", choices=("cpu", "tpu"), default="cpu")
    p.add_argument("--tpu-topology", default="v5p:2x2x2")
    p.add_argument("--device-gb", type=float, default=80.0)
    p.add_argument("--cache", type=Path, default=REPO / "results" / "bench" / "train_plan.json")
    p.add_argument("--redo", action="store_true", help="recompile configurations already in the cache")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    cmd = shlex.join(["python", "-m", "bench.train_plan", *(sys.argv[1:] if argv is None else argv)])
    if args.backend == "cpu" and "jax" not in sys.modules and _DEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_DEVICE_FLAG}=8").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import flax
    import jax

    from entropy_jax.llm import sharding as shd
    from entropy_jax.llm.config import LlmConfig

    cache = json.loads(args.cache.read_text()) if args.cache.exists() else {}
    versions = {"jax": jax.__version__, "flax": flax.__version__, "cmd": cmd}
    if not args.render_only:
        devices = devices_for(args.backend, args.tpu_topology)
        new = {"remat": "full", "precision": "bf16_master", "compute_dtype": "bfloat16", "loss_chunk": 256,
               "scan_layers": True}
        today = {"remat": "none", "precision": "fp32", "compute_dtype": "bfloat16", "loss_chunk": 0,
                 "scan_layers": False}
        unrolled = dict(new, scan_layers=False)
        jobs = [(m, mode, t, mesh, new, "") for m in args.models for mode in args.modes for t in args.tokens
                for mesh in args.meshes]
        if args.baseline:
            jobs += [(m, "full", 4096, "fsdp8", today, BASELINE) for m in args.models]
            jobs += [(m, "full", 4096, "fsdp8", unrolled, UNROLLED) for m in args.models]
        for model, mode, tokens, mesh_name, settings, baseline in jobs:
            k = key_of(args.backend, model, mode, tokens, mesh_name, args.batch, settings)
            if k in cache and not args.redo:
                continue
            config = getattr(LlmConfig, MODELS[model])()
            d, f, t = MESHES[mesh_name]
            mesh = shd.make_mesh(data=d, fsdp=f, tensor=t, devices=devices)
            log(f"{args.backend}: {model} {mode} {tokens} tokens {mesh_name} {baseline} ...")
            t0 = time.perf_counter()
            out = run_one(config, mesh, mode_rank=MODES[mode], tokens=tokens, batch=args.batch, settings=settings,
                          layer_counts=args.layer_counts)
            out.update(backend=args.backend, model=model, mode=mode, tokens=tokens, mesh_name=mesh_name,
                       baseline=baseline, wall_s=time.perf_counter() - t0)
            msg = out.get("error") or f"peak {out['bytes']['peak'] / 1e9:.1f} GB/device (extrapolated)"
            log(f"  {msg}, {out['wall_s']:.0f} s")
            cache[k] = out
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            args.cache.write_text(json.dumps(cache, indent=1, default=str))
    text = render(cache, args, machine_info(), versions)
    print(text)
    if not args.no_write and cache:
        write_section(SECTION, text)
        log(f"Wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
