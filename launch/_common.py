"""Small helpers shared by launch scripts: JSON I/O and resumable partial results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax
import numpy as np


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, tuples lists, NumPy scalars Python numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)  # atomic: an interrupted run never leaves half a file


def read_json(path: Path) -> Any | None:
    return json.loads(path.read_text()) if path.exists() else None


class Partial:
    """Rows of a long run saved as they finish; reused when the settings are the same."""

    def __init__(self, path: Path, settings: dict, *, resume: bool = True):
        self.path, self.settings = path, _clean(settings)
        old = read_json(path) if resume else None
        self.rows: dict[str, Any] = old["rows"] if old and old.get("settings") == self.settings else {}

    def get(self, key) -> Any | None:
        return self.rows.get(str(key))

    def put(self, key, row) -> None:
        self.rows[str(key)] = _clean(row)
        write_json(self.path, {"settings": self.settings, "rows": self.rows})

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def data_mesh() -> jax.sharding.Mesh | None:
    """A 1-D ("data",) mesh over every device of the default backend, or None for one device."""
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.array(devices), ("data",))


def read_batches(path: Path) -> list[dict]:
    """Rows of a batch-wise JSONL file whose batches are complete.

    Each row carries "batch" (its batch index) and "batch_rows" (how many rows that batch has); a batch cut
    short by a kill, or a half-written last line, is dropped, so a resumed run redoes exactly that batch
    with the same composition (and therefore the same padded shapes and numbers).
    """
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # the last line of a killed run
    by_batch: dict[int, list[dict]] = {}
    for r in rows:
        by_batch.setdefault(r["batch"], []).append(r)
    return [r for b in sorted(by_batch) for r in by_batch[b] if len(by_batch[b]) == r["batch_rows"]]


def append_batch(f, rows: list[dict]) -> None:
    """Append one batch of rows and force it to disk, so a kill after this call keeps the whole batch."""
    import os

    for r in rows:
        f.write(json.dumps(_clean(r)) + "\n")
    f.flush()
    os.fsync(f.fileno())
