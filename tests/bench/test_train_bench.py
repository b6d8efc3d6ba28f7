"""bench/train_bench.py: the GPU section's code path (`--gpu-smoke`: tiny random model, any backend), which a
CPU-only machine never runs otherwise, and that it never writes bench/RESULTS.md."""

from __future__ import annotations

from bench import train_bench


def test_gpu_smoke_runs_the_train_step_mfu_path_and_never_writes(monkeypatch, capsys):
    def no_write(*a, **k):
        raise AssertionError("--gpu-smoke must not write bench/RESULTS.md")

    monkeypatch.setattr(train_bench, "write_section", no_write)
    assert train_bench.main(["--gpu-smoke"]) == 0
    out = capsys.readouterr().out
    assert "train step 2×64 (K = 32), bf16 compute" in out
    assert "Trace counts: {'train_step': 1}" in out  # one compilation for the warm-up and the timed steps
    assert "Train-step MFU ≥ 40%" in out and "not written" in out
