"""entropy_jax: entropy-driven AI methods as JAX functional primitives.

The public entropy/KL definitions (nats) live in `entropy_jax.info` and are re-exported here.
Chapter modules are imported on demand: `entropy_jax.estimators` (Chapter 1).
No `jax.config` is touched at import; enable float64 yourself where you need it
(`jax.config.update("jax_enable_x64", True)` or `with jax.enable_x64(True):`).
"""

from entropy_jax.info import entropy, entropy_from_logits, kl, kl_from_log

__version__ = "0.1.0"

__all__ = ["__version__", "entropy", "entropy_from_logits", "kl", "kl_from_log"]
