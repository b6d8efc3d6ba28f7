"""Held-out accuracy of (fine-tuned) params with Chapter 3's answer-only scoring, and what SFT taught.

Evaluate trained weights with `answer_accuracy(lm.with_params(params), ...)`: `LanguageModel.with_params` is
`lm` with other weights but, on purpose, the same compiled programs (the jitted forward takes the params as an
argument), so evaluating after every epoch of every run of a sweep compiles once.

`label_shift` explains a fall of held-out accuracy with numbers: the training set's answer-label
distribution (the prior a few SFT steps teach first) against the labels the model predicts on held-out
questions before and after training, from the per-question rows `answer_accuracy` writes
(the pipeline keeps them in OUT/eval/epoch_*.json; `label_shift_of_run` reads a run directory).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def _dist(labels: Sequence[int], n: int) -> list[float]:
    counts = np.bincount(np.asarray(labels, int), minlength=n)[:n]
    return (counts / max(1, counts.sum())).tolist()


def label_shift(train, evals, rows: Mapping[int, Sequence[Mapping]], *, style: str = "letters") -> dict:
    """What the answer labels of the training questions `train` did to the predictions on the held-out
    questions `evals`, epoch by epoch. `rows[e]` are `answer_accuracy`'s per-question rows after epoch e
    (0 = before training), each {"id", "pred" (0-based option), ...}; the questions supply the gold answers.

    Returns {"labels", "train_answers" (distribution of the training answers), "eval_answers" (of the
    held-out gold answers), "train_majority" (label, share), "baselines": {"train_majority" (held-out
    accuracy of always answering the training set's commonest label), "train_prior" (expected accuracy of
    answering at random with the training distribution)}, "epochs": [{"epoch", "accuracy", "predicted"
    (distribution of predicted labels), "share_train_majority" (predictions equal to the training
    majority label), "tv_to_train_answers" (total-variation distance of the predicted distribution to the
    training answers'), "tv_to_eval_answers", "changed", "changed_to_train_majority", "right_to_wrong",
    "wrong_to_right" (vs epoch 0), "top_predicted" (the commonest predicted label, its share of the
    predictions, of the training answers and of the held-out gold answers), "share_favoured" (predictions on the favoured labels)}],
    "favoured": {"labels" (those above 1/n of the training answers), "train" and "eval" (their share of the
    training and of the held-out gold answers)}}. Distributions are fractions over `labels` (the most options
    any question has)."""
    n = max(len(q.options) for q in list(train) + list(evals))
    labels = list(scoring.option_labels(n, style))
    gold = {q.id: q.answer for q in evals}
    p_train = _dist([q.answer for q in train], n)
    p_eval = _dist(list(gold.values()), n)
    major = int(np.argmax(p_train))
    favoured = [i for i in range(n) if p_train[i] > 1 / n]
    if 0 not in rows:
        raise ValueError(f"label_shift needs the rows before training (epoch 0); got epochs {sorted(rows)}")

    def by_id(rs):
        got = {r["id"]: int(r["pred"]) for r in rs}
        missing = sorted(set(gold) - set(got))
        if missing:
            raise ValueError(f"eval rows lack {len(missing)} held-out question(s), e.g. {missing[:3]}")
        return got

    base = by_id(rows[0])
    def tv(a, b):  # total-variation distance of two distributions
        return 0.5 * float(np.abs(np.subtract(a, b)).sum())

    epochs = []
    for e in sorted(rows):
        pred = by_id(rows[e])
        ids = list(gold)
        dist = _dist([pred[i] for i in ids], n)
        changed = [i for i in ids if pred[i] != base[i]]
        epochs.append({
            "epoch": e, "accuracy": float(np.mean([pred[i] == gold[i] for i in ids])), "predicted": dist,
            "share_train_majority": float(np.mean([pred[i] == major for i in ids])),
            "tv_to_train_answers": tv(dist, p_train), "tv_to_eval_answers": tv(dist, p_eval),
            "changed": len(changed), "changed_to_train_majority": sum(pred[i] == major for i in changed),
            "right_to_wrong": sum(base[i] == gold[i] != pred[i] for i in ids),
            "wrong_to_right": sum(base[i] != gold[i] == pred[i] for i in ids),
            "top_predicted": {"label": labels[int(np.argmax(dist))], "share": max(dist),
                              "share_of_train_answers": p_train[int(np.argmax(dist))],
                              "share_of_eval_answers": p_eval[int(np.argmax(dist))]},
            "share_favoured": float(sum(dist[i] for i in favoured)),
        })
    return {"labels": labels, "n_train": len(list(train)), "n_eval": len(gold), "train_answers": p_train,
            "eval_answers": p_eval, "train_majority": {"label": labels[major], "share": p_train[major]},
            "baselines": {"train_majority": p_eval[major], "train_prior": float(np.dot(p_train, p_eval))},
            "favoured": {"labels": [labels[i] for i in favoured], "train": float(sum(p_train[i] for i in favoured)),
                         "eval": float(sum(p_eval[i] for i in favoured))},
            "epochs": epochs}


def label_shift_of_run(out: str | Path, questions, *, style: str = "letters") -> dict:
    """`label_shift` of a `launch.finetune` run directory: the training ids from OUT/plan.json ("kinds"),
    the per-question rows from OUT/eval/epoch_*.json; `questions` must contain every id they name."""
    out = Path(out)
    by_id = {q.id: q for q in questions}
    train_ids = list(json.loads((out / "plan.json").read_text())["kinds"])
    rows = {int(p.stem.split("_")[1]): json.loads(p.read_text())["rows"] for p in sorted((out / "eval").glob("epoch_*.json"))}
    if not rows:
        raise FileNotFoundError(f"{out / 'eval'} holds no epoch_*.json")
    eval_ids = [r["id"] for r in rows[min(rows)]]
    missing = sorted({*train_ids, *eval_ids} - set(by_id))
    if missing:
        raise ValueError(f"questions lack {len(missing)} id(s) of the run in {out}, e.g. {missing[:3]}")
    return label_shift([by_id[i] for i in train_ids], [by_id[i] for i in eval_ids], rows, style=style)


def describe_label_shift(shift: dict) -> str:
    """One paragraph, with the numbers, of what `label_shift` found (first and last epoch)."""
    L = shift["labels"]

    def pct(d):
        return ", ".join(f"{lab} {100 * x:.0f}%" for lab, x in zip(L, d))

    first, last = shift["epochs"][0], shift["epochs"][-1]
    m = shift["train_majority"]
    return (f"Training answers ({shift['n_train']} questions): {pct(shift['train_answers'])}; held-out gold "
            f"answers ({shift['n_eval']}): {pct(shift['eval_answers'])}. Predicted on the held-out questions "
            f"before training: {pct(first['predicted'])} (accuracy {first['accuracy']:.3f}); after epoch "
            f"{last['epoch']}: {pct(last['predicted'])} (accuracy {last['accuracy']:.3f}). "
            f"{100 * last['share_train_majority']:.0f}% of the predictions are now {m['label']}, the training "
            f"set's commonest answer ({100 * m['share']:.0f}% of it; {100 * first['share_train_majority']:.0f}% "
            f"before); total-variation distance of the predictions to the training answers "
            f"{first['tv_to_train_answers']:.2f} → {last['tv_to_train_answers']:.2f}; the commonest prediction is "
            f"{last['top_predicted']['label']} ({100 * last['top_predicted']['share']:.0f}% of them, "
            f"{100 * last['top_predicted']['share_of_train_answers']:.0f}% of the training answers). "
            f"{last['changed']} predictions "
            f"changed, {last['changed_to_train_majority']} of them to {m['label']}; {last['right_to_wrong']} right → "
            f"wrong, {last['wrong_to_right']} wrong → right. Always answering {m['label']} would score "
            f"{shift['baselines']['train_majority']:.3f} on the held-out questions. " + favoured_sentence(shift))


def favoured_sentence(shift: dict) -> str:
    """The training set's favoured letters against the held-out gold answers and the predictions (numbers)."""
    f, first, last = shift["favoured"], shift["epochs"][0], shift["epochs"][-1]
    which = "/".join(f["labels"]) or "none"
    return (f"The letters the training answers favour ({which}: {100 * f['train']:.0f}% of them) are "
            f"{100 * f['eval']:.0f}% of the held-out gold answers; the predictions on them went "
            f"{100 * first['share_favoured']:.0f}% → {100 * last['share_favoured']:.0f}%.")


def label_shift_summary(shifts: Mapping[str, dict]) -> str:
    """Sentences, with the numbers, over several `label_shift` results of the same questions (e.g. the
    policies of a sweep): how far each run's held-out predictions concentrate on one letter, and how often that
    letter is the training answer and the held-out answer, next to the run's accuracy."""
    first = next(iter(shifts.values()))
    m = first["train_majority"]
    tops = [s["epochs"][-1]["top_predicted"]["share"] for s in shifts.values()]
    before = first["epochs"][0]["top_predicted"]

    def run(name, s):
        a, b = s["epochs"][0], s["epochs"][-1]
        t = b["top_predicted"]
        return (f"{name} → {t['label']} ({100 * t['share']:.0f}% of its predictions; {100 * t['share_of_train_answers']:.0f}% "
                f"of the training answers, {100 * t['share_of_eval_answers']:.0f}% of the held-out ones): accuracy "
                f"{a['accuracy']:.3f} → {b['accuracy']:.3f}")

    return (f"Before training the commonest predicted letter is {before['label']} ({100 * before['share']:.0f}% of the "
            f"held-out predictions); after it, one letter holds {100 * min(tops):.0f}–{100 * max(tops):.0f}% of a run's "
            "predictions; that letter's share of the training and of the held-out answers, next to the run's "
            "accuracy: "
            + "; ".join(run(n, s) for n, s in shifts.items())
            + f". The training answers' commonest letter is {m['label']} ({100 * m['share']:.0f}% of them, "
            f"{100 * first['baselines']['train_majority']:.0f}% of the held-out answers).")


def label_shift_markdown(shifts: Mapping[str, dict]) -> str:
    """A table of `label_shift` results, one row per run (e.g. per policy; their first and last epochs):
    accuracy, the predicted label distribution, the share of predictions equal to the training set's
    commonest answer and the answers that changed."""
    first = next(iter(shifts.values()))
    L, m = first["labels"], first["train_majority"]["label"]
    fav = "/".join(first["favoured"]["labels"]) or "—"

    def pct(d):
        return " / ".join(f"{100 * x:.0f}" for x in d)

    lines = [f"| run | accuracy before → after | predicted {'/'.join(L)} (%) before → after | commonest prediction "
             f"after | predictions on {fav} (the training set's favoured letters) | predictions = {m} (the "
             f"training majority) | changed (to {m}) | right → wrong / wrong → right |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in shifts.items():
        a, b = s["epochs"][0], s["epochs"][-1]
        top = b["top_predicted"]
        lines.append(f"| {name} | {a['accuracy']:.3f} → {b['accuracy']:.3f} | {pct(a['predicted'])} → "
                     f"{pct(b['predicted'])} | {top['label']} ({100 * top['share']:.0f}%) | "
                     f"{100 * a['share_favoured']:.0f}% → {100 * b['share_favoured']:.0f}% | "
                     f"{100 * a['share_train_majority']:.0f}% → {100 * b['share_train_majority']:.0f}% | "
                     f"{b['changed']} ({b['changed_to_train_majority']}) | {b['right_to_wrong']} / "
                     f"{b['wrong_to_right']} |")
    return "\n".join(lines) + "\n"
