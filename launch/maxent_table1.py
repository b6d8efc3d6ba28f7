"""Chapter 1, Table 1: Bayes risk of categorical estimators under the ordered-mixture prior.

Command (the paper's size, 10² prior draws × 10² samples per M):

    python -m launch.maxent_table1 --priors 100 --samples 100 --seed 0 --out results/maxent

Runtime on 2 CPU cores: about 6 s (one XLA compilation for all eight M, then ~0.1 s per M);
10⁴ × 10³ takes a few minutes (see bench/RESULTS.md). Interrupted runs resume from
DIR/table1.partial.json when called again with the same settings.

Expected result (n = 60, z_k = k, α0 = 0.3, ε = 1.1): every risk within 0.003 of the published
Table 1 except shrunk MaxEnt at M = 3 (0.130 vs 0.140, where the ξ-curve is flat and the
published ξ_opt = 0.50 is not reproduced; we find ≈ 0.38); baseline 0.212 (exact 0.2116).

Writes DIR/table1.json, DIR/table1.md, DIR/risk_vs_M.png and DIR/xi_curves.png. Every flag is
checked before DIR is created ("--flag: what is wrong (got X)").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax

from entropy_jax import _validate as check
from entropy_jax import configs, plots
from entropy_jax.estimators import study
from entropy_jax.estimators.report import table1_markdown as markdown
from entropy_jax.runtime import data_mesh
from entropy_jax.stores import Partial, RunLock, write_json

from . import command


@dataclasses.dataclass(frozen=True)
class Config:
    priors: int = 100
    """Prior draws q ~ ½Dir(a) + ½Dir(reversed a)."""
    samples: int = 100
    """Multinomial samples per prior draw."""
    seed: int = 0
    out: Path = configs.runtime(Path("results/maxent"))
    ms: tuple[int, ...] = study.TABLE1_MS
    """Sample lengths M, one row each."""
    n: int = 60
    alpha0: float = 0.3
    eps: float = 1.1
    resume: bool = configs.runtime(True)
    """Reuse rows of an interrupted run with the same settings."""
    progress: bool = configs.runtime(True)


def run_settings(config: Config) -> dict:
    """The settings that determine the numbers (a saved partial run is reused only if equal)."""
    return configs.settings(config)


def check_config(config: Config) -> None:
    """Every flag, before any work. Raises `ConfigError` naming the flag."""
    check.flag_int("priors", config.priors, lo=1)
    check.flag_int("samples", config.samples, lo=1)
    check.flag_int("seed", config.seed, 0, check.MAX_SEED)
    check.flag_ints("ms", config.ms, lo=1)
    check.flag_int("n", config.n, lo=2)
    check.flag_float("alpha0", config.alpha0, 0.0, lo_open=True)
    check.flag_float("eps", config.eps, 0.0)
    check.flag_out_dir("out", config.out)


def main(config: Config) -> dict:
    """Computes Table 1 and writes its JSON, Markdown and figures; returns the table dict.

    Flags are checked first (`ConfigError` naming the flag); DIR is created only after.
    """
    check_config(config)
    out = Path(config.out).expanduser()
    check.flag_resume_file(out / "table1.partial.json", config.resume)
    with RunLock(out):  # one process at a time in DIR (DIR/.lock); creates DIR
        partial = Partial(out / "table1.partial.json", run_settings(config), resume=config.resume)
        done = {m: partial.get(m) for m in config.ms if partial.get(m) is not None}
        with jax.enable_x64(True):
            table = study.table1(
                n_priors=config.priors,
                n_samples=config.samples,
                seed=config.seed,
                ms=config.ms,
                n=config.n,
                alpha0=config.alpha0,
                eps=config.eps,
                done=done,
                on_row=lambda row: partial.put(row["M"], row),
                mesh=data_mesh(),
                progress=config.progress,
            )
        write_json(out / "table1.json", table)
        (out / "table1.md").write_text(markdown(table))
        plt = plots.pyplot()
        default_prior = (config.n, config.alpha0, config.eps) == (60, 0.3, 1.1)
        fig = plots.risk_vs_m(table, published=study.PUBLISHED_TABLE1 if default_prior else None,
                              path=out / "risk_vs_M.png")
        plt.close(fig)
        curves = [
            {"M": r["M"], "xi": table["xi_grid"], "risk": r["xi_risk"], "xi_opt": r["xi_opt"],
             "baseline": table["baseline_exact"]}
            for r in table["rows"] if r.get("xi_risk") is not None
        ]
        plt.close(plots.xi_curves(curves, path=out / "xi_curves.png"))
        partial.finish()
        return table


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.maxent_table1` in a checkout; installed: `entropy-jax-maxent-table1`)."""
    command(Config, main, __doc__, args, report=lambda cfg, res: print(
        f"{markdown(res)}\nwrote {cfg.out}/table1.json, table1.md, risk_vs_M.png, xi_curves.png"))


if __name__ == "__main__":
    cli()
