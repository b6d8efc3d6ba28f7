"""Answer-step scoring against transformers-torch on a tiny random chat model."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import entropy_jax.llm as llm
from entropy_jax.data import mcqa
from entropy_jax.llm import prompts, scoring
from tests.llm.conftest import reference

QUESTIONS = [
    types.SimpleNamespace(question="What is 2 + 2?", options=["3", "4", "5", "22"]),
    types.SimpleNamespace(question="Capital of Italy?", options=["Rome", "Milan"]),
    types.SimpleNamespace(question="Which is a gas at room temperature?", options=["iron", "neon", "salt"]),
]


@pytest.mark.parametrize("style", ["letters", "numbers"])
def test_answer_step_entropy_and_option_probs_match_transformers(tiny_chat, style):
    directory = tiny_chat("qwen3")
    lm, ref = llm.load(directory), reference(directory)
    (_, scored), = scoring.score_questions(lm, QUESTIONS, batch_size=8, style=style)
    for q, s in zip(QUESTIONS, scored):
        ids = lm.tokenizer(s.prompt, add_special_tokens=False)["input_ids"]
        assert s.prompt.endswith("<|im_start|>assistant\n") and len(ids) == s.n_prompt_tokens
        with torch.no_grad():
            logits = ref(input_ids=torch.tensor([ids])).logits[0, -1].double()
        log_p = torch.log_softmax(logits, -1)
        assert s.entropy == pytest.approx(float(-(log_p.exp() * log_p).sum()), abs=1e-4)
        labels = scoring.option_labels(len(q.options), style)
        # the character tokenizer spells each label with one token; " A" is two tokens and is not a variant
        letter_ids = [lm.tokenizer.convert_tokens_to_ids(label) for label in labels]
        p = log_p.exp().numpy()[letter_ids]
        np.testing.assert_allclose(s.option_probs, p / p.sum(), atol=1e-5)
        assert s.pred == int(np.argmax(p)) and s.label_mass == pytest.approx(p.sum(), abs=1e-6)
        assert s.max_prob == pytest.approx(max(s.option_probs)) and s.margin >= 0
        probs = np.asarray(s.option_probs)
        assert s.label_entropy == pytest.approx(float(-(probs * np.log(probs)).sum()), abs=1e-9)


def test_scores_do_not_depend_on_batch_composition_beyond_float_noise(tiny_chat):
    lm = llm.load(tiny_chat("llama"))
    (_, together), = scoring.score_questions(lm, QUESTIONS, batch_size=3)
    alone = [next(scoring.score_questions(lm, [q], batch_size=1))[1][0] for q in QUESTIONS]
    for a, b in zip(together, alone):
        assert a.entropy == pytest.approx(b.entropy, abs=1e-5)
        np.testing.assert_allclose(a.option_probs, b.option_probs, atol=1e-5)


def test_label_variants_are_read_from_the_prompt_encoding():
    class SpaceMerging:  # " A" is one token (id 100 + letter), "A" another; a bare encode would miss one
        def __call__(self, text, add_special_tokens=False):
            ids, i = [], 0
            while i < len(text):
                if text[i] == " " and i + 1 < len(text) and text[i + 1].isupper():
                    ids.append(100 + ord(text[i + 1]))
                    i += 2
                else:
                    ids.append(ord(text[i]))
                    i += 1
            return {"input_ids": ids}

    assert scoring.label_token_ids(SpaceMerging(), "Answer:", ["A", "B"]) == [[65, 165], [66, 166]]
    # one option_labels for the data and the prompts: up to 26 in both styles
    assert scoring.option_labels is prompts.option_labels is mcqa.option_labels
    with pytest.raises(ValueError, match="27 options, but the letters style has only 26"):
        scoring.option_labels(27)
    assert prompts.option_labels(10, "numbers")[-2:] == ("9", "10")
    # "10" has no single-token spelling in a character vocabulary: it is read as the sequence "1", "0"
    assert scoring.label_token_ids(SpaceMerging(), "Answer:", ["1", "10"]) == [[49], [(49, 48)]]


def test_ten_number_labels_are_scored_as_disjoint_token_sequences(tiny_chat):
    """MMLU-Pro has 10 options; with number labels "10" is two tokens of a digit-splitting vocabulary. Its
    probability is p("1") · p("0" | "1"), and label "1" keeps p("1") · (1 − p("0" | "1")) — checked against
    transformers-torch's two forward passes."""
    directory = tiny_chat("llama")
    lm, ref = llm.load(directory), reference(directory)
    q = types.SimpleNamespace(question="Pick the tenth.", options=[f"option {i}" for i in range(1, 11)])
    (_, (s,)), = scoring.score_questions(lm, [q], batch_size=2, style="numbers")
    assert "10. option 10" in s.prompt and "1, 2, 3, 4, 5, 6, 7, 8, 9 or 10" in s.prompt
    tok = lm.tokenizer
    ids = tok(s.prompt, add_special_tokens=False)["input_ids"]
    digit = {d: tok.convert_tokens_to_ids(str(d)) for d in range(10)}
    with torch.no_grad():
        p0 = torch.softmax(ref(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1).numpy()
        p1 = torch.softmax(ref(input_ids=torch.tensor([ids + [digit[1]]])).logits[0, -1].double(), -1).numpy()
    p = np.array([p0[digit[1]] * (1 - p1[digit[0]])] + [p0[digit[d]] for d in range(2, 10)]
                 + [p0[digit[1]] * p1[digit[0]]])
    np.testing.assert_allclose(s.option_probs, p / p.sum(), atol=1e-5)
    assert s.label_mass == pytest.approx(p.sum(), abs=1e-6) and s.pred == int(np.argmax(p))
    h = -(p0 * np.log(p0)).sum()
    assert s.entropy == pytest.approx(h, abs=1e-4)  # the answer step's entropy is the first token's


def test_a_short_last_batch_reuses_the_compiled_program(tiny_chat):
    lm = llm.load(tiny_chat("llama"))
    five = [QUESTIONS[0]] * 5  # one prompt length: only the batch size could force a second program
    batches = list(scoring.score_questions(lm, five, batch_size=4))
    assert [len(s) for _, s in batches] == [4, 1]
    assert lm.trace_counts["last"] == 1
    assert batches[1][1][0].entropy == pytest.approx(batches[0][1][0].entropy, abs=1e-5)
