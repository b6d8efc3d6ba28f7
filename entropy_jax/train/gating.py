"""Entropy gating (Chapter 4, Step 1): score every training question by the student's answer-step entropy
and split the set into a regular (low-entropy) and a hard (high-entropy) band.

The entropy is Chapter 3's: the full-vocabulary next-token entropy at the answer step of the answer-only
prompt, temperature 1, nats (`llm.scoring`). Bands come from a quantile (`hard_quantile=0.75`: the top
quarter is hard, the paper's Q3 cut) or an absolute threshold in nats; questions at or above the cut are
hard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from entropy_jax.llm import scoring


@dataclasses.dataclass(frozen=True)
class Bands:
    """The split: `threshold` (nats; hard iff entropy ≥ threshold), how it was set, and per-question data."""

    ids: tuple[str, ...]
    entropy: tuple[float, ...]
    hard: tuple[bool, ...]
    threshold: float
    method: str  # "quantile" | "threshold"
    quantile: float | None

    @property
    def sizes(self) -> dict[str, int]:
        n_hard = int(sum(self.hard))
        return {"regular": len(self.ids) - n_hard, "hard": n_hard}

    def band_of(self) -> dict[str, str]:
        return {i: ("hard" if h else "regular") for i, h in zip(self.ids, self.hard)}

    def summary(self) -> dict:
        e = np.asarray(self.entropy, float)
        hard = np.asarray(self.hard, bool)

        def stats(x):
            return None if len(x) == 0 else {"min": float(x.min()), "mean": float(x.mean()), "max": float(x.max())}

        return {"method": self.method, "quantile": self.quantile, "threshold_nats": self.threshold,
                "sizes": self.sizes, "entropy_regular": stats(e[~hard]), "entropy_hard": stats(e[hard]),
                "units": "nats"}


def split(ids: Sequence[str], entropy: Sequence[float], *, hard_quantile: float | None = 0.75,
          threshold: float | None = None) -> Bands:
    """Bands from entropies [N] (nats): by `threshold` when given, else at the `hard_quantile` of the
    entropies (linear interpolation, as `np.quantile`)."""
    e = np.asarray(entropy, float)
    if len(e) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(e)} entropies")
    if len(e) == 0:
        raise ValueError("no questions to split into bands")
    if not np.isfinite(e).all():
        raise ValueError(f"non-finite entropies for {[i for i, x in zip(ids, e) if not np.isfinite(x)]}")
    if threshold is not None:
        cut, method, q = float(threshold), "threshold", None
    else:
        if hard_quantile is None or not 0 <= hard_quantile <= 1:
            raise ValueError(f"hard_quantile must lie in [0, 1], got {hard_quantile}")
        cut, method, q = float(np.quantile(e, hard_quantile)), "quantile", float(hard_quantile)
    return Bands(tuple(ids), tuple(float(x) for x in e), tuple(bool(x) for x in e >= cut), cut, method, q)


def answer_entropies(lm, questions, *, batch_size: int = 8, style: str = "letters", system: str | None = None,
                     progress=None, fmt=None) -> dict[str, scoring.Scored]:
    """Chapter 3 answer-step scores of every question under `lm` (id → `Scored`; `.entropy` in nats), prompts
    in format `fmt` (`prompts.PromptFormat`; default the chat prompt)."""
    out: dict[str, scoring.Scored] = {}
    for b, scores in scoring.score_questions(lm, questions, batch_size=batch_size, style=style, system=system,
                                             fmt=fmt):
        chunk = questions[b * batch_size: (b + 1) * batch_size]
        out.update({q.id: s for q, s in zip(chunk, scores)})
        if progress is not None:
            progress(len(chunk))
    return out
