"""KV-cache generation with per-token entropy, as pure functions: `prefill`, `decode` and one decode `step`.

Prompts are left-padded to a common length T (a shape bucket), so every row writes its next token to the same
cache slot T + i; per-row positions count valid tokens only, so padding changes nothing. `decode` is one
`lax.while_loop` (no Python per token) that stops when every row has emitted a stop token or used its own
budget (a traced [B] array, at most the static output width `max_new_tokens`, so callers bucket the width and
compile one loop for many budgets). The KV cache is in the compute dtype, and a step's attention reads only the cache blocks up to the
slot it writes (`attention.blockwise`), so its cost grows with the tokens written so far, not with the
allocated length. `step` also takes per-row write slots ([B]), so rows may have their own live lengths.
Longrope models (Phi-3/4) leave the loop when the sequence reaches the original context, re-encode it once
with the long factors (as transformers does) and continue in a second loop; no step contains a re-encoding.
For every generated token it records, from the logits it already has (no extra forward pass):

- the full-vocabulary Shannon entropy of softmax(raw logits) — temperature 1, before any top-p truncation,
  float32, nats (`ENTROPY_SETTINGS` is stored with every result);
- the chosen token's log-probability under that same untruncated distribution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from entropy_jax.info import entropy_from_logits
from entropy_jax.llm.attention import Mask
from entropy_jax.llm.model import positions_from_mask

ENTROPY_SETTINGS = {
    "quantity": "Shannon entropy of the next-token distribution softmax(logits)",
    "vocabulary": "full (no top-k/top-p truncation)",
    "temperature": 1.0,
    "logits": "raw model logits, before sampling temperature and top-p",
    "dtype": "float32",
    "units": "nats",
    "log_prob": "log softmax(raw logits) at the chosen token",
}


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How tokens are chosen. `temperature == 0` is greedy (argmax); otherwise softmax(logits / temperature)
    restricted to the smallest set of tokens with probability ≥ `top_p` (nucleus sampling)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def init_cache(config, batch: int, length: int, dtype):
    """Zero KV cache: per layer (k, v), each [batch, K, length, hd] in `dtype` (the compute dtype)."""
    shape = (batch, config.num_kv_heads, length, config.head_dim)
    return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(config.num_layers))


def compute_dtype(model):
    """The dtype the decoder computes in (its embedding output dtype): bf16 models keep a bf16 cache."""
    return model.embed.dtype or model.embed.embedding.dtype


def prefill(graphdef, params, tokens_bt, mask_bt, *, cache_len: int, constrain: Callable | None = None):
    """Run the prompt [B, T] (left-padded) once; returns (logits of the last position [B, V] float32,
    KV cache in the compute dtype with slots [0, T) filled and `cache_len` slots in all)."""
    model = nnx.merge(graphdef, params)
    b = tokens_bt.shape[0]
    cache = init_cache(model.config, b, cache_len, compute_dtype(model))
    h, cache = model.hidden(tokens_bt, positions_from_mask(mask_bt), Mask.causal(mask_bt), cache, slot=0,
                            constrain=constrain)
    return model.project(h[:, -1:])[:, 0], cache


def step(graphdef, params, cache, token_b, position_b, kv_valid_bs, slot, *, constrain: Callable | None = None):
    """One decode step: token [B] at position [B] (rotary) written to cache slot `slot` (scalar, or [B] for
    per-row write positions) attends over the cache slots ≤ its own that `kv_valid` [B, S] marks.
    Its cost grows with the live prefix (the highest slot queried), not with S. Returns (float32 logits
    [B, V], updated cache)."""
    model = nnx.merge(graphdef, params)
    b = token_b.shape[0]
    slots = jnp.broadcast_to(jnp.asarray(slot, jnp.int32).reshape(-1, 1), (b, 1))
    return _step(model, cache, token_b, position_b, Mask.over_cache_slots(kv_valid_bs, slots), slot, constrain)


def _step(model, cache, token_b, position_b, mask, slot, constrain):
    h, cache = model.hidden(token_b[:, None], position_b[:, None], mask, cache, slot=slot, constrain=constrain)
    return model.project(h)[:, 0], cache


def choose(logits_bv, key, temperature, top_p, greedy: bool):
    """Next tokens [B] int32 from float32 logits [B, V]: argmax when `greedy`, else a draw from
    softmax(logits / temperature) restricted to the nucleus of mass `top_p` (at least one token)."""
    if greedy:
        return jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
    scaled = logits_bv / temperature
    sorted_desc = -jnp.sort(-scaled, axis=-1)
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # the smallest prefix of the sorted vocabulary whose mass reaches top_p (at least one token)
    cutoff = jnp.min(jnp.where(mass_before < top_p, sorted_desc, jnp.inf), axis=-1, keepdims=True)
    nucleus = jnp.where(scaled >= cutoff, scaled, -jnp.inf)
    return jax.random.categorical(key, nucleus, axis=-1).astype(jnp.int32)


def decode(graphdef, params, cache, logits_bv, tokens_bt, mask_bt, active_b, key, temperature, top_p, stop_ids,
           budget_b=None, *, max_new_tokens: int, greedy: bool, pad_id: int, constrain: Callable | None = None):
    """Generate up to `max_new_tokens` after `prefill`, row b at most `budget_b[b]` of them.

    Args: cache and logits from `prefill`; tokens_bt, mask_bt [B, T] the prompt; active_b [B] bool, False for
    rows that only pad the batch (they count as finished from the start); key a PRNG key (folded with the
    step); temperature, top_p scalars; stop_ids [n] int32; budget_b [B] int32 (traced: rows with their own
    budgets, and one compiled loop for every budget ≤ N; None = N for every row).
    Returns (outputs, cache), outputs a dict: tokens [B, N] int32 (pad_id after a row stops), valid [B, N] bool
    (generated, stop token included), entropy [B, N] and log_prob [B, N] float32 (0 where not valid), steps
    (forward passes run: the loop ends when every row has stopped or used its budget); the cache is returned
    so a donated input cache is updated in place.
    """
    model = nnx.merge(graphdef, params)
    b, t = mask_bt.shape
    n = max_new_tokens
    budget_b = jnp.full((b,), n, jnp.int32) if budget_b is None else jnp.minimum(budget_b, n)
    start_pos = jnp.max(positions_from_mask(mask_bt), axis=1) + 1
    prompt_valid = mask_bt.astype(bool)
    # cache slots: the prompt's validity, then the generated slots (hidden until written: causal on slots)
    step_mask = Mask.over_cache_slots(jnp.concatenate([prompt_valid, jnp.ones((b, n), bool)], axis=1),
                                      jnp.full((b, 1), t, jnp.int32))
    slots = jnp.arange(t + n)
    rope = model.config.rope
    longrope_switch = None
    if rope.type == "longrope":
        longrope_switch = rope.original_max_position_embeddings or model.config.max_position_embeddings

    def running(carry):
        i, *_, done, _out = carry
        return (i < n) & ~jnp.all(done)

    def emit(i, logits, done, out):
        token = choose(logits, jax.random.fold_in(key, i), temperature, top_p, greedy)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), token[:, None], axis=-1)[:, 0]
        entropy = entropy_from_logits(logits)
        valid = ~done
        token = jnp.where(valid, token, pad_id)
        out = {
            "tokens": out["tokens"].at[:, i].set(token),
            "valid": out["valid"].at[:, i].set(valid),
            "entropy": out["entropy"].at[:, i].set(jnp.where(valid, entropy, 0.0)),
            "log_prob": out["log_prob"].at[:, i].set(jnp.where(valid, log_prob, 0.0)),
        }
        stopped = jnp.any(token[:, None] == stop_ids[None, :], axis=-1) | (i + 1 >= budget_b)
        return token, done | stopped, out

    def body(carry):
        i, cache, logits, done, out = carry
        token, done, out = emit(i, logits, done, out)
        # slot t + i holds the new token; it sees the prompt's valid slots and every generated slot so far
        mask = dataclasses.replace(step_mask, q_slots=jnp.full((b, 1), t + i, jnp.int32))
        logits, cache = _step(model, cache, token, start_pos + i, mask, t + i, constrain)
        return i + 1, cache, logits, done, out

    def reencode(carry):
        # longrope switches every position to the long factors once the sequence passes the original
        # context; like transformers' Phi-3, re-encode everything once so all cached keys use one set
        i, cache, logits, done, out = carry
        _, done, out = emit(i, logits, done, out)
        sequence = jnp.concatenate([tokens_bt, out["tokens"]], axis=1)
        valid = jnp.where(slots < t, jnp.pad(prompt_valid, ((0, 0), (0, n))), slots <= t + i)
        h, cache = model.hidden(sequence, positions_from_mask(valid), Mask.causal(valid), cache, slot=0,
                                constrain=constrain)
        h = jax.lax.dynamic_slice_in_dim(h, t + i, 1, axis=1)
        return i + 1, cache, model.project(h)[:, 0], done, out

    out = {
        "tokens": jnp.full((b, n), pad_id, jnp.int32),
        "valid": jnp.zeros((b, n), bool),
        "entropy": jnp.zeros((b, n), jnp.float32),
        "log_prob": jnp.zeros((b, n), jnp.float32),
    }
    carry = (jnp.int32(0), cache, logits_bv, ~active_b.astype(bool), out)
    if longrope_switch is not None:
        # the loop leaves just before the token at the original context's last position is fed, the
        # sequence is re-encoded once outside it (a conditional run at most once, not a branch of every
        # step), and decoding continues with the long factors in a second loop
        def before_switch(carry):
            return running(carry) & (jnp.max(start_pos) + carry[0] != longrope_switch)

        carry = jax.lax.while_loop(before_switch, body, carry)
        carry = jax.lax.cond(running(carry), reencode, lambda c: c, carry)
    steps, cache, _, _, out = jax.lax.while_loop(running, body, carry)
    out["steps"] = steps
    return out, cache
