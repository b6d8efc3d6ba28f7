"""Multi-host for real: `launch.generate --prompts` (the engine) and `launch.thinker_answerer` as two local JAX
processes (`jax.distributed` over a local coordinator, CPU collectives over gloo, 2 devices each, a data mesh over
all 4), against one process on a mesh of 4 devices; process 0 alone writes files.

Process 1 gets an --out of its own that must stay empty: every process computes the same thing and only the
writer touches the disk. (A real multi-host run passes one --out on a file system all hosts see; here the two
directories separate what each process would write.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from entropy_jax import llm, runtime
from entropy_jax.llm import batch
from tests.train.conftest import tiny_chat_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_chat_model(tmp_path_factory.mktemp("mp_model"), "llama", seed=4)


def mesh4():
    """The 4-device data mesh the two processes build (`--data -1` over 2 × 2 devices), in this process."""
    return llm.make_mesh(4, 1, 1, devices=jax.devices()[:4])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# each process runs both launchers, one after the other (one start-up, one distributed initialisation)
BOTH = """
import sys
from launch import generate, thinker_answerer
out, gen_args, ta_args = sys.argv[1], sys.argv[2].split("|"), sys.argv[3].split("|")
generate.cli(gen_args + ["--out", out + "/gen.json"])
thinker_answerer.cli(ta_args + ["--out", out + "/matrix"])
"""


def two_processes(outs: list[Path], gen_args: list[str], ta_args: list[str], timeout: float = 300) -> list[str]:
    """Processes 0 and 1 of one JAX job, each running `launch.generate` then `launch.thinker_answerer` into its
    own out directory; their outputs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "TPU_"))}
    env |= {"XLA_FLAGS": runtime.cpu_device_flags(2), "JAX_PLATFORMS": "cpu",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": "2",
            "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", BOTH, str(out), "|".join(gen_args), "|".join(ta_args)], cwd=ROOT,
                              env=env | {"JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i, out in enumerate(outs)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i} exited with {p.returncode}:\n{log[-4000:]}"
    return logs


def without_times(obj, drop=("seconds", "tokens_per_s")):
    """A JSON value without its wall-time fields ("seconds", "tokens_per_s")."""
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if k not in drop}
    return [without_times(v) for v in obj] if isinstance(obj, list) else obj


def files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def same_bucket_questions(model: Path, n: int = 4):
    """n demo questions whose step-by-step prompts share one length bucket, and those prompts: the trace
    generator then prefills them in one call, with the shapes `launch.generate` uses for the same prompts (one
    set of engine programs for both)."""
    from entropy_jax.data import mcqa
    from entropy_jax.llm import traces as gen

    tok, _ = llm.load_tokenizer(model)
    by_bucket: dict[int, list] = {}
    for q in mcqa.load("demo", limit=24):
        text = gen.prompt(tok, q, mode="cot")
        by_bucket.setdefault(llm.bucket(len(tok(text, add_special_tokens=False)["input_ids"])), []).append((q, text))
    return max(by_bucket.values(), key=len)[:n]


@pytest.mark.entry
@pytest.mark.slow
def test_generate_and_thinker_answerer_on_two_processes_equal_one_process(model, tmp_path):
    from entropy_jax.data import mcqa
    from entropy_jax.thinking import matrix
    from launch import thinker_answerer as ta

    chosen = same_bucket_questions(model)
    data = mcqa.save_jsonl([q for q, _ in chosen], tmp_path / "questions.jsonl")
    # launch.generate on the thinker's own prompts (raw text: they are rendered already), with its budget
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": text, "id": q.id}) + "\n" for q, text in chosen))
    kw = dict(thinkers=str(model), answerers=str(model), data=str(data), max_think_tokens=8, batch_size=4,
              answer_batch_size=4)
    gen_args = ["--model", str(model), "--prompts", str(prompts), "--no-chat", "--slots", "4", "--max-new-tokens",
                "8", "--data", "-1"]
    ta_args = [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))] + ["--data-axis", "-1",
                                                                                      "--no-progress"]
    logs = two_processes([tmp_path / "p0", tmp_path / "p1"], gen_args, ta_args)
    # process 1 computed everything and wrote (and printed) nothing
    assert files(tmp_path / "p1") == []
    assert "tokens/s" in logs[0] and "tokens/s" not in logs[1]
    made = files(tmp_path / "p0")
    assert "gen.json" in made and {f"matrix/{f}" for f in ("matrix.json", "matrix.png", "summary.json", "thinkers.json",
                                                           "inputs.json", "settings.json")} <= set(made)
    two = json.loads((tmp_path / "p0" / "gen.json").read_text())
    assert two["devices"] == {"platform": "cpu", "count": 4, "processes": 2,
                              "mesh": {"data": 4, "fsdp": 1, "tensor": 1}}
    # the engine behind launch.generate and behind the thinker's traces: the same tokens for the same prompts
    traces = {r["id"]: r for r in map(json.loads, matrix.trace_path(tmp_path / "p0" / "matrix", str(model))
                                      .read_text().splitlines())}
    assert [r["tokens"] for r in two["results"]] == [traces[q.id]["tokens"] for q, _ in chosen]

    # one process, the same 4-device mesh
    lm = llm.load(model, mesh=mesh4())
    one = batch.run(lm, batch.read_prompts(prompts), max_new_tokens=8, chat=False, slots=4)
    assert [r["id"] for r in two["results"]] == [r["id"] for r in one["results"]] == [q.id for q, _ in chosen]
    for a, b in zip(two["results"], one["results"]):
        assert a["tokens"] == b["tokens"] and a["text"] == b["text"], a["id"]
        np.testing.assert_allclose(a["entropy"], b["entropy"], atol=1e-6, rtol=0, err_msg=a["id"])
        np.testing.assert_allclose(a["log_prob"], b["log_prob"], atol=1e-6, rtol=0, err_msg=a["id"])
    for k in ("forward_passes", "generated_tokens", "row_steps", "wasted_row_steps", "slots", "cache_len"):
        assert two["stats"][k] == one["stats"][k], k

    ref = tmp_path / "one"
    matrix.run(ta.Config(out=ref, progress=False, **kw), ref, models={str(model): lm})
    assert [f"matrix/{f}" for f in files(ref)] == [f for f in made if f != "gen.json"]
    for f in files(ref):
        a, b = (tmp_path / "p0" / "matrix" / f).read_bytes(), (ref / f).read_bytes()
        if f in ("summary.json", "thinkers.json"):  # equal but for wall times
            a, b = without_times(json.loads(a)), without_times(json.loads(b))
            # the reference was handed its model, the processes loaded theirs
            assert a.pop("models_loaded", [str(model)]) == [str(model)] and b.pop("models_loaded", []) == []
            assert a == b, f
        else:
            assert a == b, f
