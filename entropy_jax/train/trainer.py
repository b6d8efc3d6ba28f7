"""The fine-tuning loop: epochs of packed step batches through one jitted train step, Orbax checkpoints
(periodic, at epoch ends, on SIGTERM/SIGINT), exact resume, per-step and per-epoch metrics in JSONL, and an
evaluation callback after every epoch.

    result = trainer.fit(lm, epoch_examples, TrainConfig(...), out_dir, evaluate=fn)

`epoch_examples(epoch)` returns that epoch's tokenized examples in training order; it must be a pure
function of the epoch (the policies seed their shuffles by (seed, epoch)), which is what makes a resumed
run see the same batches. Accounting per epoch: `tokens` (every non-padding position that went through the
model), `loss_tokens` (the supervised completion positions: the paper's "processed tokens"), examples,
rows, steps, padding.

Resume is keyed by content: each checkpoint's meta holds a digest of every epoch's tokenized examples, the
training settings (`configs.settings`) and the caller's `identity`; a resume that finds other examples (an
edited data file, other teacher traces, another tokenizer), other settings or another identity refuses,
naming what differs. A checkpoint that does not restore is skipped for the previous one
(`Checkpointer.restore_latest`, with a note). OUT/train_log.jsonl is a `stores.JsonlStore`: a torn last line is
cut away, and a resume cuts the rows written after the restored checkpoint, so the resumed log equals the
uninterrupted run's line for line (wall-clock seconds stay in the history, not in the log).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from entropy_jax import configs
from entropy_jax.llm import model as mdl
from entropy_jax.llm import sharding as shd
from entropy_jax.stores import JsonlStore, ResumeError
from entropy_jax.train import lora as lora_lib
from entropy_jax.train import packing, sft
from entropy_jax.train.checkpoint import Checkpointer, StopRequested
from entropy_jax.train.examples import Tokenized


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (the optimizer's total steps are derived from the data). Fields declared with
    `configs.runtime` (checkpoint cadence) do not change the trained weights; a resume compares all others."""

    epochs: int = 3
    micro_batch: int = 4
    """Rows per micro-batch (B); a multiple of the mesh's data × fsdp size."""
    accumulation: int = 1
    """Micro-batches per optimizer step (A): the step sees A·B rows."""
    seq_len: int = 512
    """Row length: packed rows are exactly this long; longer examples are cut at the end."""
    packing: bool = True
    """Pack several examples per row (block-diagonal attention); False = one per row, length-bucketed."""
    lr: float = 1e-5
    warmup_ratio: float = 0.1
    final_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    compute_dtype: str = "float32"
    """float32 or bfloat16: the dtype of the forward and backward pass."""
    precision: str = "fp32"
    """How weights are kept (bytes per parameter in `sft`'s docstring): fp32 (float32 master weights, cast
    to the compute dtype inside the step), bf16_master (bfloat16 weights + a float32 master copy updated by
    the optimizer), bf16 (bfloat16 weights only). Adam's moments are float32 in all three; the bf16 options
    need compute_dtype=bfloat16 and keep a LoRA run's frozen base in bfloat16 (fp32: in float32)."""
    remat: str = "none"
    """Per-layer rematerialisation in the backward pass: none, full (keep each layer's input only) or dots
    (keep the weight matmuls' outputs, recompute attention and elementwise work). Use it with scan_layers:
    with unrolled layers the compiler may schedule every recomputation early, and XLA's CPU backend does
    (no saving at all; bench/RESULTS.md, train-step memory plan)."""
    loss_chunk: int = 0
    """Loss positions per row projected onto the vocabulary at once (custom-VJP chunked cross-entropy, no
    [B, K, V] float32 logits); 0 = all K at once."""
    scan_layers: bool = False
    """Run the decoder layers as one `lax.scan` over their stacked params (compiles the layer once; with
    remat, the backward recomputes one layer at a time whatever the compiler's schedule)."""
    lora: lora_lib.LoraConfig | None = None
    """None = full fine-tuning."""
    seed: int = 0
    save_every: int = configs.runtime(0)
    """Checkpoint every N optimizer steps (0: only at epoch ends and on SIGTERM/SIGINT)."""
    checkpoint_epochs: bool = configs.runtime(True)
    """Checkpoint at every epoch end. Off for sweeps of short runs (a 135M model's state is 1.6 GB, seconds
    to write); `save_every` and the SIGTERM/SIGINT checkpoint still apply."""
    keep_checkpoints: int = configs.runtime(2)
    min_loss_slots: int = 0
    """Lower bound on K (loss positions per row, `packing.slot_bucket`): the runs of a sweep that set the same
    value share one compiled train step although their supervision differs."""

    def __post_init__(self):
        if self.epochs < 1 or self.micro_batch < 1 or self.accumulation < 1:
            raise ValueError(f"epochs, micro_batch and accumulation must be ≥ 1: {self}")
        self.step_config(lora=False)  # names the bad compute_dtype / precision / remat / loss_chunk

    def step_config(self, lora: bool | None = None) -> sft.StepConfig:
        return sft.StepConfig(compute_dtype=self.compute_dtype, lora=self.lora is not None if lora is None else lora,
                              remat=self.remat, loss_chunk=self.loss_chunk, precision=self.precision,
                              scan_layers=self.scan_layers)


@dataclasses.dataclass
class Run:
    """A prepared run: the jitted step, its state and frozen params, and the epochs' layouts."""

    lm: Any
    config: TrainConfig
    step: Callable
    state: dict
    frozen: Any
    data: list[tuple[list[Tokenized], packing.Layout]]
    total_steps: int
    trace_counts: dict  # of the (process-wide, cached) compiled step: cumulative over runs
    lr: Callable[[int], float]
    traces_before: int = 0  # trace_counts["train_step"] when this run was prepared


_STEPS: dict = {}


def _epoch_data(epoch_examples, config: TrainConfig):
    data = []
    for e in range(config.epochs):
        seqs = epoch_examples(e)
        lay = packing.layout(seqs, config.seq_len, packed=config.packing)
        if not lay.rows:
            raise ValueError(f"epoch {e}: no example keeps a loss-bearing token within seq_len={config.seq_len} "
                             f"({len(seqs)} examples, all prompts too long?)")
        data.append((seqs, lay))
    # one loss-slot count for every epoch (packing orders differ): one compiled step for the whole run
    k = min(max(config.min_loss_slots, *(lay.loss_slots for _, lay in data)), config.seq_len)
    return [(seqs, dataclasses.replace(lay, loss_slots=k)) for seqs, lay in data]


def _f32_copy(params):
    """A float32 copy of params, so donating the train state never invalidates the LanguageModel's."""
    return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.float32, copy=True), params)


def prepare(lm, epoch_examples: Callable[[int], Sequence[Tokenized]], config: TrainConfig) -> Run:
    """Layouts of every epoch, the optimizer (total steps from the layouts), the train state (float32
    master weights, on the LanguageModel's mesh) and the jitted step."""
    mesh = lm.mesh
    if mesh is not None and config.micro_batch % shd.batch_multiple(mesh):
        raise ValueError(f"micro_batch={config.micro_batch} is not a multiple of the mesh's data × fsdp = "
                         f"{shd.batch_multiple(mesh)}")
    data = _epoch_data(epoch_examples, config)
    steps = [packing.steps_per_epoch(lay, micro_batch=config.micro_batch, accumulation=config.accumulation)
             for _, lay in data]
    total = int(sum(steps))
    optim = sft.OptimConfig(weight_decay=config.weight_decay, clip_norm=config.clip_norm)
    tx = sft.optimizer(optim)
    compute = sft.COMPUTE_DTYPES[config.compute_dtype]
    if config.lora is None:
        trainable, frozen = _f32_copy(lm.params), None
    else:
        trainable = lora_lib.init(jax.random.key(config.seed), lm.params, config.lora)
        # the frozen base is never donated; outside "fp32" it is kept in the compute dtype (no float32 copy)
        frozen = _f32_copy(lm.params) if config.precision == "fp32" else sft.cast(lm.params, compute)
    step_cfg = config.step_config()
    lora_spec = None if config.lora is None else lora_lib.spec(config.lora, trainable)
    graphdef, _ = mdl.abstract(lm.config, compute, lora=lora_spec)
    init = functools.partial(sft.init_state, tx=tx, precision=config.precision)
    if mesh is None:
        state, state_s, frozen_s = init(trainable), None, None
    else:
        shape = jax.eval_shape(init, trainable)
        state_s = sft.state_shardings(shape, mesh, lora=config.lora is not None)
        frozen_s = None if frozen is None else shd.param_shardings(frozen, mesh)
        state = jax.jit(init, out_shardings=state_s)(jax.device_put(trainable, state_s["trainable"]))
        if frozen is not None:
            frozen = jax.device_put(frozen, frozen_s)
    # One compiled step per (model, optimizer, precision, adapters, mesh) in the process: a sweep of
    # policies over the same student compiles once per shape bucket, whatever each run's schedule.
    key = (graphdef, optim, step_cfg, mesh)
    if key not in _STEPS:
        counts = {"train_step": 0}
        raw = sft.make_step(graphdef, tx, step_cfg, mesh)

        def counted(state, frozen, batch, lr, _raw=raw, _counts=counts):
            _counts["train_step"] += 1
            return _raw(state, frozen, batch, lr)

        _STEPS[key] = (sft.jit_step(counted, mesh=mesh, state_sharding=state_s, frozen_sharding=frozen_s), counts)
    step, counts = _STEPS[key]
    lr = sft.schedule(config.lr, total_steps=total, warmup_steps=round(config.warmup_ratio * total),
                      final_lr_ratio=config.final_lr_ratio)
    return Run(lm, config, step, state, frozen, data, total, counts, lr, counts["train_step"])


_merge = jax.jit(lora_lib.merge, static_argnums=2)


def full_params(run: Run, state: dict | None = None):
    """The model's params after training so far (LoRA adapters merged): float32 except under precision
    "bf16" (bfloat16 weights); a LoRA run with a bfloat16 frozen base merges into the LanguageModel's
    params (their dtype)."""
    state = state or run.state
    trained = state.get("master", state["trainable"])
    if run.config.lora is None:
        return trained
    base = run.frozen if run.config.precision == "fp32" else run.lm.params
    return _merge(base, trained, run.config.lora.scale)


def _put_batch(batch: dict, mesh):
    fields = {k: batch[k] for k in packing.FIELDS}
    if mesh is None:
        return jax.device_put(fields)
    s = sft.batch_shardings(mesh)
    return {k: shd.place(v, s[k]) for k, v in fields.items()}


def examples_digest(data: Sequence[tuple[Sequence[Tokenized], Any]]) -> str:
    """SHA-256 (16 hex digits) of every epoch's examples in training order: ids, kinds, token ids and
    completion masks. Equal digests = the same training data, whatever file or teacher it came from."""
    h = hashlib.sha256()
    for e, (seqs, _) in enumerate(data):
        h.update(f"epoch {e} {len(seqs)}\n".encode())
        for t in seqs:
            h.update(f"{t.id}\0{t.kind}\0{len(t.ids)}\0".encode())
            h.update(np.asarray(t.ids, np.int32).tobytes())
            h.update(np.asarray(t.completion, bool).tobytes())
    return h.hexdigest()[:16]


def _check_resume(meta: dict, want: dict, step: int, out: Path) -> None:
    """Refuse a checkpoint made from other examples, settings or identity than this run's."""
    what = {"examples": "the training examples (data, teacher traces, tokenizer or order)",
            "train": "the training settings", "identity": "the run's inputs"}
    differ = [k for k in want if meta.get(k) != want[k]]
    if not differ:
        return
    detail = []
    for k in differ:
        if k == "train" and isinstance(meta.get(k), dict):
            changed = [f for f in want[k] if meta[k].get(f) != want[k][f]]
            detail.append(f"{what[k]} ({', '.join(f'{f}: {meta[k].get(f)!r} → {want[k][f]!r}' for f in changed)})")
        elif k not in meta:
            detail.append(f"{what[k]} (the checkpoint does not record them: made by an older version)")
        else:
            detail.append(what[k])
    raise ResumeError(f"{out / 'checkpoints'}: checkpoint {step} was trained with other {'; '.join(detail)} than "
                      "this run; resuming would mix them. Use another output directory, or delete it to start over")


def _epoch_accounting(seqs: Sequence[Tokenized], lay: packing.Layout, n_steps: int, per_step: int) -> dict:
    tokens = sum(lay.lengths)
    used = [i for r in lay.rows for i in r]
    loss_tokens = int(sum(seqs[i].completion[1: lay.lengths[i] + 1].sum() for i in used))
    by_kind: dict[str, int] = {}
    for i in used:
        by_kind[seqs[i].kind] = by_kind.get(seqs[i].kind, 0) + int(seqs[i].completion[1: lay.lengths[i] + 1].sum())
    slots = n_steps * per_step * lay.seq_len if lay.packed else None
    return {"examples": len(used), "rows": len(lay.rows), "steps": n_steps, "tokens": int(tokens),
            "loss_tokens": loss_tokens, "loss_tokens_by_kind": by_kind,
            "dropped_examples": len(lay.dropped), "truncated_examples": len(lay.truncated),
            "padding_fraction": None if slots is None else 1.0 - tokens / slots}


def fit(lm, epoch_examples: Callable[[int], Sequence[Tokenized]], config: TrainConfig, out: str | Path, *,
        evaluate: Callable[[Any, int], dict] | None = None, resume: bool = False, progress: bool = True,
        extra_accounting: Callable[[int], dict] | None = None, stop_after_steps: int | None = None,
        identity: Any = None) -> dict:
    """Train `lm` (its params are not modified) and return {"status", "history", "params", "run", ...}.

    Writes OUT/checkpoints/ (Orbax), OUT/train_log.jsonl (one record per step and per epoch) and, when
    `tensorboardX` or `torch.utils.tensorboard` imports, OUT/tensorboard/. `evaluate(params, epoch)` runs
    after every epoch on the float32 params (LoRA merged). `resume=True` continues from the newest checkpoint
    that restores (`resumed` in the result: its step and the ones skipped, with why); without it an existing
    checkpoint directory is an error. A checkpoint of other examples, training settings or `identity` (any
    JSON value the caller wants compared, e.g. its inputs' digest) is refused (`stores.ResumeError`).
    `status` is "finished" or "interrupted" (SIGTERM/SIGINT, or `stop_after_steps` optimizer steps in this
    call: for tests).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = prepare(lm, epoch_examples, config)
    ckpt = Checkpointer(out / "checkpoints", keep=config.keep_checkpoints)
    log_path = out / "train_log.jsonl"
    per_step = config.micro_batch * config.accumulation
    epoch, step_in_epoch, history = 0, 0, []
    want = {"examples": examples_digest(run.data), "train": configs.settings(config), "identity": identity}
    latest = ckpt.latest()
    if latest is not None and not resume:
        raise FileExistsError(f"{out / 'checkpoints'} holds checkpoints (latest step {latest}): pass resume=True "
                              f"(--resume) to continue, or use another output directory")
    found = ckpt.restore_latest(run.state) if latest is not None else None
    log = JsonlStore(log_path, required=("step",), writable=True)
    resumed = None
    if found is not None:
        step0, run.state, meta, skipped = found
        _check_resume(meta, want, step0, out)
        epoch, step_in_epoch, history = meta["epoch"], meta["step_in_epoch"], meta["history"]
        log.keep_rows(meta["log_rows"])  # the rows written after this checkpoint are redone
        resumed = {"step": step0, "skipped": [{"step": b, "reason": why} for b, why in skipped]}
    elif log_path.exists():
        log_path.unlink()
        log = JsonlStore(log_path, required=("step",), writable=True)
    writer = _tensorboard(out / "tensorboard")
    global_step = int(jax.device_get(run.state["step"]))
    steps_this_call = 0
    status = "finished"
    bar = _bar(progress, run.total_steps, global_step)

    def save():
        meta = {"epoch": epoch, "step_in_epoch": step_in_epoch, "history": history, "global_step": global_step,
                "log_rows": len(log.rows()), **want}
        ckpt.save(global_step, run.state, meta)

    with StopRequested() as stop:
        while epoch < config.epochs:
            seqs, lay = run.data[epoch]
            n_steps = packing.steps_per_epoch(lay, micro_batch=config.micro_batch, accumulation=config.accumulation)
            t0 = time.perf_counter()
            for batch in packing.batches(seqs, lay, micro_batch=config.micro_batch,
                                         accumulation=config.accumulation, start_step=step_in_epoch):
                lr = jnp.float32(run.lr(global_step))
                run.state, metrics = run.step(run.state, run.frozen, _put_batch(batch, lm.mesh), lr)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                global_step += 1
                step_in_epoch += 1
                steps_this_call += 1
                rec = {"step": global_step, "epoch": epoch, "lr": float(lr), "tokens": batch["n_tokens"], **metrics}
                log.append([rec])
                if writer is not None:
                    for k in ("loss", "grad_norm"):
                        writer.add_scalar(f"train/{k}", metrics[k], global_step)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{metrics['loss']:.4f}")
                if config.save_every and global_step % config.save_every == 0:
                    save()
                if stop or (stop_after_steps is not None and steps_this_call >= stop_after_steps):
                    status = "interrupted"
                    break
            if status == "interrupted":
                save()
                break
            acct = _epoch_accounting(seqs, lay, n_steps, per_step)
            acct["seconds"] = time.perf_counter() - t0
            if extra_accounting is not None:
                acct.update(extra_accounting(epoch))
            prev = history[-1] if history else {}
            acct["cumulative_tokens"] = prev.get("cumulative_tokens", 0) + acct["tokens"]
            acct["cumulative_loss_tokens"] = prev.get("cumulative_loss_tokens", 0) + acct["loss_tokens"]
            if evaluate is not None:
                acct["eval"] = evaluate(full_params(run), epoch)
                if writer is not None and "accuracy" in acct["eval"]:
                    writer.add_scalar("eval/accuracy", acct["eval"]["accuracy"], epoch + 1)
            history.append({"epoch": epoch, "step": global_step, **acct})
            log.append([{"step": global_step, "epoch_end": epoch, **{k: v for k, v in acct.items() if k != "seconds"}}])
            epoch, step_in_epoch = epoch + 1, 0
            if config.checkpoint_epochs:
                save()
    bar.close()
    if writer is not None:
        writer.close()
    ckpt.close()
    return {"status": status, "history": history, "params": full_params(run), "global_step": global_step,
            "total_steps": run.total_steps, "run": run,
            # traces (compilations) of the train step during this call; 0 when an earlier run compiled it
            "trace_counts": {"train_step": run.trace_counts["train_step"] - run.traces_before},
            "signal": stop.signal, "resumed": resumed}


def _bar(progress: bool, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not progress, desc="train", unit="step")


def _tensorboard(path: Path):
    import importlib.util

    for mod, needs in (("tensorboardX", "tensorboardX"), ("torch.utils.tensorboard", "tensorboard")):
        if importlib.util.find_spec(needs) is None:
            continue
        try:
            return __import__(mod, fromlist=["SummaryWriter"]).SummaryWriter(str(path))
        except Exception:  # a broken install only costs the TensorBoard view; the JSONL log stays
            continue
    return None


def clear_compiled() -> None:
    """Forget the compiled train steps of this process (the next run traces and compiles again)."""
    _STEPS.clear()
