"""Prompt formats (`entropy_jax.llm.prompts.PromptFormat`): chat / plain / mmlu, instruction none / text, few-shot
examples, written out by hand; the mmlu format against lm-eval's own MMLU requests; and the prompt builders of
the four runs (scoring, judge, fine-tuning examples, answerers) in each format. Tokenizers only, no model."""

from __future__ import annotations

import json

import pytest

from entropy_jax.data.mcqa import Question
from entropy_jax.eval import strata
from entropy_jax.llm import prompts
from entropy_jax.llm.prompts import PromptFormat
from entropy_jax.thinking import answer as ans
from entropy_jax.train import examples as ex
from tests.llm.conftest import char_tokenizer

Q = Question("q1", "  What is 2 + 2?\n", ("3 ", " 4"), answer=1, subject="basic_math")
SHOTS = (Question("s1", "Is ice cold?", ("yes", "no"), answer=0),
         Question("s2", "Which is red?", ("sky", "blood", "grass"), answer=1, subject="basic_math"))
INSTR = ("Answer the following multiple-choice question. Reply with the letter of the correct option only (A or B), "
         "nothing else.")


def _chat(*turns):
    """The test template's rendering (tests/llm/conftest.py CHAT_TEMPLATE) with the generation prompt."""
    roles = ["user", "assistant"] * len(turns)
    return "".join(f"<|im_start|>{r}\n{t}<|im_end|>\n" for r, t in zip(roles, turns)) + "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def test_default_format_is_the_chapter_3_prompt(tok):
    user = f"{INSTR}\n\nWhat is 2 + 2?\n\nA. 3\nB. 4"
    assert prompts.render_prompt(tok, Q) == _chat(user) == prompts.render(tok, Q.question, Q.options)
    assert prompts.render_prompt(tok, Q, PromptFormat("plain")) == user + "\nAnswer:"
    assert prompts.render(tok, Q.question, Q.options, chat=False) == user + "\nAnswer:"
    assert prompts.question_text(Q.question, Q.options, ("A", "B")) == user


@pytest.mark.parametrize("instruction", [None, "Pick {labels}; {x} stays."])
@pytest.mark.parametrize("shots", [0, 2])
def test_each_format_written_out(tok, instruction, shots):
    fmt = PromptFormat("chat", instruction, SHOTS[:shots])
    head = "" if instruction is None else "Pick A or B; {x} stays.\n\n"
    examples = [("Is ice cold?\n\nA. yes\nB. no", "A"), ("Which is red?\n\nA. sky\nB. blood\nC. grass", "B")][:shots]
    turns = [t for pair in examples for t in pair] + ["What is 2 + 2?\n\nA. 3\nB. 4"]
    turns[0] = head + turns[0]
    assert prompts.render_prompt(tok, Q, fmt) == _chat(*turns)
    assert prompts.render_prompt(tok, Q, fmt, system="S.") == "<|im_start|>system\nS.<|im_end|>\n" + _chat(*turns)

    plain = prompts.render_prompt(tok, Q, PromptFormat("plain", instruction, SHOTS[:shots]))
    assert plain == (head + "".join(f"{q}\nAnswer: {a}\n\n" for q, a in examples)
                     + "What is 2 + 2?\n\nA. 3\nB. 4\nAnswer:")

    mmlu = prompts.render_prompt(tok, Q, PromptFormat("mmlu", instruction, SHOTS[:shots]))
    mmlu_examples = [("Is ice cold?\nA. yes\nB. no", "A"), ("Which is red?\nA. sky\nB. blood\nC. grass", "B")][:shots]
    assert mmlu == (head + "The following are multiple choice questions (with answers) about basic math.\n\n"
                    + "".join(f"{q}\nAnswer: {a}\n\n" for q, a in mmlu_examples)
                    + "What is 2 + 2?\nA. 3 \nB.  4\nAnswer:")  # options as given, as lm-eval's template
    with pytest.raises(ValueError, match="--system needs the chat template"):
        prompts.render_prompt(tok, Q, PromptFormat("mmlu", instruction), system="S.")


def test_examples_with_a_subject_go_to_that_subject_only(tok):
    other = Question("q2", "Capital of France?", ("Paris", "Rome"), answer=0, subject="geography")
    fmt = PromptFormat("mmlu", None, SHOTS)
    assert prompts.examples_for(fmt, Q) == SHOTS and prompts.examples_for(fmt, other) == SHOTS[:1]
    no_subject = Question("q3", "2 + 3?", ("5", "6"), answer=0)
    assert prompts.render_prompt(tok, no_subject, fmt) == ("Is ice cold?\nA. yes\nB. no\nAnswer: A\n\n"
                                                           "2 + 3?\nA. 5\nB. 6\nAnswer:")


def test_load_reads_flags_and_records_the_examples(tmp_path):
    assert PromptFormat.load("mmlu", "none") == PromptFormat("mmlu", None) == PromptFormat.load("mmlu", " ")
    assert PromptFormat.load() == prompts.DEFAULT_FORMAT and prompts.DEFAULT_FORMAT.record() == {}
    path = tmp_path / "shots.jsonl"
    path.write_text("".join(json.dumps({"id": q.id, "question": q.question, "options": list(q.options),
                                        "answer": "AB"[q.answer], "subject": q.subject}) + "\n" for q in SHOTS))
    fmt = PromptFormat.load("plain", "Go.", path)
    assert fmt.fewshot == SHOTS and hash(fmt) == hash(PromptFormat("plain", "Go.", SHOTS))
    rec = fmt.record()["fewshot_examples"]
    assert rec["ids"] == ["s1", "s2"] and len(rec["sha256"]) == 64
    path.write_text(path.read_text().replace("Is ice cold?", "Is fire hot?"))
    assert PromptFormat.load("plain", "Go.", path).record()["fewshot_examples"]["sha256"] != rec["sha256"]
    with pytest.raises(ValueError, match="--prompt 'html'"):
        PromptFormat.load("html")
    with pytest.raises(FileNotFoundError, match="--fewshot .*missing.jsonl"):
        PromptFormat.load("chat", None, tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=r"bad.jsonl.*line 1"):
        (tmp_path / "bad.jsonl").write_text('{"id": "b", "question": "?", "options": ["x", "y"]}\n')
        PromptFormat.load("chat", None, tmp_path / "bad.jsonl")
    prompts.check_fewshot(fmt, [Q])
    with pytest.raises(ValueError, match=r"1 of the questions are also few-shot examples \(e.g. \['x'\]\)"):
        prompts.check_fewshot(fmt, [Q, Question("x", " Which is red? ", ("a", "b"), answer=0)])


@pytest.mark.parametrize("instruction", [None, "Answer with one letter."])
@pytest.mark.parametrize("shots", [0, 2, 5])
def test_mmlu_format_is_lm_evals_mmlu_prompt(tmp_path, instruction, shots):
    from entropy_jax.data import mcqa
    from tests.eval import mmlu_reference as ref

    questions = mcqa.load("demo", limit=9)
    test = ref.write_docs(tmp_path / "test.jsonl", questions[:4], "astronomy")
    dev = ref.write_docs(tmp_path / "dev.jsonl", questions[4:], "astronomy")
    expected = ref.contexts(ref.mmlu_task(tmp_path, test, dev), shots, instruction)
    fmt = PromptFormat("mmlu", instruction, tuple(mcqa.load(dev))[:shots])
    ours = [prompts.render_prompt(None, q, fmt) for q in mcqa.load(test)]
    assert ours == expected
    assert expected[0].startswith((instruction + "\n\n" if instruction else "")
                                  + "The following are multiple choice questions (with answers) about astronomy.\n\n")


# ----------------------------------------------------------------------------------- the four runs' builders
@pytest.mark.parametrize("kind", prompts.KINDS)
def test_scoring_prompts_and_label_variants(tok, kind):
    from entropy_jax.llm import scoring

    fmt = PromptFormat(kind, None, SHOTS)
    text = prompts.render_prompt(tok, Q, fmt)
    assert text.endswith("<|im_start|>assistant\n" if kind == "chat" else "\nAnswer:")
    # the label ids are read off the rendered prompt, whatever precedes them
    ids = scoring.label_token_ids(tok, text, ("A", "B"))
    assert ids == [[tok.convert_tokens_to_ids("A")], [tok.convert_tokens_to_ids("B")]]


def test_judge_prompts_in_each_format(tok):
    default = strata.judge_prompt(Q)
    assert default.startswith("You are rating a multiple-choice question.") and "Question:   What is 2 + 2?" in default
    assert strata.judge_prompt(Q, fmt=strata.JUDGE_FORMAT) == default
    assert strata.judge_input(tok, default) == _chat(default)
    mmlu = PromptFormat.load("mmlu", "Be strict about {labels}.")
    text = strata.judge_prompt(Q, "B (4)", mmlu)
    assert text.startswith("Be strict about A or B.\n\nYou are rating")
    assert "\n\nWhat is 2 + 2?\nA. 3 \nB.  4\n\n" in text
    assert text.endswith("Another model answered: B (4). Also rate how confident you are that this answer is "
                         "correct, adding [confidence: 0-100] at the end.")
    assert strata.judge_input(tok, text, mmlu) == text + "\n"
    probes = strata.probe_prompts(Q, "B (4)", PromptFormat("plain", None))
    assert set(probes) == {"knowledge", "reasoning", "confidence"}
    assert probes == strata.probe_prompts(Q, "B (4)")  # plain shows the question as chat does
    plain = strata.judge_input(tok, probes["knowledge"], PromptFormat("plain", None), probe=True)
    assert plain == probes["knowledge"] + "\nAnswer:"
    assert strata.judge_format(strata.JudgeConfig()) == strata.JUDGE_FORMAT


def test_answer_only_training_examples_in_each_format(tok):
    chat = ex.answer_example(tok, Q, fmt=PromptFormat("chat", None, SHOTS))
    assert chat.prompt == prompts.render_prompt(tok, Q, PromptFormat("chat", None, SHOTS))
    assert chat.completion == "B<|im_end|>\n"
    assert ex.answer_example(tok, Q) == ex.answer_example(tok, Q, fmt=prompts.DEFAULT_FORMAT)
    mmlu = ex.answer_example(tok, Q, fmt=PromptFormat("mmlu", None, SHOTS))
    assert mmlu.prompt.endswith("B.  4\nAnswer:") and mmlu.completion == " B" + tok.eos_token
    (t,) = ex.tokenize(tok, [mmlu])
    assert t.ids[t.completion].tolist() == tok(" B" + tok.eos_token, add_special_tokens=False)["input_ids"]
    assert t.ids[~t.completion].tolist() == tok(mmlu.prompt, add_special_tokens=False)["input_ids"]


def test_answerer_prompts_in_each_format(tok):
    head = prompts.prompt_text(Q, PromptFormat("plain", prompts.INSTRUCTION, SHOTS), cue=False)
    plain = ans.answer_prompt(tok, Q, " 2 + 2 = 4. ", context=4096, fmt=PromptFormat("plain", prompts.INSTRUCTION,
                                                                                     SHOTS))
    assert plain.place == "user" and plain.text == (
        head + f"\n\n{ans.TRACE_HEADER}\n2 + 2 = 4.\n\nNow reply with the letter of the correct option only (A or "
        "B), nothing else.\nAnswer:")
    none = ans.answer_prompt(tok, Q, "2 + 2 = 4.", context=4096, fmt=PromptFormat("mmlu", None))
    assert none.text == ("The following are multiple choice questions (with answers) about basic math.\n\n"
                         f"What is 2 + 2?\nA. 3 \nB.  4\n\n{ans.TRACE_HEADER}\n2 + 2 = 4.\nAnswer:")
    bare = ans.answer_prompt(tok, Q, None, context=4096, fmt=PromptFormat("mmlu", None))
    assert bare.text == prompts.render_prompt(tok, Q, PromptFormat("mmlu", None))
    with pytest.raises(ValueError, match="trace place 'assistant' needs the chat template"):
        ans.answer_prompt(tok, Q, "x", context=4096, place="assistant", fmt=PromptFormat("plain"))
    # chat: examples as earlier turns, the trace after the question (user) or in the answerer's turn
    fmt = PromptFormat("chat", None, SHOTS[:1])
    user = ans.answer_prompt(tok, Q, "2 + 2 = 4.", context=4096, place="user", fmt=fmt)
    assert user.text == _chat(*["Is ice cold?\n\nA. yes\nB. no", "A",
                                f"What is 2 + 2?\n\nA. 3\nB. 4\n\n{ans.TRACE_HEADER}\n2 + 2 = 4."])
    turn = ans.answer_prompt(tok, Q, "2 + 2 = 4.", context=4096, fmt=fmt)
    assert turn.place == "assistant"
    assert turn.text == prompts.render_prompt(tok, Q, fmt) + "2 + 2 = 4.\n" + ans.ANSWER_CUE
