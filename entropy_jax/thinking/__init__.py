"""Chapter 5: thinker → answerer shuffles. `traces` (thinkers, cached traces with their entropy) and
`answer` (answer-only scoring of question + trace, with the truncation policy)."""

from entropy_jax.thinking import answer, traces

__all__ = ["answer", "traces"]
