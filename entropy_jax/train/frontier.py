"""The accuracy–token frontier of a sweep of fine-tuning runs (Chapter 4).

    from entropy_jax.train import frontier
    result = frontier.run("results/finetune")      # every */summary.json below it is one run
    print(frontier.markdown(result))

For each run: held-out accuracy after every epoch against the cumulative loss-bearing tokens (the supervised
target tokens, the paper's "processed tokens"; `x="tokens"`: every token through the model), from the untrained
student at 0 tokens. Writes OUT/frontier.png, frontier.json and frontier.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from entropy_jax import _validate as check
from entropy_jax.stores import RunLock, StoreError, write_json

X_AXES = {"loss_tokens": ("cumulative_loss_tokens", "loss-bearing (supervised) tokens"),
          "tokens": ("cumulative_tokens", "tokens through the model")}


SUMMARY_KEYS = ("settings", "base_eval", "history", "plan")


def check_args(sweep: str | Path, runs: Sequence[str | Path] = (), x: str = "loss_tokens",
               out: str | Path | None = None) -> None:
    """The frontier's arguments, before anything is read or written: a `ConfigError` naming the flag."""
    check.flag_choice("x", x, tuple(X_AXES))
    if runs:
        for d in runs:
            if not Path(d).is_dir():
                raise check.flag_error("runs", "every run must be an existing directory", str(d))
    elif not Path(sweep).is_dir():
        raise check.flag_error("sweep", "no such directory", str(sweep))
    check.flag_out_dir("out", out if out is not None else sweep)


def load_runs(sweep: str | Path, runs: Sequence[str | Path] = ()) -> list[dict]:
    """The summaries of the runs: `runs` (directories), or every subdirectory of `sweep` with a summary.json. A
    summary that is unreadable (cut short, not UTF-8) or lacks the fields of a launch.finetune summary is an
    error naming the file."""
    dirs = list(runs) or sorted(p.parent for p in Path(sweep).glob("*/summary.json"))
    out = []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.exists():
            raise FileNotFoundError(f"{d} has no summary.json (not a finished launch.finetune run?)")
        try:
            summary = check.read_json(path)
        except ValueError as e:
            raise StoreError(f"{path}: not a readable summary ({e}); rerun that run or leave it out") from None
        missing = [k for k in SUMMARY_KEYS if not isinstance(summary, dict) or k not in summary]
        if missing:
            raise StoreError(f"{path}: not a launch.finetune summary (no {', '.join(missing)}); rerun that run or "
                             "leave it out")
        out.append(summary | {"directory": str(d)})
    if not out:
        raise FileNotFoundError(f"no launch.finetune runs (*/summary.json) under {sweep}")
    return out


def curve(run: dict, x: str) -> list[dict]:
    """[(tokens, accuracy, epoch)] from the untrained student (epoch 0) through every evaluated epoch."""
    key = X_AXES[x][0]
    points = [{"epoch": 0, "tokens": 0, "accuracy": run["base_eval"]["accuracy"]}]
    for h in run["history"]:
        if "eval" in h:
            points.append({"epoch": h["epoch"] + 1, "tokens": h[key], "accuracy": h["eval"]["accuracy"]})
    return points


def run(sweep: str | Path, *, runs: Sequence[str | Path] = (), x: str = "loss_tokens", out: str | Path | None = None,
        title: str | None = None) -> dict:
    """The frontier of the runs (`load_runs`) written to OUT (default: `sweep`); returns its JSON."""
    import matplotlib.pyplot as plt

    from entropy_jax import plots

    check_args(sweep, runs, x, out)
    summaries = load_runs(sweep, runs)
    out = Path(out or sweep)
    curves = {f"{r['settings']['policy']}": curve(r, x) for r in summaries}
    first = summaries[0]["settings"]
    title = title or f"{first['student']} on {first['train_data']}"
    with RunLock(out, name=".frontier.lock"):
        plt.close(plots.frontier(curves, xlabel=X_AXES[x][1], title=title, path=out / "frontier.png"))
        result = {"x": x, "runs": [{"policy": r["settings"]["policy"], "directory": r["directory"],
                                    "points": curves[r["settings"]["policy"]],
                                    "teacher_tokens_generated": (r.get("final") or {}).get("teacher_tokens_generated"),
                                    "plan": r["plan"]} for r in summaries]}
        write_json(out / "frontier.json", result)
        (out / "frontier.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    lines = [("| policy | answer / CoT examples | accuracy by epoch (0 = before training) | "
              f"{X_AXES[result['x']][1]} at the end | accuracy per 1k tokens gained |"), "|---|---|---|---:|---:|"]
    for r in result["runs"]:
        pts = r["points"]
        accs = " → ".join(f"{p['accuracy']:.3f}" for p in pts)
        gain = (pts[-1]["accuracy"] - pts[0]["accuracy"]) / max(pts[-1]["tokens"], 1) * 1000
        lines.append(f"| {r['policy']} | {r['plan']['answer']} / {r['plan']['cot']} | {accs} | "
                     f"{pts[-1]['tokens']:,} | {gain:+.4f} |")
    return "\n".join(lines) + "\n"
