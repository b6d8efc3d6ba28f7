"""Chapter 5 throughput: thinker trace generation against transformers-torch, and the whole demo matrix.

Command:

    python -m bench.thinker_bench            # about 12 minutes on 2 CPU cores

1. **Trace generation** — SmolLM2-135M-Instruct (the embedded GGUF, float32 on both sides) writes greedy
   step-by-step traces for the first `--questions` demo questions (the thinker prompt of
   `entropy_jax.thinking.traces`, rows of `--batch`, at most `--max-new` tokens, stopping at end of turn),
   recording every token's full-vocabulary entropy. Ours: `traces.generate` (the jitted KV-cache decode
   loop; entropy and log-prob come out of the loop). Reference: transformers' `generate` on the same
   left-padded token ids with `output_logits=True`, entropies computed from the raw logits afterwards
   (what a user of transformers must do: its `scores` are post-processed). Tokens/s = generated tokens
   (each row up to and including its stop token) ÷ wall time, after an untimed warm-up of both; best of
   `--repeats`. The check: generated tokens and entropies agree.
2. **The whole matrix** — `launch.thinker_answerer` with thinkers {none, gold, shuffled, SmolLM2} × answerer
   SmolLM2 on `--matrix-limit` demo questions in a fresh directory (thinking + answering + files), as in
   `make demo`: total seconds, thinker tokens/s, answered questions/s.

Writes the "Chapter 5" section of bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import _results as shared

SECTION = "## Chapter 5 — thinker traces and the thinker × answerer matrix (bench/thinker_bench.py)"
MODEL = "smollm2-135m-instruct"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _entropy(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -(np.exp(lp) * lp).sum(-1)


def generation(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from entropy_jax import llm
    from entropy_jax.data import mcqa
    from entropy_jax.thinking import traces as tr

    hf_logging.set_verbosity_error()
    lm = llm.load(MODEL)
    path = llm.embedded_gguf(MODEL)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    questions = mcqa.load("demo", limit=args.questions)
    prompts = [lm.tokenizer(tr.thinker_prompt(lm.tokenizer, q, mode="cot"), add_special_tokens=False)["input_ids"]
               for q in questions]
    stops = list(lm.stop_token_ids())
    pad = int(lm.config.pad_token_id if lm.config.pad_token_id is not None else stops[0])

    def ours():
        with tempfile.TemporaryDirectory() as d:
            ts = tr.generate(lm, questions, thinker=MODEL, cache=Path(d) / "c.jsonl", max_think_tokens=args.max_new,
                             batch_size=args.batch)
        return ts

    def theirs():
        toks, ents = [], []
        for s in range(0, len(prompts), args.batch):
            chunk = prompts[s: s + args.batch]
            t = max(map(len, chunk))
            ids = np.full((len(chunk), t), pad, np.int64)
            mask = np.zeros_like(ids)
            for i, p in enumerate(chunk):
                ids[i, t - len(p):], mask[i, t - len(p):] = p, 1
            with torch.no_grad():
                out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                                     do_sample=False, max_new_tokens=args.max_new, eos_token_id=stops,
                                     pad_token_id=pad, output_logits=True, return_dict_in_generate=True)
            gen = out.sequences[:, t:].numpy()
            logits = torch.stack(out.logits, 1).numpy()
            for i in range(len(chunk)):
                row = gen[i].tolist()
                n = next((k + 1 for k, x in enumerate(row) if x in stops), len(row))
                toks.append(row[:n])
                ents.append(_entropy(logits[i, :n]))
        return toks, ents

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    log("warm-up: ours (compiles) and torch ...")
    _, first = timed(ours)
    timed(lambda: model.generate(input_ids=torch.tensor([prompts[0]]), max_new_tokens=2, do_sample=False,
                                 pad_token_id=pad))
    runs = {"ours": [], "torch": []}
    for r in range(args.repeats):
        ts, w = timed(ours)
        runs["ours"].append(w)
        (toks, ents), w2 = timed(theirs)
        runs["torch"].append(w2)
        log(f"  [{r + 1}/{args.repeats}] ours {w:.1f} s, torch {w2:.1f} s")
    ours_tokens = sum(t.n_tokens for t in ts.traces.values())
    torch_tokens = sum(map(len, toks))
    same = [list(ts.traces[q.id].tokens) == toks[i] for i, q in enumerate(questions)]
    diffs = [float(np.max(np.abs(np.array(ts.traces[q.id].entropies) - ents[i])))
             for i, q in enumerate(questions) if same[i]]
    return {"questions": len(questions), "batch": args.batch, "max_new": args.max_new,
            "ours_s": min(runs["ours"]), "torch_s": min(runs["torch"]), "ours_first_s": first,
            "ours_tokens": ours_tokens, "torch_tokens": torch_tokens,
            "ours_tok_s": ours_tokens / min(runs["ours"]), "torch_tok_s": torch_tokens / min(runs["torch"]),
            "rows_identical": int(sum(same)), "max_entropy_diff": max(diffs) if diffs else None,
            "torch_threads": torch.get_num_threads()}


def matrix(args) -> dict:
    from entropy_jax.thinking import matrix as mx

    with tempfile.TemporaryDirectory() as d:
        cfg = mx.MatrixConfig(thinkers=f"none,gold,shuffled,{MODEL}", answerers=MODEL, data="demo",
                              limit=args.matrix_limit, max_think_tokens=args.matrix_think)
        t0 = time.perf_counter()
        s = mx.run(cfg, Path(d))
        total = time.perf_counter() - t0
    th = s["thinker_table"][MODEL]
    n_answers = s["n_questions"] * len(s["thinkers"]) * len(s["answerers"])
    return {"n_questions": s["n_questions"], "max_think_tokens": args.matrix_think, "total_s": total,
            "thinker_s": s["seconds"]["thinkers"], "answer_s": s["seconds"]["answerers"],
            "thinker_tokens": th["generated_tokens"], "thinker_tok_s": th["tokens_per_s"],
            "answers": n_answers, "answers_per_s": n_answers / s["seconds"]["answerers"],
            "accuracy": dict(zip(s["thinkers"], (r[0] for r in s["matrix"]["accuracy"])))}


def report(gen: dict, mat: dict, machine: dict) -> str:
    ratio = gen["ours_tok_s"] / gen["torch_tok_s"]
    lines = [
        SECTION, "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram']}, {machine['platform']}, Python "
        f"{machine['python']}; torch with {gen['torch_threads']} threads. Command: `python -m bench.thinker_bench`.",
        "",
        f"Trace generation: SmolLM2-135M-Instruct (float32), greedy step-by-step traces of the first "
        f"{gen['questions']} demo questions, rows of {gen['batch']}, at most {gen['max_new']} new tokens, "
        "per-token full-vocabulary entropy recorded (ours: inside the decode loop; torch: `generate(output_logits="
        "True)` + entropy of the raw logits).", "",
        "| | seconds | generated tokens | tokens/s | ratio ours ÷ torch |", "|---|---|---|---|---|",
        f"| ours (`thinking.traces.generate`) | {gen['ours_s']:.1f} | {gen['ours_tokens']} | {gen['ours_tok_s']:.1f} | "
        f"{ratio:.2f}× |",
        f"| transformers-torch `generate` | {gen['torch_s']:.1f} | {gen['torch_tokens']} | "
        f"{gen['torch_tok_s']:.1f} | 1 |",
        "",
        f"First call (compilation included): {gen['ours_first_s']:.1f} s. Rows with identical tokens: "
        f"{gen['rows_identical']} of {gen['questions']}; largest entropy difference on those: "
        + (f"{gen['max_entropy_diff']:.1e} nats." if gen["max_entropy_diff"] is not None else "–."),
        "",
        f"Whole matrix (`thinking.matrix.run`, as `launch.thinker_answerer` runs it: thinkers none, gold, shuffled, SmolLM2 × answerer SmolLM2, "
        f"{mat['n_questions']} demo questions, at most {mat['max_think_tokens']} thinker tokens, fresh directory): "
        f"{mat['total_s']:.0f} s in all — thinking {mat['thinker_s']:.0f} s ({mat['thinker_tokens']} tokens, "
        f"{mat['thinker_tok_s']:.1f} tokens/s, compilation included), answering {mat['answer_s']:.0f} s "
        f"({mat['answers']} answers, {mat['answers_per_s']:.1f} answers/s). Accuracy: "
        + ", ".join(f"{k} {v:.3f}" for k, v in mat["accuracy"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-new", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--matrix-limit", type=int, default=48)
    p.add_argument("--matrix-think", type=int, default=192)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    machine = shared.machine_info()
    gen = generation(args)
    mat = matrix(args)
    text = report(gen, mat, machine)
    print(text)
    if not args.no_write:
        shared.write_section(SECTION, text)
    return {"generation": gen, "matrix": mat}


if __name__ == "__main__":
    main()
