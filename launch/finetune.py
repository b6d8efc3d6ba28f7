"""Chapter 4: complexity-aware fine-tuning — entropy-gated SFT plus chain-of-thought distillation.

Command (one policy; `launch.reproduce` runs all six at demo size):

    python -m launch.finetune --student smollm2-135m-instruct --teacher rationale --train-data demo \\
        --eval-data demo --policy gated --out results/finetune/gated --train.epochs 2

Runtime on 2 CPU cores: about 1.5 minutes per policy at the demo size of `launch.reproduce --quick`
(12 training questions, 24 held out, 2 epochs of 2 packed rows × 256 tokens per step, full fine-tuning of
SmolLM2-135M in float32; ≈ 5 s per step); the numbers are those of a 135M model trained for seconds, not
the dissertation's (Qwen2.5-3B / Phi-4-mini on MMLU-Pro with a DeepSeek-V3 teacher: `--student`,
`--teacher` and `--train-data mmlu-pro` on a GPU/TPU, with `--data-axis`, `--fsdp` for the mesh). A second
run compiles less: compiled programs are kept in `$ENTROPY_JAX_CACHE/xla` (`entropy_jax.runtime`;
ENTROPY_JAX_COMPILATION_CACHE=0 turns it off).

The run is `entropy_jax.train.pipeline.run`. Steps: (1) the student's Chapter 3 answer-step entropy of every
training question → bands by quantile (`--hard-quantile 0.75`, the paper's Q3) or threshold (`--threshold`,
nats) → OUT/bands.json; (2) teacher traces: `rationale` (the data set's field), a traces `.jsonl`, or a model
that writes step-by-step traces with per-token entropies (cached in `--traces-cache`, default OUT/../traces,
shared by a sweep: no teacher token twice; wrong traces dropped unless `--keep-wrong`); (3) the policy's
supervision per question (`entropy_jax.train.policy`); (4) training (completion-only loss, AdamW, warmup +
cosine, clipping, accumulation, packing, full or LoRA, bf16 compute), evaluated after every epoch on the
held-out questions with answer-only scoring; (5) export of the final model to OUT/final/ (safetensors +
config + tokenizer, checked against our reload and transformers).

Training settings are `--train.*` (`entropy_jax.train.TrainConfig`): `--train.epochs 2`, `--train.micro-batch
4` (rows per micro-batch), `--train.accumulation`, `--train.seq-len 512`, `--train.lr 1e-5`,
`--train.compute-dtype bfloat16`, `--train.seed` (also the held-out split and the policies' orders),
`--train.save-every N`; LoRA is the subcommand `train.lora:lora-config --train.lora.rank 16` (after the other
flags). Memory of the step (a 3–4B student with rows of 4k–8k tokens; `bench.plan --task train` checks a setting
ahead of time): `--train.precision fp32|bf16_master|bf16` (bytes per parameter in `entropy_jax.train.sft`; the
bf16 options need `--train.compute-dtype bfloat16` and keep a LoRA base in bfloat16), `--train.remat
none|full|dots` with `--train.scan-layers` (layers as one scan: the backward recomputes one layer at a time),
`--train.loss-chunk 256` (loss positions per row projected onto the vocabulary at once). Settings (defaults in `pipeline.FinetuneConfig`): --student smollm2-135m-instruct, --teacher rationale,
--train-data demo, --eval-data demo, --eval-size 96, --policy gated, --dtype float32, --hard-quantile 0.75,
--teacher-max-new-tokens 512, --labels letters, --score-batch 8, --no-skip-long, --prompt chat, --instruction
(prompts.INSTRUCTION), --fewshot None. The prompt flags set the answer-only prompt of gating, evaluation and
answer-only examples (`--prompt plain|mmlu`: no chat template, the example's completion is " C" and EOS after
"Answer:"; `--instruction none`; `--fewshot FILE` of answered questions, none of them a training or held-out
question); CoT examples keep the step-by-step chat prompt.

Writes OUT/settings.json, bands.json, plan.json, train_log.jsonl (per step and per epoch: tokens through the
model, loss-bearing tokens, teacher tokens), summary.json, checkpoints/ (Orbax; every `--train.save-every`
steps, at epoch ends and on SIGTERM/SIGINT) and final/. `--resume` continues a killed run from its newest
checkpoint that restores (a damaged one is skipped, with a note) with the same data order and ends with the
same parameters; other settings, other questions (a data file edited under the same path), another student or
teacher are refused naming what changed (OUT/inputs.json; the checkpoints carry the digest of the tokenized
examples); OUT/.lock keeps a second process out. Every flag is checked before any work ("error: --flag: …",
exit 1); a question whose scoring prompt does not fit the student's context stops the run before gating, named
by id, unless --skip-long. `python -m launch.frontier --sweep results/finetune` plots accuracy against tokens
for the policies.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from entropy_jax import _validate as check
from entropy_jax import configs, runtime
from entropy_jax.train import pipeline

from . import command


@dataclasses.dataclass(frozen=True)
class Config(pipeline.FinetuneConfig):
    out: Path = configs.runtime(Path("results/finetune/gated"))
    resume: bool = configs.runtime(False)
    """Continue the killed run in --out from its last checkpoint."""
    progress: bool = configs.runtime(True)
    data_axis: int = configs.runtime(-1)
    """Mesh axes (data / fsdp / tensor; one may be -1 = all remaining devices); all 1 = one device. The
    default splits each batch over every device (on a CPU, each core is a device: ~1.3× faster)."""
    fsdp: int = configs.runtime(1)
    tensor: int = configs.runtime(1)


def main(config: Config) -> dict:
    config.check()
    check.flag_mesh(data_axis=config.data_axis, fsdp=config.fsdp, tensor=config.tensor)
    runtime.initialize()
    mesh = runtime.mesh_from_flags(config.data_axis, config.fsdp, config.tensor)
    summary = pipeline.run(config, config.out, mesh=mesh, resume=config.resume, progress=config.progress)
    if config.progress:
        print(pipeline.markdown([summary]))
    if summary["status"] == "interrupted":
        print(f"interrupted at step {summary['global_step']} of {summary['total_steps']}: resume with --resume "
              f"--out {config.out}", file=sys.stderr)
    return summary


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.finetune` in a checkout; installed: `entropy-jax-finetune`)."""
    summary = command(Config, main, __doc__, args)
    if summary["status"] == "interrupted" and summary.get("signal"):
        sys.exit(128 + int(summary["signal"]))


if __name__ == "__main__":
    cli()
