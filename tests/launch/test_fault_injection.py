"""Kill -9 at random points, resume, and end with the files of an uninterrupted run; and the faults a user meets
beside kills: a SIGTERM (graceful: save, exit 143, resume), a second process on one --out, a torn line in a trace
cache, a damaged checkpoint, a training file edited under a killed fine-tune.

For each resumable launcher — a scoring run (`launch.mcqa_entropy`), a fine-tune with a checkpoint every two
steps (`launch.finetune --resume`) and a thinker × answerer run with a model thinker (`launch.thinker_answerer`) — a
seeded RNG picks three kill points: after the process holds its --out (its lock names the new pid) and has
written j more result units (score rows, train steps, trace and pair rows; j = 0: as soon as it holds --out),
plus a random delay of up to a fraction of a second, so the SIGKILL lands anywhere — inside a batch, an Orbax
save, an atomic JSON write, a figure. Each kill is followed by the same command again; after the third, one
more run finishes. Every file of the directory must then equal the uninterrupted run's, byte for byte, except
the fields named in `CALL_FIELDS` (wall-clock seconds, what this call loaded or generated, the resume record);
for a fine-tune the newest checkpoint's arrays are equal too.

The runs are real processes killed by a real SIGKILL, with torch hidden (as where only the run-time extras are
installed). To fit twelve launcher runs into seconds, they are forked from one Python process that imported
the launchers and nothing else (`ZYGOTE`: no JAX backend exists before the fork, so each child starts JAX
afresh, as `python -m launch.…` would); they compile from the session's persistent compilation cache
(tests/conftest.py), which the uninterrupted reference runs fill. The tests share that process and the
reference runs (module fixtures), on one worker under `pytest --dist loadfile` (the Makefile's).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # builds the tiny models

from entropy_jax.data import mcqa
from tests.subprocess_snippets import SOURCE as HIDE_TORCH

pytestmark = [pytest.mark.entry, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KILLS = 3
POLL = 0.02  # seconds between looks at a run's files (the random delay after the chosen unit dominates)

ZYGOTE = HIDE_TORCH + r'''
import importlib, importlib.machinery, importlib.metadata, json, os, sys, traceback


from jax._src import xla_bridge

launchers = {name: importlib.import_module(name) for name in sys.argv[1:]}
import matplotlib.pyplot, transformers.models.auto.tokenization_auto  # noqa: E401 (imported by every run)

assert not xla_bridge.backends_are_initialized(), "importing a launcher started JAX: forks would share it"
# every program a run compiles goes to the persistent cache (not only the slow ones, `runtime.configure`): the
# same command in the next fork then compiles nothing (results never depend on the cache)
importlib.import_module("entropy_jax.runtime").MIN_COMPILE_SECONDS = 0.0


def reply(x):
    print(json.dumps(x), flush=True)


def child(module, args, log):
    code = 1
    try:  # whatever happens, the fork never returns to the command loop
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        launchers[module].cli(args)
        code = 0
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


exited = {}
reply("ready")
for line in sys.stdin:
    op, arg = json.loads(line)
    if op == "run":
        pid = os.fork()
        if pid == 0:
            child(*arg)
        reply(pid)
    else:  # "poll" (None while running) or "wait": the exit code, -signal when killed
        if arg not in exited:
            done, status = os.waitpid(arg, os.WNOHANG if op == "poll" else 0)
            if done:
                exited[arg] = os.waitstatus_to_exitcode(status)
        reply(exited.get(arg))
'''


class Launcher:
    """Runs launchers' `cli` in processes forked from `ZYGOTE`: `start` → pid, `poll` (None while running),
    `wait` → exit code (-9 after a SIGKILL), `until` a condition holds or the run ends."""

    def __init__(self, modules: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE, *modules], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.running: set[int] = set()
        self.ready = False  # read at the first command: the imports overlap with the caller's own set-up

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the launcher process ended (exit {self.proc.wait()})")
        return json.loads(line)

    def _ask(self, op: str, arg):
        if not self.ready:
            assert self._read() == "ready"
            self.ready = True
        self.proc.stdin.write(json.dumps([op, arg]) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def start(self, module: str, args: list, log: Path) -> int:
        pid = self._ask("run", [module, [str(a) for a in args], str(log)])
        self.running.add(pid)
        return pid

    def poll(self, pid: int) -> int | None:
        rc = self._ask("poll", pid)
        if rc is not None:
            self.running.discard(pid)
        return rc

    def wait(self, pid: int) -> int:
        rc = self._ask("wait", pid)
        self.running.discard(pid)
        return rc

    def until(self, pid: int, condition, log: Path, timeout: float = 600) -> int | None:
        """Poll run `pid` until `condition()` holds (None: still running) or the run ends (its exit code)."""
        t0 = time.monotonic()
        while (rc := self.poll(pid)) is None and not condition():
            if time.monotonic() - t0 > timeout:
                self.kill(pid)
                raise AssertionError(f"run {pid} neither got there nor ended in {timeout} s: {log.read_text()}")
            time.sleep(POLL)
        return rc

    def kill(self, pid: int) -> int:
        """SIGKILL run `pid` unless it has ended; its exit code."""
        if self.poll(pid) is None:
            os.kill(pid, signal.SIGKILL)
        return self.wait(pid)

    def close(self) -> None:
        for pid in list(self.running):  # a failed test's run
            self.kill(pid)
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.proc.stdout.close()


# ------------------------------------------------------------------------------------------- the three runs
def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _last_step(out: Path) -> int:
    """The step of the last whole line of train_log.jsonl (0 without one)."""
    path = out / "train_log.jsonl"
    if not path.exists():
        return 0
    whole = path.read_bytes().rsplit(b"\n", 1)[0].splitlines()
    return json.loads(whole[-1])["step"] if whole else 0


def _pop(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


# fields that describe the call that wrote a file, not its results: wall-clock seconds, what this call loaded,
# generated or resumed from (a resumed run finds its traces cached and loads no thinker)
ACCOUNTING = ("generated_tokens", "generated_questions", "cached_questions", "tokens_per_s")
CALL_FIELDS = {
    "mcqa": {"metrics.json": lambda m: _pop(m, "run")},
    "finetune": {"summary.json": lambda s: _pop(s, "seconds", "resumed", "train_step_traces")
                 | {"history": [_pop(h, "seconds") for h in s["history"]]}},
    "thinker": {"thinkers.json": lambda t: {k: _pop(v, *ACCOUNTING) for k, v in t.items()},
                "summary.json": lambda s: _pop(s, "seconds", "models_loaded", "generated_tokens")
                | {"thinker_table": {k: _pop(v, *ACCOUNTING) for k, v in s["thinker_table"].items()}}},
}


def kinds(model: Path, data: Path) -> dict:
    """kind → (module, args(out), progress(out): result units written so far, jitter: the longest random delay
    after the chosen unit, in seconds)."""
    return {
        "mcqa": ("launch.mcqa_entropy",
                 lambda out: ["--model", model, "--data", data, "--out", out, "--batch-size", 2, "--n-boot", 20,
                              "--no-progress"],
                 lambda out: _lines(out / "scores.jsonl"), 0.15),
        "finetune": ("launch.finetune",
                     lambda out: ["--student", model, "--train-data", data, "--eval-data", data, "--out", out,
                                  "--policy", "gated", "--hard-quantile", 0.5, "--train-limit", 3, "--eval-size", 3,
                                  "--train.epochs", 2, "--train.micro-batch", 1, "--train.seq-len", 512,
                                  "--train.lr", 2e-3, "--train.save-every", 2, "--score-batch", 2, "--no-export",
                                  "--data-axis", 1, "--no-progress", "--resume"],
                     _last_step, 0.3),
        "thinker": ("launch.thinker_answerer",
                    lambda out: ["--thinkers", f"none,{model}", "--answerers", model, "--data", data, "--limit", 4,
                                 "--max-think-tokens", 8, "--batch-size", 2, "--answer-batch-size", 2, "--out", out,
                                 "--no-progress"],
                    lambda out: sum(_lines(p) for d in ("traces", "pairs") for p in (out / d).glob("*.jsonl")), 0.3),
    }


@pytest.fixture(scope="module")
def launcher():
    z = Launcher(["launch.mcqa_entropy", "launch.finetune", "launch.thinker_answerer"])
    yield z
    z.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, launcher):  # the launcher first: its imports run while the model is built
    from tests.train.conftest import tiny_chat_model

    root = tmp_path_factory.mktemp("faults")
    model = tiny_chat_model(root / "model", "llama", seed=2)
    data = root / "q.jsonl"
    mcqa.save_jsonl(mcqa.load("demo", limit=10), data)  # both strata, interleaved
    return root, kinds(model, data)


@pytest.fixture(scope="module")
def reference(setup, launcher):
    """kind → the output directory of an uninterrupted run (made once per module)."""
    root, spec = setup
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            module, args, _, _ = spec[kind]
            out = root / "reference" / kind / "out"
            log = root / f"reference-{kind}.log"
            rc = launcher.wait(launcher.start(module, args(out), log))
            assert rc == 0, log.read_text()
            made[kind] = out
        return made[kind]

    return get


def snapshot(out: Path, kind: str) -> dict[str, object]:
    """Every file under OUT (checkpoints aside) as bytes, with the call's own fields (`CALL_FIELDS`) dropped from
    the JSON files that hold them. Lock files are left out: a lock a killed run left behind is taken over by
    the next run that needs it."""
    files: dict[str, object] = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_dir() or rel.startswith("checkpoints/") or p.name.endswith(".lock"):
            continue
        drop = CALL_FIELDS[kind].get(rel)
        files[rel] = drop(json.loads(p.read_bytes())) if drop else p.read_bytes()
    return files


def _newest_checkpoint(out: Path):
    import orbax.checkpoint as ocp

    mgr = ocp.CheckpointManager(out / "checkpoints")
    try:
        step = mgr.latest_step()
        state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
        return sorted(mgr.all_steps()), step, state
    finally:
        mgr.close()


@pytest.mark.parametrize("kind", ["mcqa", "finetune", "thinker"])
def test_killed_at_random_points_then_resumed_ends_with_the_uninterrupted_files(kind, setup, reference, launcher,
                                                                               tmp_path, rng):
    _, spec = setup
    module, args, progress, jitter = spec[kind]
    ref = reference(kind)
    total = progress(ref)
    out = tmp_path / "run" / "out"
    killed, logs = [], []
    for attempt in range(KILLS):
        done = progress(out) if out.exists() else 0
        more = int(rng.integers(0, total - done + 1))  # 0: as soon as it holds --out; total - done: after the last
        delay = float(rng.uniform(0, jitter))
        log = tmp_path / f"attempt-{attempt}.log"
        logs.append(log)
        pid = launcher.start(module, args(out), log)
        rc = launcher.until(pid, lambda pid=pid, n=done + more: _holds(out, pid) and progress(out) >= n, log)
        if rc is None:
            time.sleep(delay)
            rc = launcher.kill(pid)
        assert rc in (0, -signal.SIGKILL), log.read_text()
        # a kill can land after the run released OUT (its work done, exiting): then no lock is left to take over
        if rc == -signal.SIGKILL:
            killed.append((attempt, more, round(delay, 3), _holds(out, pid)))
    log = tmp_path / "last.log"
    rc = launcher.wait(launcher.start(module, args(out), log))
    assert rc == 0, log.read_text()
    assert killed, f"every run finished before its kill point: {logs}"
    print(kind, "killed (attempt, units after launch, delay s, lock left behind):", killed)
    # the next run took over the lock each killed run left behind
    for attempt, _, _, stale in killed:
        if not stale:
            continue
        after = logs[attempt + 1] if attempt + 1 < len(logs) else log
        assert "taking over the lock" in after.read_text(), (killed, after.read_text())

    want, got = snapshot(ref, kind), snapshot(out, kind)
    assert sorted(got) == sorted(want), killed
    for name in want:
        assert got[name] == want[name], (name, killed)
    if kind == "finetune":
        import jax

        (steps_a, a_step, a), (steps_b, b_step, b) = _newest_checkpoint(ref), _newest_checkpoint(out)
        assert a_step == b_step == total and steps_a == steps_b
        leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
        assert len(leaves_a) == len(leaves_b) > 10
        for x, y in zip(leaves_a, leaves_b):
            assert np.array_equal(np.asarray(x), np.asarray(y)), killed


def test_sigterm_saves_and_exits_then_a_resume_ends_with_the_uninterrupted_files(setup, reference, launcher, tmp_path):
    # A SIGTERM (a scheduler's preemption notice) is graceful, unlike the kills above: the fine-tune saves at its
    # current step, says how to resume and exits 128 + 15; a resume with other settings is refused; the same
    # command then ends with the uninterrupted run's files and arrays.
    import jax

    _, spec = setup
    module, args, progress, _ = spec["finetune"]
    ref = reference("finetune")
    total = progress(ref)
    out = tmp_path / "out"
    log = tmp_path / "term.log"
    pid = launcher.start(module, args(out), log)
    rc = launcher.until(pid, lambda: _holds(out, pid) and progress(out) >= 1, log)
    assert rc is None, f"the run ended (exit {rc}) before its first step was logged: {log.read_text()}"
    os.kill(pid, signal.SIGTERM)
    rc = launcher.wait(pid)
    text = log.read_text()
    assert rc == 128 + signal.SIGTERM, text
    assert "resume with --resume" in text
    status = json.loads((out / "summary.json").read_text())
    assert status["status"] == "interrupted" and 1 <= status["global_step"] < total

    other = [str(a) for a in args(out)]
    other[other.index("--train.lr") + 1] = "1e-3"
    log = tmp_path / "other.log"
    assert launcher.wait(launcher.start(module, other, log)) == 1, log.read_text()
    assert "other settings" in log.read_text()

    log = tmp_path / "resume.log"
    assert launcher.wait(launcher.start(module, args(out), log)) == 0, log.read_text()
    assert snapshot(out, "finetune") == snapshot(ref, "finetune")
    (steps_a, a_step, a), (steps_b, b_step, b) = _newest_checkpoint(ref), _newest_checkpoint(out)
    assert a_step == b_step == total and steps_a == steps_b
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def _holds(out: Path, pid: int) -> bool:
    """Whether process `pid` holds OUT (its lock file names it)."""
    try:
        return json.loads((out / ".lock").read_text()).get("pid") == pid
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------------------- the other checks
def _start_holding(launcher: Launcher, module: str, args: list, out: Path, log: Path) -> int:
    """Start a run and return its pid once it holds OUT."""
    pid = launcher.start(module, args, log)
    assert launcher.until(pid, lambda: _holds(out, pid), log) is None, log.read_text()
    return pid


def test_a_second_scoring_run_on_the_same_out_is_refused_at_once_and_the_first_completes(setup, reference, launcher,
                                                                                        tmp_path):
    _, spec = setup
    module, args, _, _ = spec["mcqa"]
    out = tmp_path / "out"
    first = _start_holding(launcher, module, args(out), out, tmp_path / "first.log")
    second = launcher.wait(launcher.start(module, args(out), tmp_path / "second.log"))
    running = launcher.poll(first) is None
    assert second == 1
    assert f"error: {out} (.lock) is in use by pid {first} on this host" in (tmp_path / "second.log").read_text()
    assert running  # refused while the first was still at work, not after it
    assert launcher.wait(first) == 0, (tmp_path / "first.log").read_text()
    want, got = snapshot(reference("mcqa"), "mcqa"), snapshot(out, "mcqa")
    assert got == want  # every batch once: the second run wrote nothing


def test_a_torn_last_line_in_a_trace_cache_is_cut_by_the_next_run_which_generates_nothing(setup, reference, launcher,
                                                                                        tmp_path):
    import shutil

    _, spec = setup
    module, args, _, _ = spec["thinker"]
    ref = reference("thinker")
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    (cache,) = (out / "traces").glob("*.jsonl")
    whole = cache.read_bytes()
    with cache.open("ab") as f:  # a run killed (or a disk filled) while appending
        f.write(b'{"id": "reas-0002", "text": "Let us th')
    log = tmp_path / "again.log"
    assert launcher.wait(launcher.start(module, args(out), log)) == 0, log.read_text()
    assert cache.read_bytes() == whole
    assert f"{cache}: a torn last line" in log.read_text() and "truncated it away" in log.read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generated_tokens"] == 0 and summary["models_loaded"] == []  # no thinker, no answerer loaded
    assert snapshot(out, "thinker") == snapshot(ref, "thinker")
    log = tmp_path / "third.log"
    assert launcher.wait(launcher.start(module, args(out), log)) == 0, log.read_text()
    assert "torn" not in log.read_text()  # repaired once, not noted by every later run


def test_a_corrupt_newest_checkpoint_is_skipped_for_the_previous_one_with_a_note(setup, reference, launcher,
                                                                                tmp_path):
    import shutil

    import jax

    _, spec = setup
    module, args, _, _ = spec["finetune"]
    ref = reference("finetune")
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    previous, newest = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())[-2:]
    data = max((p for p in (out / "checkpoints" / str(newest)).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a copy cut short, a damaged disk
    log = tmp_path / "resume.log"
    assert launcher.wait(launcher.start(module, args(out), log)) == 0, log.read_text()
    text = log.read_text()
    assert f"checkpoint {newest} does not restore (" in text
    assert f"resuming from checkpoint {previous}; skipped and deleted {newest}" in text
    resumed = json.loads((out / "summary.json").read_text())["resumed"]
    assert resumed["step"] == previous and [s["step"] for s in resumed["skipped"]] == [newest]
    assert resumed["skipped"][0]["reason"]
    assert snapshot(out, "finetune") == snapshot(ref, "finetune")  # the step redone: the same log, evals, summary
    (steps_a, _, a), (steps_b, _, b) = _newest_checkpoint(ref), _newest_checkpoint(out)
    assert steps_a == steps_b
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_resuming_a_finetune_whose_training_file_was_edited_is_refused_naming_the_ids(setup, reference, launcher,
                                                                                    tmp_path):
    import dataclasses
    import shutil

    from entropy_jax.train import pipeline
    from launch import finetune

    root, spec = setup
    module, args, _, _ = spec["finetune"]
    out = tmp_path / "out"
    shutil.copytree(reference("finetune"), out)  # a run with checkpoints, made from root/q.jsonl
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    data = root / "q.jsonl"
    whole = data.read_bytes()
    train, _ = pipeline.split_questions(finetune.Config(train_data=str(data), eval_data=str(data), eval_size=3,
                                                        train_limit=3))
    edited = train[1].id
    log = tmp_path / "resume.log"
    try:  # the same path, other content (put back for the module's other tests: the refusal reads, never writes)
        mcqa.save_jsonl([dataclasses.replace(q, question=q.question + " (edited)") if q.id == edited else q
                         for q in mcqa.load(str(data))], data)
        rc = launcher.wait(launcher.start(module, args(out), log))
    finally:
        data.write_bytes(whole)
    assert rc == 1, log.read_text()
    assert (f"error: {out} holds a run made from other inputs — train: 1 of 3 questions changed (text, options or "
            f"answer): {edited} (made from it: checkpoints)") in log.read_text()
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before  # nothing trained or cut
