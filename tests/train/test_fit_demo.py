"""The training loop fits what it trains on: the suite's cheap version of bench/sft_fit.py (which trains the
embedded SmolLM2 on 16 demo questions). A tiny random chat model, full fine-tuning on 8 demo questions as
answer-only examples, evaluated with the Chapter 3 answer-only scoring on the same questions after every epoch:
memorisation through `trainer.fit`, the completion mask, the loss, AdamW and the schedule."""

from __future__ import annotations

import json

import numpy as np

from entropy_jax.data import mcqa
from entropy_jax.llm.prompts import PromptFormat
from entropy_jax.train import evaluate as ev
from entropy_jax.train import examples as ex
from entropy_jax.train import trainer

N, REPEATS, EPOCHS = 8, 20, 3  # 8 questions, each seen 20 times per epoch
ROWS = 4  # packed rows of 256 tokens per step (one or two examples each): ~26 steps per epoch, one compiled shape


def test_sft_fits_its_training_questions(student, tmp_path):
    # chat prompt without the instruction: shorter rows for the character-level tokenizer, same scoring path
    fmt = PromptFormat("chat", None)
    qs = mcqa.load("demo", limit=N)
    seqs = ex.tokenize(student.tokenizer, [ex.answer_example(student.tokenizer, q, fmt=fmt) for q in qs])
    cfg = trainer.TrainConfig(epochs=EPOCHS, micro_batch=ROWS, seq_len=256, lr=3e-3,
                              checkpoint_epochs=False)
    rows: dict[int, list] = {0: []}
    before = ev.answer_accuracy(student, qs, rows=rows[0], fmt=fmt)["accuracy"]

    def evaluate(params, epoch):
        rows[epoch + 1] = []
        return ev.answer_accuracy(student.with_params(params), qs, rows=rows[epoch + 1], fmt=fmt)

    def order(epoch):  # a pure function of the epoch, as the trainer requires
        return [seqs[i % N] for i in np.random.default_rng((0, epoch)).permutation(N * REPEATS)]

    res = trainer.fit(student, order, cfg, tmp_path, evaluate=evaluate, progress=False)
    accs = [before] + [h["eval"]["accuracy"] for h in res["history"]]
    assert res["global_step"] == res["total_steps"] >= EPOCHS * REPEATS // 2 and before < 0.9
    assert accs[-1] >= 0.9, accs  # bench/sft_fit.py's goal, on its 16 questions with SmolLM2
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert log[0]["lr"] > 0 and losses[-1] < 0.1 * losses[0]  # the warmup's first step already learns
    # fitted: the predicted letters are the training answers' letters (no distance left between the two)
    shift = ev.label_shift(qs, qs, rows)
    assert shift["epochs"][-1]["tv_to_train_answers"] <= 1 / N < shift["epochs"][0]["tv_to_train_answers"]
