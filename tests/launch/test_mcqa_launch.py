"""Chapter 3 entry point end to end on a tiny random chat model: files, entropy vs torch, resume after a kill."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from entropy_jax._validate import ConfigError
from entropy_jax.data import mcqa
from entropy_jax.eval import mcqa_run
from entropy_jax.llm import scoring
from launch import mcqa_entropy
from tests.llm.conftest import build, char_tokenizer, reference

pytestmark = pytest.mark.entry


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcqa")
    tok = char_tokenizer()
    model = build("qwen2", root / "model", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    tok.save_pretrained(model)
    questions = mcqa.load("demo", limit=10)  # both strata, interleaved
    mcqa.save_jsonl(questions, root / "q.jsonl")
    return model, root / "q.jsonl"


def _config(model, data, out, **kw):
    return mcqa_entropy.Config(model=str(model), data=str(data), out=out, batch_size=4, n_boot=50,
                               progress=False, **kw)


def test_writes_scores_metrics_figures_and_entropy_matches_transformers(setup, tmp_path):
    model, data = setup
    result = mcqa_entropy.main(_config(model, data, tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.id for q in mcqa.load(str(data))]
    for key in ("id", "prompt", "pred", "answer", "correct", "entropy", "option_probs", "stratum"):
        assert key in rows[0], key
    ref = reference(model)
    # transformers' own way to tokenize for this directory (AutoTokenizer picks the Qwen2 tokenizer class,
    # whose normalisation differs from the bare character tokenizer it was saved from)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    for r in rows:
        ids = tok(r["prompt"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            log_p = torch.log_softmax(ref(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
        assert r["entropy"] == pytest.approx(float(-(log_p.exp() * log_p).sum()), abs=1e-4)
        assert r["correct"] == (r["pred"] == r["answer"]) and abs(sum(r["option_probs"]) - 1) < 1e-9
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["overall"]["n"] == 10 and set(saved["by_stratum"]) == {"knowledge", "reasoning"}
    assert saved["overall"]["accuracy"] == pytest.approx(np.mean([r["correct"] for r in rows]))
    assert saved["entropy_settings"]["temperature"] == 1.0 and saved["entropy_settings"]["units"] == "nats"
    assert set(saved["overall"]["error_detection"]) == set(mcqa_run.SIGNALS)
    for fig in ("entropy_hist.png", "reliability.png", "risk_coverage.png"):
        assert (tmp_path / fig).stat().st_size > 0
    assert "| knowledge |" in mcqa_run.markdown(result)
    # metrics again from scores.jsonl alone, without the model
    again = mcqa_entropy.main(_config(model, data, tmp_path, metrics_only=True))
    assert again["overall"]["accuracy"] == saved["overall"]["accuracy"]


def test_a_killed_run_resumes_to_the_same_file(setup, tmp_path, monkeypatch):
    model, data = setup
    mcqa_entropy.main(_config(model, data, tmp_path / "clean"))
    clean = (tmp_path / "clean" / "scores.jsonl").read_bytes()

    real = scoring.score_questions
    calls = {"n": 0}

    def dies_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_questions", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        mcqa_entropy.main(_config(model, data, tmp_path / "killed"))
    monkeypatch.setattr(scoring, "score_questions", real)
    path = tmp_path / "killed" / "scores.jsonl"
    assert len(path.read_text().splitlines()) == 4  # the first batch survived
    with path.open("a") as f:  # and a kill in the middle of writing the next one
        f.write(json.dumps({"id": "x", "batch": 1, "batch_rows": 4})[:-5] + "\n")
    mcqa_entropy.main(_config(model, data, tmp_path / "killed"))
    assert path.read_bytes() == clean
    mcqa_entropy.main(_config(model, data, tmp_path / "killed"))  # complete: nothing rescored, same file
    assert path.read_bytes() == clean


def test_other_settings_in_the_same_directory_are_refused(setup, tmp_path):
    model, data = setup
    mcqa_entropy.main(_config(model, data, tmp_path, limit=4))
    with pytest.raises(ValueError, match="other settings"):
        mcqa_entropy.main(_config(model, data, tmp_path, limit=8))


def test_bad_data_is_named(setup, tmp_path):
    model, _ = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1", "question": "?", "options": ["a", "b"], "answer": 0}\n'
                   '{"id": "q2", "question": "?", "options": ["a", "b"], "answer": 5}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl.*line 2"):
        mcqa_entropy.main(_config(model, bad, tmp_path / "o"))
    with pytest.raises(ConfigError, match="--data: question file not found: .*missing.jsonl"):
        mcqa_entropy.main(_config(model, tmp_path / "missing.jsonl", tmp_path / "o2"))
