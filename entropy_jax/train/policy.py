"""Which supervision each training question gets, and in which order (Chapter 4's policies).

| policy          | answer-only SFT on                | chain-of-thought distillation on            | order            |
|-----------------|-----------------------------------|---------------------------------------------|------------------|
| `sft`           | all questions                     | —                                           | shuffled         |
| `distill`       | —                                 | all questions                               | shuffled         |
| `gated`         | the regular (low-entropy) band    | the hard (high-entropy) band                | shuffled         |
| `curriculum`    | all questions                     | —                                           | entropy, low→high|
| `gated_inverse` | the hard band                     | the regular band (distillation misplaced)   | shuffled         |
| `random`        | the rest                          | a random subset the size of the hard band   | shuffled         |

A question assigned CoT whose teacher trace is missing (no rationale, or a wrong trace dropped) falls back
to answer-only SFT and is counted (`Plan.fallback`), never dropped silently. Shuffles are seeded by
(seed, epoch), so every epoch's order is a pure function of the run's settings (resumable).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from entropy_jax.train.gating import Bands

POLICIES = ("sft", "distill", "gated", "curriculum", "gated_inverse", "random")
_USES_BANDS = ("gated", "gated_inverse", "random")


@dataclasses.dataclass(frozen=True)
class Plan:
    """`kinds[id]` is "answer" or "cot"; `fallback` the ids that were meant for CoT but have no trace."""

    policy: str
    kinds: dict[str, str]
    fallback: tuple[str, ...]
    order: str  # "shuffle" | "entropy"

    @property
    def counts(self) -> dict[str, int]:
        n_cot = sum(k == "cot" for k in self.kinds.values())
        return {"answer": len(self.kinds) - n_cot, "cot": n_cot, "cot_fallback_to_answer": len(self.fallback)}


def plan(policy: str, bands: Bands, have_trace: set[str], *, seed: int = 0) -> Plan:
    """The supervision of every question of `bands` under `policy`."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {list(POLICIES)}")
    ids = list(bands.ids)
    hard = dict(zip(bands.ids, bands.hard))
    if policy in _USES_BANDS:
        sizes = bands.sizes
        empty = [b for b, n in sizes.items() if n == 0]
        if empty:
            e = np.asarray(bands.entropy)
            raise ValueError(
                f"policy {policy!r} needs both bands, but the {' and '.join(empty)} band is empty "
                f"(threshold {bands.threshold:.4f} nats by {bands.method}; entropies span "
                f"[{e.min():.4f}, {e.max():.4f}] over {len(e)} questions): choose another quantile or threshold")
    if policy in ("sft", "curriculum"):
        want = set()
    elif policy == "distill":
        want = set(ids)
    elif policy == "gated":
        want = {i for i in ids if hard[i]}
    elif policy == "gated_inverse":
        want = {i for i in ids if not hard[i]}
    else:  # random: a seeded subset as large as the hard band
        rng = np.random.default_rng([seed, 0x5EED])
        n = bands.sizes["hard"]
        want = {ids[j] for j in rng.choice(len(ids), size=n, replace=False)}
    kinds = {i: ("cot" if i in want and i in have_trace else "answer") for i in ids}
    fallback = tuple(i for i in ids if i in want and i not in have_trace)
    if want and len(fallback) == len(want):
        raise ValueError(f"policy {policy!r}: none of its {len(want)} chain-of-thought questions has a teacher "
                         "trace (no rationale in the data, or every trace was wrong and dropped)")
    return Plan(policy, kinds, fallback, "entropy" if policy == "curriculum" else "shuffle")


def epoch_order(p: Plan, bands: Bands, epoch: int, seed: int) -> list[str]:
    """The question ids of one epoch in training order."""
    ids = list(bands.ids)
    if p.order == "entropy":  # stable: ties keep data order
        return [ids[j] for j in np.argsort(np.asarray(bands.entropy), kind="stable")]
    rng = np.random.default_rng([seed, epoch])
    return [ids[j] for j in rng.permutation(len(ids))]


def band_counts(p: Plan, bands: Bands) -> dict[str, dict[str, int]]:
    """How many of each band got each supervision (written to the run directory)."""
    out: dict[str, dict[str, int]] = {"regular": {"answer": 0, "cot": 0}, "hard": {"answer": 0, "cot": 0}}
    for i, h in zip(bands.ids, bands.hard):
        out["hard" if h else "regular"][p.kinds[i]] += 1
    return out

