"""Loss masks, packing and step batches against hand-computed references."""

from __future__ import annotations

import numpy as np
import pytest

from entropy_jax.data.mcqa import Question
from entropy_jax.llm import prompts
from entropy_jax.train import examples as ex
from entropy_jax.train import packing
from entropy_jax.train.examples import Tokenized
from tests.llm.conftest import char_tokenizer


def _seq(ids, n_prompt, kind="answer", name="x"):
    ids = np.asarray(ids, np.int32)
    mask = np.zeros(len(ids), bool)
    mask[n_prompt:] = True
    return Tokenized(name, kind, ids, mask)


def test_answer_example_masks_exactly_the_label_and_end_of_turn():
    tok = char_tokenizer()
    q = Question(id="q1", question="2 + 2?", options=("3", "4", "5"), answer=1)
    e = ex.answer_example(tok, q)
    # the chat template's assistant turn after the generation prompt: label, end of turn, newline
    assert e.completion == "B<|im_end|>\n"
    assert e.prompt.endswith("<|im_start|>assistant\n") and "A. 3\nB. 4\nC. 5" in e.prompt
    (t,) = ex.tokenize(tok, [e])
    n_prompt = len(tok(e.prompt, add_special_tokens=False)["input_ids"])
    assert t.ids.tolist() == tok(e.prompt + e.completion, add_special_tokens=False)["input_ids"]
    assert t.completion.tolist() == [False] * n_prompt + [True] * 3
    assert tok.convert_ids_to_tokens(t.ids[t.completion].tolist()) == ["B", "<|im_end|>", "\n"]


def test_cot_example_ends_in_the_bracketed_label_once():
    tok = char_tokenizer()
    q = Question(id="q1", question="2 + 2?", options=("3", "4", "5"), answer=1, rationale="2 + 2 = 4.")
    e = ex.cot_example(tok, q, q.rationale)
    assert e.completion == "2 + 2 = 4.\nThe answer is [[B]].<|im_end|>\n"
    assert "double square brackets" in e.prompt
    # a trace that already ends with the right bracketed label is kept as it is
    assert ex.cot_target("so [[B]]", "B") == "so [[B]]"
    assert ex.cot_target("so [[C]]", "B") == "so [[C]]\nThe answer is [[B]]."
    assert prompts.parse_bracketed("first [[A]] then [[ c ]]", ("A", "B", "C")) == 2
    assert prompts.parse_bracketed("no answer", ("A", "B")) is None
    assert prompts.parse_bracketed("[[E]]", ("A", "B")) is None


def test_layout_and_batches_match_a_hand_packing():
    # sequences of 5, 4 and 6 tokens → 4, 3 and 5 positions; seq_len 8: first fit gives rows [0, 1] (7) and [2] (5)
    a = _seq([10, 11, 12, 13, 14], 3, name="a")
    b = _seq([20, 21, 22, 23], 2, name="b")
    c = _seq([30, 31, 32, 33, 34, 35], 4, name="c")
    lay = packing.layout([a, b, c], 8)
    assert lay.rows == ((0, 1), (2,)) and lay.lengths == (4, 3, 5)
    (batch,) = list(packing.batches([a, b, c], lay, micro_batch=2))
    assert batch["tokens"].shape == (1, 2, 8)
    assert batch["tokens"][0].tolist() == [[10, 11, 12, 13, 20, 21, 22, 0], [30, 31, 32, 33, 34, 0, 0, 0]]
    assert batch["positions"][0].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0], [0, 1, 2, 3, 4, 0, 0, 0]]
    assert batch["segments"][0].tolist() == [[1, 1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 0, 0, 0]]
    # the loss sits where the TARGET (next token) is a completion token: a's 13, 14 (ids[3:]) at row positions
    # 2, 3; b's 22, 23 at 5, 6; c's 34, 35 at 3, 4. K = bucket(4 loss positions in row 0) = 16, capped at 8
    assert lay.loss_slots == 8 and batch["loss_pos"].shape == (1, 2, 8)
    assert batch["loss_pos"][0, :, :4].tolist() == [[2, 3, 5, 6], [3, 4, 0, 0]]
    assert batch["loss_targets"][0, :, :4].tolist() == [[13, 14, 22, 23], [34, 35, 0, 0]]
    assert batch["loss_weights"][0].sum(-1).tolist() == [4, 2] and batch["loss_weights"][0, 1, :2].tolist() == [1, 1]
    assert not batch["loss_pos"][0, :, 4:].any()
    assert batch["n_tokens"] == 12 and batch["n_rows"] == 2

    mask = np.asarray(packing.segment_mask(batch["segments"][0]))
    expected = np.zeros((8, 8), bool)
    for i in range(4):
        expected[i, : i + 1] = True
    for i in range(4, 7):
        expected[i, 4: i + 1] = True
    assert (mask[0] == expected).all()  # causal inside a, causal inside b, nothing across or onto padding


def test_unpacked_rows_are_bucketed_and_last_step_is_padded_with_empty_rows():
    seqs = [_seq(np.arange(n) + 3, 1, name=str(n)) for n in (5, 20, 9)]
    lay = packing.layout(seqs, 64, packed=False)
    assert lay.rows == ((0,), (1,), (2,))
    steps = list(packing.batches(seqs, lay, micro_batch=2))
    assert [s["tokens"].shape for s in steps] == [(1, 2, 32), (1, 2, 16)]  # bucket(19) = 32, bucket(8) = 16
    assert steps[1]["n_rows"] == 1 and not steps[1]["loss_weights"][0, 1].any() and not steps[1]["segments"][0, 1].any()
    assert packing.steps_per_epoch(lay, micro_batch=2) == 2
    # accumulation splits a step into [A, B, T]; resuming at a step skips the earlier ones
    (only,) = list(packing.batches(seqs, lay, micro_batch=1, accumulation=2, start_step=1))
    assert only["tokens"].shape == (2, 1, 16) and only["n_rows"] == 1


def test_truncation_and_examples_without_loss_tokens_are_counted():
    long_completion = _seq(np.arange(12) + 3, 4, name="cut")  # 11 positions > 8: cut, keeps loss tokens
    long_prompt = _seq(np.arange(12) + 3, 10, name="lost")  # the completion starts beyond position 8
    ok = _seq([3, 4, 5], 1, name="ok")
    lay = packing.layout([long_completion, long_prompt, ok], 8)
    assert lay.truncated == (0, 1) and lay.dropped == (1,)
    assert lay.lengths == (8, 0, 2) and lay.rows == ((0,), (2,))
    with pytest.raises(ValueError, match="seq_len"):
        packing.layout([ok], 1)
