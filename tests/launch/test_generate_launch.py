"""launch.generate end to end on the embedded SmolLM2, and the multi-host start-up rules (entropy_jax.runtime)."""

from __future__ import annotations

import json
import math
import re
import subprocess

import numpy as np
import pytest

from entropy_jax import runtime
from entropy_jax._validate import ConfigError
from launch import generate

CLUSTER_ENV = ("ENTROPY_JAX_DISTRIBUTED", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS",
               "SLURM_STEP_NODELIST", "OMPI_COMM_WORLD_SIZE", "TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES")


@pytest.mark.entry
@pytest.mark.slow
def test_generate_main_returns_and_writes_completion_with_entropy(tmp_path):
    out = tmp_path / "gen.json"
    cfg = generate.Config(prompt="What is 2+2?", max_new_tokens=8, out=out)
    result = generate.main(cfg)

    assert isinstance(result["completion"], str) and result["completion"].strip()
    entropy = result["entropy"]
    assert len(entropy) == len(result["tokens"]) == len(result["log_prob"]) == result["n_tokens"]
    assert 1 <= result["n_tokens"] <= 8
    assert all(math.isfinite(h) and h >= 0 for h in entropy)
    assert all(math.isfinite(lp) and lp <= 0 for lp in result["log_prob"])
    assert result["mean_entropy"] == pytest.approx(float(np.mean(entropy)))
    assert result["same_as_first_call"]  # greedy: the timed warm call repeats the first
    t = result["timing"]
    assert t["first_call_s"] > 0 and t["warm_s"] > 0 and t["tokens_per_s"] > 0
    assert t["compile_s"] == pytest.approx(t["first_call_s"] - t["warm_s"])
    assert t["decode_steps"] == result["n_tokens"]

    saved = json.loads(out.read_text())
    assert saved["completion"] == result["completion"] and saved["entropy"] == pytest.approx(entropy)
    assert saved["entropy_settings"]["units"] == "nats" and saved["entropy_settings"]["vocab_size"] == 49152
    assert saved["sampling"]["temperature"] == 0.0 and saved["sampling"]["max_new_tokens"] == 8
    assert saved["settings"]["out"] == str(out)
    assert result["completion"] in generate.summary(result)


def test_mesh_from_flags():
    assert runtime.mesh_from_flags() is None
    assert runtime.mesh_from_flags(1, 1, 1) is None
    assert dict(runtime.mesh_from_flags(2, 2, 2).shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert dict(runtime.mesh_from_flags(1, -1, 2).shape) == {"data": 1, "fsdp": 4, "tensor": 2}


@pytest.fixture
def no_cluster(monkeypatch):
    """A single machine: no cluster variables; jax.distributed records calls instead of connecting."""
    for name in CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(runtime.jax.distributed, "is_initialized", lambda: bool(calls))
    monkeypatch.setattr(runtime.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    return calls


def test_initialize_does_nothing_on_a_single_machine(no_cluster, monkeypatch):
    assert runtime.detect() is None
    assert runtime.initialize() is False and runtime.initialize(False) is False
    # An sbatch script sees SLURM_NTASKS but runs one process: only an srun step means several.
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
    assert runtime.initialize() is False
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[01-04]")
    monkeypatch.setenv("ENTROPY_JAX_DISTRIBUTED", "0")  # the explicit opt-out wins
    assert runtime.initialize() is False
    assert no_cluster == []


def test_initialize_when_asked_or_in_a_cluster_and_only_once(no_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[01-04]")
    assert runtime.detect() and runtime.initialize() is True
    assert runtime.initialize(True) is True  # idempotent: JAX is initialised already
    assert no_cluster == [{}]

    no_cluster.clear()
    for name in ("SLURM_NTASKS", "SLURM_STEP_NODELIST"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "1")  # JAX itself reads only JAX_COORDINATOR_ADDRESS
    assert runtime.initialize() is True
    assert no_cluster == [{"num_processes": 2, "process_id": 1}]


@pytest.mark.parametrize("script", ["launch/tpu_pod.sh", "launch/gpu_cluster.sh"])
def test_cluster_scripts_parse_and_explain_themselves(script, repo_root):
    subprocess.run(["bash", "-n", script], cwd=repo_root, check=True)
    shown = subprocess.run(["bash", script, "-h"], cwd=repo_root, check=True, capture_output=True, text=True)
    assert "Usage" in shown.stdout and "launch." in shown.stdout
    bare = subprocess.run(["bash", script], cwd=repo_root, capture_output=True, text=True)
    assert bare.returncode == 2 and "Usage" in bare.stderr


# ------------------------------------------------------------------------------------------ --prompts FILE
@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny random Llama with the character-level chat tokenizer (offline)."""
    pytest.importorskip("torch")
    from tests.train.conftest import tiny_chat_model

    return tiny_chat_model(tmp_path_factory.mktemp("gen_chat"), "llama", seed=2)


PROMPTS = [{"prompt": "What is 2+2?", "max_new_tokens": 3, "id": "add"}, {"prompt": "Name a colour."},
           {"prompt": "Count to five, slowly.", "max_new_tokens": 12, "id": "count"},
           {"prompt": "Hi", "max_new_tokens": 1}, {"prompt": "Tell me a story about a cat.", "max_new_tokens": 14}]


def write_prompts(path, rows=PROMPTS, blank_after: int = 1):
    lines = [json.dumps(r) for r in rows]
    lines.insert(blank_after, "")  # blank lines are skipped (line numbers still count them)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prompts_file_continuous_equals_static_with_fewer_row_steps(chat_model, tmp_path):
    from entropy_jax import llm
    from entropy_jax.llm import batch

    file = write_prompts(tmp_path / "p.jsonl")
    runs = {}
    for mode in ("continuous", "static"):
        out = tmp_path / f"{mode}.json"
        generate.main(generate.Config(model=str(chat_model), prompts=file, slots=2, batching=mode,
                                      max_new_tokens=6, out=out))
        runs[mode] = json.loads(out.read_text())
    cont, stat = runs["continuous"], runs["static"]
    # file order, ids given or the line number, each prompt's own budget (or --max-new-tokens)
    assert [r["id"] for r in cont["results"]] == ["add", "3", "count", "5", "6"]
    assert [r["max_new_tokens"] for r in cont["results"]] == [3, 6, 12, 1, 14]
    chat_ids = batch.to_requests(llm.load(chat_model), batch.read_prompts(file), max_new_tokens=6)
    for r, q, s in zip(cont["results"], chat_ids, stat["results"]):
        assert r["prompt_tokens"] == len(q.prompt)  # the chat template was applied, as with --prompt
        assert 1 <= len(r["tokens"]) == len(r["entropy"]) == len(r["log_prob"]) <= r["max_new_tokens"]
        assert r["stop_reason"] in ("eos", "length") and isinstance(r["text"], str)
        assert r["tokens"] == s["tokens"], r["id"]
        np.testing.assert_allclose(r["entropy"], s["entropy"], atol=1e-4, rtol=0, err_msg=r["id"])
        np.testing.assert_allclose(r["log_prob"], s["log_prob"], atol=1e-4, rtol=0, err_msg=r["id"])
        assert all(h >= 0 for h in r["entropy"]) and all(lp <= 0 for lp in r["log_prob"])
    cs, ss = cont["stats"], stat["stats"]
    for k in ("forward_passes", "generated_tokens", "row_steps", "wasted_row_steps", "tokens_per_s"):
        assert k in cs and k in ss
    assert cs["generated_tokens"] == ss["generated_tokens"] == sum(len(r["tokens"]) for r in cont["results"])
    assert cs["row_steps"] <= ss["row_steps"] and cs["wasted_row_steps"] < ss["wasted_row_steps"]
    assert cs["batching"] == "continuous" and ss["batching"] == "static" and cs["slots"] == 2
    assert cont["settings"]["prompts"] == str(file) and cont["entropy_settings"]["units"] == "nats"
    assert "tokens/s" in generate.many_summary(cont)


@pytest.mark.parametrize("line, why", [
    ('{"prompt": ""}', r'line 3: "prompt" must be a non-empty string'),
    ('{"prompt": "x", "max_new_tokens": 0}', r'line 3: "max_new_tokens" must be an integer ≥ 1, got 0'),
    ('{"prompt": "x", "max_tokens": 4}', r"line 3: unknown field\(s\) \['max_tokens'\]"),
    ('{"prompt": "x", "id": "a"}', r"line 3: duplicate id 'a' \(first on line 1\)"),
    ('{"prompt": "x", "id": 7}', r'line 3: "id" must be a non-empty string, got 7'),
    ('["x"]', r"line 3: expected a JSON object"),
    ('{"prompt": "x"', r"line 3: invalid JSON"),
])
def test_bad_prompt_lines_are_named_by_file_and_line_before_the_model_loads(chat_model, tmp_path, monkeypatch,
                                                                             line, why):
    from entropy_jax import llm

    file = tmp_path / "bad.jsonl"
    file.write_text('{"prompt": "fine", "id": "a"}\n\n' + line + "\n")
    monkeypatch.setattr(llm, "load", lambda *a, **k: pytest.fail("loaded the model before checking --prompts"))
    with pytest.raises(ConfigError, match=rf"^--prompts: {re.escape(str(file))}, {why}"):
        generate.main(generate.Config(model=str(chat_model), prompts=file))


def test_prompt_files_without_prompts_or_room_are_refused(chat_model, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match=r"--prompts: .*empty.jsonl: no prompts"):
        generate.main(generate.Config(model=str(chat_model), prompts=empty))
    with pytest.raises(ConfigError, match=r"--prompts: .*missing.jsonl: prompt file not found"):
        generate.main(generate.Config(model=str(chat_model), prompts=tmp_path / "missing.jsonl"))
    long = write_prompts(tmp_path / "long.jsonl", [{"prompt": "x", "id": "ok"},
                                                  {"prompt": "y", "max_new_tokens": 1020, "id": "huge"}])
    with pytest.raises(ConfigError, match=r"--prompts: .*long.jsonl, line 3 \(id 'huge'\): \d+ prompt tokens \+ "
                                          r"1020 new tokens exceed the context"):
        generate.main(generate.Config(model=str(chat_model), prompts=long))
    with pytest.raises(ConfigError, match="--batching"):
        generate.main(generate.Config(model=str(chat_model), prompts=long, batching="dynamic"))
