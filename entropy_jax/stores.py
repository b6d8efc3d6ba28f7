"""The files runs write and resume from: atomic JSON, append-only JSONL stores, run-directory locks, and file
names made from user strings. Every resumable file of Chapters 3–5 (scores, judge ratings, pairs, trace and
teacher caches) is a `JsonlStore`; every run that writes an output directory holds it with a `RunLock`.

Store rules (a crash, a full disk or a second process must never leave a wrong result that looks right):

- A row is one JSON object on one line; `append` writes a whole batch of rows with one write, then flush and
  fsync, so a batch either reaches the disk or is cut inside its last line.
- A torn last line (a crash or a full disk mid-write) is cut away when a writer opens the store, with a note on
  the `entropy_jax.stores` logger (readers skip it, with the same note, and leave the file alone); any other
  unreadable line, or a row without the store's required fields, is an error naming the file and line.
  Nothing is dropped silently.
- Batch stores (rows carrying "batch" and "batch_rows"): a batch cut short at the end of the file is cut away
  too (with a note), so a resumed run redoes exactly that batch; an incomplete or repeated batch anywhere else
  is an error.

Content keys (a resume must never mix results of other inputs): every row carries "content", a short hash of
everything its computation read (the question's text, options and answer — `mcqa.content_hash` — plus, where
they apply, the trace an answerer read or the answer a judge was shown). `check_batches` matches a batch store's
rows with the inputs by id and content, not by position alone, and refuses naming the ids that differ; caches
(`JsonlStore.keyed`, trace stores) reuse only rows whose content matches and recompute the others. What a whole
directory was made from — the data set's {id: content} map, each model's `llm.fingerprint`, an input file's
hash — is recorded in OUT/inputs.json by `check_inputs`, which refuses a resume whose inputs changed, naming the
ids, files or models; the settings go to OUT/settings.json (`check_settings`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "JsonlStore",
    "Partial",
    "ResumeError",
    "RunLock",
    "RunLockedError",
    "StoreError",
    "check_batches",
    "check_inputs",
    "check_settings",
    "digest",
    "file_digest",
    "read_json",
    "safe_name",
    "to_json",
    "write_json",
]


class StoreError(ValueError):
    """A store file holds something it cannot have written itself (the message names the file and line)."""


class ResumeError(StoreError):
    """A run directory holds results of other settings or other inputs (the message names what changed)."""


def digest(obj: Any, n: int = 16) -> str:
    """The first `n` hex digits of the SHA-256 of `obj` as canonical JSON (sorted keys): a content key."""
    text = json.dumps(to_json(obj), sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def file_digest(path: str | os.PathLike, n: int = 16) -> str:
    """The first `n` hex digits of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


# ------------------------------------------------------------------------------------------------ JSON files
def to_json(x: Any) -> Any:
    """A JSON-safe copy: NaN/inf become null, tuples lists, NumPy scalars and arrays Python values, paths and
    dataclasses their str / dict."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        x = dataclasses.asdict(x)
    if isinstance(x, Mapping):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return to_json(x.tolist())
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `to_json(obj)` to `path` atomically (a temporary file renamed over it: an interrupted run never
    leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json(obj), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON value in `path`, or None when it does not exist; a malformed file is an error naming it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: not a readable JSON file ({e}); delete it to recompute") from None


class Partial:
    """Rows of a long run saved as they finish (one JSON file, rewritten atomically); reused when the saved
    settings equal `settings`, else started afresh."""

    def __init__(self, path: str | os.PathLike, settings: dict, *, resume: bool = True):
        self.path, self.settings = Path(path), to_json(settings)
        old = read_json(self.path) if resume else None
        self.rows: dict[str, Any] = old["rows"] if old and old.get("settings") == self.settings else {}

    def get(self, key) -> Any | None:
        return self.rows.get(str(key))

    def put(self, key, row) -> None:
        self.rows[str(key)] = to_json(row)
        write_json(self.path, {"settings": self.settings, "rows": self.rows})

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def check_settings(out: str | os.PathLike, settings: dict, *, holds: Iterable[str | os.PathLike] = (),
                   what: str = "results", write: bool = True) -> None:
    """Refuse to reuse `out` for other settings, then record `settings` in OUT/settings.json (`write=False`:
    check only, e.g. on the processes of a multi-process job that do not write).

    `holds` are the result files (relative to `out`, globs allowed) whose presence means the directory holds
    results; with none of them present a directory is free for any settings (a run that failed before
    producing anything never blocks the corrected command). The error names every changed setting.
    """
    out = Path(out)
    path = out / "settings.json"
    settings = to_json(settings)
    old = read_json(path)
    if old is not None and old != settings and _holds(out, holds):
        changed = _diff(old, settings)
        raise ResumeError(f"{out} holds {what} made with other settings (saved → now: {changed}); use another "
                          "--out or delete it")
    if write:
        write_json(path, settings)


def _holds(out: Path, holds: Iterable[str | os.PathLike]) -> list[str]:
    return sorted({str(p.relative_to(out)) for pattern in holds for p in out.glob(str(pattern))})


def check_inputs(out: str | os.PathLike, inputs: Mapping[str, Any], *,
                 holds: Iterable[str | os.PathLike] | Mapping[str, Iterable[str | os.PathLike]] = (),
                 what: str = "results", write: bool = True) -> None:
    """Refuse to reuse `out` for results of other inputs, then record `inputs` in OUT/inputs.json (`write=False`:
    check only).

    `inputs` maps a name ("data", "model", "teacher", "model <source>", …) to that input's identity: a data set's
    `mcqa.identity` ({"source", "questions": {id: content hash}}), a model's `llm.fingerprint`, a file's digest.
    `holds`: the result files (globs relative to `out`) made from the inputs — one list for all, or a list per
    name (a matrix run's pairs of one answerer). An input whose identity changed while files made from it exist
    is an error naming the input and what changed (question ids, model files); with none of them present the new
    identity is recorded (a run that failed before producing anything never blocks the corrected command).
    Names recorded earlier and absent from `inputs` are kept (a matrix re-run may name fewer models).
    """
    out = Path(out)
    path = out / "inputs.json"
    inputs = to_json(dict(inputs))
    old = read_json(path) or {}
    if not isinstance(old, dict):
        raise StoreError(f"{path}: not an inputs record (a JSON object expected); delete it to recompute")
    problems = []
    for name, identity in inputs.items():
        # in order: a data set's questions reordered is a change (batches and splits follow the order)
        if name not in old or json.dumps(old[name]) == json.dumps(identity):
            continue
        made = _holds(out, holds.get(name, ()) if isinstance(holds, Mapping) else holds)
        if made:
            problems.append(f"{name}: {describe_change(old[name], identity)} (made from it: "
                            f"{', '.join(made[:3])}{', …' if len(made) > 3 else ''})")
    if problems:
        raise ResumeError(f"{out} holds {what} made from other inputs — " + "; ".join(problems)
                          + ". Use another --out, or delete those files to recompute")
    if write:
        write_json(path, old | inputs)


def _ids(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def question_changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """Which question ids of an {id: content hash} map changed, are new or are gone (or the order changed)."""
    changed = [i for i in new if i in old and old[i] != new[i]]
    added = [i for i in new if i not in old]
    gone = [i for i in old if i not in new]
    parts = []
    if changed:
        parts.append(f"{len(changed)} of {len(new)} questions changed (text, options or answer): {_ids(changed)}")
    if added:
        parts.append(f"{len(added)} new: {_ids(added)}")
    if gone:
        parts.append(f"{len(gone)} gone: {_ids(gone)}")
    if not parts and list(old) != list(new):
        parts.append("the same questions in another order")
    return "; ".join(parts) or "no question changed"


def describe_change(old: Any, new: Any) -> str:
    """A short account of how an input's identity changed: question ids for data sets, files and values else."""
    if isinstance(old, dict) and isinstance(new, dict) and isinstance(old.get("questions"), dict) \
            and isinstance(new.get("questions"), dict):
        rest = _diff({k: v for k, v in old.items() if k != "questions"},
                     {k: v for k, v in new.items() if k != "questions"})
        same = list(old["questions"].items()) == list(new["questions"].items())
        text = "" if same else question_changes(old["questions"], new["questions"])
        return "; ".join(x for x in (text, ", ".join(f"{k}: {a} → {b}" for k, (a, b) in rest.items())) if x)
    changes = _diff(old, new)
    return ", ".join(f"{k or 'identity'}: {a} → {b}" for k, (a, b) in changes.items())


def check_batches(path: str | os.PathLike, rows: list[dict], expected: list[tuple[str, str]], batch_size: int, *,
                  content: str = "its question") -> None:
    """The rows of a batch store (`JsonlStore.complete_batches`) against the inputs they must have been made from:
    batch b holds exactly the ids and "content" hashes of `expected[b * batch_size: (b + 1) * batch_size]`
    ((id, content) pairs in input order). Rows are matched by id and content, not by position alone; anything
    else is a `ResumeError` naming the file and the ids (`content` words what a row's content covers)."""
    want = dict(expected)
    position = {i: k for k, (i, _) in enumerate(expected)}
    batches: dict[int, list[dict]] = {}
    for r in rows:
        batches.setdefault(r["batch"], []).append(r)
    changed, foreign, moved, missing = [], [], [], []
    for b, group in batches.items():
        have = {r["id"] for r in group}
        for r in group:
            i = r["id"]
            if i not in want:
                foreign.append(i)
            elif r.get("content") != want[i]:
                changed.append(i)
            elif position[i] // batch_size != b:
                moved.append(i)
        missing += [i for i, _ in expected[b * batch_size: (b + 1) * batch_size] if i not in have]
    if not (changed or foreign or moved or missing):
        return
    parts = []
    if changed:
        parts.append(f"{len(changed)} rows whose content differs ({content} changed, or rows of an older version "
                     f"without content keys): {_ids(changed)}")
    if foreign:
        parts.append(f"{len(foreign)} rows of questions no longer in the data: {_ids(foreign)}")
    if moved:
        parts.append(f"{len(moved)} rows of questions now at other positions: {_ids(moved)}")
    if missing:
        parts.append(f"finished batches lack {len(missing)} questions of the data: {_ids(missing)}")
    raise ResumeError(f"{path} holds results of other inputs — " + "; ".join(parts)
                      + ". Use another --out, or delete the file to recompute")


def _diff(old: Any, new: Any, prefix: str = "") -> dict:
    if isinstance(old, dict) and isinstance(new, dict):
        out = {}
        for k in sorted(set(old) | set(new), key=str):
            out |= _diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return {} if old == new else {prefix.rstrip("."): (old, new)}


# ------------------------------------------------------------------------------------------------ file names
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, *, max_chars: int = 48) -> str:
    """A file name for a user string (a model path, a hub id, a thinker name): its last `max_chars` safe
    characters, then "-" and 8 hex digits of the SHA-256 of the whole string, so two strings never share a
    name even when their sanitised tails agree (two paths ending in the same directory names), and the same
    string always gets the same name."""
    if not text:
        raise ValueError("a file name needs a non-empty string")
    readable = _UNSAFE.sub("_", text.strip().strip("/")).strip("._") or "x"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{readable[-max_chars:].lstrip('._-') or 'x'}-{digest}"


# ------------------------------------------------------------------------------------------------ JSONL store
@dataclasses.dataclass
class _Line:
    number: int  # 1-based line number
    offset: int  # byte offset of the line's start
    row: dict


class JsonlStore:
    """An append-only JSONL file of JSON objects (the store rules are in the module docstring).

    `required` are the fields every row must have (a row without them is foreign: an error naming the file and
    line). A store opened with `writable=True` repairs a torn tail on its first read and may `append`; a
    read-only store never modifies the file (`ignored_tail` is then the byte offset of the torn line or short
    last batch it skipped, else None: a caller holding the file's lock may open it writable to cut it).
    """

    def __init__(self, path: str | os.PathLike, *, required: Iterable[str] = (), writable: bool = False):
        self.path = Path(path)
        self.required = tuple(required)
        self.writable = writable
        self.ignored_tail: int | None = None
        self._lines: list[_Line] | None = None

    # ---------------------------------------------------------------- reading
    def _read(self) -> list[_Line]:
        if self._lines is not None:
            return self._lines
        lines: list[_Line] = []
        if not self.path.exists():
            self._lines = lines
            return lines
        data = self.path.read_bytes()
        parts = data.split(b"\n")
        last = max((i for i, raw in enumerate(parts) if raw.strip()), default=-1)  # the last non-blank line
        offset, cut = 0, None
        for i, raw in enumerate(parts):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                if i >= last:  # the line a crash or a full disk cut short
                    cut = start
                    break
                raise StoreError(f"{self.path}:{i + 1}: not a JSON line ({e}); the file was not written by "
                                 "this store (or was edited): move it away to recompute") from None
            if not isinstance(row, dict):
                raise StoreError(f"{self.path}:{i + 1}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in self.required if k not in row]
            if missing:
                raise StoreError(f"{self.path}:{i + 1}: a row without {missing}: not a row of this store")
            lines.append(_Line(i + 1, start, row))
        if cut is not None:
            self._cut(cut, f"a torn last line (line {len(data[:cut].splitlines()) + 1}, {len(data) - cut} bytes: "
                      "a run killed while writing)")
        elif data and not data.endswith(b"\n") and self.writable:
            with self.path.open("ab") as f:  # a whole row whose newline was lost: the next append needs one
                f.write(b"\n")
        self._lines = lines
        return lines

    def _cut(self, offset: int, why: str) -> None:
        if self.writable:
            log.warning("%s: %s; truncated it away", self.path, why)
            with self.path.open("r+b") as f:
                f.truncate(offset)
                f.flush()
                os.fsync(f.fileno())
        else:
            log.warning("%s: %s; ignored (read-only)", self.path, why)
            self.ignored_tail = offset if self.ignored_tail is None else min(offset, self.ignored_tail)

    def rows(self) -> list[dict]:
        """Every row, in file order."""
        return [ln.row for ln in self._read()]

    def keyed(self, key: Mapping, *, id_field: str = "id", content: Mapping[str, str] | None = None) -> dict[str, dict]:
        """{id: row} of the rows whose "key" equals `key` (rows of other settings stay in the file, untouched);
        a later row of the same id wins. With `content` ({id: content hash}), only rows whose "content" is the
        current one of their id count: a row made from an older version of the question is never reused."""
        key = to_json(key)
        return {ln.row[id_field]: ln.row for ln in self._read() if ln.row.get("key") == key
                and (content is None or ln.row.get("content") == content.get(ln.row[id_field], ln))}

    def keep_rows(self, n: int) -> None:
        """Cut the file after its first `n` rows (a resumed run redoes what came after); writable stores only."""
        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only")
        lines = self._read()
        if n >= len(lines):
            return
        with self.path.open("r+b") as f:
            f.truncate(lines[n].offset)
            f.flush()
            os.fsync(f.fileno())
        self._lines = lines[:n]

    def complete_batches(self) -> list[dict]:
        """The rows of a batch store ("batch", "batch_rows" in every row), batch by batch in index order.

        The last batch of the file, when short of its "batch_rows", is cut away (writable) or ignored
        (read-only), with a note; an incomplete batch followed by others, or a batch index written twice, is an
        error naming the file and line.
        """
        lines = self._read()
        groups: list[list[_Line]] = []
        for ln in lines:
            for k in ("batch", "batch_rows"):
                if k not in ln.row:
                    raise StoreError(f"{self.path}:{ln.number}: a row without {k!r}: not a row of a batch store")
            last = groups[-1] if groups else None
            if last and last[0].row["batch"] == ln.row["batch"] and len(last) < last[0].row["batch_rows"]:
                last.append(ln)
            else:
                groups.append([ln])
        seen: dict[int, int] = {}
        for g in groups:
            b, first = g[0].row["batch"], g[0].number
            if b in seen:
                raise StoreError(f"{self.path}:{first}: batch {b} was already written at line {seen[b]} (two runs "
                                 "wrote this file?)")
            seen[b] = first
        if groups and len(groups[-1]) != groups[-1][0].row["batch_rows"]:
            g = groups.pop()
            self._cut(g[0].offset, f"batch {g[0].row['batch']} has {len(g)} of its {g[0].row['batch_rows']} rows "
                      f"(from line {g[0].number}: a run killed mid-batch)")
            self._lines = [ln for ln in lines if ln.offset < g[0].offset]
        for g in groups:
            if len(g) != g[0].row["batch_rows"]:
                raise StoreError(f"{self.path}:{g[0].number}: batch {g[0].row['batch']} has {len(g)} rows, not "
                                 f"{g[0].row['batch_rows']}, and later batches follow it")
        return [ln.row for g in sorted(groups, key=lambda g: g[0].row["batch"]) for ln in g]

    # ---------------------------------------------------------------- writing
    def append(self, rows: Iterable[Mapping]) -> None:
        """Append rows with one write, then flush and fsync: after this call the whole batch is on disk."""
        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only")
        lines = self._read()
        rows = [to_json(r) for r in rows]
        for r in rows:
            missing = [k for k in self.required if k not in r]
            if missing:
                raise StoreError(f"{self.path}: refusing to append a row without {missing}")
        if not rows:
            return
        payload = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            offset = f.tell()
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        for r in rows:
            lines.append(_Line(lines[-1].number + 1 if lines else 1, offset, r))
            offset += len(json.dumps(r, allow_nan=False).encode("utf-8")) + 1


# ------------------------------------------------------------------------------------------------ run lock
class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunLock:
    """One process at a time per run directory: DIR/.lock holds the holder's pid, host and start time.

    A second live process is refused at once (`RunLockedError` naming the holder). A lock left by a dead
    process on this host is taken over with a note on the `entropy_jax.stores` logger; a lock from another
    host cannot be checked and is refused, with the command to remove it if that run is gone. Use as a context
    manager; the lock file is removed on exit. `name` holds one file of a shared directory instead (a cache
    that several runs extend: `RunLock(cache.parent, name=cache.name + ".lock")`).
    """

    FILE = ".lock"

    def __init__(self, directory: str | os.PathLike, *, name: str = FILE):
        self.directory = Path(directory)
        self.path = self.directory / name
        self.held = False

    def acquire(self) -> RunLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:  # unreadable or being written this very moment: look again
                    time.sleep(0.05)
                    holder = self._holder()
                where = f"{self.directory} ({self.path.name})"
                if holder is not None and holder.get("host") != me["host"]:
                    raise RunLockedError(
                        f"{where} is held by pid {holder.get('pid')} on host {holder.get('host')} "
                        f"(since {holder.get('since')}); if that run is gone, remove {self.path}") from None
                pid = int(holder["pid"]) if holder and str(holder.get("pid", "")).isdigit() else None
                if pid is not None and _alive(pid):
                    who = "this process" if pid == me["pid"] else f"pid {pid}"
                    raise RunLockedError(f"{where} is in use by {who} on this host (since {holder.get('since')}); "
                                         "wait for it to finish or use another --out") from None
                log.warning("%s: taking over the lock of %s, which is no longer running",
                            self.directory, f"pid {pid}" if pid is not None else "an unreadable holder")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return self
        raise RunLockedError(f"{self.directory}: could not take the lock {self.path}")

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
