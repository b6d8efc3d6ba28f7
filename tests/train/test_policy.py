"""Entropy bands, the six policies, and teacher traces (cache reuse, parsing, file errors)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from entropy_jax.data import mcqa
from entropy_jax.llm.prompts import cot_prompt
from entropy_jax.train import gating, policy, traces


def _bands(n=20, seed=0, **kw):
    e = np.random.default_rng(seed).gamma(2.0, 0.5, n)
    return gating.split([f"q{i}" for i in range(n)], e, **kw), e


def test_quantile_and_threshold_bands():
    bands, e = _bands(40, hard_quantile=0.75)
    assert bands.threshold == pytest.approx(np.quantile(e, 0.75))
    assert np.array_equal(np.asarray(bands.hard), e >= np.quantile(e, 0.75))
    assert bands.sizes == {"regular": 30, "hard": 10}
    s = bands.summary()
    assert s["entropy_hard"]["min"] >= s["threshold_nats"] > s["entropy_regular"]["max"]
    by_t, _ = _bands(40, threshold=1.0)
    assert by_t.method == "threshold" and np.array_equal(np.asarray(by_t.hard), e >= 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        gating.split(["a", "b"], [0.1, float("nan")])
    with pytest.raises(ValueError, match="hard_quantile"):
        gating.split(["a"], [0.1], hard_quantile=1.5)


def test_policies_assign_supervision_by_band():
    bands, e = _bands(40)
    ids = list(bands.ids)
    hard = {i for i, h in zip(ids, bands.hard) if h}
    every = set(ids)
    kinds = {name: policy.plan(name, bands, every, seed=3).kinds for name in policy.POLICIES}
    assert set(kinds["sft"].values()) == {"answer"} and set(kinds["curriculum"].values()) == {"answer"}
    assert set(kinds["distill"].values()) == {"cot"}
    assert {i for i, k in kinds["gated"].items() if k == "cot"} == hard
    assert {i for i, k in kinds["gated_inverse"].items() if k == "cot"} == every - hard
    rand = {i for i, k in kinds["random"].items() if k == "cot"}
    assert len(rand) == len(hard) and rand != hard  # same size, other questions (seeded)
    assert rand == {i for i, k in policy.plan("random", bands, every, seed=3).kinds.items() if k == "cot"}

    cur = policy.plan("curriculum", bands, every)
    order = policy.epoch_order(cur, bands, epoch=0, seed=0)
    assert order == [ids[j] for j in np.argsort(e, kind="stable")] == policy.epoch_order(cur, bands, 5, 0)
    gated = policy.plan("gated", bands, every)
    o0, o1 = (policy.epoch_order(gated, bands, k, seed=0) for k in (0, 1))
    assert sorted(o0) == sorted(ids) and o0 != o1 and o0 == policy.epoch_order(gated, bands, 0, seed=0)
    assert policy.band_counts(gated, bands) == {"regular": {"answer": 30, "cot": 0}, "hard": {"answer": 0, "cot": 10}}


def test_missing_traces_fall_back_to_answers_and_are_counted():
    bands, _ = _bands(20)
    hard = [i for i, h in zip(bands.ids, bands.hard) if h]
    p = policy.plan("gated", bands, set(hard[1:]))
    assert p.fallback == (hard[0],) and p.kinds[hard[0]] == "answer"
    assert p.counts == {"answer": 16, "cot": 4, "cot_fallback_to_answer": 1}
    with pytest.raises(ValueError, match="none of its 5 chain-of-thought questions has a teacher trace"):
        policy.plan("gated", bands, set())


def test_empty_band_is_an_error_naming_the_threshold():
    bands, _ = _bands(20, threshold=100.0)
    with pytest.raises(ValueError, match=r"hard band is empty \(threshold 100.0000 nats by threshold"):
        policy.plan("gated", bands, set(bands.ids))
    low, _ = _bands(20, threshold=-1.0)
    with pytest.raises(ValueError, match="regular band is empty"):
        policy.plan("random", low, set(low.ids))
    assert policy.plan("sft", bands, set()).counts["answer"] == 20  # bands do not matter to plain SFT
    with pytest.raises(ValueError, match="unknown policy 'cot'"):
        policy.plan("cot", bands, set())


def test_rationale_and_file_traces(tmp_path):
    qs = mcqa.load("demo", limit=6)
    ts = traces.from_rationales(qs)
    assert set(ts.traces) == {q.id for q in qs} and ts.summary()["generated_tokens"] == 0
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"id": qs[0].id, "text": f"so [[{'ABCD'[qs[0].answer]}]]"},
        {"id": qs[1].id, "text": "no answer here"},
        {"id": qs[2].id, "text": "x", "pred": "ABCD"[(qs[2].answer + 1) % 4]},
        {"id": "other-question", "text": "ignored"},
    ]) + "\n")
    ts = traces.from_file(f, qs)
    assert set(ts.traces) == {qs[0].id, qs[1].id, qs[2].id}
    assert [ts.traces[q.id].correct for q in qs[:3]] == [True, None, False]
    kept = traces.keep_correct(ts, keep_wrong=False)
    assert set(kept.traces) == {qs[0].id} and set(kept.dropped_wrong) == {qs[1].id, qs[2].id}
    assert traces.keep_correct(ts, keep_wrong=True) is ts
    f.write_text('{"id": "a", "text": "ok"}\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"t.jsonl:2: expected a JSON object with 'id' and 'text'"):
        traces.from_file(f, qs)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        traces.from_file(tmp_path / "missing.jsonl", qs)


@pytest.mark.slow
def test_generated_traces_are_cached_and_never_generated_twice(tmp_path, student_dir, student):
    qs = mcqa.load("demo", limit=5)
    first = traces.load_teacher_traces(str(student_dir), qs[:3], cache_dir=tmp_path, max_new_tokens=12,
                                       batch_size=2)
    assert first.generated_questions == 3 and first.generated_tokens == sum(t.n_tokens for t in first.traces.values())
    assert all(0 < t.n_tokens <= 12 and t.stop in ("eos", "length") for t in first.traces.values())
    # the shared trace generator records every generated token's entropy for teachers too (nats)
    assert all(len(t.entropies) == t.n_tokens and t.mean_entropy == pytest.approx(np.mean(t.entropies))
               for t in first.traces.values())
    # the trace is the teacher's greedy continuation of the CoT prompt, decoded
    out = student.generate([cot_prompt(student.tokenizer, qs[0])], max_new_tokens=12)
    assert first.traces[qs[0].id].text == out.texts[0].strip()
    # a second run over a superset generates only the two new questions; a third generates nothing
    second = traces.load_teacher_traces(str(student_dir), qs, cache_dir=tmp_path, max_new_tokens=12, batch_size=2)
    assert (second.generated_questions, second.cached_questions) == (2, 3)
    assert {i: t.text for i, t in second.traces.items() if i in first.traces} == {i: t.text for i, t in first.traces.items()}
    third = traces.load_teacher_traces(str(student_dir), qs, cache_dir=tmp_path, max_new_tokens=12, batch_size=2)
    assert third.generated_tokens == 0 and third.generated_questions == 0 and third.cached_questions == 5
    # other generation settings are another cache key
    other = traces.load_teacher_traces(str(student_dir), qs[:1], cache_dir=tmp_path, max_new_tokens=8, batch_size=2)
    assert other.generated_questions == 1
