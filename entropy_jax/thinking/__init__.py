"""Chapter 5: thinker → answerer shuffles. `traces` (thinkers, cached traces with their entropy, through the
shared generator `entropy_jax.llm.traces`), `answer` (answer-only scoring of question + trace, with the truncation
policy) and `matrix` (the resumable thinker × answerer run). Depends on `llm`, `data`, `eval` and the shared
layer (`stores`, `configs`), never on `entropy_jax.train`.

    summary = matrix.run(matrix.MatrixConfig(thinkers="none,gold,shuffled,smollm2-135m-instruct"), "results/shuffle")
"""

from entropy_jax.thinking import answer, matrix, traces

__all__ = ["answer", "matrix", "traces"]
