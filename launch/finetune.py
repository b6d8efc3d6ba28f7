"""Chapter 4: complexity-aware fine-tuning — entropy-gated SFT plus chain-of-thought distillation.

Command (one policy; `launch.reproduce` runs all six at demo size):

    python -m launch.finetune --student smollm2-135m-instruct --teacher rationale --train demo --eval demo \
        --policy gated --out results/finetune/gated --epochs 2

Runtime on 2 CPU cores: about 1.5 minutes per policy at the demo size of `launch.reproduce --quick`
(12 training questions, 24 held out, 2 epochs of 2 packed rows × 256 tokens per step, full fine-tuning of
SmolLM2-135M in float32; ≈ 5 s per step); the numbers are those of a 135M model trained for seconds, not
the dissertation's (Qwen2.5-3B / Phi-4-mini on MMLU-Pro with a DeepSeek-V3 teacher: `--student`,
`--teacher` and `--train mmlu-pro` on a GPU/TPU, with `--data-axis`, `--fsdp` for the mesh).

Steps: (1) the student's Chapter 3 answer-step entropy of every training question → bands by quantile
(`--hard-quantile 0.75`, the paper's Q3) or threshold (`--threshold`, nats) → OUT/bands.json; (2) teacher
traces: `rationale` (the data set's field), a traces `.jsonl`, or a model that writes step-by-step traces
(cached in `--traces-cache`, default OUT/../traces, shared by a sweep: no teacher token twice; wrong traces
dropped unless `--keep-wrong`); (3) the policy's supervision per question (`entropy_jax.train.policy`);
(4) training (completion-only loss, AdamW, warmup + cosine, clipping, accumulation, packing, full or LoRA,
bf16 compute with `--compute-dtype bfloat16`), evaluated after every epoch on the held-out questions with
answer-only scoring; (5) export of the final model to OUT/final/ (safetensors + config + tokenizer,
checked against our reload and transformers).

Writes OUT/settings.json, bands.json, plan.json, traces summary, train_log.jsonl (per step and per epoch:
tokens through the model, loss-bearing tokens, teacher tokens), summary.json, checkpoints/ (Orbax; every
`--save-every` steps, at epoch ends and on SIGTERM/SIGINT) and final/. `--resume` continues a killed run
from its last checkpoint with the same data order and ends with the same parameters.
`python -m launch.frontier --sweep results/finetune` plots accuracy against tokens for the policies.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import tyro
from tqdm.auto import tqdm

from entropy_jax.data import mcqa
from entropy_jax.train import evaluate as ev
from entropy_jax.train import examples as ex
from entropy_jax.train import gating, policy, traces, trainer
from entropy_jax.train.lora import LoraConfig
from launch import distributed
from launch._common import write_json


@dataclasses.dataclass(frozen=True)
class Config:
    student: str = "smollm2-135m-instruct"
    """Model to fine-tune: alias, HF directory, .gguf file or hub id (entropy_jax.llm.load)."""
    teacher: str = "rationale"
    """`rationale` (the data's field), a traces .jsonl file, or a model source that writes traces."""
    train: str = "demo"
    """Training questions: demo, a .jsonl/.csv path, or a benchmark name (online)."""
    eval: str = "demo"
    """Held-out questions; when it is the same source as --train, --eval-size questions are held out."""
    train_split: str | None = None
    eval_split: str | None = None
    train_limit: int | None = None
    """Use at most this many training questions (after the held-out split)."""
    eval_size: int = 96
    """Held-out questions when --train and --eval are the same source (a seeded split)."""
    policy: str = "gated"
    """sft, distill, gated, curriculum, gated_inverse or random (see entropy_jax.train.policy)."""
    out: Path = Path("results/finetune/gated")
    epochs: int = 2
    batch_size: int = 4
    """Rows per micro-batch."""
    accumulation: int = 1
    """Micro-batches per optimizer step."""
    seq_len: int = 512
    packing: bool = True
    lr: float = 1e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    compute_dtype: str = "float32"
    """float32 or bfloat16 (master weights stay float32)."""
    dtype: str = "float32"
    """Dtype the student and teacher are loaded in."""
    lora_rank: int = 0
    """0 = full fine-tuning; > 0 trains LoRA adapters of this rank."""
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
    hard_quantile: float = 0.75
    """Questions with entropy at or above this quantile form the hard band."""
    threshold: float | None = None
    """Absolute hard-band threshold in nats (overrides --hard-quantile)."""
    keep_wrong: bool = False
    """Keep teacher traces whose parsed answer is wrong (dropped by default)."""
    teacher_max_new_tokens: int = 512
    traces_cache: Path | None = None
    """Where generated traces are cached (default OUT/../traces)."""
    labels: str = "letters"
    score_batch: int = 8
    """Batch size of the answer-step scoring (gating and evaluation)."""
    save_every: int = 0
    """Checkpoint every N optimizer steps (0: at epoch ends and on SIGTERM/SIGINT only)."""
    checkpoint_epochs: bool = True
    """Checkpoint at every epoch end (`--no-checkpoint-epochs` for sweeps of short runs; SIGTERM/SIGINT and
    `--save-every` checkpoints remain)."""
    min_loss_slots: int = 0
    """Lower bound on the loss positions per row (K): runs of a sweep with the same value compile once."""
    resume: bool = False
    export: bool = True
    seed: int = 0
    progress: bool = True
    data_axis: int = -1
    """Mesh axes (data / fsdp / tensor; one may be -1 = all remaining devices); all 1 = one device. The
    default splits each batch over every device (on a CPU, each core is a device: ~1.3× faster)."""
    fsdp: int = 1
    tensor: int = 1


# Settings a resumed run must share with the run it continues (everything that changes the data or the math).
_RUN_KEYS = ("student", "teacher", "train", "eval", "train_split", "eval_split", "train_limit", "eval_size",
             "policy", "epochs", "batch_size", "accumulation", "seq_len", "packing", "lr", "warmup_ratio",
             "weight_decay", "clip_norm", "compute_dtype", "dtype", "lora_rank", "lora_alpha", "lora_targets",
             "hard_quantile", "threshold", "keep_wrong", "teacher_max_new_tokens", "labels", "seed")


def run_settings(config: Config) -> dict:
    return json.loads(json.dumps({k: getattr(config, k) for k in _RUN_KEYS}, default=str))


def split_questions(config: Config) -> tuple[list, list]:
    """(train, eval) questions; a seeded disjoint split when both come from the same source."""
    train = mcqa.load(config.train, split=config.train_split)
    if (config.eval, config.eval_split) == (config.train, config.train_split):
        if config.eval_size >= len(train):
            raise ValueError(f"--eval-size {config.eval_size} leaves no training questions out of {len(train)}")
        order = np.random.default_rng([config.seed, 0xE1A1]).permutation(len(train))
        held = set(order[: config.eval_size].tolist())
        evals = [q for i, q in enumerate(train) if i in held]
        train = [q for i, q in enumerate(train) if i not in held]
    else:
        evals = mcqa.load(config.eval, split=config.eval_split)
        overlap = {q.id for q in train} & {q.id for q in evals}
        if overlap:
            raise ValueError(f"{len(overlap)} question ids are in both --train and --eval (e.g. {sorted(overlap)[:3]})")
    if config.train_limit is not None:
        train = train[: config.train_limit]
    if not train:
        raise ValueError(f"no training questions in {config.train!r}")
    return train, evals


def _gate(config: Config, lm, train, out: Path) -> gating.Bands:
    """Step 1: answer-step entropy of every training question under the student (cached in OUT)."""
    path = out / "gating.json"
    cached = json.loads(path.read_text()) if path.exists() else None
    if cached and cached.get("ids") == [q.id for q in train]:
        entropy = cached["entropy"]
    else:
        with tqdm(total=len(train), desc="gating (student entropy)", unit="q", disable=not config.progress) as bar:
            scores = gating.answer_entropies(lm, train, batch_size=config.score_batch, style=config.labels,
                                             progress=bar.update)
        entropy = [scores[q.id].entropy for q in train]
        write_json(path, {"ids": [q.id for q in train], "entropy": entropy,
                          "correct": [scores[q.id].pred == q.answer for q in train],
                          "entropy_settings": dict(gating.scoring.entropy_settings(lm))})
    return gating.split([q.id for q in train], entropy, hard_quantile=config.hard_quantile,
                        threshold=config.threshold)


def _traces(config: Config, train, out: Path, mesh) -> traces.TraceSet:
    cache_dir = config.traces_cache or out.parent / "traces"
    with tqdm(total=len(train), desc="teacher traces", unit="q", disable=not config.progress) as bar:
        ts = traces.load_teacher_traces(config.teacher, train, cache_dir=cache_dir, style=config.labels,
                                        max_new_tokens=config.teacher_max_new_tokens, batch_size=config.score_batch,
                                        dtype=config.dtype, mesh=mesh, progress=bar.update)
    return traces.keep_correct(ts, config.keep_wrong)


def main(config: Config, *, student=None) -> dict:
    """Run one policy end to end; `student` (a loaded LanguageModel) skips loading for sweeps/notebooks."""
    from entropy_jax import llm
    from entropy_jax.llm import export

    t_start = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = run_settings(config)
    old = json.loads((out / "settings.json").read_text()) if (out / "settings.json").exists() else None
    if old is not None and old != settings and (out / "checkpoints").exists():
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        raise ValueError(f"{out} holds a run with other settings {diff}; use another --out or delete it")
    if config.policy not in policy.POLICIES:
        raise ValueError(f"unknown --policy {config.policy!r}; choose one of {list(policy.POLICIES)}")
    write_json(out / "settings.json", settings)
    lora = (LoraConfig(rank=config.lora_rank, alpha=config.lora_alpha, targets=tuple(config.lora_targets))
            if config.lora_rank > 0 else None)
    train_cfg = trainer.TrainConfig(
        epochs=config.epochs, micro_batch=config.batch_size, accumulation=config.accumulation, seq_len=config.seq_len,
        packing=config.packing, lr=config.lr, warmup_ratio=config.warmup_ratio, weight_decay=config.weight_decay,
        clip_norm=config.clip_norm, compute_dtype=config.compute_dtype, lora=lora, seed=config.seed,
        save_every=config.save_every, checkpoint_epochs=config.checkpoint_epochs,
        min_loss_slots=config.min_loss_slots)
    train, evals = split_questions(config)

    distributed.initialize(None)
    mesh = distributed.mesh_from_flags(config.data_axis, config.fsdp, config.tensor)
    lm = student if student is not None else llm.load(config.student, dtype=config.dtype, mesh=mesh)
    if lm.tokenizer is None:
        raise ValueError(f"student {config.student!r} has no tokenizer: fine-tuning renders text prompts")
    if lora is not None:  # a target that matches nothing fails here, before any scoring or generation
        from entropy_jax.train.lora import target_paths

        target_paths(lm.params, lora.targets)

    bands = _gate(config, lm, train, out)
    needs_cot = config.policy not in ("sft", "curriculum")
    ts = _traces(config, train, out, mesh) if needs_cot else traces.TraceSet({}, "none")
    p = policy.plan(config.policy, bands, set(ts.traces), seed=config.seed)
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
            examples.append(ex.answer_example(lm.tokenizer, q, style=config.labels))
    tokenized = dict(zip(bands.ids, ex.tokenize(lm.tokenizer, examples)))
    teacher_tokens_used = sum(ts.traces[i].n_tokens for i, k in p.kinds.items() if k == "cot")

    def epoch_examples(epoch: int):
        return [tokenized[i] for i in policy.epoch_order(p, bands, epoch, config.seed)]

    def accounting(epoch: int) -> dict:
        return {"teacher_tokens_generated": ts.generated_tokens if epoch == 0 else 0,
                "teacher_trace_tokens": teacher_tokens_used}

    def evaluate(params, epoch: int) -> dict:
        rows: list = []
        res = ev.answer_accuracy(ev.with_params(lm, params), evals, batch_size=config.score_batch,
                                 style=config.labels, rows=rows)
        write_json(out / "eval" / f"epoch_{epoch + 1:03d}.json", {"metrics": res, "rows": rows})
        return res

    base_path = out / "eval" / "epoch_000.json"
    if base_path.exists():
        base = json.loads(base_path.read_text())["metrics"]
    else:
        base_rows: list = []
        base = ev.answer_accuracy(lm, evals, batch_size=config.score_batch, style=config.labels, rows=base_rows)
        write_json(base_path, {"metrics": base, "rows": base_rows})

    t_train = time.perf_counter()
    result = trainer.fit(lm, epoch_examples, train_cfg, out, evaluate=evaluate, resume=config.resume,
                         progress=config.progress, extra_accounting=accounting)
    t_train = time.perf_counter() - t_train

    summary = {
        "settings": settings, "status": result["status"], "n_train": len(train), "n_eval": len(evals),
        "bands": bands.summary(), "plan": p.counts, "teacher": ts.summary(), "base_eval": base,
        "history": result["history"], "global_step": result["global_step"], "total_steps": result["total_steps"],
        "train_step_traces": result["trace_counts"]["train_step"], "seconds": {"train": t_train},
        "model": {"family": lm.config.family, "vocab_size": lm.config.vocab_size, "source": config.student},
    }
    if result["history"]:
        last = result["history"][-1]
        summary["final"] = {"accuracy": last["eval"]["accuracy"], "epochs": len(result["history"]),
                            "loss_tokens": last["cumulative_loss_tokens"], "tokens": last["cumulative_tokens"],
                            "teacher_tokens_generated": sum(h["teacher_tokens_generated"] for h in result["history"])}
    if result["status"] == "finished" and config.export:
        sample = [tokenized[bands.ids[0]].ids.tolist()]
        res = export.save_lm(lm, out / "final", params=result["params"], overwrite=True, verify_tokens=np.asarray(sample))
        summary["export"] = {"directory": str(res.directory), "files": list(res.files), "bytes": res.total_bytes,
                             "verification": res.verification}
    summary["seconds"]["total"] = time.perf_counter() - t_start
    write_json(out / "summary.json", summary)
    if config.progress:
        print(markdown([summary]))
    if result["status"] == "interrupted":
        print(f"interrupted at step {result['global_step']} of {result['total_steps']}: resume with --resume "
              f"--out {out}", file=sys.stderr)
    summary["signal"] = result["signal"]
    return summary


def markdown(summaries: list[dict]) -> str:
    """One row per run: policy, supervision counts, accuracy before/after, tokens."""
    lines = [("| policy | answer / CoT examples | accuracy before → after | loss-bearing tokens | "
              "tokens through the model | teacher tokens generated |"), "|---|---|---|---:|---:|---:|"]
    for s in summaries:
        f = s.get("final") or {}
        acc = f"{s['base_eval']['accuracy']:.3f} → {f['accuracy']:.3f}" if f else "—"
        lines.append(f"| {s['settings']['policy']} | {s['plan']['answer']} / {s['plan']['cot']} | {acc} | "
                     f"{f.get('loss_tokens', 0):,} | {f.get('tokens', 0):,} | {f.get('teacher_tokens_generated', 0):,} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    summary = main(tyro.cli(Config, description=__doc__.split("\n\n")[0]))
    if summary["status"] == "interrupted" and summary.get("signal"):
        sys.exit(128 + int(summary["signal"]))
