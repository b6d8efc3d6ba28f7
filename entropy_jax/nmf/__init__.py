"""Chapter 2: NMF and the principle of the common cause.

core (multiplicative updates, `fit`), prob (the probabilistic reading), rank (predictability and
the usual rank criteria), match (cosine distances, Hungarian matching), diagnostics (entropies,
sparseness), perturb (pixel-flip noise, half splits), study (rank scan, stability study).
"""

from entropy_jax.nmf import diagnostics, match, perturb, prob, rank, study
from entropy_jax.nmf.core import (
    EPS,
    NMFResult,
    check_input,
    fit,
    init_nndsvda,
    init_random,
    loss,
    step,
)
from entropy_jax.nmf.prob import Factorization, normalize

__all__ = [
    "EPS",
    "Factorization",
    "NMFResult",
    "check_input",
    "diagnostics",
    "fit",
    "init_nndsvda",
    "init_random",
    "loss",
    "match",
    "normalize",
    "perturb",
    "prob",
    "rank",
    "step",
    "study",
]
