"""Chapter 4: complexity-aware fine-tuning — entropy-gated SFT and chain-of-thought distillation.

    bands = gating.split(ids, entropy, hard_quantile=0.75)          # Step 1: the student's answer entropy
    p = policy.plan("gated", bands, have_trace=set(traces.traces))   # Steps 2–4: who gets SFT, who gets CoT
    result = trainer.fit(lm, epoch_examples, TrainConfig(...), out)  # one jitted, sharded train step

The whole pipeline (one policy, or a sweep of them and its frontier) is `pipeline`:

    summary = pipeline.run(pipeline.FinetuneConfig(policy="gated", train=TrainConfig(lr=3e-5)), "results/ft/gated")

Modules: `examples` (prompt/completion segments → token ids and completion-only loss masks), `packing`
(packed or length-bucketed rows, block-diagonal attention), `sft` (loss, AdamW, the train step, shardings),
`lora` (low-rank adapters, merge), `gating` (entropy bands), `traces` (teacher chain-of-thought, cached),
`policy` (the six policies), `trainer` (epochs, Orbax checkpoints, exact resume, accounting), `evaluate`
(held-out answer-only accuracy), `pipeline` (a run, a sweep), `frontier` (accuracy against tokens). Export of
the result: `entropy_jax.llm.export`.
"""

from entropy_jax.train import (
    evaluate,
    examples,
    frontier,
    gating,
    lora,
    packing,
    pipeline,
    policy,
    sft,
    traces,
    trainer,
)
from entropy_jax.train.lora import LoraConfig
from entropy_jax.train.pipeline import FinetuneConfig
from entropy_jax.train.policy import POLICIES
from entropy_jax.train.trainer import TrainConfig, fit

__all__ = [
    "POLICIES",
    "FinetuneConfig",
    "LoraConfig",
    "TrainConfig",
    "evaluate",
    "examples",
    "fit",
    "frontier",
    "gating",
    "lora",
    "packing",
    "pipeline",
    "policy",
    "sft",
    "traces",
    "trainer",
]
