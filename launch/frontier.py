"""Chapter 4: the accuracy–token frontier of a sweep of fine-tuning runs.

Command:

    python -m launch.frontier --sweep results/finetune

Runtime: seconds (reads the runs' summary.json files; no model). Every subdirectory of --sweep holding a
`summary.json` written by `launch.finetune` is one run (or pass --runs DIR DIR ...). The plot is
`entropy_jax.train.frontier.run`: for each run, held-out accuracy after every epoch against the cumulative
loss-bearing tokens (the supervised target tokens, the paper's "processed tokens"; `--x tokens` uses every
token through the model instead), from the untrained student at 0 tokens. Writes SWEEP/frontier.png,
frontier.json and frontier.md (also printed), holding SWEEP/.frontier.lock meanwhile. Every flag is checked
before anything is read ("error: --flag: …", exit 1); an unreadable or foreign summary.json is an error naming
the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from entropy_jax.train import frontier

from . import command


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


def main(config: Config) -> dict:
    result = frontier.run(config.sweep, runs=config.runs, x=config.x, out=config.out, title=config.title)
    if config.progress:
        print(frontier.markdown(result))
    return result


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.frontier` in a checkout; installed: `entropy-jax-frontier`)."""
    command(Config, main, __doc__, args)


if __name__ == "__main__":
    cli()
