"""Chapter 4: complexity-aware fine-tuning — entropy-gated SFT and chain-of-thought distillation.

    bands = gating.split(ids, entropy, hard_quantile=0.75)          # Step 1: the student's answer entropy
    p = policy.plan("gated", bands, have_trace=set(traces.traces))   # Steps 2–4: who gets SFT, who gets CoT
    result = trainer.fit(lm, epoch_examples, TrainConfig(...), out)  # one jitted, sharded train step

Modules: `examples` (prompt/completion segments → token ids and completion-only loss masks), `packing`
(packed or length-bucketed rows, block-diagonal attention), `sft` (loss, AdamW, the train step, shardings),
`lora` (low-rank adapters, merge), `gating` (entropy bands), `traces` (teacher chain-of-thought, cached),
`policy` (the six policies), `trainer` (epochs, Orbax checkpoints, exact resume, accounting), `evaluate`
(held-out answer-only accuracy). Export of the result: `entropy_jax.llm.export`.
"""

from entropy_jax.train import (
           evaluate,
           examples,
           gating,
           lora,
           packing,
           policy,
           sft,
           traces,
           trainer,
)
from entropy_jax.train.lora import LoraConfig
from entropy_jax.train.policy import POLICIES
from entropy_jax.train.trainer import TrainConfig, fit

__all__ = [
           "POLICIES",
           "LoraConfig",
           "TrainConfig",
           "evaluate",
           "examples",
           "fit",
           "gating",
           "lora",
           "packing",
           "policy",
           "sft",
           "traces",
           "trainer",
]
