"""Chapter 3 entry point end to end on a tiny random chat model: files, entropy vs torch, resume after a kill."""

from __future__ import annotations

import dataclasses
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


def test_report_section(setup, tmp_path):
    # `make demo`'s Chapter 3 (`reproduce.chapter3`) at the smoke sizes on the tiny model: 16 questions scored,
    # both strata, 8 judged in probe mode, and the figures its text links
    import re

    from launch import reproduce

    model, _ = setup
    config = reproduce.Config(smoke=True, out=tmp_path, progress=False)
    text = reproduce.chapter3(config, model=str(model))
    assert text.startswith("## Chapter 3")
    assert "| knowledge | 8 |" in text and "| reasoning | 8 |" in text and "Judge replies parsed" in text
    figures = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(figures) == 3
    for fig in figures:
        assert (tmp_path / fig).stat().st_size > 0, fig
    assert f"--model {model}" in text  # the command that reproduces it names the model


def _config(model, data, out, **kw):
    return mcqa_entropy.Config(**(dict(model=str(model), data=str(data), out=out, batch_size=4, n_boot=50,
                                       progress=False) | kw))


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


def test_mmlu_prompt_of_the_command_line_is_lm_evals_and_the_format_is_a_setting(setup, tmp_path):
    """`--prompt mmlu --instruction none --fewshot DEV` scores exactly the prompts lm-eval builds for its MMLU task
    on the same documents; another format, or edited examples, in the same --out are refused."""
    import tyro

    from tests.eval import mmlu_reference as ref

    model, _ = setup
    questions = mcqa.load("demo", limit=9)
    test = ref.write_docs(tmp_path / "test.jsonl", questions[:4], "astronomy")
    dev = ref.write_docs(tmp_path / "dev.jsonl", questions[4:6], "astronomy")
    out = tmp_path / "out"
    config = tyro.cli(mcqa_entropy.Config, args=["--model", str(model), "--data", str(test), "--out", str(out),
                                                 "--batch-size", "4", "--n-boot", "50", "--no-progress",
                                                 "--prompt", "mmlu", "--instruction", "none", "--fewshot", str(dev)])
    assert (config.prompt, config.instruction, config.fewshot) == ("mmlu", "none", dev)
    mcqa_entropy.main(config)
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ref.contexts(ref.mmlu_task(tmp_path / "lm_eval", test, dev), 2)
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["prompt"], settings["instruction"], settings["fewshot"]) == ("mmlu", "none", str(dev))
    assert settings["fewshot_examples"]["ids"] == [q.id for q in questions[4:6]]
    for other in (dict(prompt="plain"), dict(instruction="Answer.")):
        with pytest.raises(ValueError, match="other settings"):
            mcqa_entropy.main(dataclasses.replace(config, **other))
    dev.write_text(dev.read_text().replace("?", "? "))  # the same file name, other examples
    with pytest.raises(ValueError, match="fewshot_examples.sha256"):
        mcqa_entropy.main(config)
    with pytest.raises(ValueError, match="are also few-shot examples"):
        mcqa_entropy.main(dataclasses.replace(config, out=tmp_path / "leak", fewshot=test))


def test_edited_data_or_model_under_the_same_path_is_refused_never_reported_old(setup, tmp_path):
    import shutil

    from entropy_jax.stores import ResumeError

    model, data = setup
    mine = tmp_path / "q.jsonl"
    shutil.copy(data, mine)
    out = tmp_path / "out"
    mcqa_entropy.main(_config(model, mine, out))
    scores = (out / "scores.jsonl").read_bytes()
    questions = mcqa.load(str(mine))
    edited = [questions[0], questions[1], dataclasses.replace(questions[2], options=("changed",) + questions[2].options[1:])]
    mcqa.save_jsonl(edited + questions[3:], mine)
    for metrics_only in (False, True):
        with pytest.raises(ResumeError, match=rf"data: 1 of 10 questions changed .*: {questions[2].id} "):
            mcqa_entropy.main(_config(model, mine, out, metrics_only=metrics_only))
    mcqa.save_jsonl(mcqa.load("demo", limit=20)[10:], mine)  # other questions under the same path
    with pytest.raises(ResumeError, match=r"10 new: .*; 10 gone: "):
        mcqa_entropy.main(_config(model, mine, out))
    assert (out / "scores.jsonl").read_bytes() == scores
    # the model's files changed under the same path: refused before the model is loaded
    shutil.copy(data, mine)
    moved = tmp_path / "model"
    shutil.copytree(model, moved)
    mcqa_entropy.main(_config(moved, mine, tmp_path / "out2", limit=4))
    (moved / "config.json").write_text((moved / "config.json").read_text() + "\n")
    with pytest.raises(ResumeError, match=r"model: files.config.json: sha256:\w+ → sha256:\w+"):
        mcqa_entropy.main(_config(moved, mine, tmp_path / "out2", limit=4))


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=0), r"--batch-size: must be an integer >= 1 \(got 0\)"),
    (dict(limit=0), r"--limit: must be an integer >= 1 \(got 0\)"),
    (dict(labels="roman"), r"--labels: must be one of letters, numbers \(got 'roman'\)"),
    (dict(dtype="int8"), r"--dtype: must be one of float32, bfloat16, float16"),
    (dict(n_boot=0), r"--n-boot: must be an integer >= 1"),
    (dict(seed=-1), r"--seed: must be an integer in \[0, "),
    (dict(source="/no/such/model"), r"--model: model source '/no/such/model' is not an alias"),
    (dict(data_axis=0), r"--data-axis: must be >= 1, or -1"),
    (dict(data_axis=-1, fsdp=-1), r"at most one of --data-axis, --fsdp, --tensor may be -1"),
])
def test_every_flag_is_checked_before_anything_is_written(setup, tmp_path, change, message):
    model, data = setup
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        mcqa_entropy.main(_config(change.pop("source", model), data, out, **change))
    assert not out.exists()


def test_unreadable_data_is_named_and_the_command_line_says_error(setup, tmp_path, capsys):
    model, _ = setup
    empty, binary, bad_config = tmp_path / "empty.jsonl", tmp_path / "latin1.jsonl", tmp_path / "badmodel"
    empty.write_text("\n\n")
    binary.write_bytes(b'{"id": "q1", "question": "caf\xe9?", "options": ["a", "b"], "answer": 0}\n')
    bad_config.mkdir()
    (bad_config / "config.json").write_text('{"model_type": "llama",\n "vocab_size": }')
    for cfg, message in ((_config(model, empty, tmp_path / "a"), r"--data: .*empty.jsonl: no questions"),
                         (_config(model, binary, tmp_path / "b"), r"--data: .*latin1.jsonl, line 1: not UTF-8"),
                         (_config(bad_config, empty, tmp_path / "c"), r"--model: .*config.json, line 2: invalid JSON")):
        with pytest.raises(ConfigError, match=message):
            mcqa_entropy.main(cfg)
        assert not cfg.out.exists()
    with pytest.raises(SystemExit) as e:
        mcqa_entropy.cli(["--model", str(model), "--data", str(empty), "--out", str(tmp_path / "d"),
                          "--batch-size", "0", "--no-progress"])
    assert str(e.value) == "error: --batch-size: must be an integer >= 1 (got 0)"


def test_an_over_long_question_stops_the_run_by_id_or_is_skipped_and_counted(tmp_path):
    tok = char_tokenizer()
    model = build("qwen2", tmp_path / "short", vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, max_position_embeddings=400)
    tok.save_pretrained(model)
    questions = mcqa.load("demo", limit=4)
    questions[1] = dataclasses.replace(questions[1], question="Why? " * 60)
    mcqa.save_jsonl(questions, tmp_path / "q.jsonl")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=rf"--data: 1 questions do not fit the context of --model .* \(400 "
                                          rf"positions\): {questions[1].id} \(\d+ tokens\); pass --skip-long"):
        mcqa_entropy.main(_config(model, tmp_path / "q.jsonl", out))
    assert not (out / "scores.jsonl").exists()  # nothing scored: the corrected command reuses the directory
    result = mcqa_entropy.main(_config(model, tmp_path / "q.jsonl", out, skip_long=True))
    assert result["n_skipped"] == 1 and result["skipped"] == [questions[1].id] and result["n_scored"] == 3
    assert result["overall"]["n"] == 3
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.id for q in questions] and "does not fit" in rows[1]["skipped"]


def test_metrics_of_a_call_that_loads_no_model_describe_the_model_that_scored(setup, tmp_path, monkeypatch):
    """A run killed after its last batch, before metrics.json: the next call scores nothing and loads no model, yet
    writes the metrics of the uninterrupted run (the model's facts are in OUT/model.json since the first batch)."""
    import entropy_jax.llm as llm

    model, data = setup
    mcqa_entropy.main(_config(model, data, tmp_path))
    whole = json.loads((tmp_path / "metrics.json").read_text())
    assert json.loads((tmp_path / "model.json").read_text())["entropy_settings"] == whole["entropy_settings"]
    (tmp_path / "metrics.json").unlink()
    monkeypatch.setattr(llm, "load", lambda *a, **k: pytest.fail("a complete scores.jsonl needs no model"))
    mcqa_entropy.main(_config(model, data, tmp_path))
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["entropy_settings"]["vocab_size"] == whole["entropy_settings"]["vocab_size"] > 0
    assert {k: v for k, v in again.items() if k != "run"} == {k: v for k, v in whole.items() if k != "run"}
