"""Chapter 5's matrix: every thinker's traces read by every answerer, resumable pair by pair.

    from entropy_jax.thinking import matrix
    cfg = matrix.MatrixConfig(thinkers="none,gold,shuffled,smollm2-135m-instruct", limit=32)
    summary = matrix.run(cfg, "results/shuffle")
    print(matrix.markdown(summary))

Each model thinker writes its traces once (OUT/traces/<name>.jsonl, `thinking.traces`); `none`, `gold` and
`shuffled` need no model. Each answerer then reads question + trace and gives the option label only (Chapter 3
answer-only scoring, answer-step entropy recorded): OUT/pairs/<thinker>__<answerer>.jsonl, one line per
question (a batch store). File names come from `stores.safe_name`: unique per thinker and answerer string.
Models are loaded one at a time (`Models`), thinkers first, then answerer by answerer. Outputs: OUT/matrix.json
(accuracy and mean answer entropy per pair, row and column means, n, truncations), OUT/matrix.png,
OUT/thinkers.json (trace length, entropy, stop reasons, own stated answers, tokens/s), OUT/summary.json. A
second call resumes pair by pair (and batch by batch within a pair); cached traces generate nothing; adding a
thinker or an answerer runs only the new pairs.

Content keys: every pair row carries the content key of its question and of the trace the answerer read
(`pair_content`); trace caches are keyed by the thinker's files and each question's content; OUT/inputs.json
records the data's {id: content} map and every model's `llm.fingerprint`. A resume whose data or models changed
is refused for the pairs made from them (naming the ids or files); an edited question is never answered from
its old row. Every field is checked before any work (`MatrixConfig.check`); a question whose prompt does not
fit some thinker's context with its budget, or some answerer's context, stops the run before any work, named by
id and model, unless `skip_long` (then it is left out of every pair and counted in the summary).

Multi-process jobs (`jax.distributed`, a mesh over every process's devices): every process runs the same
computations and reads OUT to know what is left (checked equal on all processes: `runtime.check_same_everywhere`);
process 0 alone holds OUT's lock and writes its files (`runtime.is_writer`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import numpy as np

from entropy_jax import _validate as check
from entropy_jax import configs, plots, runtime
from entropy_jax.data import mcqa
from entropy_jax.eval import metrics as M
from entropy_jax.llm import api, prompts, scoring
from entropy_jax.llm import traces as gen
from entropy_jax.stores import (
    JsonlStore,
    RunLock,
    check_batches,
    check_inputs,
    check_settings,
    digest,
    safe_name,
    to_json,
    write_json,
)
from entropy_jax.thinking import answer as ans
from entropy_jax.thinking import traces as tr


@dataclasses.dataclass(frozen=True)
class MatrixConfig:
    """What a matrix run computes. `thinkers`, `answerers` and `batch_size` are left out of the settings a
    re-run must match: every pair is a result of its own (a re-run may add thinkers or answerers), and rows of a
    generation batch are independent."""

    thinkers: str = configs.runtime("none,gold,shuffled,smollm2-135m-instruct")
    """Comma-separated: none, gold, shuffled, shuffled:<thinker>, or model sources (entropy_jax.llm.load)."""
    answerers: str = configs.runtime("smollm2-135m-instruct")
    """Comma-separated model sources."""
    data: str = "demo"
    """demo, a .jsonl/.csv path, or a benchmark name (online; gpqa-main is the chapter's)."""
    limit: int | None = None
    """Use the first N questions (the demo set alternates knowledge and reasoning questions)."""
    max_think_tokens: int = 512
    """Generation budget of a model thinker; a trace that reaches it is marked stop=length."""
    think_mode: str = "auto"
    """auto (thinking span when the tokenizer has <think>, else step-by-step prompt), think or cot."""
    trace_place: str = "auto"
    """Where answerers read the trace: auto, think (their own thinking span) or user (the user turn)."""
    answer_context: int | None = None
    """Cap on the answerer's context (tokens); default its max_position_embeddings. Longer prompts keep the
    trace's end (the truncation policy of entropy_jax.thinking.answer)."""
    batch_size: int = configs.runtime(8)
    """Thinker decode slots: traces generated at once on the continuous-batching engine."""
    answer_batch_size: int = 8
    labels: str = "letters"
    system: str | None = None
    dtype: str = "float32"
    seed: int = 0
    """Seed of the shuffled thinker's derangement."""
    prompt: str = "chat"
    """Format of the answerers' prompt (`entropy_jax.llm.prompts`): chat, plain or mmlu (no chat template: the
    trace goes in the text before "Answer:", place user). Thinkers keep their own step-by-step or thinking
    prompt."""
    instruction: str = prompts.INSTRUCTION
    """The answerers' instruction ({kind}, {labels}, {example} filled in), or none (then no reminder after the
    trace either)."""
    fewshot: Path | None = None
    """Answered questions (.jsonl/.json/.csv) shown to the answerers before each question, in the same format."""
    skip_long: bool = False
    """Leave out questions whose prompt does not fit some thinker's context (with its budget) or some
    answerer's (counted in the summary); without it such a question stops the run before any work."""

    def check(self) -> MatrixConfig:
        """Every field, before any work: a `ConfigError` naming the flag."""
        thinkers = check.flag_parse("thinkers", names, self.thinkers)
        answerers = check.flag_parse("answerers", names, self.answerers)
        for name in thinkers:
            if name in tr.SOURCES:
                continue
            if name.startswith("shuffled:"):
                base = name.split(":", 1)[1]
                if base not in tr.SOURCES and base not in thinkers:
                    check.flag_model("thinkers", base)
                continue
            check.flag_model("thinkers", name)
        for name in answerers:
            if name in tr.SOURCES or name.startswith("shuffled:"):
                raise check.flag_error("answerers", f"{name!r} is a trace source, not a model; answerers are model "
                                       "sources", self.answerers)
            check.flag_model("answerers", name)
        check.flag_text("data", self.data)
        check.flag_optional_int("limit", self.limit, 1)
        check.flag_int("max_think_tokens", self.max_think_tokens, 1)
        check.flag_choice("think_mode", self.think_mode, ("auto", *gen.MODES))
        check.flag_choice("trace_place", self.trace_place, ("auto", *ans.PLACES))
        check.flag_optional_int("answer_context", self.answer_context, 2)
        check.flag_int("batch_size", self.batch_size, 1)
        check.flag_int("answer_batch_size", self.answer_batch_size, 1)
        check.flag_choice("labels", self.labels, tuple(mcqa.LABELS))
        check.flag_text("system", self.system, optional=True)
        check.flag_choice("dtype", self.dtype, check.DTYPES)
        check.flag_seed("seed", self.seed)
        return self


def names(s: str) -> list[str]:
    """The comma-separated names of `s` (each once)."""
    out = [x.strip() for x in s.split(",") if x.strip()]
    if not out:
        raise ValueError(f"no names in {s!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"{s!r} names the same model twice")
    return out


def trace_path(out: str | Path, thinker: str) -> Path:
    """OUT/traces/<thinker>.jsonl: a model thinker's trace cache."""
    return Path(out) / "traces" / f"{safe_name(thinker)}.jsonl"


def pair_path(out: str | Path, thinker: str, answerer: str) -> Path:
    """OUT/pairs/<thinker>__<answerer>.jsonl: one pair's scored answers."""
    return Path(out) / "pairs" / f"{safe_name(thinker)}__{safe_name(answerer)}.jsonl"


class Models:
    """Loads each model source once and keeps only the last one (a sweep over 14B models must not hold all of
    them); `given` maps sources to already loaded models (tests, notebooks, `launch.reproduce`)."""

    def __init__(self, *, dtype: str = "float32", mesh=None, given: dict | None = None):
        self.dtype, self.mesh, self.given, self.current = dtype, mesh, dict(given or {}), None
        self.loads: list[str] = []

    def tokenizer(self, source: str):
        """(tokenizer, LlmConfig) of a source without loading its weights (a given or current model's own)."""
        if source in self.given:
            return self.given[source].tokenizer, self.given[source].config
        if self.current is not None and self.current[0] == source:
            return self.current[1].tokenizer, self.current[1].config
        from entropy_jax import llm

        return llm.load_tokenizer(source)

    def get(self, source: str):
        if source in self.given:
            return self.given[source]
        if self.current is not None and self.current[0] == source:
            return self.current[1]
        from entropy_jax import llm

        self.current = None  # drop the previous model before loading the next
        lm = llm.load(source, dtype=self.dtype, mesh=self.mesh)
        self.current = (source, lm)
        self.loads.append(source)
        return lm


def thinker_traces(name: str, questions, config: MatrixConfig, out: str | Path, models: Models, done: dict, *,
                   progress: bool = False) -> tr.TraceSet:
    """Traces of one thinker (`done` holds thinkers already made in this run, for `shuffled:<name>`)."""
    if name == "none":
        return tr.none(questions)
    if name == "gold":
        return tr.gold(questions)
    if name == "shuffled" or name.startswith("shuffled:"):
        base = name.split(":", 1)[1] if ":" in name else "gold"
        src = done.get(base) or thinker_traces(base, questions, config, out, models, done, progress=progress)
        return tr.shuffled(src, questions, seed=config.seed, name=name)
    cache = trace_path(out, name)
    # a complete cache needs no model: check with the key of the mode the model would use
    for mode in (["think", "cot"] if config.think_mode == "auto" else [config.think_mode]):
        found = tr.cached(name, questions, cache=cache, mode=mode, max_think_tokens=config.max_think_tokens,
                          style=config.labels, system=config.system)
        if found is not None:
            return found
    from tqdm.auto import tqdm

    lm = models.get(name)
    with tqdm(total=len(questions), disable=not progress, desc=f"thinker {name}", unit="q") as bar:
        return tr.generate(lm, questions, thinker=name, cache=cache, max_think_tokens=config.max_think_tokens,
                           batch_size=config.batch_size, style=config.labels, system=config.system,
                           mode=config.think_mode, progress=bar.update)


def pair_content(q, trace) -> str:
    """The content key of a pair row: the question's content and the text of the trace the answerer read."""
    return digest([mcqa.content_hash(q), None if trace is None else trace.text])


def pair_row(q, prompt: ans.AnswerPrompt, s: scoring.Scored, trace, batch: int, batch_rows: int, style: str) -> dict:
    """One line of a pair's file."""
    labels = prompts.option_labels(len(q.options), style)
    return {"id": q.id, "batch": batch, "batch_rows": batch_rows, "content": pair_content(q, trace),
            "pred": labels[s.pred], "answer": labels[q.answer],
            "correct": s.pred == q.answer, "entropy": s.entropy, "option_probs": list(s.option_probs),
            "max_prob": s.max_prob, "label_mass": s.label_mass, "stratum": q.stratum,
            "n_prompt_tokens": s.n_prompt_tokens, "place": prompt.place, "trace_tokens": prompt.trace_tokens,
            "truncated": prompt.truncated, "dropped_tokens": prompt.dropped_tokens,
            "has_trace": trace is not None and trace.text is not None,
            "donor": None if trace is None else trace.donor, "prompt": prompt.text}


def score_pair(thinker: str, answerer: str, ts: tr.TraceSet, questions, config: MatrixConfig, out: str | Path,
               models: Models, *, progress: bool = False, fmt: prompts.PromptFormat | None = None) -> list[dict]:
    """Score the batches of one pair not yet in its file (answerer prompts in format `fmt`, default
    `PromptFormat.of(config)`); returns all its rows."""
    from tqdm.auto import tqdm

    fmt = fmt if fmt is not None else prompts.PromptFormat.of(config)
    write = runtime.is_writer()
    store = JsonlStore(pair_path(out, thinker, answerer), required=("id", "batch", "batch_rows"), writable=write)
    bs = config.answer_batch_size
    done = store.complete_batches()
    check_batches(store.path, done, [(q.id, pair_content(q, ts.traces.get(q.id))) for q in questions], bs,
                  content="its question or the trace the answerer read")
    have = {r["batch"] for r in done}
    todo = [b for b in range(-(-len(questions) // bs)) if b not in have]
    # every process scores the same batches (they are collectives); only process 0 appends them
    runtime.check_same_everywhere(todo, f"batches left in {store.path}")
    rows = {r["batch"]: [] for r in done}
    for r in done:
        rows[r["batch"]].append(r)
    if todo:
        lm = models.get(answerer)
        with tqdm(total=len(todo) * bs, disable=not progress, unit="q", desc=f"{thinker} → {answerer}") as bar:
            for b in todo:
                chunk = questions[b * bs: (b + 1) * bs]
                got = ans.score(lm, chunk, ts.traces, context=config.answer_context, place=config.trace_place,
                                style=config.labels, system=config.system, pad_to=bs, fmt=fmt)
                rows[b] = [to_json(pair_row(q, p, s, ts.traces.get(q.id), b, len(chunk), config.labels))
                           for q, (p, s) in zip(chunk, got)]
                if write:
                    store.append(rows[b])
                bar.update(len(chunk))
    return [r for b in sorted(rows) for r in rows[b]]


def pair_summary(rows: list[dict]) -> dict:
    """Accuracy, mean answer entropy (all, correct, wrong), its ROC-AUC as an error detector, truncations."""
    correct = np.array([r["correct"] for r in rows], bool)
    ent = np.array([r["entropy"] for r in rows], float)
    auc = float(M.roc_auc(ent, ~correct)) if 0 < correct.sum() < len(rows) else None
    return {"n": len(rows), "accuracy": float(correct.mean()), "mean_entropy": float(ent.mean()),
            "mean_entropy_correct": float(ent[correct].mean()) if correct.any() else None,
            "mean_entropy_wrong": float(ent[~correct].mean()) if (~correct).any() else None,
            "entropy_roc_auc": auc, "truncated": int(sum(r["truncated"] for r in rows)),
            # how collapsed the answers are: the share of the most frequent predicted label
            "top_pred_fraction": max(np.unique([r["pred"] for r in rows], return_counts=True)[1]) / len(rows),
            "mean_label_mass": float(np.mean([r["label_mass"] for r in rows])),
            "by_stratum": {s: float(np.mean([r["correct"] for r in rows if r["stratum"] == s]))
                           for s in sorted({r["stratum"] for r in rows if r.get("stratum")})}}


def matrix(thinkers: list[str], answerers: list[str], pairs: dict) -> dict:
    """The accuracy and answer-entropy matrices (thinker rows, answerer columns) with row and column means."""
    acc = np.array([[pairs[t, a]["accuracy"] for a in answerers] for t in thinkers])
    ent = np.array([[pairs[t, a]["mean_entropy"] for a in answerers] for t in thinkers])
    return {"thinkers": thinkers, "answerers": answerers, "accuracy": acc.tolist(),
            "row_means": acc.mean(1).tolist(), "column_means": acc.mean(0).tolist(),
            "answer_entropy": ent.tolist(),
            "truncated": [[pairs[t, a]["truncated"] for a in answerers] for t in thinkers],
            "n": [[pairs[t, a]["n"] for a in answerers] for t in thinkers],
            "pairs": {f"{t} → {a}": pairs[t, a] for t in thinkers for a in answerers}}


def model_thinkers(thinkers: list[str]) -> list[str]:
    """The model sources among `thinkers` (the base of `shuffled:<model>` included), each once."""
    out: list[str] = []
    for t in thinkers:
        base = t.split(":", 1)[1] if t.startswith("shuffled:") else t
        if base not in tr.SOURCES and base not in out:
            out.append(base)
    return out


def too_long(questions, config: MatrixConfig, thinkers: list[str], answerers: list[str],
             models: Models, fmt: prompts.PromptFormat | None = None) -> dict[str, dict[str, str]]:
    """{id: {model: why}} of the questions some model cannot take: a thinker's prompt plus `max_think_tokens`
    beyond its context, or an answerer's bare prompt at or beyond its (capped) context. Needs each model's
    tokenizer and config only (`Models.tokenizer`). `fmt`: the answerers' prompt format (default
    `PromptFormat.of(config)`)."""
    fmt = fmt if fmt is not None else prompts.PromptFormat.of(config)
    out: dict[str, dict[str, str]] = {}
    for name in model_thinkers(thinkers):
        tok, cfg = models.tokenizer(name)
        mode = config.think_mode
        if mode == "auto":
            mode = "think" if tr.thinking_tokens(tok) is not None else "cot"
        room = cfg.max_position_embeddings - config.max_think_tokens
        for q in questions:
            n = len(tok(tr.thinker_prompt(tok, q, mode=mode, style=config.labels, system=config.system),
                        add_special_tokens=False)["input_ids"])
            if n > room:
                out.setdefault(q.id, {})[name] = (f"thinker prompt {n} + {config.max_think_tokens} new tokens > "
                                                  f"{cfg.max_position_embeddings}")
    for name in answerers:
        tok, cfg = models.tokenizer(name)
        ctx = min(config.answer_context or cfg.max_position_embeddings, cfg.max_position_embeddings)
        place = ans.trace_place(tok, config.trace_place, fmt)
        for q in questions:
            n = len(tok(ans.answer_prompt_text(tok, q, None, place=place, style=config.labels, system=config.system,
                                               fmt=fmt), add_special_tokens=False)["input_ids"])
            if n >= ctx:
                out.setdefault(q.id, {})[name] = f"answer prompt {n} >= context {ctx}"
    return out


def run_inputs(questions, config: MatrixConfig, thinkers: list[str], answerers: list[str]) -> tuple[dict, dict]:
    """(inputs, holds) for `stores.check_inputs`: the data (all pairs are made from it) and each model's
    fingerprint (the pairs it thought or answered)."""
    inputs = {"data": mcqa.identity(questions, config.data)}
    holds: dict[str, list[str]] = {"data": ["pairs/*.jsonl"]}
    for name in dict.fromkeys([*model_thinkers(thinkers), *answerers]):
        key = f"model {name}"
        inputs[key] = api.fingerprint(name)
        holds[key] = [f"pairs/*__{safe_name(name)}.jsonl", f"pairs/{safe_name(name)}__*.jsonl",
                      f"pairs/{safe_name('shuffled:' + name)}__*.jsonl"]
    return inputs, holds


def run(config: MatrixConfig, out: str | Path, *, models: dict | None = None, mesh=None,
        progress: bool = False) -> dict:
    """Run (or resume) the matrix into OUT; returns the summary (also OUT/summary.json). `models`: {source:
    loaded LanguageModel} to use instead of loading those sources (others are loaded on `mesh`). OUT is held by
    a `RunLock` for the call."""
    import matplotlib.pyplot as plt

    config.check()
    out = check.flag_out_dir("out", out)
    thinkers, answerers = names(config.thinkers), names(config.answerers)
    fmt = prompts.PromptFormat.of(config)
    questions = check.flag_data("data", config.data, limit=config.limit)
    prompts.check_fewshot(fmt, questions)
    inputs, holds = run_inputs(questions, config, thinkers, answerers)
    pool = Models(dtype=config.dtype, mesh=mesh, given=models)
    long = too_long(questions, config, thinkers, answerers, pool, fmt)
    if long and not config.skip_long:
        shown = "; ".join(f"{i} ({', '.join(f'{m}: {why}' for m, why in whys.items())})"
                          for i, whys in list(long.items())[:3])
        raise check.ConfigError(f"--data: {len(long)} questions do not fit some model's context: {shown}"
                                f"{' …' if len(long) > 3 else ''}; pass --skip-long to leave them out (counted)")
    questions = [q for q in questions if q.id not in long]
    if not questions:
        raise check.ConfigError(f"--data: no question of {config.data} fits every model's context")
    # in a multi-process job every process computes everything (the models are sharded over all of them) and
    # reads OUT to resume; only process 0 locks and writes it
    write = runtime.is_writer()
    with RunLock(out) if write else contextlib.nullcontext():
        settings = configs.settings(config) | fmt.record()
        check_settings(out, settings, holds=["pairs/*.jsonl"], what="pairs", write=write)
        check_inputs(out, inputs, holds=holds, what="pairs", write=write)
        t0 = time.perf_counter()
        made: dict[str, tr.TraceSet] = {}
        for name in thinkers:
            made[name] = thinker_traces(name, questions, config, out, pool, made, progress=progress)
        t_think = time.perf_counter() - t0
        t1 = time.perf_counter()
        pairs = {}
        for a in answerers:  # answerer-major: each answerer model is loaded once
            for t in thinkers:
                pairs[t, a] = pair_summary(score_pair(t, a, made[t], questions, config, out, pool, progress=progress,
                                                      fmt=fmt))
        t_answer = time.perf_counter() - t1
        mat = matrix(thinkers, answerers, pairs)
        think_table = {n: made[n].summary(questions) for n in thinkers}
        if write:
            write_json(out / "matrix.json", mat)
            write_json(out / "thinkers.json", think_table)
            plt.close(plots.accuracy_matrix(np.array(mat["accuracy"]), thinkers, answerers,
                                            title=f"thinker → answerer accuracy (%), {config.data}, "
                                                  f"n={len(questions)}", path=out / "matrix.png"))
        summary = {"settings": settings, "thinkers": thinkers, "answerers": answerers,
                   "n_questions": len(questions),
                   "matrix": {k: mat[k] for k in ("accuracy", "row_means", "column_means", "answer_entropy",
                                                  "truncated")},
                   "pairs": mat["pairs"], "thinker_table": think_table, "models_loaded": pool.loads,
                   "seconds": {"thinkers": t_think, "answerers": t_answer, "total": time.perf_counter() - t0},
                   "generated_tokens": sum(made[n].generated_tokens for n in thinkers),
                   **({"n_skipped": len(long), "skipped": list(long)} if config.skip_long else {}),
                   "entropy_settings": dict(scoring.ENTROPY_SETTINGS,
                                            step="answer step; thinker: every generated token")}
        if write:
            write_json(out / "summary.json", summary)
    return summary


def markdown(summary: dict) -> str:
    """The accuracy matrix (with row and column means) and the per-thinker trace table."""
    th, an, m = summary["thinkers"], summary["answerers"], summary["matrix"]
    lines = ["| thinker ↓ / answerer → | " + " | ".join(an) + " | row mean |", "|---" * (len(an) + 2) + "|"]
    for i, t in enumerate(th):
        cells = [f"{100 * m['accuracy'][i][j]:.1f}" + (f" ({m['truncated'][i][j]} cut)" if m["truncated"][i][j] else "")
                 for j in range(len(an))]
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {100 * m['row_means'][i]:.1f} |")
    lines.append("| column mean | " + " | ".join(f"{100 * x:.1f}" for x in m["column_means"]) + " | |")
    lines += ["", "| thinker | traces | mean tokens | mean words | mean trace entropy (nats) | stops | "
              "own stated answer correct | generated now | tokens/s |", "|---" * 9 + "|"]

    def f(x, fmt):
        return "–" if x is None else format(x, fmt)

    for t in th:
        r = summary["thinker_table"][t]
        own = r["own_answer"] or {}
        stated = (f"{f(own.get('accuracy_of_stated'), '.3f')} of {own.get('stated', 0)}"
                  if own.get("stated") else "–")
        stops = ", ".join(f"{k} {v}" for k, v in sorted(r["stops"].items())) or "–"
        lines.append(f"| {t} | {r['with_text']} | {f(r['mean_tokens'], '.1f')} | {f(r['mean_words'], '.1f')} | "
                     f"{f(r['mean_entropy'], '.3f')} | {stops} | {stated} | {r['generated_tokens']} | "
                     f"{f(r['tokens_per_s'], '.1f')} |")
    lines += ["", "| pair | accuracy | mean answer entropy (nats) | correct / wrong | ROC-AUC of entropy | "
              "most frequent letter's share |", "|---|---|---|---|---|---|"]
    for t in th:
        for a in an:
            p = summary["pairs"][f"{t} → {a}"]
            lines.append(f"| {t} → {a} | {p['accuracy']:.3f} | {p['mean_entropy']:.3f} | "
                         f"{f(p['mean_entropy_correct'], '.3f')} / {f(p['mean_entropy_wrong'], '.3f')} | "
                         f"{f(p['entropy_roc_auc'], '.3f')} | {p['top_pred_fraction']:.2f} |")
    return "\n".join(lines) + "\n"
