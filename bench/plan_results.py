"""The memory plans recorded in bench/RESULTS.md: the Chapter 5 answer step of every Qwen3 size at 16k and 32k
tokens and a decode step at live length 32k, each on the smallest mesh that fits an 80 GB H100
(`bench.plan --find-mesh H100-80GB`), plus two checks of the method: the 2/4-layer extrapolation against a
full compile (Qwen3-0.6B, 4k answer step), and `--layers 2` against a direct compile of
`model.forward_last` (Qwen3-14B, 32k).

    python -m bench.plan_results --save plans.json   # writes its section of bench/RESULTS.md (--no-write: print)
    python -m bench.plan_results --render plans.json --tpu-json a.json   # re-render, adding deviceless-TPU
                                             # plans made with `bench.plan ... --tpu v5p:2x2x1 --json > a.json`

Runtime on 2 cores: about 10 minutes (two compiles of a 2- and 4-layer model per plan and mesh tried).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

from bench import plan as pl
from bench._results import machine_info, write_section

SECTION = "## Memory plans: Chapter 5 answer and decode steps (bench/plan.py)"
SIZES = ("qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b")


def _args(extra: list[str]):
    return pl.parse(extra)


def _gib(x) -> str:
    return f"{x / 2**30:.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--tpu-json", nargs="*", default=[], help="bench.plan --json outputs of deviceless TPU plans")
    p.add_argument("--save", default=None, help="also write the raw plans to this JSON file")
    p.add_argument("--render", default=None, help="render a --save file instead of planning again")
    opts = p.parse_args(argv)
    pl._setup_devices(8, None)
    import jax

    tpu = [json.loads(Path(f).read_text()) for f in opts.tpu_json]
    raw = json.loads(Path(opts.render).read_text()) if opts.render else compute()
    if opts.save:
        Path(opts.save).write_text(json.dumps(raw))
    text = render(**raw, tpu=tpu, jax=jax)
    print(text)
    if not opts.no_write:
        write_section(SECTION, text)
    return 0


def compute() -> dict:
    import jax
    import jax.numpy as jnp

    t0 = time.perf_counter()
    load_start = os.getloadavg()
    rows = []
    for model in SIZES:
        for task, tokens in (("answer", 16384), ("answer", 32768), ("decode", 32768)):
            args = _args(["--model", model, "--task", task, "--batch", "1", "--tokens", str(tokens),
                          "--find-mesh", "H100-80GB"])
            print(f"{model} {task} {tokens}", file=sys.stderr, flush=True)
            rows.append(pl.find_mesh(args))

    # the extrapolation against a full compile
    small = ["--model", "qwen3-0.6b", "--task", "answer", "--batch", "1", "--tokens", "4096"]
    extrapolated = pl.plan(_args(small))
    full = pl.plan(_args([*small, "--full"]))
    # --layers 2 against a direct compile of model.forward_last (no mesh, no shardings)
    two = pl.plan(_args(["--model", "qwen3-14b", "--task", "answer", "--batch", "1", "--tokens", "32768",
                         "--layers", "2"]))
    from entropy_jax.llm import LlmConfig
    from entropy_jax.llm import model as mdl

    graphdef, params = mdl.abstract(LlmConfig.qwen3_14b().replace(num_layers=2), jnp.bfloat16)
    ids = jax.ShapeDtypeStruct((1, 32768), jnp.int32)
    mask = jax.ShapeDtypeStruct((1, 32768), jnp.bool_)
    direct = jax.jit(lambda p, x, m: mdl.forward_last(graphdef, p, x, m)).lower(params, ids, mask).compile()
    direct_temp = direct.memory_analysis().temp_size_in_bytes
    return {"rows": rows, "extrapolated": extrapolated, "full": full, "two": two, "direct_temp": direct_temp,
            "loads": [load_start, os.getloadavg()], "seconds": time.perf_counter() - t0,
            "date": f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M}", "machine": machine_info()}


def render(rows, extrapolated, full, two, direct_temp, tpu, loads, seconds, jax, date, machine) -> str:
    info = machine
    lines = [SECTION, "",
             (f"- Date: {date} UTC; command `python -m bench.plan_results` "
             f"({seconds / 60:.1f} min)"),
             (f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; jax {jax.__version__}; "
             "8 simulated CPU devices (`--xla_force_host_platform_device_count=8`); load average "
             f"{'/'.join(f'{x:.2f}' for x in loads[0])} at start, {'/'.join(f'{x:.2f}' for x in loads[1])} at end"),
             ("- Each row: `python -m bench.plan --model M --task T --batch 1 --tokens N --find-mesh H100-80GB`: "
              "bfloat16 parameters, blockwise attention (the default), the smallest mesh of "
              f"{pl.MESH_CANDIDATES['serve']} (data, fsdp, tensor) whose per-device arguments + outputs + temp − "
              "aliased bytes fit 0.95 × 79.6 GiB. All full-depth numbers are **extrapolated** linearly from "
              "compiles of the same model with 2 and 4 layers (checked below). Decode: one `generate.step` "
              "writing slot 32,767 of a 32,768-slot bf16 cache (its KV cache is the argument that grows)."),
             ("- **CPU caveat**: XLA's CPU backend computes bf16 dots in float32, so it keeps a float32 copy of "
              "every layer's weights and of the embedding live (temp grows ≈ 4 bytes × layer parameters per "
              "layer). The temp column is therefore far above what a GPU/TPU compile needs; see the deviceless "
              "TPU rows for native bf16 numbers. Meshes chosen from CPU numbers are conservative."),
             "",
             ("| model | task | tokens | mesh (d, f, t) | arguments / device (GiB) | temp / device (GiB) | "
             "total / device (GiB) | fits H100-80GB | fits H200-141GB | fits TPUv5p-95GB | model FLOP |"),
             "|---|---|---:|---|---:|---:|---:|---|---|---|---:|"]
    for r in rows:
        d, m = r["per_device"], r["mesh"]
        lines.append(f"| {r['model']} | {r['task']} | {r['tokens']:,} | ({m['data']}, {m['fsdp']}, {m['tensor']}) | "
                     f"{_gib(d['argument_bytes'])} | {_gib(d['temp_bytes'])} | {_gib(d['total_bytes'])} | "
                     + " | ".join("yes" if r["fits"][k] else "no" for k in pl.HBM)
                     + f" | {r['flops']:.2e} |")
    if tpu:
        lines += ["", ("Deviceless TPU v5p compiles (`python -m bench.plan ... --tensor 1 --tpu v5p:2x2x1 --json`, "
                       "libtpu 0.0.42.1 installed with `pip install --target`, outside the venv): native bf16, one "
                       "chip, full depth extrapolated from 2 and 4 layers like the CPU rows. Without the CPU "
                       "backend's float32 weight copies every one of these steps fits a single device:"), "",
                  ("| model | task | tokens | arguments (GiB) | temp (GiB) | total (GiB) | fits TPUv5p-95GB | "
                  "fits H100-80GB | compile (s) |"), "|---|---|---:|---:|---:|---:|---|---|---:|"]
        for r in tpu:
            d = r["per_device"]
            lines.append(f"| {r['model']} | {r['task']} | {r['tokens']:,} | {d['argument_bytes'] / 2**30:.2f} | "
                         f"{d['temp_bytes'] / 2**30:.2f} | {d['total_bytes'] / 2**30:.2f} | "
                         f"{'yes' if r['fits']['TPUv5p-95GB'] else 'no'} | {'yes' if r['fits']['H100-80GB'] else 'no'} | "
                         f"{r['compile_seconds']} |")
    e, f = extrapolated["per_device"], full["per_device"]
    lines += ["", "### Checks of the method", "",
              (f"- Extrapolation vs a full compile (Qwen3-0.6B answer step, 4,096 tokens, 28 layers): temp "
               f"{_gib(e['temp_bytes'])} vs {_gib(f['temp_bytes'])} GiB ({e['temp_bytes'] / f['temp_bytes'] - 1:+.1%}), "
               f"arguments {_gib(e['argument_bytes'])} vs {_gib(f['argument_bytes'])} GiB "
               f"({e['argument_bytes'] / f['argument_bytes'] - 1:+.2%}), total {_gib(e['total_bytes'])} vs "
               f"{_gib(f['total_bytes'])} GiB ({e['total_bytes'] / f['total_bytes'] - 1:+.1%}); full compile "
               f"{full['compile_seconds']} s vs {extrapolated['compile_seconds']} s for the 2 + 4 layers."),
              (f"- `--layers 2` vs a direct compile of `model.forward_last` (Qwen3-14B, 1 × 32,768, bf16, no mesh): "
               f"temp {_gib(two['per_device']['temp_bytes'])} vs {_gib(direct_temp)} GiB "
               f"({two['per_device']['temp_bytes'] / direct_temp - 1:+.1%}); issue 14's target ≤ 16 GiB "
               f"({'met' if direct_temp <= 16 * 2**30 else 'not met'}; the einsum attention needed 327 GiB)."), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
