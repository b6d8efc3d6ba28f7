"""`evaluate.label_shift`: the training answers' label prior against the held-out predictions, by hand."""

from __future__ import annotations

import json

import pytest

from entropy_jax.data.mcqa import Question
from entropy_jax.train import evaluate as ev


def _q(i: str, answer: int) -> Question:
    return Question(id=i, question=f"question {i}?", options=("w", "x", "y", "z"), answer=answer)


def _rows(preds: dict[str, int], gold: dict[str, int]) -> list[dict]:
    return [{"id": i, "pred": p, "correct": p == gold[i], "entropy": 1.0} for i, p in preds.items()]


TRAIN = [_q(f"t{i}", a) for i, a in enumerate([2, 2, 2, 0, 1, 2])]  # C four times in six
EVALS = [_q(f"e{i}", a) for i, a in enumerate([0, 1, 2, 3, 0, 1, 3, 0])]
GOLD = {q.id: q.answer for q in EVALS}
BEFORE = {"e0": 0, "e1": 1, "e2": 0, "e3": 3, "e4": 1, "e5": 2, "e6": 3, "e7": 2}  # 4 of 8 right
AFTER = {"e0": 2, "e1": 1, "e2": 2, "e3": 2, "e4": 2, "e5": 2, "e6": 3, "e7": 2}   # mostly C: 3 of 8 right


def test_label_shift_counts_by_hand():
    s = ev.label_shift(TRAIN, EVALS, {0: _rows(BEFORE, GOLD), 2: _rows(AFTER, GOLD)})
    assert s["labels"] == ["A", "B", "C", "D"]
    assert s["train_answers"] == pytest.approx([1 / 6, 1 / 6, 4 / 6, 0.0])
    assert s["eval_answers"] == pytest.approx([3 / 8, 2 / 8, 1 / 8, 2 / 8])
    assert s["train_majority"] == {"label": "C", "share": pytest.approx(4 / 6)}
    assert s["baselines"]["train_majority"] == pytest.approx(1 / 8)  # one held-out answer is C
    assert s["baselines"]["train_prior"] == pytest.approx((3 + 2 + 4) / 48)
    e0, e2 = s["epochs"]
    assert (e0["epoch"], e0["accuracy"], e2["epoch"], e2["accuracy"]) == (0, 0.5, 2, 3 / 8)
    assert e0["predicted"] == pytest.approx([2 / 8, 2 / 8, 2 / 8, 2 / 8])
    assert e2["predicted"] == pytest.approx([0, 1 / 8, 6 / 8, 1 / 8])
    assert (e0["share_train_majority"], e2["share_train_majority"]) == (2 / 8, 6 / 8)
    # TV(after, train) = ½ (|0 − 1/6| + |1/8 − 1/6| + |6/8 − 4/6| + |1/8 − 0|)
    assert e2["tv_to_train_answers"] == pytest.approx(0.5 * (1 / 6 + 1 / 24 + 1 / 12 + 1 / 8))
    assert e2["tv_to_eval_answers"] == pytest.approx(0.5 * (3 / 8 + 1 / 8 + 5 / 8 + 1 / 8))
    # changed: e0 (A→C), e2 (A→C), e3 (D→C), e4 (B→C), e7 (C stays C: no); e5 stays C
    assert (e2["changed"], e2["changed_to_train_majority"]) == (4, 4)
    assert (e2["right_to_wrong"], e2["wrong_to_right"]) == (2, 1)  # e0, e3 lost; e2 gained
    assert (e0["changed"], e0["right_to_wrong"]) == (0, 0)
    assert e2["top_predicted"] == {"label": "C", "share": 6 / 8, "share_of_train_answers": pytest.approx(4 / 6),
                                   "share_of_eval_answers": 1 / 8}
    assert s["favoured"] == {"labels": ["C"], "train": pytest.approx(4 / 6), "eval": 1 / 8}
    assert (e0["share_favoured"], e2["share_favoured"]) == (2 / 8, 6 / 8)
    text = ev.describe_label_shift(s)
    assert "75% of the predictions are now C" in text and "accuracy 0.375" in text
    assert "the commonest prediction is C (75% of them, 67% of the training answers)" in text
    assert "(C: 67% of them) are 12% of the held-out gold answers; the predictions on them went 25% → 75%" in text
    table = ev.label_shift_markdown({"sft": s, "same": s}).splitlines()
    assert table[0].startswith("| run | accuracy before → after | predicted A/B/C/D (%)") and len(table) == 4
    assert table[2] == ("| sft | 0.500 → 0.375 | 25 / 25 / 25 / 25 → 0 / 12 / 75 / 12 | C (75%) | 25% → 75% | "
                        "25% → 75% | 4 (4) | 2 / 1 |")
    summary = ev.label_shift_summary({"sft": s})
    assert "one letter holds 75–75% of a run's predictions" in summary
    assert "sft → C (75% of its predictions; 67% of the training answers, 12% of the held-out ones): accuracy " \
           "0.500 → 0.375" in summary


def test_label_shift_of_a_run_directory_and_its_errors(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "plan.json").write_text(json.dumps({"kinds": {q.id: "answer" for q in TRAIN}}))
    for e, preds in ((0, BEFORE), (1, AFTER)):
        (tmp_path / "eval" / f"epoch_{e:03d}.json").write_text(json.dumps({"metrics": {}, "rows": _rows(preds, GOLD)}))
    s = ev.label_shift_of_run(tmp_path, TRAIN + EVALS)
    assert [e["epoch"] for e in s["epochs"]] == [0, 1] and s["epochs"][1]["share_train_majority"] == 6 / 8
    with pytest.raises(ValueError, match="lack 6 id"):
        ev.label_shift_of_run(tmp_path, EVALS)
    with pytest.raises(ValueError, match="epoch 0"):
        ev.label_shift(TRAIN, EVALS, {1: _rows(AFTER, GOLD)})
    with pytest.raises(ValueError, match="lack 1 held-out"):
        ev.label_shift(TRAIN, EVALS, {0: _rows(BEFORE, GOLD)[1:]})
