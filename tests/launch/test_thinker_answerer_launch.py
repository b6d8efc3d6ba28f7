"""launch.thinker_answerer end to end: a tiny random-model matrix (offline), resume, cache reuse, truncation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from entropy_jax._validate import ConfigError
from entropy_jax.data import mcqa
from entropy_jax.thinking import matrix
from launch import thinker_answerer as ta
from tests.subprocess_snippets import paced_engine
from tests.thinking.test_thinking import thinking_model
from tests.train.conftest import tiny_chat_model


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shuffle_models")
    return {"llama": str(tiny_chat_model(root / "llama", "llama", seed=5)),
            "qwen3": str(thinking_model(root / "qwen3", seed=6))}


def _config(out: Path, dirs: dict, **kw) -> ta.Config:
    base = dict(thinkers=f"none,gold,shuffled,{dirs['llama']},{dirs['qwen3']}",
                answerers=f"{dirs['llama']},{dirs['qwen3']}", data="demo", limit=6, out=out,
                max_think_tokens=12, batch_size=4, answer_batch_size=4, progress=False)
    return ta.Config(**(base | kw))


@pytest.mark.entry
@pytest.mark.slow
def test_matrix_end_to_end_resume_and_cache(model_dirs, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = _config(out, model_dirs)
    first = ta.main(cfg)
    th, an = first["thinkers"], first["answerers"]
    assert len(th) == 5 and len(an) == 2
    mat = json.loads((out / "matrix.json").read_text())
    acc = np.array(mat["accuracy"])
    assert acc.shape == (5, 2) and (out / "matrix.png").stat().st_size > 0
    np.testing.assert_allclose(mat["row_means"], acc.mean(1))
    np.testing.assert_allclose(mat["column_means"], acc.mean(0))
    for i, t in enumerate(th):
        for j, a in enumerate(an):
            f = matrix.pair_path(out, t, a)
            rows = [json.loads(line) for line in f.read_text().splitlines()]
            assert [r["id"] for r in rows] == [q.id for q in mcqa.load("demo", limit=6)]
            assert acc[i, j] == pytest.approx(np.mean([r["correct"] for r in rows]))
            assert mat["answer_entropy"][i][j] == pytest.approx(np.mean([r["entropy"] for r in rows]))
            assert all(r["has_trace"] == (t != "none") for r in rows)
            # each answerer reads in its own way: the Qwen3-style one in its thinking span
            assert {r["place"] for r in rows} == {"think" if a == model_dirs["qwen3"] else "assistant"}
    table = json.loads((out / "thinkers.json").read_text())
    llama_t, qwen_t = table[model_dirs["llama"]], table[model_dirs["qwen3"]]
    assert llama_t["mode"] == "cot" and qwen_t["mode"] == "think"
    assert 0 < llama_t["mean_tokens"] <= 12 and llama_t["generated_tokens"] > 0 and llama_t["mean_entropy"] > 0
    cache = matrix.trace_path(out, model_dirs["llama"])
    assert len(cache.read_text().splitlines()) == 6
    assert first["generated_tokens"] == llama_t["generated_tokens"] + qwen_t["generated_tokens"]

    # kill mid-pair: drop the last batch of one pair and half a line; a re-run restores exactly that
    victim = matrix.pair_path(out, "gold", model_dirs["llama"])
    whole = victim.read_text()
    lines = whole.splitlines()
    victim.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    from entropy_jax import llm

    loads = []
    real = llm.load
    monkeypatch.setattr(llm, "load", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    second = ta.main(cfg)
    assert victim.read_text() == whole
    # cached traces: no thinker token generated, no thinker loaded just to think
    assert second["generated_tokens"] == 0 and loads == [model_dirs["llama"]]
    assert second["matrix"] == first["matrix"]

    # a new answerer adds only its pairs; nothing else is regenerated
    loads.clear()
    third = ta.main(_config(out, model_dirs, thinkers="none,gold", answerers=model_dirs["qwen3"]))
    assert loads == [] and third["generated_tokens"] == 0  # both pairs already there


@pytest.mark.slow
def test_long_traces_are_truncated_and_recorded(model_dirs, tmp_path):
    # character tokens: the bare prompts are 249–289 tokens, with the gold rationale 310–409
    cfg = _config(tmp_path / "cut", model_dirs, thinkers="gold,none", answerers=model_dirs["llama"], limit=4,
                  answer_context=400)
    summary = ta.main(cfg)
    pair = matrix.pair_path(tmp_path / "cut", "gold", model_dirs["llama"])
    rows = [json.loads(line) for line in pair.read_text().splitlines()]
    cut = [r for r in rows if r["truncated"]]
    assert [r["id"] for r in cut] == ["reas-0001", "reas-0002"] and summary["matrix"]["truncated"][0][0] == 2
    for r in cut:
        assert r["n_prompt_tokens"] <= 399 and r["dropped_tokens"] > 0
        assert f"the first {r['dropped_tokens']} tokens of this analysis were cut" in r["prompt"]
    assert summary["matrix"]["truncated"][1][0] == 0
    assert "cut)" in matrix.markdown(summary)


def test_bad_inputs(model_dirs, tmp_path):
    with pytest.raises(ConfigError, match="--answerers: 'gold' is a trace source"):
        ta.main(_config(tmp_path / "a", model_dirs, answerers="gold"))
    with pytest.raises(ValueError, match="names the same model twice"):
        ta.main(_config(tmp_path / "b", model_dirs, thinkers="none,none"))
    with pytest.raises(ConfigError, match="--data: question file not found"):
        ta.main(_config(tmp_path / "c", model_dirs, data=str(tmp_path / "missing.jsonl")))
    ta.main(_config(tmp_path / "d", model_dirs, thinkers="none", answerers=model_dirs["llama"], limit=4))
    with pytest.raises(ValueError, match="holds pairs made with other settings"):
        ta.main(_config(tmp_path / "d", model_dirs, thinkers="none", answerers=model_dirs["llama"], limit=5))


@pytest.mark.slow
def test_report_section(model_dirs, tmp_path):
    from launch import reproduce

    config = reproduce.Config(quick=True, out=tmp_path, progress=False, ch5_models=(model_dirs["qwen3"],))
    text = reproduce.chapter5(config, model=model_dirs["llama"], sizes=dict(limit=6, max_think_tokens=8))
    assert text.startswith("## Chapter 5")
    for name in ("none", "gold", "shuffled", model_dirs["llama"], model_dirs["qwen3"]):
        assert f"| {name} |" in text
    assert f"| thinker ↓ / answerer → | {model_dirs['llama']} | {model_dirs['qwen3']} | row mean |" in text
    assert "![Thinker × answerer accuracy](shuffle/matrix.png)" in text
    assert (tmp_path / "shuffle" / "matrix.png").stat().st_size > 0
    summary = json.loads((tmp_path / "shuffle" / "summary.json").read_text())
    assert summary["n_questions"] == 6 and summary["thinker_table"][model_dirs["llama"]]["max_tokens"] <= 8


def test_answerers_in_the_mmlu_format_with_examples(model_dirs, tmp_path):
    """`--prompt mmlu --instruction none --fewshot FILE`: the answerers read lm-eval's MMLU text with the trace
    before "Answer:" (place user), the format is in the settings, and another format in the same --out is
    refused."""
    shots = tmp_path / "shots.jsonl"
    # without a subject: shown before every question (examples with one go to their subject's questions only)
    mcqa.save_jsonl([dataclasses.replace(q, subject=None) for q in mcqa.load("demo")[-2:]], shots)
    cfg = _config(tmp_path / "run", model_dirs, thinkers="none,gold", answerers=model_dirs["llama"], limit=4,
                  prompt="mmlu", instruction="none", fewshot=shots)
    summary = ta.main(cfg)
    assert summary["settings"]["prompt"] == "mmlu" and summary["settings"]["fewshot_examples"]["ids"]
    gold = [json.loads(line) for line in matrix.pair_path(cfg.out, "gold", model_dirs["llama"]).read_text().splitlines()]
    none = [json.loads(line) for line in matrix.pair_path(cfg.out, "none", model_dirs["llama"]).read_text().splitlines()]
    for q, g, n in zip(mcqa.load("demo", limit=4), gold, none):
        assert g["place"] == n["place"] == "user" and g["prompt"].endswith("\nAnswer:")
        assert "<|im_start|>" not in g["prompt"] and g["prompt"].count("\nAnswer:") == 3  # two examples
        assert f"Here is a step-by-step analysis of the question:\n{q.rationale.strip()}\nAnswer:" in g["prompt"]
        assert n["prompt"].startswith(f"The following are multiple choice questions (with answers) about {q.subject}")
    with pytest.raises(ValueError, match="other settings"):
        ta.main(dataclasses.replace(cfg, prompt="plain"))


def test_changed_models_and_over_long_questions_are_refused_before_work(model_dirs, tmp_path):
    import shutil

    from entropy_jax.stores import ResumeError

    copy = tmp_path / "llama"
    shutil.copytree(model_dirs["llama"], copy)
    out = tmp_path / "run"
    ta.main(_config(out, model_dirs, thinkers="none", answerers=str(copy), limit=4))
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    with pytest.raises(ResumeError, match=rf"model {copy}: files.config.json: sha256:\w+ → sha256:\w+ \(made from it: "
                                          r"pairs/none-\w+__"):
        ta.main(_config(out, model_dirs, thinkers="none", answerers=str(copy), limit=4))
    # a thinker budget the context cannot hold: every question named before any work, nothing written
    with pytest.raises(ConfigError, match=r"--data: 4 questions do not fit some model's context: .*thinker prompt "
                                          r"\d+ \+ 1000 new tokens > 1024"):
        ta.main(_config(tmp_path / "long", model_dirs, thinkers=model_dirs["llama"], answerers=model_dirs["llama"],
                        limit=4, max_think_tokens=1000))
    assert not (tmp_path / "long").exists()
    # answerer prompts of 249-289 tokens against a context of 265: left out with --skip-long, counted
    short = dict(thinkers="none", answerers=model_dirs["llama"], limit=4, answer_context=265)
    with pytest.raises(ConfigError, match=r"answer prompt \d+ >= context 265"):
        ta.main(_config(tmp_path / "ctx", model_dirs, **short))
    summary = ta.main(_config(tmp_path / "ctx", model_dirs, skip_long=True, **short))
    assert 0 < summary["n_skipped"] < 4 and summary["n_questions"] == 4 - summary["n_skipped"]
    with pytest.raises(ConfigError, match=r"--think-mode: must be one of auto, cot, think"):
        ta.main(_config(tmp_path / "x", model_dirs, think_mode="deep"))


# ------------------------------------------------------------------------------------ killed and resumed for real
N_KILL, THINK, SLOTS, PACE = 8, 32, 2, 0.4
# A tiny thinker writes all its traces within a tenth of a second, so the killed process paces itself as a large
# model would: after each finished trace (appended and fsync'd by the trace generator) it waits PACE seconds while
# the other slot's request decodes on; the kill lands in the middle of trace generation on any machine.
PACED_CLI = paced_engine(PACE) + """
import sys
from launch import thinker_answerer
thinker_answerer.cli(sys.argv[1:])
"""
# fields of summary.json / thinkers.json that describe the call, not the results (time, work done in this call)
PER_CALL = ("seconds", "tokens_per_s", "generated_tokens", "generated_questions", "cached_questions")


def _without(obj, keys=PER_CALL):
    if isinstance(obj, dict):
        return {k: _without(v, keys) for k, v in obj.items() if k not in keys}
    return [_without(v, keys) for v in obj] if isinstance(obj, list) else obj


def _whole_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().split("\n")[:-1] if x.strip()] if path.exists() else []


@pytest.mark.entry
def test_killed_during_trace_generation_resumes_to_the_files_of_an_uninterrupted_run(model_dirs, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    llama = model_dirs["llama"]
    kw = dict(thinkers=llama, answerers=llama, limit=N_KILL, max_think_tokens=THINK, batch_size=SLOTS)
    full = ta.main(_config(tmp_path / "full", model_dirs, **kw))

    cut = tmp_path / "cut"
    cache = matrix.trace_path(cut, llama)
    args = ["--thinkers", llama, "--answerers", llama, "--data", "demo", "--limit", str(N_KILL), "--out", str(cut),
            "--max-think-tokens", str(THINK), "--batch-size", str(SLOTS), "--answer-batch-size", "4", "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-c", PACED_CLI, *args], cwd=Path(__file__).resolve().parents[2],
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    try:
        while not _whole_rows(cache):  # SIGKILL once a trace is on disk
            assert proc.poll() is None, f"ended before writing a trace: {proc.communicate()[0]}"
            assert time.monotonic() - t0 < 120, "no trace within 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    at_kill = _whole_rows(cache)
    assert 1 <= len(at_kill) < N_KILL and not (cut / "matrix.json").exists()

    rest = ta.main(_config(cut, model_dirs, **kw))
    # the traces on disk at the kill are reused: the resumed run generates only the others' tokens
    kept = {r["id"] for r in at_kill}
    table = rest["thinker_table"][llama]
    assert table["cached_questions"] == len(kept) and table["generated_questions"] == N_KILL - len(kept)
    assert rest["generated_tokens"] == sum(r["n_tokens"] for r in _whole_rows(cache) if r["id"] not in kept)
    assert all(r in _whole_rows(cache) for r in at_kill)
    assert full["generated_tokens"] == sum(r["n_tokens"] for r in _whole_rows(cache))

    files = sorted(str(p.relative_to(tmp_path / "full")) for p in (tmp_path / "full").rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(cut)) for p in cut.rglob("*") if p.is_file())
    assert {"matrix.json", "matrix.png", "inputs.json", "settings.json"} <= set(files) and len(files) == 8
    for f in files:
        a, b = (tmp_path / "full" / f).read_bytes(), (cut / f).read_bytes()
        if f in ("summary.json", "thinkers.json"):  # equal but for the fields describing each call
            assert _without(json.loads(a)) == _without(json.loads(b)), f
        else:
            assert a == b, f
