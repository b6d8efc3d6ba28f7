"""Held-out accuracy of (fine-tuned) params with Chapter 3's answer-only scoring.

Evaluate trained weights with `answer_accuracy(lm.with_params(params), ...)`: `LanguageModel.with_params` is
`lm` with other weights but, on purpose, the same compiled programs (the jitted forward takes the params as an
argument), so evaluating after every epoch of every run of a sweep compiles once.
"""

from __future__ import annotations

import numpy as np

from entropy_jax.eval import metrics as M
from entropy_jax.llm import scoring


def answer_accuracy(lm, questions, *, batch_size: int = 8, style: str = "letters", system: str | None = None,
                    rows: list | None = None, fmt=None) -> dict:
    """{"n", "accuracy", "mean_entropy" (nats), "entropy_roc_auc" (entropy as an error detector; None when
    every answer is right or every answer wrong), "mean_label_mass"}; appends per-question rows (id, pred,
    correct, entropy) to `rows` when given. Prompts in format `fmt` (`prompts.PromptFormat`; default the chat
    prompt)."""
    preds, entropy, mass = [], [], []
    for _, scores in scoring.score_questions(lm, questions, batch_size=batch_size, style=style, system=system,
                                             fmt=fmt):
        preds += [s.pred for s in scores]
        entropy += [s.entropy for s in scores]
        mass += [s.label_mass for s in scores]
    correct = np.array([p == q.answer for p, q in zip(preds, questions)], bool)
    entropy = np.asarray(entropy, float)
    if rows is not None:
        rows.extend({"id": q.id, "pred": int(p), "correct": bool(c), "entropy": float(h)}
                    for q, p, c, h in zip(questions, preds, correct, entropy))
    auc = M.roc_auc(entropy, ~correct) if 0 < correct.sum() < len(correct) else None
    return {"n": len(questions), "accuracy": float(correct.mean()), "mean_entropy": float(entropy.mean()),
            "entropy_roc_auc": None if auc is None else float(auc), "mean_label_mass": float(np.mean(mass))}
