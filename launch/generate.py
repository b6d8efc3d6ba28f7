"""Chapters 3–5: one completion with per-token entropy; timings of load, compilation and decoding.

Command:

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
import tyro

import entropy_jax.llm as llm
from entropy_jax import _validate as check
from entropy_jax import runtime
from entropy_jax.stores import RunLock, write_json


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
    if config.out is not None:
        out = Path(config.out)
        if out.is_dir():
            raise check.flag_error("out", "is a directory; --out names the JSON file to write", str(out))
        check.flag_out_dir("out", out.parent)


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


def main(config: Config) -> dict:
    """Loads the model, generates twice (compile, then warm), prints `summary` and writes --out.

    Returns the result: completion, tokens, per-token entropy and log-prob (nats), settings, timings."""
    check_config(config)
    # before any JAX computation, so that the mesh spans every host's devices
    runtime.initialize(config.distributed or None)
    mesh = runtime.mesh_from_flags(config.data, config.fsdp, config.tensor)
    lm = llm.load(config.model, dtype=config.dtype, mesh=mesh)
    if lm.tokenizer is None:
        raise check.ConfigError(f"--model: {config.model} has no tokenizer (the prompt is text)")
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
        "devices": {
            "platform": jax.default_backend(),
            "count": jax.device_count(),
            "processes": jax.process_count(),
            "mesh": None if mesh is None else dict(mesh.shape),
        },
        "settings": dataclasses.asdict(config) | {"out": None if config.out is None else str(config.out)},
    }
    if jax.process_index() == 0:  # every host holds the same result; one writes and prints it
        if config.out is not None:
            out = Path(config.out)
            with RunLock(out.parent, name=out.name + ".lock"):
                write_json(out, result)
        print(summary(result))
    return result


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.generate` in a checkout; installed: `entropy-jax-generate`)."""
    runtime.configure()
    config = tyro.cli(Config, args=args, description=__doc__.split("\n\n")[0])
    with check.cli_errors():
        main(config)


if __name__ == "__main__":
    cli()
