"""Log-likelihood of token continuations with the full-vocabulary entropy of every scored position.

The engine under the lm-evaluation-harness backend (`entropy_jax.eval.lm_eval`), usable on its own:

    scorer = ContinuationScorer(lm, batch_size=8)
    [s] = scorer.score([(context_ids, continuation_ids)])
    s.logprob, s.is_greedy, s.entropy          # Σ log p(continuation), argmax match, H at the first token

For each (context, continuation) pair of token lists, the model reads context + continuation once
(minus the last token, which is never an input) and we keep, at each continuation position, the
continuation token's log-probability, whether it is the argmax, and the Shannon entropy of
softmax(raw logits) over the full vocabulary (temperature 1, float32, nats: `ENTROPY_SETTINGS`).
`entropy` is the value at the first continuation token, i.e. the predictive distribution right after
the context — the answer step of a multiple-choice question.

Context window: a pair longer than `max_length + 1` tokens loses tokens from the LEFT of the context
(lm-eval's Hugging Face backend does exactly this: it feeds `(context + continuation)[-(max_length+1):][:-1]`);
`truncated` says how many. A continuation longer than `max_length` is an error.

Batching follows lm-eval's HF backend: inputs are sorted longest first and cut into batches of
`batch_size` rows; rows whose model inputs are identical (the options " A", " B", … of one
multiple-choice question differ only in the token that is never fed) share one row, and their
different last tokens are read off that row's final position. Each batch is left-padded to a shape
bucket (`entropy_jax.llm.bucket`) and padded to `batch_size` rows, so a run compiles once per
length bucket (`trace_counts`).

Memory: one [batch_size, T, V] float32 logits buffer per batch; lower `batch_size` for long inputs or
large vocabularies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from entropy_jax.info import entropy_from_logits
from entropy_jax.llm import model as mdl
from entropy_jax.llm import sharding as shd


def continuation_stats(graphdef, params, tokens_bt, mask_bt, last_bk, *, constrain=None) -> dict:
    """Per-position statistics of left-padded inputs (pure; jit it at the boundary).

    Args:
      tokens_bt, mask_bt: [B, T] int32 ids and bool validity, LEFT-padded (every row ends at T − 1).
      last_bk: [B, K] int32 candidate tokens to follow each row's last input token (padding: any id).
    Returns dict of float32/bool arrays:
      next_logprob [B, T−1]: log p(tokens[:, t+1] | tokens[:, ≤t]); next_greedy [B, T−1]: that token is
      the argmax; entropy [B, T]: entropy of the predictive distribution at every position (nats);
      last_logprob [B, K], last_greedy [B, K]: the same for the candidates after position T − 1.
    """
    logits_btv = mdl.forward(graphdef, params, tokens_bt, mask_bt, constrain=constrain)
    lse_bt = jax.nn.logsumexp(logits_btv, axis=-1)
    argmax_bt = jnp.argmax(logits_btv, axis=-1)
    picked = jnp.take_along_axis(logits_btv[:, :-1], tokens_bt[:, 1:, None], axis=-1)[..., 0]
    last = jnp.take_along_axis(logits_btv[:, -1], last_bk, axis=-1)
    return {
        "next_logprob": picked - lse_bt[:, :-1],
        "next_greedy": argmax_bt[:, :-1] == tokens_bt[:, 1:],
        "entropy": entropy_from_logits(logits_btv),
        "last_logprob": last - lse_bt[:, -1:],
        "last_greedy": argmax_bt[:, -1:] == last_bk,
    }


@dataclasses.dataclass(frozen=True)
class ContinuationScore:
    """One pair's result. Log-probabilities and entropies in nats, one entry per continuation token."""

    logprob: float
    is_greedy: bool
    token_logprobs: tuple[float, ...]
    token_entropies: tuple[float, ...]
    n_context_tokens: int
    truncated: int

    @property
    def entropy(self) -> float:
        """Full-vocabulary entropy of the distribution that predicts the first continuation token."""
        return self.token_entropies[0]


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class ContinuationScorer:
    """Scores (context, continuation) token-list pairs on a `LanguageModel` (see the module docstring).

    Args:
      lm: a loaded `entropy_jax.llm.LanguageModel` (any mesh).
      batch_size: rows per forward pass (rounded up to a multiple of the mesh's batch shards).
      max_length: context window in tokens; default the model's `max_position_embeddings`.
    """

    def __init__(self, lm, *, batch_size: int = 8, max_length: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        limit = lm.config.max_position_embeddings
        if max_length is not None and not 1 <= max_length <= limit:
            raise ValueError(f"max_length {max_length} must lie in [1, {limit}] (the model's context window)")
        self.lm = lm
        self.batch_size = batch_size
        self.max_length = int(max_length or limit)
        self.trace_counts: dict[str, int] = {}
        self._jit = None

    def _stats_jit(self):
        if self._jit is None:
            lm = self.lm
            constrain = None
            kw = {}
            if lm.mesh is not None:
                # the same activation constraint and shardings as LanguageModel.logits
                spec = NamedSharding(lm.mesh, P(shd.BATCH, None, None))
                m = shd.batch_multiple(lm.mesh)

                def constrain(x):
                    return jax.lax.with_sharding_constraint(x, spec) if x.shape[0] % m == 0 else x

                b2 = shd.batch_sharding(lm.mesh, 2)
                kw = {"in_shardings": (jax.tree.map(lambda a: a.sharding, lm.params), b2, b2, b2),
                      "out_shardings": NamedSharding(lm.mesh, P())}

            def stats(params, tokens_bt, mask_bt, last_bk):
                self.trace_counts["continuation_stats"] = self.trace_counts.get("continuation_stats", 0) + 1
                return continuation_stats(lm.graphdef, params, tokens_bt, mask_bt, last_bk, constrain=constrain)

            self._jit = jax.jit(stats, **kw)
        return self._jit

    def score(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[ContinuationScore]:
        """Score each (context ids, continuation ids) pair; results in input order. Both lists must be
        non-empty (lm-eval puts a prefix token before an empty context)."""
        if not pairs:
            return []
        limit = self.max_length
        inputs: dict[tuple[int, ...], list[tuple[int, int, int, int]]] = {}  # input → (pair, last, c, cut)
        for i, (context, continuation) in enumerate(pairs):
            context, continuation = list(map(int, context)), list(map(int, continuation))
            if not context or not continuation:
                raise ValueError(f"pair {i}: context and continuation must be non-empty "
                                 f"(got {len(context)} and {len(continuation)} tokens)")
            if len(continuation) > limit:
                raise ValueError(f"pair {i}: continuation of {len(continuation)} tokens exceeds the context "
                                 f"window of {limit} tokens")
            whole = context + continuation
            window = whole[-(limit + 1):]
            inputs.setdefault(tuple(window[:-1]), []).append(
                (i, window[-1], len(continuation), len(whole) - len(window)))
        order = sorted(inputs, key=lambda t: (-len(t), t))
        # candidates per row: a power of two ≥ 4 (four-option questions and single requests share shapes)
        k = max(4, _pow2(max(len(v) for v in inputs.values())))
        out: list[ContinuationScore | None] = [None] * len(pairs)
        fn = self._stats_jit()
        for start in range(0, len(order), self.batch_size):
            chunk = order[start: start + self.batch_size]
            ids, mask = self.lm.left_pad([list(t) for t in chunk], batch=self.batch_size)
            last = np.zeros((ids.shape[0], k), np.int32)
            for r, t in enumerate(chunk):
                last[r, : len(inputs[t])] = [m[1] for m in inputs[t]]
            res = jax.device_get(fn(self.lm.params, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(last)))
            t_len = ids.shape[1]
            for r, t in enumerate(chunk):
                n = len(t)
                for j, (i, _, c, cut) in enumerate(inputs[t]):
                    # continuation token q (0-based) is predicted at input position n − c + q
                    lp = np.append(res["next_logprob"][r, t_len - c: t_len - 1], res["last_logprob"][r, j])
                    greedy = bool(res["next_greedy"][r, t_len - c: t_len - 1].all() and res["last_greedy"][r, j])
                    out[i] = ContinuationScore(
                        logprob=float(lp.astype(np.float64).sum()), is_greedy=greedy,
                        token_logprobs=tuple(float(x) for x in lp),
                        token_entropies=tuple(float(x) for x in res["entropy"][r, t_len - c:]),
                        n_context_tokens=n - c + 1, truncated=cut)
        return out
