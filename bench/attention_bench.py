"""Blockwise attention (`entropy_jax.llm.attention`, the default) against the einsum reference (the
attention this project used before), in the same run, on the whole decoder.

What it measures
----------------
A random SmolLM2-135M-shaped decoder (`LlmConfig.smollm2_135m()`: 30 layers, 9 query / 3 key-value heads of
64, float32, `init_params` seed 0), built twice: `AttentionConfig("blockwise")` and
`AttentionConfig("reference")` (same params, different graph). Each row runs the same jitted library
function on the same random token ids with both graphs; repeats interleaved (blockwise, reference,
blockwise, …), best wall time of `--repeats` (default 2; 2 more for the short row, whose differences are
smallest); "compile" = first call − best call.

1. `forward` (all logits, what `LanguageModel.logits` runs) at 8 × 256 tokens;
2. `forward_last` (answer-step scoring) at 1 × 2048, 2 × 2048 with the second row left-padded by half
   (padding blocks are skipped by the blockwise kernel; the reference computes them) and 1 × 4096 (one repeat
   fewer: the reference takes minutes there);
3. one training micro-step (loss + gradient of the mean last-position log-probability w.r.t. all params;
   the custom VJP against autodiff of the einsum) at 1 × 1024 (at 1 × 2048 the reference's saved float32
   score matrices of 30 layers took 13.7 GB and the process was killed for memory on the 23 GB machine);
4. one decode step (`generate.step`) in a 32,768-slot cache at live lengths 1,024 and 32,767: the
   blockwise step reads the live prefix only; the reference attends over every slot.

Also checks that both graphs give the same logits (max |Δ| over the rows ≤ 1e-4) and the same decode
logits. Prints a table with ratios reference ÷ blockwise (wall time) and writes it into this benchmark's
section of `bench/RESULTS.md` (`--no-write` to only print). Goals (issue 14): blockwise no slower at
8 × 256 (ratio ≥ 1 within noise: ≥ 0.95), faster from 2k tokens (ratio > 1).

Command (from the repository root)::

    .venv/bin/python -m bench.attention_bench
    .venv/bin/python -m bench.attention_bench --quick --no-write   # tiny sizes, a smoke run (≈ 30 s)

Expected runtime on the 2-core machine: about 10 minutes when quiet (the reference's 4k forwards dominate);
several times that under other load.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import sys
import time

import numpy as np

from bench._results import machine_info, write_section

SECTION = "## Long-context attention: blockwise vs einsum reference (bench/attention_bench.py)"
GOAL_SHORT = 0.95  # reference ÷ blockwise at 8 × 256: "no slower" within timing noise
LOGITS_TOL = 1e-4


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_pair(name, fns: dict, repeats: int) -> dict:
    """fns: impl → zero-argument callable returning a blocked result. Interleaved repeats."""
    first, walls, outs = {}, {k: [] for k in fns}, {}
    for impl, fn in fns.items():
        outs[impl], first[impl] = _timed(fn)
        log(f"  {name} {impl}: first call {first[impl]:.2f} s")
    for _ in range(repeats):
        for impl, fn in fns.items():
            _, w = _timed(fn)
            walls[impl].append(w)
    best = {k: min(v) for k, v in walls.items()}
    log(f"  {name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in best.items()))
    return {"first": first, "walls": walls, "best": best, "outs": outs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cache", type=int, default=32768, help="decode cache length (slots)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke run); implies --no-write")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from entropy_jax.llm import LlmConfig
    from entropy_jax.llm import attention as att
    from entropy_jax.llm import generate as gen
    from entropy_jax.llm import model as mdl

    load_start = os.getloadavg()
    config = LlmConfig.smollm2_135m()
    short, long_rows, train_t, cache_len = (8, 256), (2048, 4096), 1024, args.cache
    if args.quick:
        config = config.replace(num_layers=2)
        short, long_rows, train_t, cache_len = (2, 64), (256, 512), 256, 2048
    impls = ("blockwise", "reference")
    graphs = {impl: mdl.abstract(config, attention=att.AttentionConfig(impl))[0] for impl in impls}
    _, params = mdl.init_params(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    rows, checks = [], []

    def ids_mask(b, t, pad_fraction=0.0):
        ids = rng.integers(3, config.vocab_size, size=(b, t)).astype(np.int32)
        mask = np.ones((b, t), bool)
        if b > 1 and pad_fraction:
            mask[1, : int(t * pad_fraction)] = False
        return jnp.asarray(ids), jnp.asarray(mask)

    # 1-2. forwards
    forward = jax.jit(mdl.forward, static_argnums=0)
    last = jax.jit(mdl.forward_last, static_argnums=0)
    cases = [("forward (all logits)", forward, short, 0.0, args.repeats + 2),
             ("forward_last (answer step)", last, (1, long_rows[0]), 0.0, args.repeats),
             ("forward_last (answer step)", last, (2, long_rows[0]), 0.5, args.repeats),
             ("forward_last (answer step)", last, (1, long_rows[1]), 0.0, max(1, args.repeats - 1))]
    for label, fn, (b, t), pad, repeats in cases:
        ids, mask = ids_mask(b, t, pad)
        name = f"{label} {b}×{t}" + (f", row 2 left-padded by {int(t * pad)}" if pad else "")
        calls = {i: (lambda i=i, fn=fn, ids=ids, mask=mask: fn(graphs[i], params, ids, mask).block_until_ready())
                 for i in impls}
        res = run_pair(name, calls, repeats)
        keep = np.asarray(mask) if res["outs"]["blockwise"].ndim == 3 else np.ones(b, bool)
        diff = float(np.abs(np.asarray(res["outs"]["blockwise"]) - np.asarray(res["outs"]["reference"]))[keep].max())
        checks.append((name, diff))
        rows.append((name, res))

    # 3. one training micro-step (gradient of the mean last-position log-prob w.r.t. every parameter)
    ids, mask = ids_mask(1, train_t)

    def loss(graphdef, params, ids, mask):
        logits = mdl.forward_last(graphdef, params, ids, mask)
        return jnp.mean(jax.nn.log_softmax(logits)[:, 0])

    grad = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)
    name = f"train micro-step (value_and_grad) 1×{train_t}"
    res = run_pair(name, {i: (lambda i=i: jax.block_until_ready(grad(graphs[i], params, ids, mask))) for i in impls},
                   args.repeats)
    ga, gb = (jax.tree.leaves(res["outs"][i][1]) for i in impls)
    checks.append((name + " (gradients)", max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(ga, gb))))
    rows.append((name, res))

    # 4. decode step over the live prefix of a long cache
    step = jax.jit(gen.step, static_argnums=0, donate_argnums=(2,))
    # one cache of random keys/values (the attention's cost does not depend on them), a copy per graph
    filled = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype),
                          gen.init_cache(config, 1, cache_len, jnp.float32))
    cache = {i: jax.tree.map(jnp.copy, filled) for i in impls}
    del filled
    kv_valid = jnp.ones((1, cache_len), bool)
    token = jnp.asarray([5], jnp.int32)
    decode = {}
    for live in (1024 if not args.quick else 128, cache_len - 1):
        slot = jnp.int32(live)

        def run(i, slot=slot):
            logits, cache[i] = step(graphs[i], params, cache[i], token, slot[None], kv_valid, slot)
            return logits.block_until_ready()

        name = f"decode step, live length {live:,} in a {cache_len:,}-slot cache (B = 1)"
        res = run_pair(name, {i: (lambda i=i: run(i)) for i in impls}, args.repeats + 2)
        checks.append((name, float(np.abs(np.asarray(res["outs"]["blockwise"]) -
                                          np.asarray(res["outs"]["reference"])).max())))
        rows.append((name, res))
        decode[live] = res["best"]

    load_end = os.getloadavg()
    ok = all(d <= LOGITS_TOL for n, d in checks if "gradients" not in n)
    text = render(config, rows, checks, decode, (load_start, load_end), jax, att.default_blocks())
    print(text)
    if not (args.no_write or args.quick):
        write_section(SECTION, text)
    return 0 if ok else 1


def render(config, rows, checks, decode, loads, jax, blocks) -> str:
    info = machine_info()
    cmd = "python -m bench.attention_bench" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:]))
    lines = [
        SECTION, "",
        f"- Date: {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {info['cpu']}, {info['cores']} cores (`os.cpu_count()`), {info['ram']} RAM, {info['platform']}",
        f"- Python {info['python']}, jax {jax.__version__}, backend `{jax.default_backend()}`, float32",
        f"- Command: `{cmd}`",
        (f"- 1/5/15-min load average at start {'/'.join(f'{x:.2f}' for x in loads[0])}, at end "
         f"{'/'.join(f'{x:.2f}' for x in loads[1])} (shared machine: a load above the core count stretches "
         "wall times; the two implementations are interleaved so it hits both alike)."),
        (f"- Model: random SmolLM2-135M-shaped decoder ({config.num_layers} layers, {config.num_heads}/"
         f"{config.num_kv_heads} heads of {config.head_dim}), float32; blockwise blocks {blocks[0]}×{blocks[1]} "
         "(the CPU default); best of the interleaved repeats."),
        "",
        "| task | blockwise (s) | reference (s) | reference ÷ blockwise | compile, blockwise / reference (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, res in rows:
        b, r = res["best"]["blockwise"], res["best"]["reference"]
        cb, cr = (res["first"][i] - res["best"][i] for i in ("blockwise", "reference"))
        lines.append(f"| {name} | {b:.3f} | {r:.3f} | {r / b:.2f}× | {cb:.1f} / {cr:.1f} |")
    lines += ["", "Agreement, blockwise vs reference (max |Δ|):"]
    lines += [f"- {n}: {d:.1e}" for n, d in checks]
    lives = sorted(decode)
    if len(lives) == 2:
        lo, hi = lives
        lines += ["", (f"Decode step cost vs live length (blockwise): {decode[lo]['blockwise'] * 1e3:.1f} ms at "
                       f"{lo:,} vs {decode[hi]['blockwise'] * 1e3:.1f} ms at {hi:,} "
                       f"({decode[hi]['blockwise'] / decode[lo]['blockwise']:.1f}×); reference "
                       f"{decode[lo]['reference'] * 1e3:.1f} vs {decode[hi]['reference'] * 1e3:.1f} ms "
                       "(it reads every slot).")]
    short = rows[0][1]["best"]
    longer = [res["best"] for name, res in rows[1:4]]
    ratio_short = short["reference"] / short["blockwise"]
    lines += ["", "### Goals", "",
              (f"- No slower at 8 × 256 (ratio ≥ {GOAL_SHORT}): {ratio_short:.2f}× → "
               f"{'**met**' if ratio_short >= GOAL_SHORT else '**not met**'}"),
              "- Faster from 2k tokens: " + ", ".join(f"{b['reference'] / b['blockwise']:.2f}×" for b in longer)
              + (" → **met**" if all(b["reference"] > b["blockwise"] for b in longer) else " → **not met**"), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
