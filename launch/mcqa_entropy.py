"""Chapter 3: next-token entropy at the answer step as an error signal for multiple-choice QA.

Command:

    python -m launch.mcqa_entropy --model smollm2-135m-instruct --data demo --out results/mcqa

Runtime on 2 CPU cores: about 1 minute for the 480 demo questions with SmolLM2-135M (model load 6–9 s,
compilation ≈ 5 s, then ~8 questions/s; bench/RESULTS.md); a resumed run scores only what is missing, and a
second run compiles less (the persistent compilation cache, `entropy_jax.runtime`: `$ENTROPY_JAX_CACHE/xla`,
off with ENTROPY_JAX_COMPILATION_CACHE=0).

The run is `entropy_jax.eval.mcqa_run.run`: it writes DIR/scores.jsonl (one line per question: id, the exact
rendered prompt, pred, answer, correct, entropy, option_probs, max_prob, margin, label_entropy, label_mass,
stratum, …), DIR/metrics.json (overall and per stratum: accuracy, ROC-AUC of every signal as an error detector
with a 95% bootstrap interval, PRR, AURC, ECE of the letter confidence, n) and figures (entropy histograms
correct vs wrong per stratum, reliability diagram, risk–coverage curves). Re-running with the same --out
resumes: only the batches not yet in scores.jsonl are scored, and the file ends identical to an uninterrupted
run's (batches are fixed by position); other settings, other questions (a --data file edited under the same
path: rows carry content keys) or another model's files in the same --out are refused naming what changed,
and a second process on it is refused at once (DIR/.lock). Every flag is checked before any work ("error:
--flag: …", exit 1); a question whose prompt does not fit the model's context stops the run before scoring,
named by id, unless --skip-long (skipped and counted). `--metrics-only` recomputes metrics and figures from
scores.jsonl alone.
--data: `demo` (data/mcqa_demo.jsonl), a local .jsonl/.csv, or (online, with `datasets`) mmlu, mmlu-pro,
gpqa, arc-challenge, commonsenseqa.

Settings (defaults in `mcqa_run.ScoreConfig`): --model smollm2-135m-instruct, --data demo, --limit None,
--batch-size 8, --labels letters, --system None, --dtype float32, --n-boot 1000, --seed 0, --no-skip-long;
below, where and how to run them (none of these changes a number).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tyro

from entropy_jax import _validate as check
from entropy_jax import configs, runtime
from entropy_jax.eval import mcqa_run


@dataclasses.dataclass(frozen=True)
class Config(mcqa_run.ScoreConfig):
    out: Path = configs.runtime(Path("results/mcqa"))
    metrics_only: bool = configs.runtime(False)
    """Recompute metrics and figures from DIR/scores.jsonl without loading the model."""
    progress: bool = configs.runtime(True)
    data_axis: int = configs.runtime(1)
    """Mesh axes (data / fsdp / tensor; one may be -1); all 1 = one device."""
    fsdp: int = configs.runtime(1)
    tensor: int = configs.runtime(1)


def main(config: Config) -> dict:
    config.check()
    check.flag_mesh(data_axis=config.data_axis, fsdp=config.fsdp, tensor=config.tensor)
    runtime.initialize()
    mesh = runtime.mesh_from_flags(config.data_axis, config.fsdp, config.tensor)
    result = mcqa_run.run(config, config.out, mesh=mesh, metrics_only=config.metrics_only, progress=config.progress)
    if config.progress:
        print(mcqa_run.markdown(result))
    return result


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.mcqa_entropy` in a checkout; installed: `entropy-jax-mcqa-entropy`)."""
    runtime.configure()
    config = tyro.cli(Config, args=args, description=__doc__.split("\n\n")[0])
    with check.cli_errors():
        main(config)


if __name__ == "__main__":
    cli()
