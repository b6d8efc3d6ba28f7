"""Model-as-judge strata: parsing, the stratum rule, and both judge modes end to end on a tiny chat model."""

from __future__ import annotations

import dataclasses
import json

import pytest

from entropy_jax._validate import ConfigError
from entropy_jax.data import mcqa
from entropy_jax.eval import strata
from launch import annotate_strata as an
from launch import mcqa_entropy
from tests.llm.conftest import build, char_tokenizer

pytestmark = pytest.mark.entry


def test_parse_takes_the_last_bracketed_rating_and_rejects_out_of_range():
    text = ("It needs arithmetic. [knowledge: yes] ... on reflection [Knowledge: NO] [reasoning: yes] "
            "[steps: medium] [confidence: 85%]")
    assert strata.parse(text) == {"knowledge": "no", "reasoning": "yes", "steps": "medium", "confidence": 85.0}
    assert strata.parse("[confidence: 140]")["confidence"] is None
    assert strata.parse("The answer is B.") == {"knowledge": None, "reasoning": None, "steps": None, "confidence": None}


@pytest.mark.parametrize("ratings, expected", [
    ({"knowledge": "yes", "reasoning": "no"}, "knowledge"),
    ({"knowledge": "no", "reasoning": "yes"}, "reasoning"),
    ({"knowledge": "yes", "reasoning": "yes", "steps": "low"}, "knowledge"),
    ({"knowledge": "yes", "reasoning": "yes", "steps": "high"}, "reasoning"),
    ({"knowledge": "no", "reasoning": "no"}, "unclear"),
    ({"knowledge": None, "reasoning": "yes"}, "unparsed"),
])
def test_stratum_rule(ratings, expected):
    assert strata.stratum(ratings) == expected


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    tok = char_tokenizer()
    model = build("llama", root / "model", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    tok.save_pretrained(model)
    mcqa.save_jsonl(mcqa.load("demo", limit=6), root / "q.jsonl")
    scores = root / "scores"
    mcqa_entropy.main(mcqa_entropy.Config(model=str(model), data=str(root / "q.jsonl"), out=scores, batch_size=4,
                                          n_boot=20, progress=False))
    return model, root / "q.jsonl", scores / "scores.jsonl"


@pytest.mark.parametrize("mode", ["probe", "generate"])
def test_judge_modes_write_labels_and_metrics(setup, tmp_path, mode):
    model, data, scores = setup
    cfg = an.Config(judge=str(model), mode=mode, data=str(data), out=tmp_path, scores=scores, batch_size=4,
                    max_new_tokens=12, n_boot=20, progress=False)
    result = an.main(cfg)
    rows = [json.loads(line) for line in (tmp_path / "strata.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.id for q in mcqa.load(str(data))]
    assert result["n"] == 6 and sum(result["judge_strata"].values()) == 6
    assert "agreement_with_data_strata" in result and "judge_confidence" in result
    saved = json.loads((tmp_path / "strata_metrics.json").read_text())
    assert saved["settings"]["mode"] == mode
    if mode == "probe":  # every probe yields a probability, so every question gets a label and a confidence
        assert result["parse_rate"] == 1.0 and result["judge_confidence"]["n_rated"] == 6
        for r in rows:
            assert 0 <= r["p_yes_reasoning"] <= 1 and 0 <= r["confidence"] <= 100
            assert r["judge_stratum"] in ("knowledge", "reasoning")
    else:  # a random model's text: labels are whatever parses (usually nothing); the raw text is kept
        assert all(isinstance(r["judge_output"], str) for r in rows)
    assert "Judge replies parsed" in strata.markdown(result)


def test_missing_scores_and_bad_mode(setup, tmp_path):
    model, data, _ = setup
    with pytest.raises(ConfigError, match="--scores: no such file .run launch.mcqa_entropy first"):
        an.main(an.Config(judge=str(model), data=str(data), out=tmp_path, scores=tmp_path / "none.jsonl",
                          progress=False))
    with pytest.raises(ConfigError, match="--mode: must be one of generate, probe .got 'vote'"):
        an.main(an.Config(judge=str(model), mode="vote", data=str(data), out=tmp_path, progress=False))


def test_plain_judge_reads_yes_no_after_answer_and_its_format_is_a_setting(setup, tmp_path, monkeypatch):
    """`--prompt plain --instruction TEXT` in probe mode: every probe is the plain text ending in "Answer:", the
    judge run works on it, and the same --out refuses another format."""
    model, data, _ = setup
    seen = []
    real = strata.scoring.score_batch

    def spy(lm, texts, *args, **kwargs):
        seen.extend(texts)
        return real(lm, texts, *args, **kwargs)

    monkeypatch.setattr(strata.scoring, "score_batch", spy)
    cfg = an.Config(judge=str(model), mode="probe", data=str(data), out=tmp_path, batch_size=4, n_boot=20,
                    progress=False, prompt="plain", instruction="You rate questions.")
    result = an.main(cfg)
    assert result["n"] == 6 and result["settings"]["prompt"] == "plain"
    assert len(seen) == 12 and all(t.startswith("You rate questions.\n\nQuestion: ") and t.endswith("\nAnswer:")
                                   for t in seen)
    assert not any("<|im_start|>" in t for t in seen)
    with pytest.raises(ValueError, match="other settings"):
        an.main(dataclasses.replace(cfg, prompt="chat"))


def test_scores_of_other_questions_are_an_error_naming_the_mismatch(setup, tmp_path):
    model, data, scores = setup
    other = tmp_path / "other.jsonl"
    mcqa.save_jsonl(mcqa.load("demo", limit=20)[10:], other)  # none of the scored ids
    cfg = dict(judge=str(model), mode="probe", scores=scores, batch_size=4, n_boot=20, progress=False)
    with pytest.raises(ConfigError, match=rf"--scores: {scores} shares no question ids with --data {other}"):
        an.main(an.Config(data=str(other), out=tmp_path / "a", **cfg))
    assert not (tmp_path / "a").exists()
    questions = mcqa.load(str(data))
    questions[0] = dataclasses.replace(questions[0], answer=(questions[0].answer + 1) % len(questions[0].options))
    mcqa.save_jsonl(questions, other)  # the same ids, one scored in another version
    with pytest.raises(ConfigError, match=rf"--scores: .*other versions of 1 questions .*: {questions[0].id}"):
        an.main(an.Config(data=str(other), out=tmp_path / "b", **cfg))
    with pytest.raises(ConfigError, match=r"--batch-size: must be an integer >= 1"):
        an.main(an.Config(data=str(data), out=tmp_path / "c", **(cfg | {"batch_size": 0})))
