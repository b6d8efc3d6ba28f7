"""Chapter 4's model teacher killed for real (SIGKILL) while it writes traces, then resumed: no finished trace is
generated twice and the cache ends byte for byte as an uninterrupted run's (`entropy_jax.train.traces`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from entropy_jax.data import mcqa
from entropy_jax.stores import safe_name
from entropy_jax.train import traces
from tests.subprocess_snippets import paced_engine

ROOT = Path(__file__).resolve().parents[2]
N, BUDGET, SLOTS = 8, 32, 2
# A tiny model writes all its traces within a tenth of a second, so the teacher's process paces itself as a large
# model would: after each finished trace (appended and fsync'd by the generator) it waits PACE seconds, while the
# other slot's request is still decoding. The kill then lands in the middle of generation on any machine.
PACE = 0.4
SLOW = paced_engine(PACE)
# the pipeline's step 2 (`pipeline.teacher_traces`) as a process of its own
SCRIPT = SLOW + f"""
import sys
from entropy_jax.data import mcqa
from entropy_jax.train import traces
traces.load_teacher_traces(sys.argv[1], mcqa.load("demo", limit={N}), cache_dir=sys.argv[2], max_new_tokens={BUDGET},
                           batch_size={SLOTS})
"""


def complete_rows(path: Path) -> list[dict]:
    """The whole lines of a trace cache (a line cut by the kill is not one)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def kill_after_first_trace(teacher: Path, cache_dir: Path, cache: Path, timeout: float = 120) -> list[dict]:
    """Start the teacher in a subprocess, SIGKILL it once its cache holds a whole row; the rows it left."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(teacher), str(cache_dir)], cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    try:
        while not complete_rows(cache):
            if proc.poll() is not None:
                raise AssertionError(f"the teacher run ended before writing a trace: {proc.communicate()[0]}")
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no trace within {timeout} s")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return complete_rows(cache)


def test_killed_teacher_resumes_without_regenerating_and_ends_with_the_same_file(student_dir, tmp_path):
    questions = mcqa.load("demo", limit=N)
    name = f"{safe_name(str(student_dir))}.jsonl"
    full = traces.load_teacher_traces(str(student_dir), questions, cache_dir=tmp_path / "full", max_new_tokens=BUDGET,
                                      batch_size=SLOTS)
    assert full.generated_questions == N and full.cached_questions == 0

    cache = tmp_path / "cut" / name
    at_kill = kill_after_first_trace(student_dir, tmp_path / "cut", cache)
    assert 1 <= len(at_kill) < N, "the teacher finished before the kill: give it more work"
    rest = traces.load_teacher_traces(str(student_dir), questions, cache_dir=tmp_path / "cut", max_new_tokens=BUDGET,
                                      batch_size=SLOTS)
    # the traces written before the kill are reused, not generated again; only the others are generated
    kept = {r["id"] for r in at_kill}
    assert rest.cached_questions == len(kept) and rest.generated_questions == N - len(kept)
    final = complete_rows(cache)
    assert rest.generated_tokens == sum(r["n_tokens"] for r in final if r["id"] not in kept)
    assert all(r in final for r in at_kill)
    # the same rows, in the same order, to the byte
    assert cache.read_bytes() == (tmp_path / "full" / name).read_bytes()
    assert sorted(p.name for p in cache.parent.iterdir()) == [name]  # the dead run's lock was taken over, released
    assert {i: t.text for i, t in rest.traces.items()} == {i: t.text for i, t in full.traces.items()}
