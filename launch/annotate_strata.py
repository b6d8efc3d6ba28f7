"""Chapter 3: a judge model labels each question knowledge- or reasoning-dominated (model-as-judge strata).

Command:

    python -m launch.annotate_strata --judge smollm2-135m-instruct --data demo \\
        --scores results/mcqa/scores.jsonl --out results/strata

Runtime on 2 CPU cores: about 3 minutes for the 480 demo questions with SmolLM2-135M in `--mode probe` (four
one-token probes per question); `--mode generate` writes an explanation per question and takes several times
longer.

The run is `entropy_jax.eval.strata.run`. The judge (any `entropy_jax.llm.load` source) is asked, without
answering the question, for a short explanation and then four ratings in a fixed bracketed format: needs
specific domain knowledge (yes/no), needs multi-step reasoning (yes/no), number of reasoning steps
(low/medium/high) and, when --scores gives another model's answers, its confidence (0–100) that that answer is
right. Greedy decoding; the raw judge text is kept. Writes DIR/strata.jsonl (id, judge output, parsed ratings,
judge_stratum) and DIR/strata_metrics.json: parse rate, agreement with the data's own strata, and — with
--scores — the scored model's accuracy and every uncertainty signal's error detection per judge stratum, plus
the judge's confidence evaluated as an error predictor exactly like entropy (ROC-AUC with a bootstrap
interval, PRR, AURC). The synopsis reports judge confidence as a negative finding; we report whatever we
measure. Resumes like launch/mcqa_entropy (fixed batches, rows keyed by content, DIR/.lock); --scores must
score the same questions as --data (no shared id, or another version of a question, is an error). Every flag
is checked before any work ("error: --flag: …", exit 1); a question whose judge prompt does not fit the
judge's context stops the run before judging, named by id, unless --skip-long.

Prompt format of the judge: `--prompt chat` (default, its chat template), `--prompt plain` (no template; for
base-model judges: probes end in "Answer:" and read Yes/No there) or `--prompt mmlu` (plain, the question in
lm-eval's MMLU layout); `--instruction TEXT` puts TEXT before every judge prompt (default none). There is no
`--fewshot`: few-shot examples are answered questions, and the judge rates questions without answering them.

Settings (defaults in `strata.JudgeConfig`): --judge smollm2-135m-instruct, --mode generate, --data demo,
--scores None, --limit None, --batch-size 8, --max-new-tokens 96, --dtype float32, --n-boot 1000, --seed 0,
--prompt chat, --instruction none, --no-skip-long.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from entropy_jax import configs, runtime
from entropy_jax.eval import strata

from . import command


@dataclasses.dataclass(frozen=True)
class Config(strata.JudgeConfig):
    out: Path = configs.runtime(Path("results/strata"))
    progress: bool = configs.runtime(True)


def main(config: Config) -> dict:
    runtime.initialize()
    result = strata.run(config, config.out, progress=config.progress)
    if config.progress:
        print(strata.markdown(result))
    return result


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.annotate_strata` in a checkout; installed: `entropy-jax-annotate-strata`)."""
    command(Config, main, __doc__, args)


if __name__ == "__main__":
    cli()
