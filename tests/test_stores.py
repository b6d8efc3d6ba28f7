"""The shared store layer: JSONL stores (torn tails, foreign lines, keyed reads, batches), run locks, file names."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from entropy_jax import stores
from entropy_jax.stores import JsonlStore, RunLock, RunLockedError, StoreError


def _lines(path):
    return path.read_text().splitlines()


def test_append_writes_whole_lines_and_keyed_reads_pick_the_key(tmp_path):
    path = tmp_path / "cache.jsonl"
    store = JsonlStore(path, required=("id", "key"), writable=True)
    store.append([{"id": "a", "key": {"k": 1}, "x": 1.5}, {"id": "b", "key": {"k": 1}, "x": float("nan")}])
    store.append([{"id": "a", "key": {"k": 2}, "x": 3}, {"id": "a", "key": {"k": 1}, "x": 4}])
    assert [json.loads(line)["id"] for line in _lines(path)] == ["a", "b", "a", "a"]
    fresh = JsonlStore(path, required=("id", "key"))
    one = fresh.keyed({"k": 1})
    assert set(one) == {"a", "b"} and one["a"]["x"] == 4 and one["b"]["x"] is None  # later row wins; NaN → null
    assert fresh.keyed({"k": 2})["a"]["x"] == 3 and fresh.keyed({"k": 3}) == {}
    with pytest.raises(StoreError, match="without"):
        store.append([{"id": "c"}])
    with pytest.raises(StoreError, match="read-only"):
        fresh.append([{"id": "c", "key": {}}])


def test_a_torn_last_line_is_cut_away_by_a_writer_with_a_note(tmp_path, caplog):
    path = tmp_path / "t.jsonl"
    JsonlStore(path, writable=True).append([{"id": "a"}, {"id": "b"}])
    whole = path.read_bytes()
    with path.open("ab") as f:
        f.write(b'{"id": "c", "te')  # a kill (or a full disk) in the middle of a line
    with caplog.at_level(logging.WARNING, logger="entropy_jax.stores"):
        assert [r["id"] for r in JsonlStore(path).rows()] == ["a", "b"]  # a reader skips it, file untouched
        assert path.read_bytes() != whole and "ignored" in caplog.text
        caplog.clear()
        store = JsonlStore(path, writable=True)
        assert [r["id"] for r in store.rows()] == ["a", "b"]
    assert path.read_bytes() == whole and "torn last line" in caplog.text and str(path) in caplog.text
    store.append([{"id": "c"}])
    assert [json.loads(line)["id"] for line in _lines(path)] == ["a", "b", "c"]
    # a torn line that still got its newline (or half a UTF-8 character) is the last line too
    path.write_bytes(whole + '{"id": "é'.encode()[:-1] + b"\n")
    assert [r["id"] for r in JsonlStore(path, writable=True).rows()] == ["a", "b"] and path.read_bytes() == whole


def test_a_foreign_or_broken_line_before_the_end_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(StoreError, match=rf"{path}:2: not a JSON line"):
        JsonlStore(path, writable=True).rows()
    path.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(StoreError, match=rf"{path}:2: expected a JSON object"):
        JsonlStore(path).rows()
    path.write_text('{"id": "a", "key": 1}\n{"name": "x", "key": 1}\n')
    with pytest.raises(StoreError, match=rf"{path}:2: a row without \['id'\]"):
        JsonlStore(path, required=("id", "key")).keyed(1)
    assert path.read_text() == '{"id": "a", "key": 1}\n{"name": "x", "key": 1}\n'  # nothing repaired, nothing lost


def test_complete_batches_cut_a_short_last_batch_and_refuse_holes(tmp_path, caplog):
    path = tmp_path / "b.jsonl"
    store = JsonlStore(path, required=("id", "batch", "batch_rows"), writable=True)
    store.append([{"id": "q1", "batch": 0, "batch_rows": 2}, {"id": "q2", "batch": 0, "batch_rows": 2}])
    store.append([{"id": "q3", "batch": 1, "batch_rows": 1}])
    complete = path.read_bytes()
    with path.open("a") as f:  # a kill between the rows of batch 2
        f.write(json.dumps({"id": "q4", "batch": 2, "batch_rows": 2}) + "\n")
    with caplog.at_level(logging.WARNING, logger="entropy_jax.stores"):
        rows = JsonlStore(path, required=("id", "batch", "batch_rows"), writable=True).complete_batches()
    assert [r["id"] for r in rows] == ["q1", "q2", "q3"] and path.read_bytes() == complete
    assert "batch 2 has 1 of its 2 rows" in caplog.text
    path.write_bytes(complete.replace(b'"batch_rows": 1', b'"batch_rows": 3') + complete.splitlines(True)[0])
    with pytest.raises(StoreError, match="later batches follow it|already written"):
        JsonlStore(path, required=("id", "batch", "batch_rows")).complete_batches()
    path.write_bytes(complete + complete.splitlines(True)[2])  # batch 1 twice
    with pytest.raises(StoreError, match=r":4: batch 1 was already written at line 3"):
        JsonlStore(path, required=("id", "batch", "batch_rows")).complete_batches()


def test_safe_names_are_stable_and_distinguish_strings_with_the_same_tail(tmp_path):
    tail = "/checkpoints/" + "x" * 80 + "/Qwen3-0.6B"
    a, b = stores.safe_name("/data/runs/one" + tail), stores.safe_name("/data/runs/two" + tail)
    assert a != b and a == stores.safe_name("/data/runs/one" + tail)
    assert a.endswith(a[-8:]) and len(a) <= 48 + 9 and all(c.isalnum() or c in "-_." for c in a)
    assert stores.safe_name("gold").startswith("gold-") and stores.safe_name("a/b") != stores.safe_name("a_b")
    for name in (a, b, stores.safe_name("../../etc")):
        (tmp_path / f"{name}.jsonl").write_text("")  # a valid file name inside the directory
    assert len(list(tmp_path.iterdir())) == 3


def test_run_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path, caplog):
    with RunLock(tmp_path):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"]
        with pytest.raises(RunLockedError, match="in use by this process"):
            RunLock(tmp_path).acquire()
        child = ("import sys; from entropy_jax.stores import RunLock, RunLockedError\n"
                 "try:\n    RunLock(sys.argv[1]).acquire()\nexcept RunLockedError as e:\n"
                 "    print(e); sys.exit(3)\n")
        other = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True)
        assert other.returncode == 3 and f"in use by pid {os.getpid()}" in other.stdout
    assert not (tmp_path / ".lock").exists()
    # a process that died holding the lock (kill -9): its pid is gone, the next run takes over with a note
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": holder["host"], "since": "then"}))
    with caplog.at_level(logging.WARNING, logger="entropy_jax.stores"), RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {dead.pid}" in caplog.text
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "another-host", "since": "then"}))
    with pytest.raises(RunLockedError, match="on host another-host.*remove"):
        RunLock(tmp_path).acquire()


def test_check_settings_names_what_changed_and_frees_empty_directories(tmp_path):
    stores.check_settings(tmp_path, {"a": 1, "b": {"c": 2}}, holds=["scores.jsonl"])
    stores.check_settings(tmp_path, {"a": 5, "b": {"c": 2}}, holds=["scores.jsonl"])  # nothing there yet: free
    (tmp_path / "scores.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"other settings .*'b\.c': \(2, 3\)"):
        stores.check_settings(tmp_path, {"a": 5, "b": {"c": 3}}, holds=["scores.jsonl"])
    stores.check_settings(tmp_path, {"a": 5, "b": {"c": 2}}, holds=["scores.jsonl"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StoreError, match="bad.json"):
        stores.read_json(tmp_path / "bad.json")


def test_two_models_whose_paths_end_alike_get_their_own_pair_and_trace_files(tmp_path):
    from entropy_jax.thinking.matrix import pair_path, trace_path

    tail = "/" + "snapshots/" * 10 + "Qwen3-0.6B"  # the same last 80 characters
    a, b = "/mnt/a" + tail, "/mnt/b" + tail
    assert a[-80:] == b[-80:]
    assert pair_path(tmp_path, "gold", a) != pair_path(tmp_path, "gold", b)
    assert trace_path(tmp_path, a) != trace_path(tmp_path, b)
    assert pair_path(tmp_path, "gold", a).parent == tmp_path / "pairs"


def test_check_inputs_names_changed_ids_and_files_and_frees_directories_without_results(tmp_path):
    data = {"source": "q.jsonl", "questions": {"q1": "a", "q2": "b", "q3": "c"}}
    model = {"source": "m", "kind": "directory", "files": {"config.json": "sha256:1", "model.safetensors": "sha256:2"}}
    stores.check_inputs(tmp_path, {"data": data, "model": model}, holds=["scores.jsonl"])
    assert json.loads((tmp_path / "inputs.json").read_text())["data"] == data
    edited = data | {"questions": {"q1": "a", "q2": "B", "q4": "d"}}
    stores.check_inputs(tmp_path, {"data": edited, "model": model}, holds=["scores.jsonl"])  # no results yet: free
    (tmp_path / "scores.jsonl").write_text("")
    with pytest.raises(stores.ResumeError, match=r"data: 1 of 3 questions changed .*: q2; 1 new: q3; 1 gone: q4 "
                                                 r"\(made from it: scores.jsonl\)"):
        stores.check_inputs(tmp_path, {"data": data, "model": model}, holds=["scores.jsonl"])
    other = model | {"files": model["files"] | {"model.safetensors": "sha256:3"}}
    with pytest.raises(stores.ResumeError, match=r"model: files.model.safetensors: sha256:2 → sha256:3"):
        stores.check_inputs(tmp_path, {"data": edited, "model": other}, holds=["scores.jsonl"])
    reordered = data | {"questions": {"q2": "B", "q1": "a", "q4": "d"}}
    with pytest.raises(stores.ResumeError, match="the same questions in another order"):
        stores.check_inputs(tmp_path, {"data": reordered}, holds=["scores.jsonl"])
    # per-input holds: a model's change matters only where files made from it exist; earlier names are kept
    holds = {"model a": ["pairs/*__a.jsonl"], "model b": ["pairs/*__b.jsonl"]}
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / "gold__a.jsonl").write_text("")
    stores.check_inputs(tmp_path, {"model a": {"v": 1}, "model b": {"v": 1}}, holds=holds)
    stores.check_inputs(tmp_path, {"model b": {"v": 2}}, holds=holds)
    with pytest.raises(stores.ResumeError, match=r"model a: v: 1 → 2 \(made from it: pairs/gold__a.jsonl\)"):
        stores.check_inputs(tmp_path, {"model a": {"v": 2}}, holds=holds)
    assert json.loads((tmp_path / "inputs.json").read_text())["model b"] == {"v": 2}


def test_check_batches_match_rows_by_id_and_content_not_position(tmp_path):
    expected = [("q1", "a"), ("q2", "b"), ("q3", "c")]

    def rows(*spec):
        return [{"id": i, "content": c, "batch": b, "batch_rows": n} for i, c, b, n in spec]

    ok = rows(("q1", "a", 0, 2), ("q2", "b", 0, 2))
    stores.check_batches(tmp_path / "s.jsonl", ok, expected, 2)  # the last batch is still to do: fine
    stores.check_batches(tmp_path / "s.jsonl", ok + rows(("q3", "c", 1, 1)), expected, 2)
    cases = [
        (rows(("q1", "a", 0, 2), ("q2", "X", 0, 2)), r"1 rows whose content differs .*: q2"),
        (rows(("q1", "a", 0, 2), ("q9", "b", 0, 2)), r"rows of questions no longer in the data: q9.*lack 1 .*: q2"),
        (rows(("q2", "b", 0, 2), ("q1", "a", 0, 2), ("q3", "c", 1, 1)), None),  # order within a batch is free
        (rows(("q1", "a", 0, 1), ("q2", "b", 1, 1)), r"now at other positions: q2.*lack 2 .*: q2, q3"),
        (rows(("q1", "a", 0, 2), ("q2", "b", 0, 2), ("q3", None, 1, 1)), r"content differs .*older version.*: q3"),
    ]
    for got, error in cases:
        if error is None:
            stores.check_batches(tmp_path / "s.jsonl", got, expected, 2)
            continue
        with pytest.raises(stores.ResumeError, match=rf"s.jsonl holds results of other inputs — .*{error}"):
            stores.check_batches(tmp_path / "s.jsonl", got, expected, 2)
    # a data file that grew: a finished short batch now lacks the new questions
    short = rows(("q1", "a", 0, 2), ("q2", "b", 0, 2), ("q3", "c", 1, 1))
    with pytest.raises(stores.ResumeError, match=r"lack 1 questions of the data: q4"):
        stores.check_batches(tmp_path / "s.jsonl", short, expected + [("q4", "d")], 2)


def test_keyed_reads_only_rows_of_the_current_content_and_keep_rows_cuts_the_tail(tmp_path):
    path = tmp_path / "c.jsonl"
    store = JsonlStore(path, required=("id", "key"), writable=True)
    store.append([{"id": "a", "key": 1, "content": "v1", "x": 1}, {"id": "b", "key": 1, "content": "v1", "x": 2}])
    store.append([{"id": "a", "key": 1, "content": "v2", "x": 3}])
    fresh = JsonlStore(path, required=("id", "key"))
    assert fresh.keyed(1, content={"a": "v1", "b": "v1"}) == {
        "a": {"id": "a", "key": 1, "content": "v1", "x": 1}, "b": {"id": "b", "key": 1, "content": "v1", "x": 2}}
    assert {i: r["x"] for i, r in fresh.keyed(1, content={"a": "v2", "b": "v2"}).items()} == {"a": 3}
    assert fresh.keyed(1, content={}) == {}
    whole = path.read_bytes()
    store.keep_rows(3)
    assert path.read_bytes() == whole
    store.keep_rows(1)
    assert [r["id"] for r in JsonlStore(path).rows()] == ["a"] and path.read_bytes() == whole.splitlines(True)[0]
    with pytest.raises(StoreError, match="read-only"):
        fresh.keep_rows(0)
    assert stores.digest({"b": 1, "a": [1, 2]}) == stores.digest({"a": (1, 2), "b": 1}) != stores.digest({"a": 1})


def test_a_reader_says_where_the_tail_it_ignored_starts_and_a_cache_read_repairs_it(tmp_path):
    from entropy_jax.llm import traces as gen

    path = tmp_path / "c.jsonl"
    JsonlStore(path, writable=True).append([{"id": "a", "key": {}}, {"id": "b", "key": {}}])
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"id": "c", "ke')
    reader = JsonlStore(path)
    assert len(reader.rows()) == 2 and reader.ignored_tail == len(whole)
    writer = JsonlStore(path, writable=True)
    assert len(writer.rows()) == 2 and writer.ignored_tail is None and path.read_bytes() == whole  # a writer cuts it
    path.write_bytes(whole + b'{"id": "c", "ke')
    assert set(gen.read_cache(path, {})) == {"a", "b"} and path.read_bytes() != whole  # a plain read leaves it
    with RunLock(tmp_path, name=path.name + ".lock"):  # a live writer holds the cache: its line, not ours to cut
        gen.repair_cache(path)
        assert path.read_bytes() != whole
    assert set(gen.read_cache(path, {}, repair=True)) == {"a", "b"} and path.read_bytes() == whole
    assert not (tmp_path / (path.name + ".lock")).exists()
