"""Chapter 2: NMF and the principle of the common cause."""

from entropy_jax.nmf.core import EPS, NMFResult, fit, init_nndsvda, init_random, loss, step

__all__ = ["EPS", "NMFResult", "fit", "init_nndsvda", "init_random", "loss", "step"]
