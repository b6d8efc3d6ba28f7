"""Chapter 4: the accuracy–token frontier of a sweep of fine-tuning runs.

Command:

    python -m launch.frontier --sweep results/finetune

Runtime: seconds (reads the runs' summary.json files; no model). Every subdirectory of --sweep holding a
`summary.json` written by `launch.finetune` is one run (or pass --runs DIR DIR ...). For each run it plots
held-out accuracy after every epoch against the cumulative loss-bearing tokens (the supervised target
tokens, the paper's "processed tokens"; `--x tokens` uses every token through the model instead), from
the untrained student at 0 tokens. Writes SWEEP/frontier.png, frontier.json and frontier.md (also printed).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import tyro

from launch._common import write_json

X_AXES = {"loss_tokens": ("cumulative_loss_tokens", "loss-bearing (supervised) tokens"),
          "tokens": ("cumulative_tokens", "tokens through the model")}


@dataclasses.dataclass(frozen=True)
class Config:
    sweep: Path = Path("results/finetune")
    """Directory whose subdirectories are runs of launch.finetune."""
    runs: tuple[Path, ...] = ()
    """Explicit run directories (instead of scanning --sweep)."""
    x: str = "loss_tokens"
    """loss_tokens (supervised target tokens) or tokens (every token through the model)."""
    out: Path | None = None
    """Where the figure and tables go (default: --sweep)."""
    title: str | None = None
    progress: bool = True


def load_runs(config: Config) -> list[dict]:
    dirs = list(config.runs) or sorted(p.parent for p in Path(config.sweep).glob("*/summary.json"))
    runs = []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.exists():
            raise FileNotFoundError(f"{d} has no summary.json (not a finished launch.finetune run?)")
        runs.append(json.loads(path.read_text()) | {"directory": str(d)})
    if not runs:
        raise FileNotFoundError(f"no launch.finetune runs (*/summary.json) under {config.sweep}")
    return runs


def curve(run: dict, x: str) -> list[dict]:
    """[(tokens, accuracy, epoch)] from the untrained student (epoch 0) through every evaluated epoch."""
    key = X_AXES[x][0]
    points = [{"epoch": 0, "tokens": 0, "accuracy": run["base_eval"]["accuracy"]}]
    for h in run["history"]:
        if "eval" in h:
            points.append({"epoch": h["epoch"] + 1, "tokens": h[key], "accuracy": h["eval"]["accuracy"]})
    return points


def main(config: Config) -> dict:
    import matplotlib.pyplot as plt

    from entropy_jax import plots

    if config.x not in X_AXES:
        raise ValueError(f"--x must be one of {sorted(X_AXES)}, got {config.x!r}")
    runs = load_runs(config)
    out = Path(config.out or config.sweep)
    curves = {f"{r['settings']['policy']}": curve(r, config.x) for r in runs}
    title = config.title or f"{runs[0]['settings']['student']} on {runs[0]['settings']['train']}"
    fig = plots.frontier(curves, xlabel=X_AXES[config.x][1], title=title, path=out / "frontier.png")
    plt.close(fig)
    result = {"x": config.x, "runs": [{"policy": r["settings"]["policy"], "directory": r["directory"],
                                       "points": curves[r["settings"]["policy"]],
                                       "teacher_tokens_generated": (r.get("final") or {}).get("teacher_tokens_generated"),
                                       "plan": r["plan"]} for r in runs]}
    write_json(out / "frontier.json", result)
    md = markdown(result)
    (out / "frontier.md").write_text(md)
    if config.progress:
        print(md)
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


if __name__ == "__main__":
    main(tyro.cli(Config, description=__doc__.split("\n\n")[0]))
