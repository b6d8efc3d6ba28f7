"""Chapter 5: better thinking or a bigger model — thinker → answerer shuffles.

Command:

    python -m launch.thinker_answerer --thinkers none,gold,shuffled,smollm2-135m-instruct \\
        --answerers smollm2-135m-instruct --data demo --limit 48 --out results/shuffle

Runtime on 2 CPU cores: about 2 minutes for this command (SmolLM2-135M writes 48 traces of at most 192
tokens in ≈ 1.5 min; scoring the 4 × 48 answers takes seconds; bench/RESULTS.md); later runs compile less
(the persistent compilation cache of `entropy_jax.runtime`, `$ENTROPY_JAX_CACHE/xla`;
ENTROPY_JAX_COMPILATION_CACHE=0 turns it off). The dissertation's setting is `--thinkers qwen3-0.6b,…,qwen3-14b
--answerers <the same> --data gpqa-main --max-think-tokens 16384` on a GPU (hub ids such as Qwen/Qwen3-14B;
`--data-axis`/`--fsdp`/`--tensor` for the mesh).

The run is `entropy_jax.thinking.matrix.run`. Each thinker writes its traces once (`OUT/traces/<thinker>.jsonl`:
text, token ids, per-token full-vocabulary entropy from the generation itself, mean entropy, stop reason;
greedy; Qwen3-style models in their thinking mode, others with the step-by-step prompt; `none`, `gold` and
`shuffled` need no model). Each answerer then reads question + trace and gives the option label only (Chapter 3
answer-only scoring, answer-step entropy recorded): `OUT/pairs/<thinker>__<answerer>.jsonl`, one line per
question (file names: the name's tail + a hash of the whole string, `stores.safe_name`). A trace longer than the
answerer's context keeps its end (marked, counted in `truncated`). Outputs: OUT/matrix.json (accuracy and mean
answer entropy per pair, row and column means, n, truncations), OUT/matrix.png (heatmap with row and column
means), OUT/thinkers.json (trace length, entropy, stop reasons, own stated answers, generation tokens/s),
OUT/summary.json. Re-running with the same --out resumes pair by pair (and batch by batch within a pair);
thinkers whose traces are cached generate nothing; adding a thinker or an answerer runs only the new pairs;
pair rows and trace caches are keyed by content (the question, the trace read, the models' files), and a resume
whose data or models changed is refused for the pairs made from them, naming what changed; OUT/.lock keeps a
second process out. Run as several processes (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID`; the mesh flags span all their devices), every process computes and only process 0 writes OUT,
which each process reads to resume (a file system all hosts see). Every flag is checked before any work
("error: --flag: …", exit 1); a question whose prompt does not fit some model's context stops the run before any
work, named by id, unless --skip-long.
--data: `demo`, a .jsonl/.csv path, or (online) `gpqa-main` (448 questions, options shuffled by the
question-id permutation, stored with each question) and the other Chapter 3 benchmarks.

Settings (defaults in `matrix.MatrixConfig`): --thinkers none,gold,shuffled,smollm2-135m-instruct, --answerers
smollm2-135m-instruct, --data demo, --limit None, --max-think-tokens 512, --think-mode auto, --trace-place auto,
--answer-context None, --batch-size 8, --answer-batch-size 8, --labels letters, --system None, --dtype float32,
--seed 0, --no-skip-long, --prompt chat, --instruction (prompts.INSTRUCTION), --fewshot None. The prompt flags
set the answerers' prompt (`entropy_jax.llm.prompts`): `--prompt plain|mmlu` has no chat template, so the trace
goes in the text before "Answer:" (the user place); `--instruction none` drops the instruction and the reminder
after the trace; `--fewshot FILE` shows answered questions first. Thinkers keep their own prompt.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from entropy_jax import _validate as check
from entropy_jax import configs, runtime
from entropy_jax.thinking import matrix

from . import command


@dataclasses.dataclass(frozen=True)
class Config(matrix.MatrixConfig):
    out: Path = configs.runtime(Path("results/shuffle"))
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
    # every process of a multi-process job runs the matrix; process 0 writes OUT and shows progress
    shown = config.progress and runtime.is_writer()
    summary = matrix.run(config, config.out, mesh=mesh, progress=shown)
    if shown:
        print(matrix.markdown(summary))
    return summary


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.thinker_answerer` in a checkout; installed:
    `entropy-jax-thinker-answerer`)."""
    command(Config, main, __doc__, args)


if __name__ == "__main__":
    cli()
