"""Chapter 1, the regimes around Table 1: when first-moment MaxEnt is worse than ignoring data.

Command:

    python -m launch.maxent_regimes --priors 200 --samples 100 --out results/maxent

Runtime on 2 CPU cores: about 1.5 minutes for all three regimes (--regime picks one).

(a) near_uniform: symmetric Dir(α) worlds. Expected: MaxEnt/baseline > 1 for α ≳ 0.3 at M = 3,
    growing with α (≈ 50× at α = 100, M = 3); ML, Bayes and shrunk MaxEnt stay ≤ 1.
(b) encodings: the Table 1 prior with z = k, ln k, k³, e^{k/4} or a random permutation of k.
    Expected: Bayes and ML unchanged (they ignore z); MaxEnt worse than the baseline 0.212 for
    the permuted encoding at every M ≤ 35 and for k³ and e^{k/4} at M = 3.
(c) moments: first- vs first+second-moment MaxEnt. Expected: the second constraint hurts under
    the ordered prior (noise) and helps under the bump/valley prior once M ≳ 15.

Writes DIR/regimes.json, DIR/near_uniform.png, DIR/encodings.png, DIR/second_moment.png. Every
flag is checked before DIR is created ("--flag: what is wrong (got X)").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import jax

from entropy_jax import _validate as check
from entropy_jax import configs, plots
from entropy_jax.estimators import study
from entropy_jax.estimators.report import regimes_markdown as markdown
from entropy_jax.runtime import data_mesh
from entropy_jax.stores import Partial, RunLock, write_json

from . import command

REGIMES = ("near_uniform", "encodings", "moments")


@dataclasses.dataclass(frozen=True)
class Config:
    regime: Literal["all", "near_uniform", "encodings", "moments"] = configs.runtime("all")
    """Which regimes to run (a choice of results, not a setting of them: one partial file serves all)."""
    priors: int = 200
    """Prior draws per point."""
    samples: int = 100
    """Multinomial samples per prior draw."""
    seed: int = 0
    out: Path = configs.runtime(Path("results/maxent"))
    ms: tuple[int, ...] = study.REGIME_MS
    alphas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    """Symmetric-Dirichlet concentrations for the near-uniform regime."""
    encodings: tuple[str, ...] = study.ENCODINGS
    """Encodings z for the encodings regime: linear, log, cubic, exp, permuted."""
    resume: bool = configs.runtime(True)
    progress: bool = configs.runtime(True)


def check_config(config: Config) -> None:
    """Every flag, before any work. Raises `ConfigError` naming the flag."""
    check.flag_choice("regime", config.regime, ("all", *REGIMES))
    check.flag_int("priors", config.priors, lo=1)
    check.flag_int("samples", config.samples, lo=1)
    check.flag_int("seed", config.seed, 0, check.MAX_SEED)
    check.flag_ints("ms", config.ms, lo=1)
    check.flag_floats("alphas", config.alphas, 0.0, lo_open=True)
    check.flag_choices("encodings", config.encodings, study.ENCODINGS)
    check.flag_out_dir("out", config.out)


def _previous_results(path: Path) -> dict:
    """regimes.json of an earlier run (its other regimes are kept); a damaged one is named."""
    if not path.exists():
        return {}
    results = check.flag_json_file("out", path, "Delete the file or choose another --out.")
    if not isinstance(results, dict):
        raise check.ConfigError(f"--out: {path} is not a regimes.json (a JSON object expected). "
                                "Delete the file or choose another --out.")
    return results


def main(config: Config) -> dict:
    """Runs the chosen regimes; returns {regime: result} and writes JSON + figures.

    Flags are checked first (`ConfigError` naming the flag); DIR is created only after.
    """
    check_config(config)
    out = Path(config.out).expanduser()
    check.flag_resume_file(out / "regimes.partial.json", config.resume)
    results = _previous_results(out / "regimes.json")
    with RunLock(out):  # one process at a time in DIR (DIR/.lock); creates DIR
        chosen = REGIMES if config.regime == "all" else (config.regime,)
        settings = configs.settings(config)
        partial = Partial(out / "regimes.partial.json", settings, resume=config.resume)
        common = dict(ms=config.ms, n_priors=config.priors, n_samples=config.samples, seed=config.seed,
                      done=partial.rows, on_point=partial.put, mesh=data_mesh(), progress=config.progress)
        plt = plots.pyplot()
        with jax.enable_x64(True):
            if "near_uniform" in chosen:
                results["near_uniform"] = study.near_uniform_regime(alphas=config.alphas, **common)
                plt.close(plots.near_uniform_regime(results["near_uniform"], path=out / "near_uniform.png"))
            if "encodings" in chosen:
                results["encodings"] = study.encoding_regime(kinds=config.encodings, **common)
                plt.close(plots.encoding_regime(results["encodings"], path=out / "encodings.png"))
            if "moments" in chosen:
                results["moments"] = study.second_moment_regime(**common)
                plt.close(plots.second_moment_regime(results["moments"], path=out / "second_moment.png"))
        write_json(out / "regimes.json", results)
        partial.finish()
        return results


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.maxent_regimes` in a checkout; installed: `entropy-jax-maxent-regimes`)."""
    command(Config, main, __doc__, args,
            report=lambda cfg, res: print(f"{markdown(res)}\nwrote {cfg.out}/regimes.json and figures"))


if __name__ == "__main__":
    cli()
