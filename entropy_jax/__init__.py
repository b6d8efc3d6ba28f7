"""entropy_jax: entropy-driven AI methods as JAX functional primitives.

The public entropy/KL definitions (nats) live in `entropy_jax.info` and are re-exported here.
Chapter modules load on first access: `entropy_jax.estimators` (Chapter 1),
`entropy_jax.nmf` and `entropy_jax.data` (Chapter 2), `entropy_jax.llm` and `entropy_jax.eval` (Chapters 3–5),
`entropy_jax.train` (Chapter 4), `entropy_jax.thinking` (Chapter 5), `entropy_jax.plots`; below the chapters,
`entropy_jax.stores` (the files runs resume from), `entropy_jax.configs` (run settings, CLI lines) and
`entropy_jax.runtime` (launcher process set-up, never run at import).
No `jax.config` is touched at import; enable float64 yourself where you need it
(`jax.config.update("jax_enable_x64", True)` or `with jax.enable_x64(True):`).
"""

import importlib as _importlib

from entropy_jax.info import entropy, entropy_from_logits, kl, kl_from_log

__version__ = "0.1.0"

__all__ = ["__version__", "entropy", "entropy_from_logits", "kl", "kl_from_log"]

_SUBMODULES = {"configs", "data", "estimators", "eval", "llm", "nmf", "plots", "runtime", "stores", "thinking",
               "train"}


def __getattr__(name: str):
    # Chapter modules load on first use (`entropy_jax.nmf.fit(...)` after `import entropy_jax`)
    # without making the top-level import pay for all of them.
    if name in _SUBMODULES:
        return _importlib.import_module(f"entropy_jax.{name}")
    raise AttributeError(f"module 'entropy_jax' has no attribute {name!r}")
