"""Chapter 4's pipeline: one fine-tuning policy end to end (`run`), and a sweep of policies with its
accuracy–token frontier (`sweep`).

    from entropy_jax.train import pipeline
    from entropy_jax.train.trainer import TrainConfig
    cfg = pipeline.FinetuneConfig(policy="gated", train_limit=12, train=TrainConfig(epochs=2, lr=3e-5))
    summary = pipeline.run(cfg, "results/finetune/gated")

A run: (1) gating — the student's answer-step entropy of every training question (cached in OUT/gating.json)
splits them into a regular and a hard band; (2) teacher traces for the questions a policy distils
(`train.traces`: the data's rationales, a traces file, or a model teacher through the shared trace generator,
cached in `traces_cache`); (3) the policy's plan (`policy.plan`: who gets answer-only SFT, who CoT, in which
order); (4) training (`trainer.fit`: one jitted step, Orbax checkpoints, exact resume), evaluating the held-out
questions after every epoch with Chapter 3's answer-only scoring; (5) optionally the export of the result
(`llm.export`). Writes OUT/settings.json, inputs.json, gating.json, bands.json, plan.json, eval/epoch_*.json,
train_log.jsonl, summary.json, checkpoints/ and final/. The answer-only prompt of steps 1, 3 and 4 has the
format of `prompt`, `instruction` and `fewshot` (`llm.prompts.PromptFormat`, in the settings with the few-shot
examples' content hash).

Resume is keyed by content: OUT/inputs.json records the training and held-out questions ({id: content key}),
the student's and the teacher's files (`llm.fingerprint`; a traces file by its digest), and a run whose inputs
changed while OUT holds checkpoints is refused naming the ids or files (`stores.check_inputs`); the
checkpoints themselves carry the digest of the tokenized examples (`trainer.fit`). The cached gating entropies
and the untrained student's evaluation are reused only for the same questions, student and prompt format.
Every field is checked before any work (`FinetuneConfig.check`); a question whose scoring prompt does not fit
the student's context stops the run before gating, named by id, unless `skip_long` (left out, counted in the
summary).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from entropy_jax import _validate as check
from entropy_jax import configs
from entropy_jax.data import mcqa
from entropy_jax.llm import api, prompts, scoring
from entropy_jax.stores import RunLock, check_inputs, check_settings, digest, file_digest, read_json, write_json
from entropy_jax.train import evaluate as ev
from entropy_jax.train import examples as ex
from entropy_jax.train import frontier, gating, policy, sft, traces, trainer
from entropy_jax.train.trainer import TrainConfig


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """What a fine-tuning run computes. Everything but the fields declared with `configs.runtime` is recorded in
    OUT/settings.json, and a resume with other values is refused."""

    student: str = "smollm2-135m-instruct"
    """Model to fine-tune: alias, HF directory, .gguf file or hub id (entropy_jax.llm.load)."""
    teacher: str = "rationale"
    """`rationale` (the data's field), a traces .jsonl file, or a model source that writes traces."""
    train_data: str = "demo"
    """Training questions: demo, a .jsonl/.csv path, or a benchmark name (online)."""
    eval_data: str = "demo"
    """Held-out questions; when it is the same source as --train-data, --eval-size questions are held out."""
    train_split: str | None = None
    eval_split: str | None = None
    train_limit: int | None = None
    """Use at most this many training questions (after the held-out split)."""
    eval_size: int = 96
    """Held-out questions when --train-data and --eval-data are the same source (a split seeded by
    --train.seed)."""
    policy: str = "gated"
    """sft, distill, gated, curriculum, gated_inverse or random (see entropy_jax.train.policy)."""
    dtype: str = "float32"
    """Dtype the student and teacher are loaded in."""
    hard_quantile: float = 0.75
    """Questions with entropy at or above this quantile form the hard band."""
    threshold: float | None = None
    """Absolute hard-band threshold in nats (overrides --hard-quantile)."""
    keep_wrong: bool = False
    """Keep teacher traces whose parsed answer is wrong (dropped by default)."""
    teacher_max_new_tokens: int = 512
    labels: str = "letters"
    score_batch: int = 8
    """Batch size of the answer-step scoring (gating and evaluation)."""
    prompt: str = "chat"
    """Format of the answer-only prompt of gating, evaluation and answer-only examples (`entropy_jax.llm.prompts`):
    chat, plain or mmlu. CoT examples keep the step-by-step chat prompt (its instruction asks for [[X]])."""
    instruction: str = prompts.INSTRUCTION
    """The answer-only prompt's instruction ({kind}, {labels}, {example} filled in), or none."""
    fewshot: Path | None = None
    """Answered questions (.jsonl/.json/.csv) shown before each answer-only prompt, in the same format; none of
    them may be a training or held-out question."""
    traces_cache: Path | None = configs.runtime(None)
    """Where generated teacher traces are cached (default OUT/../traces: shared by the runs of a sweep)."""
    export: bool = configs.runtime(True)
    """Export the trained model to OUT/final (safetensors, config, tokenizer; verified against our logits)."""
    train: TrainConfig = TrainConfig(epochs=2)
    """Training: epochs, micro-batch rows, sequence length, packing, optimizer, LoRA, seed (the seed also fixes
    the held-out split, the policies' subsets and every epoch's order), and the step's memory options: compute
    dtype, precision (fp32 / bf16_master / bf16), per-layer remat (none / full / dots), scanned layers and the
    chunked loss (`TrainConfig`; `--train.remat full --train.scan-layers --train.loss-chunk 256`)."""
    skip_long: bool = False
    """Leave out questions whose scoring prompt does not fit the student's context (and give no model-teacher
    trace to those whose step-by-step prompt leaves no room for the teacher's budget); counted in the summary.
    Without it such a question stops the run, named by id."""

    def check(self) -> FinetuneConfig:
        """Every field, nested `--train.*` ones included, before any work: a `ConfigError` naming the flag."""
        check.flag_model("student", self.student)
        check.flag_text("teacher", self.teacher)
        if self.teacher.endswith(".jsonl"):
            if not Path(self.teacher).is_file():
                raise check.flag_error("teacher", "no such traces file", self.teacher)
        elif self.teacher != "rationale":
            check.flag_model("teacher", self.teacher)
        check.flag_text("train_data", self.train_data)
        check.flag_text("eval_data", self.eval_data)
        check.flag_text("train_split", self.train_split, optional=True)
        check.flag_text("eval_split", self.eval_split, optional=True)
        check.flag_optional_int("train_limit", self.train_limit, 1)
        check.flag_int("eval_size", self.eval_size, 1)
        check.flag_choice("policy", self.policy, policy.POLICIES)
        check.flag_choice("dtype", self.dtype, check.DTYPES)
        check.flag_float("hard_quantile", self.hard_quantile, 0.0, 1.0)
        if self.threshold is not None:
            check.flag_float("threshold", self.threshold)
        check.flag_int("teacher_max_new_tokens", self.teacher_max_new_tokens, 1)
        check.flag_choice("labels", self.labels, tuple(mcqa.LABELS))
        check.flag_int("score_batch", self.score_batch, 1)
        t = self.train
        check.flag_int("train.epochs", t.epochs, 1)
        check.flag_int("train.micro_batch", t.micro_batch, 1)
        check.flag_int("train.accumulation", t.accumulation, 1)
        check.flag_int("train.seq_len", t.seq_len, 2)
        check.flag_float("train.lr", t.lr, 0.0, lo_open=True)
        check.flag_float("train.warmup_ratio", t.warmup_ratio, 0.0, 1.0)
        check.flag_float("train.final_lr_ratio", t.final_lr_ratio, 0.0, 1.0)
        check.flag_float("train.weight_decay", t.weight_decay, 0.0)
        if t.clip_norm is not None:
            check.flag_float("train.clip_norm", t.clip_norm, 0.0, lo_open=True)
        check.flag_choice("train.compute_dtype", t.compute_dtype, ("float32", "bfloat16"))
        check.flag_choice("train.precision", t.precision, sft.PRECISIONS)
        if t.precision != "fp32" and t.compute_dtype != "bfloat16":
            raise check.flag_error("train.precision", "stores bfloat16 weights: needs --train.compute-dtype bfloat16",
                                   t.precision)
        check.flag_choice("train.remat", t.remat, tuple(sft.REMAT_POLICIES))
        check.flag_int("train.loss_chunk", t.loss_chunk, 0)
        if t.lora is not None:
            check.flag_int("train.lora.rank", t.lora.rank, 1)
            check.flag_float("train.lora.alpha", t.lora.alpha, 0.0, lo_open=True)
            check.flag_choices("train.lora.targets", t.lora.targets, t.lora.targets)
        check.flag_seed("train.seed", t.seed)
        check.flag_int("train.save_every", t.save_every, 0)
        check.flag_int("train.keep_checkpoints", t.keep_checkpoints, 1)
        check.flag_int("train.min_loss_slots", t.min_loss_slots, 0)
        return self


def split_questions(config: FinetuneConfig) -> tuple[list, list]:
    """(train, eval) questions; a seeded disjoint split when both come from the same source."""
    train = check.flag_data("train_data", config.train_data, split=config.train_split)
    if (config.eval_data, config.eval_split) == (config.train_data, config.train_split):
        if config.eval_size >= len(train):
            raise check.flag_error("eval_size", f"leaves no training questions out of {len(train)}", config.eval_size)
        order = np.random.default_rng([config.train.seed, 0xE1A1]).permutation(len(train))
        held = set(order[: config.eval_size].tolist())
        evals = [q for i, q in enumerate(train) if i in held]
        train = [q for i, q in enumerate(train) if i not in held]
    else:
        evals = check.flag_data("eval_data", config.eval_data, split=config.eval_split)
        overlap = {q.id for q in train} & {q.id for q in evals}
        if overlap:
            raise check.ConfigError(f"--eval-data: {len(overlap)} question ids are in both --train-data and "
                                    f"--eval-data (e.g. {sorted(overlap)[:3]})")
    if config.train_limit is not None:
        train = train[: config.train_limit]
    if not train:
        raise check.ConfigError(f"--train-data: no training questions in {config.train_data!r}")
    return train, evals


def teacher_identity(teacher: str) -> dict:
    """What a teacher's traces are made from: the data's rationales (in each question's content key), a traces
    file (its digest) or a model's files (`llm.fingerprint`)."""
    if teacher == "rationale":
        return {"kind": "rationale"}
    if teacher.endswith(".jsonl"):
        return {"kind": "file", "path": teacher, "sha256": file_digest(teacher)}
    return {"kind": "model", **api.fingerprint(teacher)}


def run_inputs(config: FinetuneConfig, train, evals) -> dict:
    """The inputs a run records in OUT/inputs.json (`stores.check_inputs`)."""
    return {"train": mcqa.identity(train, config.train_data), "eval": mcqa.identity(evals, config.eval_data),
            "student": api.fingerprint(config.student), "teacher": teacher_identity(config.teacher)}


def prompt_lengths(lm, questions, config: FinetuneConfig, fmt: prompts.PromptFormat | None = None) -> dict[str, int]:
    """{id: tokens} of the answer-only scoring prompt of each question (gating and evaluation) in format `fmt`
    (default `PromptFormat.of(config)`)."""
    fmt = fmt if fmt is not None else prompts.PromptFormat.of(config)
    return {q.id: len(lm.tokenizer(prompts.render_prompt(lm.tokenizer, q, fmt, style=config.labels),
                                   add_special_tokens=False)["input_ids"]) for q in questions}


def _bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=not progress)


def _keyed(path: Path, match: dict, reuse: dict | None, compute) -> dict:
    """The record in `path` when its fields equal `match`; else the record another run of a sweep made for the
    same `match` (`reuse`), copied into `path`; else `compute()` (a record holding `match`), written to `path`
    and offered to the sweep's later runs."""
    saved = read_json(path)
    if saved and all(saved.get(k) == v for k, v in match.items()):
        return saved
    name = (path.name, digest(match))
    record = reuse.get(name) if reuse is not None else None
    if record is None:
        record = compute()
    write_json(path, record)
    if reuse is not None:
        reuse[name] = record
    return record


def gate(config: FinetuneConfig, lm, train, out: Path, *, progress: bool = False,
         fmt: prompts.PromptFormat | None = None, reuse: dict | None = None) -> gating.Bands:
    """Step 1: answer-step entropy of every training question under the student (cached in OUT/gating.json, with
    the prompt format it was read with). `reuse`: records already computed for the same key by another run of a
    sweep (`run`)."""
    fmt = fmt if fmt is not None else prompts.PromptFormat.of(config)
    prompt = {"prompt": config.prompt, "instruction": config.instruction} | fmt.record()
    key = {"content": digest([(q.id, mcqa.content_hash(q)) for q in train]), "student": digest(
        api.fingerprint(config.student)), "labels": config.labels, "prompt_format": prompt}
    match = {"ids": [q.id for q in train], "key": key}

    def score() -> dict:
        with _bar(progress, len(train), "gating (student entropy)") as bar:
            scores = gating.answer_entropies(lm, train, batch_size=config.score_batch, style=config.labels,
                                             progress=bar.update, fmt=fmt)
        return match | {"entropy": [scores[q.id].entropy for q in train],
                        "correct": [scores[q.id].pred == q.answer for q in train],
                        "entropy_settings": dict(scoring.entropy_settings(lm))}

    entropy = _keyed(out / "gating.json", match, reuse, score)["entropy"]
    return gating.split(match["ids"], entropy, hard_quantile=config.hard_quantile, threshold=config.threshold)


def teacher_traces(config: FinetuneConfig, train, out: Path, *, mesh=None, progress: bool = False) -> traces.TraceSet:
    """Step 2: the teacher's traces of the training questions (cached), wrong ones dropped unless keep_wrong."""
    cache_dir = config.traces_cache or out.parent / "traces"
    with _bar(progress, len(train), "teacher traces") as bar:
        ts = traces.load_teacher_traces(config.teacher, train, cache_dir=cache_dir, style=config.labels,
                                        max_new_tokens=config.teacher_max_new_tokens, batch_size=config.score_batch,
                                        dtype=config.dtype, mesh=mesh, progress=bar.update,
                                        skip_long=config.skip_long)
    return traces.keep_correct(ts, config.keep_wrong)


def teacher_accounting(ts: traces.TraceSet, out: Path, key: str) -> traces.TraceSet:
    """`ts` with the teacher tokens this run generated, as first recorded in OUT/teacher.json for these inputs: a
    resumed run finds its own traces in the cache, yet generated them (its epoch-0 accounting must equal the
    uninterrupted run's)."""
    path = out / "teacher.json"
    saved = read_json(path)
    if saved and saved.get("key") == key:
        return dataclasses.replace(ts, generated_tokens=saved["generated_tokens"],
                                   generated_questions=saved["generated_questions"],
                                   cached_questions=saved["cached_questions"])
    write_json(path, {"key": key, "generated_tokens": ts.generated_tokens,
                      "generated_questions": ts.generated_questions, "cached_questions": ts.cached_questions})
    return ts


def run(config: FinetuneConfig, out: str | Path, *, student=None, mesh=None, resume: bool = False,
        progress: bool = False, reuse: dict | None = None) -> dict:
    """Run one policy end to end into OUT and return its summary (also OUT/summary.json).

    `student`: an already loaded `LanguageModel` (a sweep loads it once) instead of loading `config.student`
    on `mesh`. `resume`: continue a killed run from its last checkpoint (same settings required). `reuse`: a
    dict the runs of a sweep share, where the results that depend on their common inputs alone (the gating
    entropies, the untrained evaluation) are kept under their content keys and copied into each OUT instead of
    computed again (`sweep` passes one; the files are the same as computed). OUT is held
    by a `RunLock` for the call. `summary["status"]` is "finished" or "interrupted" (SIGTERM/SIGINT; then
    `summary["signal"]` is the signal number).
    """
    from entropy_jax import llm
    from entropy_jax.llm import export

    t_start = time.perf_counter()
    config.check()
    out = check.flag_out_dir("out", out)
    fmt = prompts.PromptFormat.of(config)
    train, evals = split_questions(config)
    prompts.check_fewshot(fmt, train + evals, "the training and held-out questions")
    inputs = run_inputs(config, train, evals)
    with RunLock(out):
        settings = configs.settings(config) | fmt.record()
        check_settings(out, settings, holds=["checkpoints"], what="a run")
        check_inputs(out, inputs, holds=["checkpoints"], what="a run")
        identity = digest({"settings": settings, "inputs": inputs})
        train_cfg = config.train
        lora = train_cfg.lora

        lm = student if student is not None else llm.load(config.student, dtype=config.dtype, mesh=mesh)
        if lm.tokenizer is None:
            raise check.ConfigError(f"--student: {config.student!r} has no tokenizer: fine-tuning renders text "
                                    "prompts")
        if lora is not None:  # a target that matches nothing fails here, before any scoring or generation
            from entropy_jax.train.lora import target_paths

            check.flag_parse("train.lora.targets", lambda t: target_paths(lm.params, t), lora.targets)
        context = lm.config.max_position_embeddings
        long = {i: n for i, n in prompt_lengths(lm, train + evals, config, fmt).items() if n > context}
        if long and not config.skip_long:
            raise check.too_long(long, context, what=f"--student {config.student}", field="train_data")
        skipped = {"train": [q.id for q in train if q.id in long], "eval": [q.id for q in evals if q.id in long]}
        train, evals = [q for q in train if q.id not in long], [q for q in evals if q.id not in long]
        if not train or not evals:
            raise check.ConfigError(f"--train-data: no {'training' if not train else 'held-out'} question fits the "
                                    f"context of --student {config.student} ({context} positions)")

        bands = gate(config, lm, train, out, progress=progress, fmt=fmt, reuse=reuse)
        needs_cot = config.policy not in ("sft", "curriculum")
        ts = (teacher_accounting(teacher_traces(config, train, out, mesh=mesh, progress=progress), out, identity)
              if needs_cot else traces.TraceSet({}, "none"))
        p = policy.plan(config.policy, bands, set(ts.traces), seed=train_cfg.seed)
        write_json(out / "bands.json", bands.summary() | {"band_of": bands.band_of(),
                                                          "entropy": dict(zip(bands.ids, bands.entropy))})
        write_json(out / "plan.json", {"policy": p.policy, "order": p.order, "counts": p.counts,
                                       "by_band": policy.band_counts(p, bands), "fallback_ids": list(p.fallback),
                                       "teacher": ts.summary(), "kinds": p.kinds})

        by_id = {q.id: q for q in train}
        examples = []
        for qid in bands.ids:
            q = by_id[qid]
            if p.kinds[qid] == "cot":
                examples.append(ex.cot_example(lm.tokenizer, q, ts.traces[qid].text, style=config.labels))
            else:
                examples.append(ex.answer_example(lm.tokenizer, q, style=config.labels, fmt=fmt))
        tokenized = dict(zip(bands.ids, ex.tokenize(lm.tokenizer, examples)))
        teacher_tokens_used = sum(ts.traces[i].n_tokens for i, k in p.kinds.items() if k == "cot")

        def epoch_examples(epoch: int):
            return [tokenized[i] for i in policy.epoch_order(p, bands, epoch, train_cfg.seed)]

        def accounting(epoch: int) -> dict:
            return {"teacher_tokens_generated": ts.generated_tokens if epoch == 0 else 0,
                    "teacher_trace_tokens": teacher_tokens_used}

        def evaluate(params, epoch: int) -> dict:
            rows: list = []
            res = ev.answer_accuracy(lm.with_params(params), evals, batch_size=config.score_batch, style=config.labels,
                                     rows=rows, fmt=fmt)
            write_json(out / "eval" / f"epoch_{epoch + 1:03d}.json", {"metrics": res, "rows": rows})
            return res

        base_key = {"content": digest([(q.id, mcqa.content_hash(q)) for q in evals]),
                    "student": digest(inputs["student"]), "labels": config.labels, "prompt_format": fmt.record()}

        def evaluate_base() -> dict:
            rows: list = []
            metrics = ev.answer_accuracy(lm, evals, batch_size=config.score_batch, style=config.labels, rows=rows,
                                         fmt=fmt)
            return {"metrics": metrics, "key": base_key, "rows": rows}

        base = _keyed(out / "eval" / "epoch_000.json", {"key": base_key}, reuse, evaluate_base)["metrics"]

        t_train = time.perf_counter()
        result = trainer.fit(lm, epoch_examples, train_cfg, out, evaluate=evaluate, resume=resume, progress=progress,
                             extra_accounting=accounting, identity=identity)
        t_train = time.perf_counter() - t_train

        summary = {
            "settings": settings, "status": result["status"], "n_train": len(train), "n_eval": len(evals),
            "bands": bands.summary(), "plan": p.counts, "teacher": ts.summary(), "base_eval": base,
            "history": result["history"], "global_step": result["global_step"], "total_steps": result["total_steps"],
            "train_step_traces": result["trace_counts"]["train_step"], "seconds": {"train": t_train},
            "model": {"family": lm.config.family, "vocab_size": lm.config.vocab_size, "source": config.student},
        }
        if config.skip_long:
            summary["skipped_long"] = skipped | {"n": len(long)}
        if result["resumed"] is not None:
            summary["resumed"] = result["resumed"]
        if result["history"]:
            last = result["history"][-1]
            summary["final"] = {"accuracy": last["eval"]["accuracy"], "epochs": len(result["history"]),
                                "loss_tokens": last["cumulative_loss_tokens"], "tokens": last["cumulative_tokens"],
                                "teacher_tokens_generated": sum(h["teacher_tokens_generated"]
                                                                for h in result["history"])}
        if result["status"] == "finished" and config.export:
            sample = [tokenized[bands.ids[0]].ids.tolist()]
            res = export.save_lm(lm, out / "final", params=result["params"], overwrite=True,
                                 verify_tokens=np.asarray(sample))
            summary["export"] = {"directory": str(res.directory), "files": list(res.files), "bytes": res.total_bytes,
                                 "verification": res.verification}
        summary["seconds"]["total"] = time.perf_counter() - t_start
        write_json(out / "summary.json", summary)
    summary["signal"] = result["signal"]
    return summary


def sweep(base: FinetuneConfig, out: str | Path, *, policies: tuple[str, ...] = policy.POLICIES,
          export: tuple[str, ...] = ("gated",), student=None, mesh=None, progress: bool = False) -> dict:
    """Every policy of `policies` with the settings of `base`, into OUT/<policy>/, then the accuracy–token
    frontier of OUT (`frontier.run`). `student` (loaded once, e.g. on a mesh) is shared by the runs, so their
    train step compiles once when `base.train.min_loss_slots` gives them one loss-slot count. Only the policies
    in `export` are exported. The gating entropies and the untrained evaluation, the same for every policy, are
    computed by the first run and copied by the others (`run`'s `reuse`). Returns {"runs": [summary, …],
    "frontier": frontier result}."""
    out = Path(out)
    summaries = []
    reuse: dict = {}
    for name in policies:
        cfg = dataclasses.replace(base, policy=name, export=name in export)
        summaries.append(run(cfg, out / name, student=student, mesh=mesh, progress=progress, reuse=reuse))
    return {"runs": summaries, "frontier": frontier.run(out)}


def label_shifts(base: FinetuneConfig, out: str | Path, policies) -> dict[str, dict]:
    """{policy: `evaluate.label_shift`} of the runs of a sweep of `base` in OUT/<policy>/: what each run did to
    the held-out predictions' answer labels, against the training answers' label distribution."""
    train, evals = split_questions(base)
    return {name: ev.label_shift_of_run(Path(out) / name, train + evals, style=base.labels) for name in policies}


def markdown(summaries: list[dict]) -> str:
    """One row per run: policy, supervision counts, accuracy before/after, tokens."""
    lines = [("| policy | answer / CoT examples | accuracy before → after | loss-bearing tokens | "
              "tokens through the model | teacher tokens generated |"), "|---|---|---|---:|---:|---:|"]
    for s in summaries:
        f = s.get("final") or {}
        acc = f"{s['base_eval']['accuracy']:.3f} → {f['accuracy']:.3f}" if f else "—"
        lines.append(f"| {s['settings']['policy']} | {s['plan']['answer']} / {s['plan']['cot']} | {acc} | "
                     f"{f.get('loss_tokens', 0):,} | {f.get('tokens', 0):,} | "
                     f"{f.get('teacher_tokens_generated', 0):,} |")
    return "\n".join(lines) + "\n"
