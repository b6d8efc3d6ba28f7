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
with a 95% bootstrap interval, PRR, AURC, ECE of the letter confidence, n), DIR/model.json (the model's family,
vocabulary size and entropy settings) and figures (entropy histograms
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

Prompt formats (`entropy_jax.llm.prompts`): `--prompt chat` (default: the chat template, our instruction,
question, "A. …" lines), `--prompt plain` (the same text without a template, ending in "Answer:"), `--prompt
mmlu` (lm-eval's MMLU text: "The following are multiple choice questions (with answers) about <subject>.",
then "<question>\nA. …\nD. …\nAnswer:"); `--instruction TEXT` or `--instruction none`; `--fewshot FILE`
(answered questions, MCQA schema, rendered before each question in the same format, as lm-eval does).
lm-eval's own MMLU prompt, 5-shot from a dev file:

    python -m launch.mcqa_entropy --data mmlu --prompt mmlu --instruction none --fewshot mmlu_dev.jsonl

Metrics of an lm-eval run (its `--log_samples --output_path DIR`; no model is loaded): `--lm-eval-samples DIR`
(or one samples_<task>_<date>.jsonl file; `--lm-eval-task NAME` picks one task) writes DIR2/metrics.json and
the figures with the same code; samples from `--model entropy_jax` carry the answer-step entropy, those of
other backends do not (the entropy signal is then dropped and named in metrics.json):

    python -m launch.mcqa_entropy --lm-eval-samples results/lm_eval --out results/mcqa_lm_eval

Settings (defaults in `mcqa_run.ScoreConfig`): --model smollm2-135m-instruct, --data demo, --limit None,
--batch-size 8, --labels letters, --system None, --dtype float32, --n-boot 1000, --seed 0, --no-skip-long,
--prompt chat, --instruction (prompts.INSTRUCTION), --fewshot None; below, where and how to run them (none of
these changes a number).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from entropy_jax import _validate as check
from entropy_jax import configs, runtime
from entropy_jax.eval import mcqa_run

from . import command


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
    lm_eval_samples: Path | None = configs.runtime(None)
    """Metrics of an lm-eval run instead: its --log_samples output (a directory or one samples_*.jsonl file)."""
    lm_eval_task: str | None = configs.runtime(None)
    """With --lm-eval-samples: read only this task's samples."""


def main(config: Config) -> dict:
    config.check()
    check.flag_mesh(data_axis=config.data_axis, fsdp=config.fsdp, tensor=config.tensor)
    runtime.initialize()
    if config.lm_eval_samples is not None:
        result = mcqa_run.lm_eval_metrics(config.lm_eval_samples, config.out, task=config.lm_eval_task,
                                          n_boot=config.n_boot, seed=config.seed)
        if config.progress:
            print(mcqa_run.markdown(result))
        return result
    mesh = runtime.mesh_from_flags(config.data_axis, config.fsdp, config.tensor)
    result = mcqa_run.run(config, config.out, mesh=mesh, metrics_only=config.metrics_only, progress=config.progress)
    if config.progress:
        print(mcqa_run.markdown(result))
    return result


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.mcqa_entropy` in a checkout; installed: `entropy-jax-mcqa-entropy`)."""
    command(Config, main, __doc__, args)


if __name__ == "__main__":
    cli()
