"""Chapter 5 library: thinker traces (entropy, cache, thinking span, shuffles) and answer prompts (placement,
truncation policy), on tiny random chat models built in the test (offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from entropy_jax.data import mcqa
from entropy_jax.llm import engine, prompts
from entropy_jax.thinking import answer as ans
from entropy_jax.thinking import traces as tr
from tests.llm.conftest import build, char_tokenizer, reference
from tests.train.conftest import tiny_chat_model

# Qwen3's template in miniature: thinking disabled writes an empty span into the generation prompt.
THINK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def thinking_model(directory, seed: int = 0):
    """A tiny Qwen3 with a character tokenizer that has single-token <think> and </think>."""
    tok = char_tokenizer()
    tok.add_tokens(["<think>", "</think>"])
    tok.chat_template = THINK_TEMPLATE
    build("qwen3", directory, seed=seed, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, max_position_embeddings=1024)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def thinker_dir(tmp_path_factory):
    return tiny_chat_model(tmp_path_factory.mktemp("thinker"), "llama", seed=3)


@pytest.fixture(scope="module")
def thinker(thinker_dir):
    from entropy_jax import llm

    return llm.load(thinker_dir)


@pytest.fixture(scope="module")
def qwen_think(tmp_path_factory):
    from entropy_jax import llm

    d = thinking_model(tmp_path_factory.mktemp("qwen_think"))
    return d, llm.load(d)


@pytest.fixture(scope="module")
def questions():
    return mcqa.load("demo", limit=5)


def test_trace_entropies_equal_a_teacher_forced_forward(thinker, thinker_dir, questions, tmp_path):
    """Per-token entropies recorded during generation = those of one forward over prompt + trace, ours and
    transformers-torch's (fp32, ≤ 1e-4)."""
    ts = tr.generate(thinker, questions[:3], thinker="t", cache=tmp_path / "t.jsonl", max_think_tokens=20,
                     batch_size=4)
    assert ts.mode == "cot" and ts.generated_questions == 3
    ref = reference(thinker_dir)
    for t in ts.traces.values():
        assert t.n_tokens == len(t.tokens) == len(t.entropies) > 0 and t.stop in ("eos", "length")
        assert t.mean_entropy == pytest.approx(np.mean(t.entropies), abs=1e-7)
        prompt = tr.thinker_prompt(thinker.tokenizer, next(q for q in questions if q.id == t.id), mode="cot")
        p_ids = thinker.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert t.n_prompt_tokens == len(p_ids)
        ids = np.array([p_ids + list(t.tokens)])
        pos = slice(len(p_ids) - 1, len(p_ids) - 1 + t.n_tokens)
        ours = np.asarray(thinker.logits(ids), np.float64)[0, pos]
        with torch.no_grad():
            theirs = ref(torch.tensor(ids)).logits[0, pos].double()
        h_theirs = -(theirs.softmax(-1) * theirs.log_softmax(-1)).sum(-1).numpy()
        lp = ours - ours.max(-1, keepdims=True)
        lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
        h_ours = -(np.exp(lp) * lp).sum(-1)
        np.testing.assert_allclose(t.entropies, h_ours, atol=1e-4, rtol=0)
        np.testing.assert_allclose(t.entropies, h_theirs, atol=1e-4, rtol=0)
        # the trace is the decoded generation and greedy: each token is the argmax of the forward
        assert (ours.argmax(-1) == np.array(t.tokens)).all()


def test_cache_is_reused_and_extended(thinker, questions, tmp_path, monkeypatch):
    cache = tmp_path / "c.jsonl"
    first = tr.generate(thinker, questions[:2], thinker="t", cache=cache, max_think_tokens=12, batch_size=2)
    assert first.generated_questions == 2 and first.generated_tokens == sum(t.n_tokens for t in first.traces.values())
    calls = []  # the requests of each engine call (the generator's one way to the model)
    real = engine.generate
    monkeypatch.setattr(engine, "generate", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    again = tr.generate(thinker, questions[:2], thinker="t", cache=cache, max_think_tokens=12, batch_size=2)
    assert calls == [] and again.generated_tokens == 0 and again.cached_questions == 2
    assert again.traces == first.traces
    more = tr.generate(thinker, questions[:4], thinker="t", cache=cache, max_think_tokens=12, batch_size=2)
    assert calls == [2] and more.generated_questions == 2 and more.cached_questions == 2
    # other settings are another key: nothing reused
    other = tr.generate(thinker, questions[:1], thinker="t", cache=cache, max_think_tokens=8, batch_size=2)
    assert other.generated_questions == 1
    with cache.open("a") as f:
        f.write('{"id": "half a li')  # a killed run's last line
    assert set(tr.read_cache(cache, tr.cache_key("t", mode="cot", max_think_tokens=12, style="letters",
                                                 system=None))) == {q.id for q in questions[:4]}


def test_thinking_mode_prompt_span_and_answer_placement(qwen_think, questions, tmp_path):
    _, lm = qwen_think
    open_id, close_id = tr.thinking_tokens(lm.tokenizer)
    assert tr.model_mode(lm) == "think" and ans.trace_place(lm.tokenizer) == "think"
    q = questions[0]
    prompt = tr.thinker_prompt(lm.tokenizer, q, mode="think")
    assert prompt.endswith("<|im_start|>assistant\n") and "<think>" not in prompt
    assert tr.think_span([open_id, 40, 41, close_id, 50, 2], open_id, close_id) == ([40, 41], True)
    assert tr.think_span([40, 41], open_id, close_id) == ([40, 41], False)
    ts = tr.generate(lm, questions[:2], thinker="q", cache=tmp_path / "q.jsonl", max_think_tokens=16, batch_size=2)
    for t in ts.traces.values():
        assert ts.mode == "think" and t.stop in ("end_think", "eos", "length")
        inner, closed = tr.think_span(t.tokens, open_id, close_id)
        assert t.text == lm.tokenizer.decode(inner, skip_special_tokens=True).strip()
        assert (t.stop == "end_think") == closed
    with_trace = ans.answer_prompt(lm.tokenizer, q, "step one. step two.", context=1024)
    assert with_trace.place == "think"
    assert with_trace.text == prompt + "<think>\nstep one. step two.\n</think>\n\n"
    bare = ans.answer_prompt(lm.tokenizer, q, None, context=1024)
    assert bare.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # forcing the user-turn placement on a thinking model, and thinking on a model without the tokens
    assert "step-by-step analysis" in ans.answer_prompt(lm.tokenizer, q, "x", context=1024, place="user").text
    with pytest.raises(ValueError, match="single-token <think>"):
        ans.trace_place(char_tokenizer(), "think")


def test_assistant_and_user_placements(thinker, questions):
    tok, q = thinker.tokenizer, questions[1]
    head = prompts.render(tok, q.question, q.options)  # the Chapter 3 prompt
    # default for models without a thinking span: the trace opens the answerer's own turn, then the cue
    p = ans.answer_prompt(tok, q, "  First, 2 + 2 = 4. ", context=1024)
    assert p.place == "assistant" and p.text == head + "First, 2 + 2 = 4.\n" + ans.ANSWER_CUE
    assert ans.answer_prompt(tok, q, None, context=1024).text == head + ans.ANSWER_CUE  # same scaffold, no trace
    assert not p.truncated and p.trace_tokens == len(tok("First, 2 + 2 = 4.", add_special_tokens=False)["input_ids"])
    # the user-turn option: no trace is the Chapter 3 prompt exactly
    assert ans.answer_prompt(tok, q, None, context=1024, place="user").text == head
    u = ans.answer_prompt(tok, q, "First, 2 + 2 = 4.", context=1024, place="user")
    user = u.text.split("<|im_start|>user\n")[1]
    assert user.startswith(prompts.question_text(q.question, q.options, ("A", "B", "C", "D")))
    assert f"{ans.TRACE_HEADER}\nFirst, 2 + 2 = 4.\n\nNow reply with the letter" in user
    assert u.text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="trace place 'side'"):
        ans.trace_place(tok, "side")


@pytest.mark.parametrize("place", ["assistant", "user", "think"])
def test_truncation_keeps_the_end_of_the_trace_and_marks_it(thinker, qwen_think, questions, place):
    tok = qwen_think[1].tokenizer if place == "think" else thinker.tokenizer
    q = questions[0]
    trace = " ".join(f"step {i}." for i in range(200)) + " So the answer is B."
    full = ans.answer_prompt(tok, q, trace, context=100_000, place=place)
    n_full = len(tok(full.text, add_special_tokens=False)["input_ids"])
    context = n_full - 300
    p = ans.answer_prompt(tok, q, trace, context=context, place=place)
    n = len(tok(p.text, add_special_tokens=False)["input_ids"])
    assert p.truncated and n <= context - 1 and n >= context - 12  # cut to fit, not much more
    assert p.trace_tokens == full.trace_tokens and p.dropped_tokens >= 300
    assert f"the first {p.dropped_tokens} tokens of this analysis were cut" in p.text
    assert "So the answer is B." in p.text and "step 0." not in p.text and "step 199." in p.text
    with pytest.raises(ValueError, match="no room for any of the trace"):
        ans.answer_prompt(tok, q, trace, context=len(tok(ans.answer_prompt(tok, q, None, context=10**5).text,
                                                          add_special_tokens=False)["input_ids"]) + 5, place=place)
    with pytest.raises(ValueError, match="prompt alone is longer"):
        ans.answer_prompt(tok, q, None, context=50, place=place)


def test_shuffled_is_a_seeded_derangement(questions):
    ids = [f"q{i}" for i in range(30)]
    d = tr.derangement(ids, seed=0)
    assert sorted(d) == sorted(d.values()) == sorted(ids) and all(k != v for k, v in d.items())
    assert d == tr.derangement(ids, seed=0) != tr.derangement(ids, seed=1)
    gold = tr.gold(questions)
    sh = tr.shuffled(gold, questions, seed=0, name="shuffled")
    for q in questions:
        t = sh.traces[q.id]
        assert t.donor != q.id and t.text == next(x.rationale for x in questions if x.id == t.donor)
        assert t.pred is None
    with pytest.raises(ValueError, match="at least 2 questions"):
        tr.derangement(["only"], 0)


def test_score_matches_transformers_on_a_trace_prompt(thinker, thinker_dir, questions):
    """An answerer's entropy after a trace is the Chapter 3 entropy of that exact prompt (torch, ≤ 1e-4)."""
    traces = {q.id: tr.ThinkTrace(q.id, q.rationale) for q in questions[:3]}
    got = ans.score(thinker, questions[:3], traces, pad_to=4)
    ref = reference(thinker_dir)
    for (p, s), q in zip(got, questions[:3]):
        assert s.prompt == p.text and q.rationale in p.text
        ids = thinker.tokenizer(p.text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = ref(torch.tensor([ids])).logits[0, -1].double()
        h = float(-(logits.softmax(-1) * logits.log_softmax(-1)).sum())
        assert s.entropy == pytest.approx(h, abs=1e-4)


def test_trace_rows_round_trip(tmp_path):
    t = tr.ThinkTrace("a", "text", 3, 0.5, (0.1, 0.5, 0.9), (5, 6, 7), 10, "length", 1, None)
    assert tr.ThinkTrace.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_cache_serves_only_traces_of_the_current_question_and_model_files(thinker, thinker_dir, questions, tmp_path):
    import dataclasses
    import shutil

    cache = tmp_path / "c.jsonl"
    first = tr.generate(thinker, questions[:2], thinker="t", cache=cache, max_think_tokens=6, batch_size=2)
    edited = [questions[0], dataclasses.replace(questions[1], question=questions[1].question + " Explain.")]
    again = tr.generate(thinker, edited, thinker="t", cache=cache, max_think_tokens=6, batch_size=2)
    assert again.generated_questions == 1 and again.cached_questions == 1  # only the edited question
    assert again.traces[questions[0].id] == first.traces[questions[0].id]
    assert tr.cached("t", questions[:2], cache=cache, mode="cot", max_think_tokens=6) is not None  # both versions
    # a thinker named by its directory is keyed by its files: changed files, no trace served
    copy = tmp_path / "model"
    shutil.copytree(thinker_dir, copy)
    tr.generate(thinker, questions[:1], thinker=str(copy), cache=cache, max_think_tokens=6, batch_size=2)
    assert tr.cached(str(copy), questions[:1], cache=cache, mode="cot", max_think_tokens=6) is not None
    (copy / "tokenizer_config.json").write_text((copy / "tokenizer_config.json").read_text() + " ")
    assert tr.cached(str(copy), questions[:1], cache=cache, mode="cot", max_think_tokens=6) is None


def test_a_prompt_without_room_for_the_budget_is_named_before_generating(thinker, questions, tmp_path):
    cache = tmp_path / "c.jsonl"
    long = [questions[0], type(questions[1])(**(questions[1].to_dict() | {"question": "Why? " * 200}))]
    with pytest.raises(ValueError, match=rf"t: 1 prompts leave no room for 8 new tokens .*: {long[1].id} \("):
        tr.generate(thinker, long, thinker="t", cache=cache, max_think_tokens=8, batch_size=2)
    assert not cache.exists()
    from entropy_jax.llm import traces as gen

    run = gen.generate(thinker, long, source="t", cache=cache, mode="cot", max_new_tokens=8, batch_size=2,
                       skip_long=True)
    assert run.skipped_long == (long[1].id,) and set(run.traces) == {long[0].id}


def test_a_resumed_cache_ends_with_the_bytes_of_an_uninterrupted_one(thinker, questions, tmp_path):
    """Traces are appended in finishing order, which a resumed run does not share: a call that generated puts
    its rows in question order within the lines they hold, other keys' lines stay where they are."""
    full = tmp_path / "full.jsonl"
    tr.generate(thinker, questions[:4], thinker="t", cache=full, max_think_tokens=6, batch_size=2)
    lines = full.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [q.id for q in questions[:4]]
    foreign = json.dumps(json.loads(lines[0]) | {"key": {"source": "another thinker"}})
    # a killed run: traces in another finishing order, a row of another key between them, the last one torn
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([foreign, lines[3], lines[1], lines[0], lines[2][:30]]))
    run = tr.generate(thinker, questions[:4], thinker="t", cache=cut, max_think_tokens=6, batch_size=2)
    assert run.generated_questions == 1 and run.cached_questions == 3  # only the torn one is generated again
    assert cut.read_text().splitlines() == [foreign, *lines]
    # killed after its last trace but before reordering: the next call reorders without generating
    cut.write_text("\n".join([lines[2], foreign, lines[0], lines[3], lines[1]]) + "\n")
    again = tr.generate(thinker, questions[:4], thinker="t", cache=cut, max_think_tokens=6, batch_size=2)
    assert again.generated_questions == 0 and cut.read_text().splitlines() == [lines[0], foreign, *lines[1:]]
    # a call on some of the questions, all cached and in order, leaves the file alone
    before = cut.stat().st_mtime_ns
    tr.generate(thinker, questions[2:4], thinker="t", cache=cut, max_think_tokens=6, batch_size=2)
    assert cut.stat().st_mtime_ns == before
