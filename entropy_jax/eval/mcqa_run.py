"""Chapter 3's scoring run: answer-step entropy of a model on multiple-choice questions, resumable, with its
metrics per stratum, figures and Markdown table.

    from entropy_jax.eval import mcqa_run
    result = mcqa_run.run(mcqa_run.ScoreConfig(data="demo", limit=160), "results/mcqa")
    print(mcqa_run.markdown(result))

Writes OUT/scores.jsonl (one line per question: id, the exact rendered prompt, pred, answer, correct, entropy,
option_probs, max_prob, margin, label_entropy, label_mass, stratum, …; a batch store, `entropy_jax.stores`),
OUT/metrics.json (overall and per stratum: accuracy, ROC-AUC of every signal in `SIGNALS` as an error detector
with a 95% bootstrap interval, PRR, AURC, ECE of the letter confidence, n), OUT/settings.json, OUT/model.json
(the scoring model's family, vocabulary size and entropy settings, written before its first batch, so that
metrics written by a later call that loads no model describe it all the same) and three figures (entropy
histograms correct vs wrong per stratum, reliability diagram, risk–coverage curves). A second call
with the same OUT resumes: only the batches not yet in scores.jsonl are scored, and the file ends identical to
an uninterrupted run's (batches are fixed by position); other settings in the same OUT are refused. The prompt
format (`ScoreConfig.prompt`, `instruction`, `fewshot`: `entropy_jax.llm.prompts.PromptFormat`) is one of those
settings, with the few-shot examples' ids and content hash.

`lm_eval_metrics(samples, out)` computes the same metrics and figures from an lm-evaluation-harness run's
`--log_samples` output (`log_samples.read_log_samples`); samples from backends other than `entropy_jax` have no
full-vocabulary entropy, and a signal some rows lack is dropped and named in metrics.json (`dropped_signals`).

an uninterrupted run's (batches are fixed by position). Every row carries its question's content key
(`mcqa.content_hash`) and OUT/inputs.json the data's {id: content} map and the model's `llm.fingerprint`: a
resume with other settings, other questions under the same ids or paths, or another model's files is refused
naming what changed (`stores.check_settings`, `check_inputs`, `check_batches`); rows are never mixed.

Every field is checked before any work (`ScoreConfig.check`, a `ConfigError` naming the flag). A question whose
prompt does not fit the model's context stops the run before the first batch, named by id; with `skip_long` it
gets a row with "skipped" (the reason) instead of scores, and the metrics count it in "n_skipped".
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from entropy_jax import _validate as check
from entropy_jax import configs, plots
from entropy_jax.data import mcqa
from entropy_jax.eval import metrics as M
from entropy_jax.llm import api, prompts, scoring
from entropy_jax.stores import JsonlStore, RunLock, check_batches, check_inputs, check_settings, read_json, write_json

# Uncertainty signals compared with entropy (all oriented so that larger = less confident).
SIGNALS = {
    "entropy": lambda r: r["entropy"],
    "1 - max_prob": lambda r: 1.0 - r["max_prob"],
    "-margin": lambda r: -r["margin"],
    "label_entropy": lambda r: r["label_entropy"],
}
# the score-row field each signal reads (None there: the signal is dropped, `available_signals`)
SIGNAL_FIELDS = {"entropy": "entropy", "1 - max_prob": "max_prob", "-margin": "margin",
                 "label_entropy": "label_entropy"}


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """What a scoring run computes (every field is recorded in OUT/settings.json and compared on resume)."""

    model: str = "smollm2-135m-instruct"
    """Alias, Hugging Face directory, .gguf file or hub id (entropy_jax.llm.load)."""
    data: str = "demo"
    """demo, a .jsonl/.csv path, or a benchmark name (online)."""
    limit: int | None = None
    """Score only the first N questions."""
    batch_size: int = 8
    labels: str = "letters"
    """Option labels: letters (A, B, …) or numbers (1, 2, …; the paper's choice)."""
    system: str | None = None
    """Optional system message for the chat template."""
    dtype: str = "float32"
    n_boot: int = 1000
    """Bootstrap resamples for the 95% intervals."""
    seed: int = 0
    prompt: str = "chat"
    """Prompt format (`entropy_jax.llm.prompts`): chat (the tokenizer's chat template), plain (the same text,
    no template, ending in "Answer:") or mmlu (lm-eval's MMLU prompt text exactly)."""
    instruction: str = prompts.INSTRUCTION
    """The instruction before the question ({kind}, {labels}, {example} are filled in), or none."""
    fewshot: Path | None = None
    """Answered questions (.jsonl/.json/.csv, MCQA schema) rendered before each question in the same format."""
    skip_long: bool = False
    """Skip questions whose prompt does not fit the model's context (a "skipped" row each, counted in the
    metrics); without it such a question stops the run before any scoring, named by id."""

    def check(self) -> ScoreConfig:
        """Every field, before any work: a `ConfigError` naming the flag ("--batch-size: must be ...")."""
        check.flag_model("model", self.model)
        check.flag_text("data", self.data)
        check.flag_optional_int("limit", self.limit, 1)
        check.flag_int("batch_size", self.batch_size, 1)
        check.flag_choice("labels", self.labels, tuple(mcqa.LABELS))
        check.flag_text("system", self.system, optional=True)
        check.flag_choice("dtype", self.dtype, check.DTYPES)
        check.flag_int("n_boot", self.n_boot, 1)
        check.flag_seed("seed", self.seed)
        return self


MODEL_RECORD = "model.json"  # the scoring model's facts (`score` writes it before the first batch)


def scores_store(out: str | Path, *, writable: bool = False) -> JsonlStore:
    """OUT/scores.jsonl as a batch store (read-only unless `writable`)."""
    return JsonlStore(Path(out) / "scores.jsonl", required=("id", "batch", "batch_rows"), writable=writable)


def score_row(q: mcqa.Question, s: scoring.Scored, batch: int, labels: tuple[str, ...], batch_rows: int) -> dict:
    """One line of scores.jsonl."""
    return {
        "id": q.id, "batch": batch, "batch_rows": batch_rows, "content": mcqa.content_hash(q), "prompt": s.prompt,
        "pred": labels[s.pred], "pred_index": s.pred, "answer": labels[q.answer], "answer_index": q.answer,
        "correct": s.pred == q.answer, "entropy": s.entropy, "option_probs": list(s.option_probs),
        "max_prob": s.max_prob, "margin": s.margin, "label_entropy": s.label_entropy, "label_mass": s.label_mass,
        "stratum": q.stratum, "subject": q.subject, "n_prompt_tokens": s.n_prompt_tokens,
    }


def skipped_row(q: mcqa.Question, batch: int, batch_rows: int, n_tokens: int, context: int) -> dict:
    """The line of a question skipped for its length (`skip_long`): no scores, the reason."""
    return {"id": q.id, "batch": batch, "batch_rows": batch_rows, "content": mcqa.content_hash(q),
            "skipped": f"prompt of {n_tokens} tokens does not fit the context of {context} positions",
            "n_prompt_tokens": n_tokens, "stratum": q.stratum, "subject": q.subject}


def prompt_lengths(lm, questions: list[mcqa.Question], config: ScoreConfig,
                   fmt: prompts.PromptFormat | None = None) -> dict[str, int]:
    """{id: tokens} of each question's scoring prompt in format `fmt` (the text `scoring.score_questions`
    renders; default `PromptFormat.of(config)`)."""
    fmt = fmt if fmt is not None else prompts.PromptFormat.of(config)
    return {q.id: len(lm.tokenizer(prompts.render_prompt(lm.tokenizer, q, fmt, style=config.labels,
                                                         system=config.system), add_special_tokens=False)["input_ids"])
            for q in questions}


def expected(questions: list[mcqa.Question]) -> list[tuple[str, str]]:
    """(id, content key) of each question in order: what the rows of a batch store must match."""
    return [(q.id, mcqa.content_hash(q)) for q in questions]


def score(config: ScoreConfig, questions: list[mcqa.Question], store: JsonlStore, *, lm=None, mesh=None,
          progress: bool = False, fmt: prompts.PromptFormat | None = None) -> dict:
    """Score every batch of `questions` not yet in `store` (a writable `scores_store`); returns timing and model
    facts. The model (`lm`, or `config.model` loaded on `mesh`) is loaded only when a batch is missing. `fmt`:
    the prompt format (default: `PromptFormat.of(config)`). Rows already in the store must be those of
    `questions` (id and content, batch by batch: `stores.check_batches`); every prompt must fit the model's
    context (else a `ConfigError` naming the ids, before any scoring) unless `config.skip_long`. Before the first
    batch it writes the model's facts next to the store (`MODEL_RECORD`)."""
    from tqdm.auto import tqdm

    done = store.complete_batches()
    check_batches(store.path, done, expected(questions), config.batch_size)
    have = {r["batch"] for r in done}
    n_batches = -(-len(questions) // config.batch_size)
    todo = [b for b in range(n_batches) if b not in have]
    info = {"scored_now": 0, "seconds": 0.0, "model_load_s": None}
    if not todo:
        return info
    if lm is None:
        import entropy_jax.llm as llm

        lm = llm.load(config.model, dtype=config.dtype, mesh=mesh)
    if lm.tokenizer is None:
        raise check.ConfigError(f"--model: {config.model} has no tokenizer; answer-step scoring renders text prompts")
    fmt = fmt if fmt is not None else prompts.PromptFormat.of(config)
    context = lm.config.max_position_embeddings
    lengths = prompt_lengths(lm, questions, config, fmt)
    long = {i: n for i, n in lengths.items() if n > context}
    if long and not config.skip_long:
        raise check.too_long(long, context, what=f"--model {config.model}")
    facts = {"vocab_size": lm.config.vocab_size, "family": lm.config.family,
             "entropy_settings": scoring.entropy_settings(lm)}
    # before the first row: whoever reads the rows later (a resumed or --metrics-only call) finds the model's facts
    write_json(store.path.parent / MODEL_RECORD, facts)
    info.update(model_load_s=lm.load_seconds, **facts)
    t0 = time.perf_counter()
    with tqdm(total=len(todo) * config.batch_size, disable=not progress, desc="scoring", unit="q") as bar:
        for b in todo:
            chunk = questions[b * config.batch_size: (b + 1) * config.batch_size]
            kept = [q for q in chunk if q.id not in long]
            scores = iter(next(iter(scoring.score_questions(lm, kept, batch_size=config.batch_size,
                                                           style=config.labels, system=config.system, fmt=fmt)))[1]
                          if kept else ())
            store.append([skipped_row(q, b, len(chunk), long[q.id], context) if q.id in long else
                          score_row(q, next(scores), b, prompts.option_labels(len(q.options), config.labels),
                                    len(chunk))
                          for q in chunk])
            info["scored_now"] += len(kept)
            bar.update(len(chunk))
    info["seconds"] = time.perf_counter() - t0
    info["questions_per_s"] = info["scored_now"] / max(info["seconds"], 1e-9)
    return info


def scored(rows: list[dict]) -> list[dict]:
    """The rows that hold scores (not those skipped for their length)."""
    return [r for r in rows if not r.get("skipped")]


def available_signals(rows: list[dict]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The `SIGNALS` every row has, as float arrays [n], and {name: why it was dropped} for the others (a field
    that is None or absent in some rows: lm-eval samples from backends other than entropy_jax carry no
    full-vocabulary entropy, generation samples no option probabilities)."""
    kept, dropped = {}, {}
    for name, field in SIGNAL_FIELDS.items():
        missing = sum(r.get(field) is None for r in rows)
        if missing:
            dropped[name] = f"{field} is missing in {missing} of {len(rows)} rows" + (
                DROPPED_ENTROPY if field == "entropy" else "")
        else:
            kept[name] = np.array([SIGNALS[name](r) for r in rows], float)
    return kept, dropped


DROPPED_ENTROPY = (" (lm-eval samples from a backend other than entropy_jax: lm-eval logs only the scored "
                   "continuations' log-likelihoods, not the next-token distribution; rerun lm-eval with "
                   "--model entropy_jax for the full-vocabulary entropy)")


def compute_metrics(rows: list[dict], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Overall and per-stratum metrics from score rows (the content of scores.jsonl, or lm-eval samples read
    by `log_samples.read_log_samples`); rows skipped for their length are left out here (counted by `run`). A
    signal missing from some rows is left out of every block and named, with the reason, in
    `dropped_signals`; without `max_prob` there is no ECE (None)."""
    rows = scored(rows)
    _, dropped = available_signals(rows)

    def mean(rs, field):
        if any(r.get(field) is None for r in rs):
            return None
        return float(np.mean([r[field] for r in rs])) if rs else float("nan")

    def block(rs):
        correct = np.array([r["correct"] for r in rs], bool)
        signals = {k: v for k, v in available_signals(rs)[0].items() if k not in dropped}
        conf = None if "1 - max_prob" in dropped else np.array([r["max_prob"] for r in rs], float)
        return {
            "n": len(rs),
            "accuracy": float(correct.mean()) if len(rs) else float("nan"),
            "mean_entropy": mean(rs, "entropy"),
            "mean_label_mass": mean(rs, "label_mass"),
            "error_detection": M.error_detection_report(signals, correct, n_boot=n_boot, seed=seed),
            "ece_15": None if conf is None else (float(M.ece(conf, correct, n_bins=15)) if rs else float("nan")),
            "reliability": None if conf is None else M.reliability(conf, correct, n_bins=15),
        }

    strata = sorted({r["stratum"] for r in rows if r.get("stratum")})
    return {
        "overall": block(rows),
        "by_stratum": {s: block([r for r in rows if r.get("stratum") == s]) for s in strata},
        "signals": {name: "larger = less confident" for name in SIGNALS if name not in dropped},
        "dropped_signals": dropped,
        "confidence_for_ece": "max_prob: the renormalised letter probability of the predicted option",
    }


def figures(rows: list[dict], result: dict, out: str | Path, title: str) -> None:
    """Writes OUT/entropy_hist.png, reliability.png and risk_coverage.png (and closes them: a long session of
    runs must not pile up open figures); a figure whose signal the rows lack (`dropped_signals`; no max_prob:
    no reliability diagram) is not drawn."""
    import matplotlib.pyplot as plt

    out = Path(out)
    signals, _ = available_signals(rows)
    groups = {"all": rows} | {s: [r for r in rows if r.get("stratum") == s] for s in result["by_stratum"]}
    if "entropy" in signals:
        plt.close(plots.entropy_histograms(
            {k: (np.array([r["entropy"] for r in v]), np.array([r["correct"] for r in v])) for k, v in groups.items()
             if v}, title=title, path=out / "entropy_hist.png"))
    if result["overall"]["reliability"] is not None:
        plt.close(plots.reliability_diagram(
            {"all": result["overall"]["reliability"]} | {s: b["reliability"] for s, b in result["by_stratum"].items()},
            title=title, path=out / "reliability.png"))
    correct = np.array([r["correct"] for r in rows], bool)
    curves = {name: M.risk_coverage(values, correct) for name, values in signals.items()}
    if curves:
        plt.close(plots.risk_coverage_curves(curves, title=title, path=out / "risk_coverage.png"))


def markdown(result: dict) -> str:
    """Per-stratum table: n, accuracy, ROC-AUC [95% CI] of each signal, AURC of entropy, ECE (– where a signal
    was dropped); a line names the dropped signals."""
    names = [n for n in SIGNALS if n in result["overall"]["error_detection"]]
    head = "| subset | n | accuracy | " + " | ".join(f"ROC-AUC {n}" for n in names) + " | AURC (entropy) | ECE |"
    lines = [head, "|" + "---|" * (len(names) + 5)]
    blocks = {"all": result["overall"]} | result["by_stratum"]
    for name, b in blocks.items():
        cells = []
        for s in names:
            d = b["error_detection"][s]
            lo, hi = d["roc_auc_ci"]
            cells.append(f"{d['roc_auc']:.3f} [{lo:.2f}, {hi:.2f}]")
        ent = b["error_detection"].get("entropy")
        lines.append(f"| {name} | {b['n']} | {b['accuracy']:.3f} | " + " | ".join(cells)
                     + f" | {'–' if ent is None else format(ent['aurc'], '.3f')} | "
                     + f"{'–' if b['ece_15'] is None else format(b['ece_15'], '.3f')} |")
    dropped = result.get("dropped_signals") or {}
    if dropped:
        lines += ["", "Dropped signals: " + "; ".join(f"{k}: {v}" for k, v in dropped.items()) + "."]
    return "\n".join(lines) + "\n"


def run(config: ScoreConfig, out: str | Path, *, lm=None, mesh=None, metrics_only: bool = False,
        progress: bool = False) -> dict:
    """Score (or resume scoring) `config` into OUT, then metrics and figures; returns the metrics (also
    OUT/metrics.json) with the settings, the run's timing and the counts.

    `lm`: an already loaded `LanguageModel` to score with instead of loading `config.model` (on `mesh`).
    `metrics_only`: recompute metrics and figures from OUT/scores.jsonl alone, without a model. OUT is held by
    a `RunLock` for the call. The config and the data are checked before OUT is touched (`ConfigError`).
    """
    config.check()
    out = check.flag_out_dir("out", out)
    fmt = prompts.PromptFormat.of(config)
    questions = check.flag_data("data", config.data, limit=config.limit)
    prompts.check_fewshot(fmt, questions)
    inputs = {"data": mcqa.identity(questions, config.data), "model": api.fingerprint(config.model)}
    with RunLock(out):
        settings = configs.settings(config) | fmt.record()
        check_settings(out, settings, holds=["scores.jsonl"], what="scores")
        check_inputs(out, inputs, holds=["scores.jsonl"], what="scores")
        store = scores_store(out, writable=True)
        info: dict = {"scored_now": 0}
        if not metrics_only:
            info = score(config, questions, store, lm=lm, mesh=mesh, progress=progress, fmt=fmt)
        rows = store.complete_batches()
        check_batches(store.path, rows, expected(questions), config.batch_size)
        if metrics_only and not rows:
            raise FileNotFoundError(f"--metrics-only: no scores in {store.path}")
        skipped = [r["id"] for r in rows if r.get("skipped")]
        result = compute_metrics(rows, n_boot=config.n_boot, seed=config.seed)
        result.update(settings=settings, run=info, n_questions=len(questions), n_scored=len(rows) - len(skipped))
        if config.skip_long:
            result.update(n_skipped=len(skipped), skipped=skipped)
        if "entropy_settings" in info:
            result["entropy_settings"] = info["entropy_settings"]
        else:  # no model loaded by this call: the record of the call that scored (older directories: its metrics)
            saved = read_json(out / MODEL_RECORD) or (read_json(out / "metrics.json") or {}).get("run", {})
            result["entropy_settings"] = saved.get("entropy_settings", dict(scoring.ENTROPY_SETTINGS))
        write_json(out / "metrics.json", result)
        figures(scored(rows), result, out, f"{config.model} on {config.data} (n={result['n_scored']})")
    return result


def lm_eval_metrics(samples: str | Path, out: str | Path, *, task: str | None = None, metric: str | None = None,
                    n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics and figures of an lm-evaluation-harness run, with the same code as a scoring run's: the rows of
    its `--log_samples` output (`samples`: a samples_<task>_<date>.jsonl file or lm-eval's --output_path
    directory; `task`: only that task's file; `metric`: the 0/1 per-sample metric that decides `correct`, read
    by `log_samples.read_log_samples`) go through `compute_metrics` (overall and per document `stratum`, 95%
    bootstrap intervals with `n_boot` and `seed`). Writes OUT/metrics.json (`dropped_signals` names the
    signals the samples lack: `entropy` unless lm-eval ran with `--model entropy_jax`) and the figures; an OUT
    holding a scoring run's scores.jsonl is refused. Returns the metrics."""
    from entropy_jax.eval.log_samples import read_log_samples

    out = Path(out)
    rows = read_log_samples(samples, task=task, metric=metric)
    if not rows:
        raise ValueError(f"--lm-eval-samples {samples}: no samples")
    with RunLock(out):
        if (out / "scores.jsonl").exists():
            raise ValueError(f"{out} holds a scoring run (scores.jsonl); write lm-eval metrics to another --out")
        result = compute_metrics(rows, n_boot=n_boot, seed=seed)
        tasks = sorted({r["task"] for r in rows})
        sources = sorted({r["entropy_source"] or "none" for r in rows})
        result.update(settings={"lm_eval_samples": str(samples), "task": task, "metric": metric, "n_boot": n_boot,
                                "seed": seed},
                      tasks=tasks, entropy_sources=sources, n_scored=len(rows),
                      entropy_settings=(dict(scoring.ENTROPY_SETTINGS, step="first continuation token (the "
                                             "answer step of a multiple-choice request)")
                                        if "entropy" not in result["dropped_signals"] else None))
        write_json(out / "metrics.json", result)
        named = ", ".join(tasks) if len(tasks) <= 3 else f"{tasks[0]}, … ({len(tasks)} tasks)"
        figures(rows, result, out, f"lm-eval {named} (n={len(rows)})")
    return result
