"""Chapters 3–5: completions with per-token entropy — one prompt (timings of load, compilation and decoding), or
a file of many prompts through the continuous-batching engine.

Command (one prompt):

    python -m launch.generate --model smollm2-135m-instruct --prompt "What is the capital of France?"

Runtime on 2 CPU cores: about 20 s wall (measured 19 s): load ≈ 9 s (16 s, 25 s wall, the first time, while
the GGUF's config and tokenizer are converted into ~/.cache/entropy_jax), first call ≈ 7 s of which ≈ 6.6 s
compilation, warm second call ≈ 0.3 s ≈ 26–32 tokens/s; other jobs on the cores make it up to ~1.5× slower.
Greedy output of the embedded Q4_1 SmolLM2-135M-Instruct (8 tokens including the end-of-turn token; their
entropies: 3.59 for "The", ≤ 0.38 for " capital of France is Paris", 0.76 for ".", 1.44 for <|im_end|>):

    The capital of France is Paris.

    8 tokens, mean entropy 0.835 nats/token (cpu, 2 device(s), mesh None)
    load 9.3 s | first call 7.00 s (compile ≈ 6.57 s) | warm 0.304 s = 26.3 tokens/s (prefill 0.120 s,
    decode 0.182 s for 8 steps)

Command (many prompts, `entropy_jax.llm.batch`):

    python -m launch.generate --prompts data/prompts_example.jsonl --slots 4 --out results/prompts.json

Runtime on 2 CPU cores (measured while other jobs loaded them, load average ≈ 8): about 65 s wall, of which
≈ 50 s generating (compilation of the engine's insert and chunk programs included): 8 requests, 337 tokens,
131 forward passes, 508 row-steps (179 wasted), ≈ 7 tokens/s; `--batching static` gives the same tokens with 194
forward passes, 768 row-steps (439 wasted) in ≈ 80 s. It prints one line per prompt, e.g.

    capital: 8 tokens, mean entropy 0.835, eos: 'The capital of France is Paris.'

--prompts FILE: one JSON object per line, {"prompt": str, "max_new_tokens": int (optional, default
--max-new-tokens), "id": str (optional, default the line number)}, each prompt in the chat template as with
--prompt (--no-chat: raw text); a bad line is an error naming the file and line, before the model loads. --slots N
decode slots; --batching continuous (the engine: a finished request's slot takes the next one at once) or static
(today's `LanguageModel.generate` over consecutive batches of N, kept for comparison: same greedy tokens, more
forward passes). A progress bar shows requests and tokens/s. --out FILE writes JSON with "results" (one object
per prompt, in file order: "id", "tokens" (ids), "entropy" and "log_prob" per generated token (nats), "text",
"stop_reason", …) and "stats" ("forward_passes", "generated_tokens", "row_steps", "wasted_row_steps",
"tokens_per_s", seconds, compilation included). --prompts replaces --prompt.

Any `load` source works for --model (a Hugging Face directory, a .gguf file, a hub id when online).
--temperature > 0 samples with --seed and nucleus --top-p; the per-token entropy is always that of the
full, untruncated temperature-1 distribution (`entropy_settings` in the JSON). --out FILE writes the
completion, its tokens, per-token entropy and log-prob, the settings and the timings.

Every flag is checked before the model loads ("error: --flag: …", exit 1; a prompt that leaves no room for
--max-new-tokens in the model's context is named too); while --out FILE is written, FILE.lock keeps a second
process from writing it.

Mesh flags --data / --fsdp / --tensor (one may be -1: the remaining devices) shard the model over a
(data, fsdp, tensor) mesh; all 1 (the default) runs on one device. On TPU pods and GPU clusters start it
with launch/tpu_pod.sh or launch/gpu_cluster.sh (docs/clusters.md); --distributed forces
`jax.distributed.initialize()` where the environment does not already call for it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

import entropy_jax.llm as llm
from entropy_jax import _validate as check
from entropy_jax import runtime
from entropy_jax.llm import batch, engine
from entropy_jax.stores import RunLock, write_json

from . import command


@dataclasses.dataclass(frozen=True)
class Config:
    model: str = "smollm2-135m-instruct"
    """Alias of an embedded model, Hugging Face directory, .gguf file or hub id."""
    prompt: str = "What is the capital of France?"
    chat: bool = True
    """Wrap the prompt in the tokenizer's chat template (one user turn)."""
    system: str | None = None
    """Optional system message (chat only)."""
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 is greedy decoding; > 0 samples with --seed."""
    top_p: float = 1.0
    """Nucleus sampling mass (sampling only)."""
    seed: int = 0
    dtype: str = "float32"
    """float32, bfloat16 or float16 (logits and entropies are float32 in every case)."""
    data: int = 1
    """Mesh axis: batch replicas. One of data / fsdp / tensor may be -1 (the remaining devices)."""
    fsdp: int = 1
    """Mesh axis: batch, and parameters sharded along the model dimension."""
    tensor: int = 1
    """Mesh axis: attention heads, MLP columns and vocabulary."""
    distributed: bool = False
    """Force jax.distributed.initialize(); without it the environment decides (entropy_jax.runtime.initialize)."""
    out: Path | None = None
    """Write the result as JSON to this file."""
    prompts: Path | None = None
    """A JSONL file of prompts ({"prompt": str, "max_new_tokens": int?, "id": str?} per line) to generate
    through the engine, instead of --prompt."""
    slots: int = 8
    """Decode slots (--prompts): requests generated at once (static batching: the batch size)."""
    batching: str = "continuous"
    """continuous (the engine) or static (consecutive batches, for comparison); --prompts only."""


def check_config(config: Config) -> None:
    """Every flag, before the model loads: a `ConfigError` naming the flag."""
    check.flag_model("model", config.model)
    check.flag_text("prompt", config.prompt)
    check.flag_text("system", config.system, optional=True)
    check.flag_int("max_new_tokens", config.max_new_tokens, 1)
    check.flag_float("temperature", config.temperature, 0.0)
    check.flag_float("top_p", config.top_p, 0.0, 1.0, lo_open=True)
    check.flag_seed("seed", config.seed)
    check.flag_choice("dtype", config.dtype, check.DTYPES)
    check.flag_mesh(data=config.data, fsdp=config.fsdp, tensor=config.tensor)
    check.flag_int("slots", config.slots, 1)
    check.flag_choice("batching", config.batching, engine.BATCHING)
    if config.out is not None:
        out = Path(config.out)
        if out.is_dir():
            raise check.flag_error("out", "is a directory; --out names the JSON file to write", str(out))
        check.flag_out_dir("out", out.parent)


def prompt_lines(config: Config) -> list[batch.PromptLine]:
    """The lines of --prompts, checked (a `ConfigError` naming the file and line)."""
    try:
        return batch.read_prompts(config.prompts)
    except ValueError as e:
        raise check.ConfigError(f"--prompts: {e}") from None


def summary(result: dict) -> str:
    """The completion, its mean entropy and the timings, as printed by `main`."""
    t, d = result["timing"], result["devices"]
    return "\n".join([
        result["completion"],
        "",
        f"{result['n_tokens']} tokens, mean entropy {result['mean_entropy']:.3f} nats/token "
        f"({d['platform']}, {d['count']} device(s), mesh {d['mesh']})",
        f"load {t['load_s']:.1f} s | first call {t['first_call_s']:.2f} s "
        f"(compile ≈ {t['compile_s']:.2f} s) | "
        f"warm {t['warm_s']:.3f} s = {t['tokens_per_s']:.1f} tokens/s "
        f"(prefill {t['prefill_s']:.3f} s, decode {t['decode_s']:.3f} s for {t['decode_steps']} steps)",
    ])


def many_summary(result: dict) -> str:
    """One line per prompt (id, tokens, mean entropy, stop, the start of the text) and the run's stats."""
    s, d = result["stats"], result["devices"]
    lines = [f"{r['id']}: {r['n_tokens']} tokens, mean entropy "
             f"{'–' if r['mean_entropy'] is None else format(r['mean_entropy'], '.3f')}, {r['stop_reason']}: "
             f"{(r['text'] or '').strip()[:60]!r}" for r in result["results"]]
    lines += ["", f"{len(result['results'])} prompts, {s['batching']} batching, {s['slots']} slots "
              f"({d['platform']}, {d['count']} device(s), {d['processes']} process(es), mesh {d['mesh']}): "
              f"{s['generated_tokens']} tokens in {s['seconds']:.1f} s = {s['tokens_per_s']:.1f} tokens/s | "
              f"{s['forward_passes']} forward passes, {s['row_steps']} row-steps, {s['wasted_row_steps']} wasted"]
    return "\n".join(lines)


def devices(mesh) -> dict:
    return {"platform": jax.default_backend(), "count": jax.device_count(), "processes": jax.process_count(),
            "mesh": None if mesh is None else dict(mesh.shape)}


def write(config: Config, result: dict, text: str) -> None:
    """Process 0 writes --out (under FILE.lock) and prints `text`: every process holds the same result."""
    if runtime.is_writer():
        if config.out is not None:
            out = Path(config.out)
            with RunLock(out.parent, name=out.name + ".lock"):
                write_json(out, result)
        print(text)


def main(config: Config) -> dict:
    """Loads the model; with --prompts generates them all (`batch.run`), else the one --prompt twice (compile,
    then warm); prints the summary and writes --out from process 0.

    Returns the result: per prompt the completion, tokens, per-token entropy and log-prob (nats); settings,
    timings (--prompts: "results" and "stats")."""
    check_config(config)
    lines = prompt_lines(config) if config.prompts is not None else None
    # before any JAX computation, so that the mesh spans every host's devices
    runtime.initialize(config.distributed or None)
    mesh = runtime.mesh_from_flags(config.data, config.fsdp, config.tensor)
    lm = llm.load(config.model, dtype=config.dtype, mesh=mesh)
    if lm.tokenizer is None:
        raise check.ConfigError(f"--model: {config.model} has no tokenizer (the prompt is text)")
    if lines is not None:
        try:
            reqs = batch.to_requests(lm, lines, max_new_tokens=config.max_new_tokens, chat=config.chat,
                                  system=config.system)
        except ValueError as e:
            raise check.ConfigError(f"--prompts: {e}") from None
        out = batch.run(lm, lines, reqs=reqs, slots=config.slots, batching=config.batching,
                        temperature=config.temperature, top_p=config.top_p, seed=config.seed,
                        progress=runtime.is_writer())
        result = {"model": config.model, "prompts": str(config.prompts), **out,
                  "entropy_settings": out["stats"]["entropy_settings"], "devices": devices(mesh),
                  "settings": dataclasses.asdict(config) | {"out": None if config.out is None else str(config.out),
                                                            "prompts": str(config.prompts)}}
        write(config, result, many_summary(result))
        return result
    n_prompt = len(lm.encode([config.prompt], chat=config.chat, system=config.system)[0])
    if n_prompt + config.max_new_tokens > lm.config.max_position_embeddings:
        raise check.ConfigError(f"--prompt: {n_prompt} tokens + --max-new-tokens {config.max_new_tokens} exceed the "
                                f"context of {config.model} ({lm.config.max_position_embeddings} positions)")

    def run() -> tuple[llm.Generation, float]:
        t0 = time.perf_counter()
        g = lm.generate([config.prompt], chat=config.chat, system=config.system,
                        max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                        top_p=config.top_p, key=jax.random.key(config.seed))
        return g, time.perf_counter() - t0

    first, first_s = run()  # traces and compiles prefill and decode for this shape bucket
    gen, warm_s = run()  # same shapes: no compilation, the figure to quote
    valid = gen.valid[0]
    tokens = gen.tokens[0][valid].tolist()
    entropy = gen.entropy[0][valid].astype(float).tolist()
    result = {
        "model": config.model,
        "prompt": config.prompt,
        "completion": gen.texts[0] if gen.texts else "",
        "tokens": tokens,
        "token_strings": None if lm.tokenizer is None else [lm.tokenizer.decode([t]) for t in tokens],
        "entropy": entropy,
        "log_prob": gen.log_prob[0][valid].astype(float).tolist(),
        "mean_entropy": float(np.mean(entropy)) if entropy else float("nan"),
        "n_tokens": len(tokens),
        "prompt_tokens": int(gen.prompt_lengths[0]),
        "stopped": bool(tokens) and tokens[-1] in gen.sampling["stop_token_ids"],
        "same_as_first_call": bool(np.array_equal(first.tokens, gen.tokens)),
        "entropy_settings": gen.entropy_settings,
        "sampling": gen.sampling | {"seed": config.seed},
        "timing": {
            "load_s": lm.load_seconds,
            "first_call_s": first_s,
            "warm_s": warm_s,
            "compile_s": first_s - warm_s,
            "tokens_per_s": len(tokens) / warm_s,
            "prefill_s": gen.seconds["prefill"],
            "decode_s": gen.seconds["decode"],
            "decode_steps": gen.seconds["decode_steps"],
        },
        "devices": devices(mesh),
        "settings": dataclasses.asdict(config) | {"out": None if config.out is None else str(config.out),
                                                  "prompts": None},
    }
    write(config, result, summary(result))
    return result


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.generate` in a checkout; installed: `entropy-jax-generate`)."""
    command(Config, main, __doc__, args)


if __name__ == "__main__":
    cli()
