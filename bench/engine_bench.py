"""Continuous batching against static batching, and a GPU-hours extrapolation for Chapter 5's trace workload.

Command:

    python -m bench.engine_bench            # about 15 minutes on 2 loaded CPU cores

1. **Throughput** — the embedded SmolLM2-135M-Instruct (float32) answers `--requests` chat prompts (questions
   asking for explanations and stories, so that answers are long) with budgets drawn log-normal (median
   `--median`, σ `--sigma` in log space, clipped to [8, 512] tokens; seed `--seed`), greedy, stopping at the end
   of turn, `--slots` rows at a time. Reference: static batching (`engine.generate(batching="static")`: today's
   `LanguageModel.generate` over consecutive batches of `--slots` requests in request order, each until its
   longest row ends). Ours: the continuous-batching engine on the same request list. Each mode runs once untimed
   (compilation) and once timed; tokens/s = generated tokens (stop tokens included) ÷ wall time of the timed call,
   prefill included. Checked: identical tokens for every request, entropies within 1e-4.
2. **Step cost** — one decode step (`generate.step`) timed at N ∈ {1, `--slots`} rows and live lengths
   {64, 512} in a cache of 1024, a linear cost model fitted to it (`StepCost.fit`), and its prediction of the
   two runs' decode seconds (from their own request lengths, `simulate`) next to the measured ones.
3. **Chapter 5 extrapolation** (`chapter5_gpu_hours`): the five Qwen3 thinkers × 448 GPQA-main questions, from
   a step-cost model: a roofline of one H100 here (no GPU on this machine), or the step cost measured on the
   GPU (`--gpu`, when JAX's backend is a GPU: a random-weight model of each preset's shape, bfloat16). The
   assumptions are in `chapter5_gpu_hours`'s docstring and printed with the table.

Writes the "Continuous batching" section of bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from bench import _results as shared

SECTION = "## Chapter 5 — continuous batching vs static batching (bench/engine_bench.py)"
MODEL = "smollm2-135m-instruct"
TOPICS = ["the water cycle", "how a bicycle works", "the history of the printing press", "volcanoes",
          "how vaccines work", "the life of a honeybee", "black holes", "the Roman empire", "photosynthesis",
          "how computers store numbers", "the moon landing", "ocean tides", "rainbows", "how bread rises",
          "the immune system", "earthquakes"]
FORMS = ["Explain {} in detail.", "Write a short story about {}.", "Tell me three facts about {}.",
         "Describe {} to a ten-year-old."]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prompts(n: int) -> list[str]:
    """n distinct chat questions (topic × form, cycling)."""
    return [FORMS[(i // len(TOPICS)) % len(FORMS)].format(TOPICS[i % len(TOPICS)]) for i in range(n)]


def lognormal_budgets(n: int, *, median: float, sigma: float, seed: int, lo: int = 8, hi: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(median * np.exp(sigma * rng.standard_normal(n))), lo, hi).astype(int)


# ---------------------------------------------------------------------------------------------- step-cost model
@dataclasses.dataclass(frozen=True)
class StepCost:
    """Seconds of one decode step over N rows that read `kv` cached key/value tokens in all:
    fixed + per_row · N + per_kv_token · kv. `fixed` is reading the weights (decode is bandwidth-bound) plus
    launch overheads; per_row the rows' own compute (projections, full-vocabulary logits, entropy);
    per_kv_token the attention's reads of the cache."""

    fixed: float
    per_row: float
    per_kv_token: float
    source: str = ""

    def seconds(self, rows, kv_tokens):
        return self.fixed + self.per_row * rows + self.per_kv_token * kv_tokens

    @classmethod
    def fit(cls, measured: list[tuple[int, int, float]], source: str = "fit") -> StepCost:
        """Least squares over (rows, kv tokens read, seconds) measurements (coefficients clipped at 0)."""
        a = np.array([[1.0, n, kv] for n, kv, _ in measured])
        y = np.array([s for *_, s in measured])
        coef = np.maximum(np.linalg.lstsq(a, y, rcond=None)[0], 0.0)
        return cls(float(coef[0]), float(coef[1]), float(coef[2]), source)

    @classmethod
    def roofline(cls, config, *, hbm_bytes_per_s: float = 3.35e12, efficiency: float = 0.5,
                 flops_per_s: float = 989e12, mfu: float = 0.3, dtype_bytes: int = 2, source: str = "") -> StepCost:
        """A bandwidth roofline: the weights (`dtype_bytes` each) and the cache reads at `efficiency` of the HBM
        bandwidth (H100 SXM: 3.35 TB/s), each row's 2·params FLOPs at `mfu` of the peak (989 TFLOP/s bf16)."""
        params = num_params(config)
        bw = hbm_bytes_per_s * efficiency
        kv_bytes = 2 * config.num_layers * config.num_kv_heads * config.head_dim * dtype_bytes
        return cls(params * dtype_bytes / bw, 2 * params / (flops_per_s * mfu), kv_bytes / bw,
                   source or f"roofline {hbm_bytes_per_s / 1e12:.2f} TB/s × {efficiency:.0%}")


def num_params(config) -> int:
    import jax

    from entropy_jax.llm import model as mdl

    _, abstract = mdl.abstract(config)
    return int(sum(math.prod(a.shape) for a in jax.tree.leaves(abstract)))


def simulate(lengths, *, slots: int, batching: str, prompt: int | Sequence = 0, attention: str = "live_max",
             cache_len: int | None = None) -> dict:
    """Decode steps and key/value tokens read of generating sequences of `lengths` new tokens after prompts of
    `prompt` tokens (one or per sequence), `slots` rows at a time.

    batching "static": consecutive batches in order, each for its longest row's steps; "continuous": a free slot
    takes the next sequence at once (in order: lengths are unknown in advance). attention: "allocated" (every
    step reads the whole cache of `cache_len` slots per row: decode before the attention issue), "live_max"
    (each row reads up to the longest live prefix among the rows: our blockwise kernel's shared block range),
    "ragged" (each row its own live prefix: a ragged/paged kernel). Returns {"steps", "row_steps", "kv_tokens",
    "tokens"}."""
    lengths = np.asarray(lengths, np.int64)
    prompts_ = np.broadcast_to(np.asarray(prompt, np.int64), lengths.shape)
    steps = kv = row_steps = 0
    if batching == "static":
        for s in range(0, len(lengths), slots):
            ln, pr = lengths[s:s + slots], prompts_[s:s + slots]
            n, rows = int(ln.max()), len(ln)
            i = np.arange(n)
            steps += n
            row_steps += n * rows
            if attention == "allocated":
                kv += n * rows * (cache_len or int((pr + ln).max()))
            elif attention == "live_max":
                kv += int(rows * (pr.max() * n + i.sum()))
            else:  # ragged: rows that finished stop reading
                kv += int(sum(p * min(n_, n) + min(n_, n) * (min(n_, n) - 1) // 2 for p, n_ in zip(pr, ln)))
        return {"steps": steps, "row_steps": row_steps, "kv_tokens": kv, "tokens": int(lengths.sum())}
    # continuous: event-driven; between two events the running set is fixed and every live length grows by one
    live = np.zeros(slots, np.int64)   # current live length per slot (0: idle)
    left = np.zeros(slots, np.int64)   # steps left per slot
    queue = list(range(len(lengths)))[::-1]
    while queue or left.any():
        for s in np.flatnonzero(left == 0):
            if queue:
                j = queue.pop()
                live[s], left[s] = prompts_[j], lengths[j]
            else:
                live[s] = 0
        run = left > 0
        k = int(left[run].min())
        t = np.arange(k)
        steps += k
        row_steps += k * slots
        if attention == "allocated":
            kv += k * slots * (cache_len or int((prompts_ + lengths).max()))
        elif attention == "live_max":
            kv += int(slots * (live[run].max() * k + t.sum()))
        else:
            kv += int(live[run].sum() * k + run.sum() * t.sum())
        live[run] += k
        left[run] -= k
    return {"steps": steps, "row_steps": row_steps, "kv_tokens": kv, "tokens": int(lengths.sum())}


def predict_seconds(cost: StepCost, sim: dict, slots: int) -> float:
    """Decode seconds of a simulated run under a step-cost model (each step: all `slots` rows)."""
    return cost.fixed * sim["steps"] + cost.per_row * sim["row_steps"] + cost.per_kv_token * sim["kv_tokens"]


# Chapter 5 at full size (issue 15): mean thinking-trace lengths of the smallest and largest thinker; the others
# are interpolated log-linearly in the parameter count
THINKERS = ("qwen3_0_6b", "qwen3_1_7b", "qwen3_4b", "qwen3_8b", "qwen3_14b")
MEAN_TOKENS = {"qwen3_0_6b": 14_500, "qwen3_14b": 4_600}


def _lognormal_lengths(n: int, mean: float, sigma: float, lo: int, hi: int, rng) -> np.ndarray:
    """n log-normal lengths with σ `sigma`, clipped to [lo, hi], whose clipped mean is `mean` (bisection)."""
    z = rng.standard_normal(n)
    a, b = math.log(lo), math.log(hi)
    for _ in range(60):
        mu = (a + b) / 2
        if np.clip(np.exp(mu + sigma * z), lo, hi).mean() < mean:
            a = mu
        else:
            b = mu
    return np.clip(np.round(np.exp(mu + sigma * z)), lo, hi).astype(np.int64)


def chapter5_gpu_hours(costs: dict | None = None, *, questions: int = 448, prompt: int = 400, slots: int = 8,
                       sigma: float = 0.8, lo: int = 1_000, hi: int = 32_000, seed: int = 0) -> list[dict]:
    """GPU-hours of Chapter 5's greedy thinking traces, per thinker and schedule, from step-cost models.

    Assumptions (stated, not measured): 448 GPQA-main questions per thinker, prompts of `prompt` tokens; trace
    lengths log-normal (σ = `sigma` in log space) clipped to [1k, 32k], with means 14.5k (Qwen3-0.6B) and 4.6k
    (Qwen3-14B) as simulated in the issue and log-linear in the parameter count between them; one GPU per
    thinker run, `slots` rows (static batch = slots); a decode step costs `StepCost` (default: `roofline` of one
    H100, bf16 weights and cache, 50% of HBM bandwidth, 30% MFU for the rows' FLOPs); prefill ignored (one pass
    over ~400 tokens per question is < 0.1% of the decode). Schedules: today's static batches over the whole
    allocated cache; static with live-prefix attention; continuous batching with our kernel (rows read up to the
    longest live prefix); continuous with a ragged/paged kernel (each row its own prefix).
    `costs`: thinker → StepCost (e.g. measured on a GPU); missing thinkers use the roofline."""
    from entropy_jax.llm.config import LlmConfig

    rng = np.random.default_rng(seed)
    configs = {t: getattr(LlmConfig, t)() for t in THINKERS}
    sizes = {t: num_params(c) for t, c in configs.items()}
    x0, x1 = math.log(sizes["qwen3_0_6b"]), math.log(sizes["qwen3_14b"])
    y0, y1 = math.log(MEAN_TOKENS["qwen3_0_6b"]), math.log(MEAN_TOKENS["qwen3_14b"])
    rows = []
    schedules = (("static, whole cache (before #14)", "static", "allocated"),
                 ("static, live prefix (#14)", "static", "live_max"),
                 ("continuous, our kernel", "continuous", "live_max"),
                 ("continuous, ragged/paged kernel", "continuous", "ragged"))
    for t, config in configs.items():
        mean = math.exp(y0 + (y1 - y0) * (math.log(sizes[t]) - x0) / (x1 - x0))
        lengths = _lognormal_lengths(questions, mean, sigma, lo, hi, rng)
        cost = (costs or {}).get(t) or StepCost.roofline(config)
        row = {"thinker": t, "params": sizes[t], "mean_tokens": float(lengths.mean()), "cost": cost}
        for name, batching, attention in schedules:
            sim = simulate(lengths, slots=slots, batching=batching, prompt=prompt, attention=attention,
                           cache_len=prompt + hi)
            row[name] = predict_seconds(cost, sim, slots) / 3600
            row[name + " wasted"] = 1 - sim["tokens"] / sim["row_steps"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- measurements
def measure_step_cost(lm, *, rows=(1, 8), live=(256, 1536), cache_len: int = 2048,
                      repeats: int = 5) -> tuple[StepCost, list]:
    """(`StepCost` fitted to timed decode steps, the measurements (rows, kv tokens, seconds)): `generate.step`
    on a zero cache (values do not change the cost) at `rows` × `live` lengths, best of `repeats`. The
    blockwise attention reads whole key blocks (512), so kv tokens = rows · live rounded up to blocks."""
    import jax
    import jax.numpy as jnp

    from entropy_jax.llm import generate as gen

    step = jax.jit(gen.step, static_argnums=0, donate_argnums=2)
    measured = []
    for n in rows:
        for ln in live:
            cache = gen.init_cache(lm.config, n, cache_len, lm.dtype)
            token = jnp.zeros((n,), jnp.int32)
            slot = jnp.full((n,), ln - 1, jnp.int32)
            valid = jnp.ones((n, cache_len), bool)
            logits, cache = step(lm.graphdef, lm.params, cache, token, slot, valid, slot)
            logits.block_until_ready()
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                logits, cache = step(lm.graphdef, lm.params, cache, token, slot, valid, slot)
                logits.block_until_ready()
                best = min(best, time.perf_counter() - t0)
            block = min(512, cache_len)
            measured.append((n, n * -(-ln // block) * block, best))
            log(f"step N={n} live={ln}: {best * 1e3:.1f} ms")
    return StepCost.fit(measured, source=f"fit to {len(measured)} timed steps"), measured


def throughput(args) -> dict:
    from entropy_jax import llm
    from entropy_jax.llm import engine

    lm = llm.load(MODEL)
    budgets = lognormal_budgets(args.requests, median=args.median, sigma=args.sigma, seed=args.seed)
    reqs = engine.make_requests(lm, prompts(args.requests), chat=True, max_new_tokens=budgets.tolist(),
                                stop_token_ids=() if args.ignore_eos else None)
    out = {"budgets": budgets, "prompt_lengths": [len(r.prompt) for r in reqs]}
    modes = ("static", "continuous")
    for mode in modes:
        t0 = time.perf_counter()
        res, _ = engine.generate(lm, reqs, slots=args.slots, batching=mode, decode_text=False, chunk_steps=args.chunk)
        out[mode] = {"results": res, "first_call_s": time.perf_counter() - t0, "all_s": []}
        log(f"{mode}: first (compiling) call {out[mode]['first_call_s']:.1f} s")
    for _ in range(args.repeats):  # interleaved, so that both modes see the same machine load
        for mode in modes:
            cpu0 = time.process_time()
            _, stats = engine.generate(lm, reqs, slots=args.slots, batching=mode, decode_text=False,
                                       chunk_steps=args.chunk)
            cpu = time.process_time() - cpu0
            out[mode]["all_s"].append(stats.seconds)
            if "stats" not in out[mode] or stats.seconds < out[mode]["stats"].seconds:
                out[mode]["stats"], out[mode]["cpu_s"] = stats, cpu
            log(f"{mode}: {stats.seconds:.1f} s, {stats.tokens_per_s:.1f} tokens/s, {stats.forward_passes} passes")
    same = all(np.array_equal(a.tokens, b.tokens) for a, b in zip(out["static"]["results"],
                                                                   out["continuous"]["results"]))
    out["same_tokens"] = same
    out["max_entropy_diff"] = max(float(np.abs(a.entropy - b.entropy).max()) if same else math.nan
                                  for a, b in zip(out["static"]["results"], out["continuous"]["results"]))
    out["lengths"] = np.array([len(r.tokens) for r in out["continuous"]["results"]])
    if not args.no_step_cost:
        out["cost"], out["measured"] = measure_step_cost(lm, rows=(1, args.slots), live=(256, 1536), cache_len=2048)
        for mode in ("static", "continuous"):
            order = np.arange(len(reqs))
            if mode == "continuous":
                order = np.asarray(engine.schedule(reqs, "longest"))
            # the first token of a request comes from its prefill; a static batch also runs one last step
            new = out["lengths"][order] - (1 if mode == "continuous" else 0)
            sim = simulate(new, slots=args.slots, batching=mode,
                           prompt=np.asarray(out["prompt_lengths"])[order])
            out[mode]["predicted_decode_s"] = predict_seconds(out["cost"], sim, args.slots)
    return out


def gpu_costs(args) -> dict:
    """StepCost per thinker measured on the GPU (random weights of each preset's shape, bfloat16)."""
    import jax
    import jax.numpy as jnp

    from entropy_jax import llm
    from entropy_jax.llm.config import LlmConfig

    costs = {}
    for t in THINKERS:
        config = getattr(LlmConfig, t)()
        graphdef, params = llm.init_params(config, jax.random.key(0), jnp.bfloat16)
        lm = llm.from_params(config, graphdef, params)
        costs[t] = measure_step_cost(lm, rows=(1, args.slots), live=(1024, 16384), cache_len=32768)[0]
        del lm, params
    return costs


def report(args, out, gpu_rows, load_start, load_end) -> str:
    import jax

    s, c = out["static"]["stats"], out["continuous"]["stats"]
    info = shared.machine_info()
    lines = [SECTION, "",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             (f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['platform']}; "
             f"backend `{jax.default_backend()}`"),
             f"- Command: `python -m bench.engine_bench {' '.join(sys.argv[1:])}`".rstrip(),
             f"- 1/5/15-min load average at start {shared.fmt_load(load_start)}, at end {shared.fmt_load(load_end)}"
             + (": the machine was shared and loaded (load above its cores), so wall times include waiting for a "
                "CPU; both modes ran in the same conditions, interleaved in one process"
                if max(load_start[0], load_end[0]) > (info["cores"] or 1) else ""),
             (f"- Model: SmolLM2-135M-Instruct (embedded GGUF, float32). {args.requests} chat requests "
             f"(prompts {min(out['prompt_lengths'])}–{max(out['prompt_lengths'])} tokens), budgets log-normal "
             f"(median {args.median}, σ {args.sigma}, clipped to [8, 512], seed {args.seed}): "
             f"{int(out['budgets'].min())}–{int(out['budgets'].max())}, sum {int(out['budgets'].sum())}; "
             f"greedy, {'no stop ids' if args.ignore_eos else 'stopping at the end of turn'}; generated "
             f"{int(out['lengths'].sum())} tokens ({int(out['lengths'].min())}–{int(out['lengths'].max())} per "
             f"request); {args.slots} slots (static: batches of {args.slots}); chunk {args.chunk} steps."),
             (f"- Timed: best of {args.repeats} calls of each mode, interleaved, after one untimed (compiling) "
              "call each; tokens/s = generated tokens ÷ wall time, prefill included. All timed wall times: "
              + "; ".join(f"{m} " + ", ".join(f"{x:.1f}" for x in out[m]["all_s"]) + " s"
                          for m in ("static", "continuous")) + "."), "",
             ("| batching | wall (s) | prefill (s) | decode (s) | ms / decode step | tokens/s | forward passes | "
              "decode steps | row-steps | wasted row-steps | CPU (s) | first call (s) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, mode in (("static (today's `LanguageModel.generate`)", "static"),
                       ("continuous (`engine.generate`)", "continuous")):
        st, first, cpu = out[mode]["stats"], out[mode]["first_call_s"], out[mode]["cpu_s"]
        lines.append(f"| {name} | {st.seconds:.1f} | {st.prefill_seconds:.1f} | {st.decode_seconds:.1f} | "
                     f"{1e3 * st.decode_seconds / max(st.decode_steps, 1):.0f} | {st.tokens_per_s:.1f} | {st.forward_passes} | {st.decode_steps} | {st.row_steps} | "
                     f"{st.wasted_row_steps} ({st.wasted_row_steps / max(st.row_steps, 1):.0%}) | {cpu:.1f} | {first:.1f} |")
    ratio = c.tokens_per_s / s.tokens_per_s
    lines += ["",
              (f"- Continuous ÷ static: **{ratio:.2f}×** tokens/s, {c.forward_passes / s.forward_passes:.2f}× the "
              f"forward passes, {c.wasted_row_steps / max(s.wasted_row_steps, 1):.2f}× the wasted row-steps; CPU time "
               f"(this process, all threads: a cross-check on a shared machine) {out['static']['cpu_s'] / out['continuous']['cpu_s']:.2f}× less."),
              (f"- Same tokens for every request: {out['same_tokens']}; max |Δ entropy| "
              f"{out['max_entropy_diff']:.1e} nats."),
              (f"- Trace counts (timed calls): static {s.trace_counts or '{} (none: compiled by the first call)'}, "
              f"continuous {c.trace_counts or '{} (none: compiled by the first call)'}.")]
    if "cost" in out:
        cost = out["cost"]
        lines += [f"- Step cost on this machine ({cost.source}): fixed {cost.fixed * 1e3:.1f} ms + "
                  f"{cost.per_row * 1e3:.2f} ms/row + {cost.per_kv_token * 1e6:.3f} µs per cached token read; "
                  "measured (rows, kv tokens, ms): "
                  + ", ".join(f"({n}, {kv}, {t * 1e3:.1f})" for n, kv, t in out["measured"]) + ".",
                  (f"- Predicted decode seconds from the step cost and the runs' own lengths (`simulate`): static "
                  f"{out['static']['predicted_decode_s']:.1f} (measured {s.decode_seconds:.1f}), continuous "
                  f"{out['continuous']['predicted_decode_s']:.1f} (measured {c.decode_seconds:.1f}).")]
    lines += ["", "### Chapter 5 extrapolation: GPU-hours of the thinking traces (`chapter5_gpu_hours`)", "",
              "Not measured here: " + ("step costs measured on this GPU." if args.gpu else
                                       "no GPU on this machine, so every row uses the H100 roofline "
                                       "(`StepCost.roofline`: bf16 weights and cache at 50% of 3.35 TB/s, rows' "
                                       "FLOPs at 30% MFU)."),
              ("Assumptions: 448 questions per thinker, 400-token prompts, trace lengths log-normal (σ 0.8) "
              "clipped to [1k, 32k] with means 14.5k (0.6B) and 4.6k (14B), log-linear in parameters between; "
              f"{args.slots} slots; prefill ignored; one GPU."), ""]
    names = [k for k in gpu_rows[0] if isinstance(gpu_rows[0][k], float) and not k.endswith("wasted")
             and k not in ("mean_tokens",)]
    lines += ["| thinker | params | mean trace | " + " | ".join(names) + " |",
              "|---|---:|---:|" + "---:|" * len(names)]
    for r in gpu_rows:
        lines.append(f"| {r['thinker']} | {r['params'] / 1e9:.2f} B | {r['mean_tokens']:.0f} | "
                     + " | ".join(f"{r[n]:.1f} h ({r[n + ' wasted']:.0%} wasted)" for n in names) + " |")
    totals = {n: sum(r[n] for r in gpu_rows) for n in names}
    lines.append("| **all five** | | | " + " | ".join(f"**{totals[n]:.1f} h**" for n in names) + " |")
    lines += ["", "### Goals", "",
              f"- ≥ 2× the static path's tokens/s on 2 CPU cores: {ratio:.2f}× → {shared.fmt_met(ratio >= 2)}.",
              f"- Same tokens: {shared.fmt_met(out['same_tokens'])}.", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--median", type=float, default=64.0)
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="timed calls of each mode (best kept)")
    p.add_argument("--ignore-eos", action="store_true", help="generate every budget in full")
    p.add_argument("--no-step-cost", action="store_true")
    p.add_argument("--gpu", action="store_true", help="measure the thinkers' step costs on the GPU")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing RESULTS.md")
    args = p.parse_args(argv)
    import os

    import jax

    load_start = os.getloadavg()
    out = throughput(args)
    costs = None
    if args.gpu:
        if jax.default_backend() != "gpu":
            raise SystemExit(f"--gpu needs a GPU backend; JAX's default backend is {jax.default_backend()!r}")
        costs = gpu_costs(args)
    rows = chapter5_gpu_hours(costs, slots=args.slots)
    text = report(args, out, rows, load_start, os.getloadavg())
    print(text)
    if not args.no_write:
        shared.write_section(SECTION, text)


if __name__ == "__main__":
    main()
