"""The decoder: one Flax NNX module tree for Llama, Qwen2/2.5, Qwen3, Mistral and Phi-3/4-mini.

Families differ only in switches of `LlmConfig`: q/k/v (and o) biases (Qwen2, Llama `attention_bias`),
per-head q/k RMSNorm before RoPE (Qwen3), partial rotary and longrope (Phi-3/4), sliding windows, tied
embeddings. Phi-3's fused `qkv_proj`/`gate_up_proj` are split by the loader (`params.py`), so every family
shares one parameter layout:

    embed.embedding [V, D]          layers.{l}.attn_norm.scale [D]      layers.{l}.mlp_norm.scale [D]
    layers.{l}.attn.{q,k,v,o}.kernel [in, out] (+ .bias)                layers.{l}.attn.{q,k}_norm.scale [hd]
    layers.{l}.mlp.{gate,up,down}.kernel [in, out] (+ .bias)            norm.scale [D]   lm_head.kernel [D, V]

Numerics follow transformers: RMSNorm in float32 then cast back, attention softmax in float32, RoPE angles
in float32, logits returned in float32. The module is only ever called inside `jax.jit` through
`forward(graphdef, params, ...)`, a pure function of a params pytree (nested dict of arrays).

Attention masks are per-token descriptions (`attention.Mask`), never dense [B, T, S] arrays, and the
attention itself is `attention.attend` (blockwise by default: O(T · block) memory per layer; the einsum
reference and backend kernels behind `Decoder(config, attention=AttentionConfig(impl=...))`).

`Decoder(config, lora=LoraSpec(...))` adds low-rank adapters to the named projections: such a Dense holds
`lora_a` [in, r] and `lora_b` [r, out] next to its kernel and computes x W + scale · (x a) b, so training the
adapters never forms a gradient of W (the fine-tuning path of `entropy_jax.train`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from entropy_jax.llm import attention, rope
from entropy_jax.llm.attention import DEFAULT_ATTENTION, AttentionConfig, Mask
from entropy_jax.llm.config import LlmConfig

KVCache = tuple[tuple[jax.Array, jax.Array], ...]  # per layer (k, v), each [B, K, S, hd]


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """Which kernels (dotted paths such as "layers.0.attn.q.kernel") carry rank-`rank` adapters, scaled by
    `scale` (alpha / rank). Static: part of the graph definition."""

    rank: int
    scale: float
    paths: frozenset[str]

    def rank_of(self, path: str) -> int:
        return self.rank if path in self.paths else 0


class Dense(nnx.Module):
    def __init__(self, d_in: int, d_out: int, *, bias: bool, dtype, rngs: nnx.Rngs, lora_rank: int = 0,
                 lora_scale: float = 0.0):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (d_in, d_out), dtype) * d_in**-0.5)
        self.bias = nnx.Param(jnp.zeros((d_out,), dtype)) if bias else None
        self.lora_scale = lora_scale
        if lora_rank:  # placeholders: adapters are supplied with the params (entropy_jax.train.lora)
            self.lora_a = nnx.Param(jnp.zeros((d_in, lora_rank), dtype))
            self.lora_b = nnx.Param(jnp.zeros((lora_rank, d_out), dtype))
        else:
            self.lora_a = self.lora_b = None

    def __call__(self, x):
        # one [N, in] @ [in, out] product: XLA's CPU backend runs the 2-D form (and its weight gradient,
        # which contracts all leading axes) ~1.6× faster than the same product over [B, T, in]
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ self.kernel[...]
        if self.lora_a is not None:
            y = y + self.lora_scale * ((x2 @ self.lora_a[...]) @ self.lora_b[...])
        y = y.reshape(*lead, y.shape[-1])
        return y if self.bias is None else y + self.bias[...]


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype):
        self.scale = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = eps

    def __call__(self, x):
        xf = x.astype(jnp.float32)
        normed = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return self.scale[...] * normed.astype(x.dtype)


def _lora(lora: LoraSpec | None, path: str) -> dict:
    return {} if lora is None else {"lora_rank": lora.rank_of(path), "lora_scale": lora.scale}


class Attention(nnx.Module):
    def __init__(self, config: LlmConfig, layer: int, *, dtype, rngs: nnx.Rngs, lora: LoraSpec | None = None,
                 attention: AttentionConfig = DEFAULT_ATTENTION):
        c = config
        self.config, self.window, self.attention = c, c.window(layer), attention
        kw = {n: _lora(lora, f"layers.{layer}.attn.{n}.kernel") for n in "qkvo"}
        self.q = Dense(c.hidden_size, c.num_heads * c.head_dim, bias=c.qkv_bias, dtype=dtype, rngs=rngs, **kw["q"])
        self.k = Dense(c.hidden_size, c.num_kv_heads * c.head_dim, bias=c.qkv_bias, dtype=dtype, rngs=rngs, **kw["k"])
        self.v = Dense(c.hidden_size, c.num_kv_heads * c.head_dim, bias=c.qkv_bias, dtype=dtype, rngs=rngs, **kw["v"])
        self.o = Dense(c.num_heads * c.head_dim, c.hidden_size, bias=c.o_bias, dtype=dtype, rngs=rngs, **kw["o"])
        if c.qk_norm:
            self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps, dtype)
            self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps, dtype)

    def __call__(self, x_btd, cos_btr, sin_btr, mask, kv=None, slot=None):
        """Self-attention of T new tokens under `mask` (an `attention.Mask`).

        Without a cache (`kv=None`) the T tokens attend to each other. With a cache (k, v each
        [B, K, S, hd]) the new keys/values are written at cache slots [slot, slot + T) first (`slot` a
        scalar, or [B] for per-row write positions); a mask of kind "cache" then attends over the whole
        cache (a decode step, or a prefill chunk), any other kind over the T new tokens only. A sliding
        window (Phi-3, Mistral, some Qwen2 layers) is applied per layer on slot distances. A dense bool
        mask [B, T, T or S] is still accepted (reference attention, O(T·S) memory).
        Returns (out [B, T, D], updated kv or None).
        """
        c = self.config
        b, t, _ = x_btd.shape
        q = self.q(x_btd).reshape(b, t, c.num_heads, c.head_dim)
        k = self.k(x_btd).reshape(b, t, c.num_kv_heads, c.head_dim)
        v = self.v(x_btd).reshape(b, t, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rope.apply(q, cos_btr, sin_btr), rope.apply(k, cos_btr, sin_btr)
        # keys/values head-major [B, K, S, hd]: a decode step then reads each head's slots contiguously
        # (with [B, S, K, hd] XLA transposes the whole cache every step, ~8× slower attention on CPU)
        k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
        dense = not isinstance(mask, attention.Mask)
        over_cache = mask.shape[-1] != t if dense else mask.over_cache
        new_kv = None
        if kv is not None:
            new_kv = (write_cache(kv[0], k, slot), write_cache(kv[1], v, slot))
            if over_cache:
                k, v = new_kv
        scale = c.head_dim**-0.5
        if not dense:
            out = attention.attend(q, k, v, mask, scale=scale, window=self.window, config=self.attention)
        else:
            if self.window is not None:
                query_slot = (0 if slot is None else slot) + jnp.arange(t)
                key_slot = jnp.arange(k.shape[2]) if over_cache else query_slot
                mask = mask & (query_slot[:, None] - key_slot[None, :] < self.window)[None]
            out = attention.reference(q, k, v, mask, scale=scale)
        return self.o(out.reshape(b, t, c.num_heads * c.head_dim)), new_kv


def write_cache(cache_bksd, new_bktd, slot):
    """Write T new keys (or values) [B, K, T, hd] into a cache [B, K, S, hd] at slots [slot, slot + T):
    one slot for all rows (scalar), or one per row ([B])."""
    new = new_bktd.astype(cache_bksd.dtype)
    slot = jnp.asarray(slot, jnp.int32)
    if slot.ndim == 0:
        return jax.lax.dynamic_update_slice(cache_bksd, new, (0, 0, slot, 0))
    return jax.vmap(lambda c, n, s: jax.lax.dynamic_update_slice(c, n, (0, s, 0)))(cache_bksd, new, slot)


class Mlp(nnx.Module):
    def __init__(self, config: LlmConfig, layer: int = 0, *, dtype, rngs: nnx.Rngs, lora: LoraSpec | None = None):
        c = config
        kw = {n: _lora(lora, f"layers.{layer}.mlp.{n}.kernel") for n in ("gate", "up", "down")}
        self.gate = Dense(c.hidden_size, c.intermediate_size, bias=c.mlp_bias, dtype=dtype, rngs=rngs, **kw["gate"])
        self.up = Dense(c.hidden_size, c.intermediate_size, bias=c.mlp_bias, dtype=dtype, rngs=rngs, **kw["up"])
        self.down = Dense(c.intermediate_size, c.hidden_size, bias=c.mlp_bias, dtype=dtype, rngs=rngs, **kw["down"])

    def __call__(self, x):
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):
    def __init__(self, config: LlmConfig, layer: int, *, dtype, rngs: nnx.Rngs, lora: LoraSpec | None = None,
                 attention: AttentionConfig = DEFAULT_ATTENTION):
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.attn = Attention(config, layer, dtype=dtype, rngs=rngs, lora=lora, attention=attention)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.mlp = Mlp(config, layer, dtype=dtype, rngs=rngs, lora=lora)

    def __call__(self, x, cos, sin, mask, kv=None, slot=None):
        h, new_kv = self.attn(self.attn_norm(x), cos, sin, mask, kv, slot)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), new_kv


class Decoder(nnx.Module):
    """Token ids [B, T] → float32 logits [B, T, V] (see `forward` for the pure, jittable entry point).
    `attention` chooses the attention implementation (static, part of the graph definition)."""

    def __init__(self, config: LlmConfig, *, dtype=jnp.float32, rngs: nnx.Rngs, lora: LoraSpec | None = None,
                 attention: AttentionConfig = DEFAULT_ATTENTION):
        c = config
        self.config = c
        self.embed = nnx.Embed(c.vocab_size, c.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.layers = nnx.List([Block(c, i, dtype=dtype, rngs=rngs, lora=lora, attention=attention)
                                for i in range(c.num_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, dtype)
        if not c.tie_word_embeddings:
            self.lm_head = Dense(c.hidden_size, c.vocab_size, bias=False, dtype=dtype, rngs=rngs)

    def hidden(self, tokens_bt, positions_bt, mask, cache: KVCache | None = None, slot=None,
               constrain: Callable | None = None, max_position=None, remat: Callable | None = None,
               scan: bool = False):
        """Final-norm hidden states [B, T, D] and the updated cache. `mask` is an `attention.Mask`
        (`Mask.causal(valid_bt)`, `Mask.segments(segments_bt)`, `Mask.over_cache_slots(...)`).
        `max_position` ([B], optional) picks longrope factors per row (`rope.cos_sin`).

        Training only (no cache): `remat` transforms each layer's pure function (x, cos, sin, mask) → x,
        e.g. `functools.partial(jax.checkpoint, policy=...)`, so the backward pass recomputes what the policy
        did not save, layer by layer. `scan` runs the layers as one `lax.scan` over their params stacked
        inside the trace (the params layout is unchanged) when all layers share one structure (else the
        loop): the layer compiles once, and the backward pass recomputes one layer at a time whatever order
        the compiler schedules."""
        x = self.embed(tokens_bt)
        cos, sin = rope.cos_sin(self.config, positions_bt, max_position)
        if scan and cache is None:
            scanned = _scan_layers(self.layers, x, (cos, sin, mask), constrain, remat)
            if scanned is not None:
                return self.norm(scanned), None
        new_cache = []
        for i, layer in enumerate(self.layers):
            if constrain is not None:
                x = constrain(x)
            if remat is not None and cache is None:
                x, kv = _remat_layer(layer, remat, x, cos, sin, mask), None
            else:
                x, kv = layer(x, cos, sin, mask, None if cache is None else cache[i], slot)
            new_cache.append(kv)
        return self.norm(x), (None if cache is None else tuple(new_cache))

    def project(self, h_btd):
        """Hidden states → float32 logits over the full vocabulary."""
        if self.config.tie_word_embeddings:
            logits = jnp.einsum("btd,vd->btv", h_btd, self.embed.embedding[...])
        else:
            logits = self.lm_head(h_btd)
        return logits.astype(jnp.float32)


def _remat_layer(layer: Block, remat: Callable, x, cos, sin, mask):
    # the transform (jax.checkpoint) needs a pure function of arrays: the layer's params become an argument
    graphdef, state = nnx.split(layer)

    def run(state, x, cos, sin, mask):
        return nnx.merge(graphdef, state)(x, cos, sin, mask)[0]

    return remat(run)(state, x, cos, sin, mask)


def _scan_layers(layers, x, args, constrain: Callable | None, remat: Callable | None):
    """x through `layers` as a `lax.scan` over their stacked params (None when their structures differ)."""
    splits = [nnx.split(layer) for layer in layers]
    graphdef = splits[0][0]
    if any(g != graphdef for g, _ in splits[1:]):
        return None
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[state for _, state in splits])

    def run(state, x, *args):
        return nnx.merge(graphdef, state)(x, *args)[0]

    run = run if remat is None else remat(run)

    def body(x, state):
        return run(state, x if constrain is None else constrain(x), *args), None

    return jax.lax.scan(body, x, stacked)[0]


# ---------------------------------------------------------------------------------------------- pure API
def causal_mask(mask_bt: jax.Array) -> jax.Array:
    """[B, T] validity → dense [B, T, T] attention mask: key j visible to query i iff j ≤ i and j is valid
    (O(T²); the model itself takes `attention.Mask.causal(mask_bt)`)."""
    t = mask_bt.shape[1]
    allowed = jnp.arange(t)[None, :] <= jnp.arange(t)[:, None]
    return allowed[None] & mask_bt.astype(bool)[:, None, :]


def positions_from_mask(mask_bt: jax.Array) -> jax.Array:
    """Per-row positions 0, 1, … counted over valid tokens only (left or right padding alike)."""
    return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=1) - 1, 0)


def forward(graphdef, params, tokens_bt, mask_bt, *, constrain: Callable | None = None):
    """Pure forward: (graphdef, params, tokens [B, T] int32, mask [B, T]) → float32 logits [B, T, V]."""
    model = nnx.merge(graphdef, params)
    h, _ = model.hidden(tokens_bt, positions_from_mask(mask_bt), Mask.causal(mask_bt), constrain=constrain)
    return model.project(h)


def forward_last(graphdef, params, tokens_bt, mask_bt, *, constrain: Callable | None = None):
    """Float32 logits [B, V] of the next token after left-padded prompts [B, T] (only the last position
    is projected onto the vocabulary: T× less work and memory than `forward` for answer-step scoring)."""
    model = nnx.merge(graphdef, params)
    h, _ = model.hidden(tokens_bt, positions_from_mask(mask_bt), Mask.causal(mask_bt), constrain=constrain)
    return model.project(h[:, -1:])[:, 0]


def init_params(config: LlmConfig, key: jax.Array, dtype=jnp.float32,
                attention: AttentionConfig = DEFAULT_ATTENTION):
    """Random parameters (nested dict of arrays) with the loader's layout; for tests and benchmarks."""
    model = Decoder(config, dtype=dtype, rngs=nnx.Rngs(params=key), attention=attention)
    graphdef, state = nnx.split(model)
    return graphdef, nnx.to_pure_dict(state)


def abstract(config: LlmConfig, dtype=jnp.float32, lora: LoraSpec | None = None,
             attention: AttentionConfig = DEFAULT_ATTENTION):
    """(graphdef, params of jax.ShapeDtypeStruct) without allocating anything (with adapters under `lora`,
    attention implementation `attention`). The params dict is the caller's own (a fresh tree each call)."""
    graphdef, shapes = _abstract(config, jnp.dtype(dtype), lora, attention)
    return graphdef, jax.tree.map(lambda s: s, shapes)


@functools.lru_cache(maxsize=64)
def _abstract(config: LlmConfig, dtype, lora: LoraSpec | None, attention: AttentionConfig):
    # Tracing the constructor of a 30-layer decoder takes ~2 s on CPU and its result depends on these hashable
    # statics alone; every load, train step and memory plan asks for it again.
    model = nnx.eval_shape(lambda: Decoder(config, dtype=dtype, rngs=nnx.Rngs(0), lora=lora, attention=attention))
    graphdef, state = nnx.split(model)
    return graphdef, nnx.to_pure_dict(state)
