"""Shared plumbing of the benchmarks: the machine description and the shared results file.

`bench/RESULTS.md` holds one `## ` section per benchmark; each script replaces only its own.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Numbers written by the scripts in `bench/`, one `## ` section per benchmark; each script\n"
    "replaces only its own section when it is re-run.\n"
)


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram": ram,
            "python": platform.python_version(), "platform": platform.platform()}


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Replaces the `## heading` section of the shared results file with `text` (or appends it).

    The section ends at the next level-2 heading outside a code fence; other benchmarks'
    sections are left byte-for-byte as they are.
    """
    if not path.exists():
        path.write_text(RESULTS_HEADER)
    lines = path.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
    if start is None:
        body = "".join(lines).rstrip("\n") + "\n\n" + text
    else:
        end, fenced = len(lines), False
        for i in range(start + 1, len(lines)):
            if lines[i].startswith("```"):
                fenced = not fenced
            elif not fenced and lines[i].startswith("## "):
                end = i
                break
        tail = "".join(lines[end:])
        body = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    path.write_text(body)


def fmt_load(avg: tuple) -> str:
    """A 1/5/15-minute load-average triple as "a/b/c"."""
    return "/".join(f"{x:.2f}" for x in avg)


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def fmt_met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch with `n` intra-op threads for the duration (None: leave the default)."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
