"""lm-evaluation-harness: `--model entropy_jax` against lm-eval's own `--model hf` on the same GGUF.

Command:

    python -m bench.lm_eval_parity            # about 4 minutes on 2 CPU cores (each CLI run indexes
                                              # lm-eval's ~10k built-in task files first: ~30 s)

Builds a local multiple-choice task from the first `--questions` questions of data/mcqa_demo.jsonl
(lm-eval's MMLU prompt "{question}\\nA. …\\nD. …\\nAnswer:", choices " A" … " D", `dataset_path: json`, read
offline) and runs the real command lines, with `--log_samples`:

    lm-eval run --model hf --model_args pretrained=<dir of the GGUF>,gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf,dtype=float32
    python -m entropy_jax.eval.lm_eval run --model entropy_jax --model_args pretrained=smollm2-135m-instruct,dtype=float32

Compares accuracy and the per-item (question × option) log-likelihoods (the issue's check: same accuracy,
|Δ| ≤ 1e-3), reports the wall time of each whole CLI run (the reference is HF's, measured in the same run),
then reads our samples with `entropy_jax.eval.log_samples.read_log_samples` and computes the Chapter 3 error-detection
metrics of the answer-step entropy. Writes its section of bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import _results as shared

SECTION = "## lm-evaluation-harness backend — parity with lm-eval's HF backend (bench/lm_eval_parity.py)"
TASK = "mcqa_demo_mmlu"
DOC_TO_TEXT = ("{{question.strip()}}\\nA. {{options[0]}}\\nB. {{options[1]}}\\nC. {{options[2]}}\\n"
               "D. {{options[3]}}\\nAnswer:")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_task(root: Path, n: int) -> Path:
    rows = [json.loads(line) for line in (shared.REPO / "data" / "mcqa_demo.jsonl").read_text().splitlines()][:n]
    data = root / "questions.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / f"{TASK}.yaml").write_text(
        f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        f"  cache_dir: {root / 'hf_datasets'}\ntest_split: test\noutput_type: multiple_choice\n"
        f"doc_to_text: \"{DOC_TO_TEXT}\"\ndoc_to_choice: [\"A\", \"B\", \"C\", \"D\"]\ndoc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    return tasks


def run_cli(cmd: list[str], out: Path) -> float:
    log("$ " + " ".join(cmd))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=shared.REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    (out / "log.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}); tail of its log:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def lls(samples: list[dict]) -> np.ndarray:
    return np.array([[float(r[0]) for r in s["filtered_resps"]] for s in samples])


def samples_of(out: Path) -> list[dict]:
    (path,) = out.rglob(f"samples_{TASK}_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(args) -> dict:
    from entropy_jax.eval import metrics as M
    from entropy_jax.eval.log_samples import read_log_samples
    from entropy_jax.llm import embedded_gguf

    gguf = embedded_gguf()
    root = Path(tempfile.mkdtemp(prefix="lm_eval_parity-"))
    tasks = write_task(root, args.questions)
    common = ["--tasks", TASK, "--include_path", str(tasks), "--batch_size", str(args.batch), "--log_samples"]
    out = {"hf": root / "hf", "ours": root / "ours"}
    for d in out.values():
        d.mkdir()
    cmds = {
        "hf": [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
               f"pretrained={gguf.parent},gguf_file={gguf.name},dtype=float32", "--device", "cpu",
               "--output_path", str(out["hf"]), *common],
        "ours": [sys.executable, "-m", "entropy_jax.eval.lm_eval", "run", "--model", "entropy_jax", "--model_args",
                 "pretrained=smollm2-135m-instruct,dtype=float32", "--output_path", str(out["ours"]), *common],
    }
    seconds = {k: run_cli(cmds[k], out[k]) for k in ("hf", "ours")}
    s_hf, s_ours = samples_of(out["hf"]), samples_of(out["ours"])
    a, b = lls(s_ours), lls(s_hf)
    acc = {"hf": float(np.mean([s["acc"] for s in s_hf])), "ours": float(np.mean([s["acc"] for s in s_ours]))}
    rows = read_log_samples(out["ours"], task=TASK)
    correct = np.array([r["correct"] for r in rows])
    signals = {"entropy": np.array([r["entropy"] for r in rows]),
               "1 - max_prob": 1 - np.array([r["max_prob"] for r in rows])}
    report = M.error_detection_report(signals, correct, n_boot=1000)
    return {
        "questions": len(s_ours), "items": int(a.size), "accuracy": acc, "max_abs_ll": float(np.abs(a - b).max()),
        "mean_abs_ll": float(np.abs(a - b).mean()), "same_pred": int((a.argmax(1) == b.argmax(1)).sum()),
        "seconds": seconds,
        "commands": {k: "python " + " ".join(v[1:8]).replace(str(gguf.parent), "<dir of the GGUF>") for k, v in cmds.items()},
        "entropy": signals["entropy"], "report": report,
        "hf_rows_have_entropy": any(r["entropy"] is not None for r in read_log_samples(out["hf"], task=TASK)),
        "out": str(root),
    }


def report(m: dict, machine: dict) -> str:
    import jax

    ok = m["accuracy"]["ours"] == m["accuracy"]["hf"] and m["max_abs_ll"] <= 1e-3
    r = m["report"]
    lines = [
        SECTION, "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        (f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram']} RAM, {machine['platform']}; "
         f"jax {jax.__version__} backend `{jax.default_backend()}`, lm-eval 0.4.13 (HF backend on torch, CPU)"),
        "- Command: `python -m bench.lm_eval_parity`",
        (f"- Task: the first {m['questions']} questions of data/mcqa_demo.jsonl as a local lm-eval multiple-choice "
         "task (MMLU prompt, choices \" A\" … \" D\"); SmolLM2-135M-Instruct, the embedded Q4_1 GGUF dequantized "
         "to float32 by both."),
        (f"- Runs: `{m['commands']['hf']}` and `{m['commands']['ours']}`, both with `--tasks … --include_path … "
         "--batch_size 8 --log_samples --output_path …`."),
        "",
        "| backend | accuracy | whole CLI run (s) | ours ÷ this (time; < 1 = ours faster) |",
        "|---|---:|---:|---:|",
        (f"| lm-eval `--model hf` (reference) | {m['accuracy']['hf']:.3f} | {m['seconds']['hf']:.1f} | "
         f"{m['seconds']['ours'] / m['seconds']['hf']:.2f}× |"),
        f"| `--model entropy_jax` | {m['accuracy']['ours']:.3f} | {m['seconds']['ours']:.1f} | — |",
        "",
        (f"- Per-item log-likelihoods ({m['items']} = questions × 4 options): max |Δ| = **{m['max_abs_ll']:.1e}**, "
         f"mean |Δ| = {m['mean_abs_ll']:.1e}; same predicted option {m['same_pred']}/{m['questions']}. "
         f"Check (same accuracy, |Δ| ≤ 1e-3): {shared.fmt_met(ok)}."),
        ("- Wall times include each CLI's start-up (lm-eval indexes its built-in task files, ~30 s here), model "
         "load and, for ours, compilation; on a shared 2-core machine they are indicative only."),
        (f"- From our `--log_samples` file via `read_log_samples`: answer-step entropy {m['entropy'].min():.3f}–"
         f"{m['entropy'].max():.3f} nats (mean {m['entropy'].mean():.3f}); as an error detector ROC-AUC "
         f"{r['entropy']['roc_auc']:.3f} [{r['entropy']['roc_auc_ci'][0]:.3f}, {r['entropy']['roc_auc_ci'][1]:.3f}], "
         f"PRR {r['entropy']['prr']:.3f}, AURC {r['entropy']['aurc']:.3f} (1 − max_prob: ROC-AUC "
         f"{r['1 - max_prob']['roc_auc']:.3f}); n = {m['questions']}, so the intervals are wide. The HF run's "
         f"samples carry {'an' if m['hf_rows_have_entropy'] else 'no'} entropy (only option log-likelihoods)."),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = p.parse_args(argv)
    m = measure(args)
    text = report(m, shared.machine_info())
    print(text)
    if not args.no_write:
        shared.write_section(SECTION, text)
    return m


if __name__ == "__main__":
    main()
