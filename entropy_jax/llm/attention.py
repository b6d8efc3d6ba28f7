"""Attention over a per-token mask description: a blockwise (flash-style) kernel, backend kernels, and the
plain einsum reference.

Which keys a query sees is never given as a dense [B, T, S] array (at T = S = 32k that alone is 1 GiB per
row); a `Mask` holds per-token information instead, and every implementation derives the mask it needs from
it, block by block:

    q_slots [B, T]      the key-axis index (cache slot) of each query; keys at later slots are hidden (causal)
    q_segments [B, T]   a query sees only keys of its own segment ...
    kv_segments [B, S]  ... and never a key of segment 0 (padding, or a cache slot not written yet)
    q_starts [B, T]     a lower bound on the slots of the keys a query sees (skipping whole blocks below it)

A per-layer sliding window of W hides keys with q_slot − key_slot ≥ W. Ordinary left- or right-padded causal
attention has one segment per row (`Mask.causal`), packed training rows one segment per example
(`Mask.segments`), and a decode step queries at its write slot over the cache (`Mask.over_cache`); q_slots
may differ per row, so rows can have their own live lengths and write positions.

Implementations (`AttentionConfig.impl`):

- "blockwise" (default on every backend): online softmax over key blocks, float32 running max, sum and
  accumulator; queries in blocks of `block_q` tokens (all G query heads of a key/value head together, so
  GQA never repeats K/V); for each query block a `fori_loop` with dynamic bounds visits only the key blocks
  between the lowest visible slot and the highest query slot of the block, so blocks wholly above the
  causal diagonal, wholly in left padding, outside the window or (in a decode step) beyond the live prefix
  cost nothing. Memory O(T · block). Its gradient is a custom VJP (FlashAttention-2's backward: probabilities
  recomputed per block from the saved log-sum-exp), memory O(T · block) as well.
- "reference": today's einsum with a dense mask (float32 scores [B, K, G·T, S]); the test reference.
- "cudnn": `jax.nn.dot_product_attention(implementation="cudnn")` for causal self-attention in bf16/f16 on a
  GPU (each row's valid span is rotated to the front, so left padding becomes cuDNN's sequence lengths).
- "splash": the Pallas TPU splash-attention kernel (causal or local mask, segment ids) for self-attention
  with T a multiple of 128 and head_dim a multiple of 128, on a single TPU device.
- "auto": cudnn on a GPU, splash on a single TPU device, where the call's mask form allows; blockwise
  otherwise (always on CPU). A call whose form a backend kernel cannot express falls back to blockwise.

The cudnn and splash paths have not run on their hardware here: their mask conversion is tested on CPU
through `jax.nn.dot_product_attention(implementation="xla")` and the splash kernel in Pallas interpret mode.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

IMPLEMENTATIONS = ("auto", "blockwise", "reference", "cudnn", "splash")
KINDS = ("causal", "segments", "cache")
_NEG = float(np.finfo(np.float32).min)  # masked score; exp(_NEG − real max) is exactly 0 in float32
_FAR = np.iinfo(np.int32).max // 2  # lower bound of a query that sees nothing (invalid query)


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Static choice of the attention implementation (part of the decoder's graph definition, hashable).

    `block_q` query tokens and `block_k` keys per block of the blockwise kernel (clipped to the sequence
    lengths; a length that is not a multiple is handled without padding the keys). None = the backend's
    default, `default_blocks()`: 128 × 128 on CPU (score blocks that stay in cache: 1.7× faster than 512 ×
    512 at 8 × 256 tokens, 2× at 2k), 512 × 512 on accelerators."""

    impl: str = "auto"
    block_q: int | None = None
    block_k: int | None = None

    def __post_init__(self):
        if self.impl not in IMPLEMENTATIONS:
            raise ValueError(f"attention impl {self.impl!r}; use one of {list(IMPLEMENTATIONS)}")
        for name in ("block_q", "block_k"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"attention {name} must be ≥ 1, got {getattr(self, name)}")

    def blocks(self) -> tuple[int, int]:
        """(block_q, block_k), the backend's defaults filled in (decided at trace time)."""
        dq, dk = default_blocks()
        return self.block_q or dq, self.block_k or dk


def default_blocks(backend: str | None = None) -> tuple[int, int]:
    return (128, 128) if (backend or jax.default_backend()) == "cpu" else (512, 512)


DEFAULT_ATTENTION = AttentionConfig()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Mask:
    """Which keys each query sees, as per-token arrays (see the module docstring). `kind` is static:
    "causal" and "segments" describe self-attention of the T new tokens (S = T), "cache" a query block at
    `q_slots` over a KV cache of S slots."""

    q_slots: jax.Array
    q_segments: jax.Array
    q_starts: jax.Array
    kv_segments: jax.Array
    kind: str = dataclasses.field(default="causal", metadata={"static": True})

    @property
    def over_cache(self) -> bool:
        return self.kind == "cache"

    @classmethod
    def causal(cls, valid_bt) -> Mask:
        """Causal self-attention of T tokens with validity [B, T] (left or right padding, 1 = token)."""
        valid = jnp.asarray(valid_bt).astype(bool)
        b, t = valid.shape
        seg = valid.astype(jnp.int32)
        first = jnp.argmax(valid, axis=1).astype(jnp.int32)
        slots = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        return cls(slots, seg, jnp.broadcast_to(first[:, None], (b, t)), seg, "causal")

    @classmethod
    def segments(cls, segments_bt) -> Mask:
        """Block-diagonal causal attention of packed rows: segment ids [B, T] (0 = padding), each example
        one contiguous run of its id (as `entropy_jax.train.packing` lays rows out)."""
        seg = jnp.asarray(segments_bt).astype(jnp.int32)
        b, t = seg.shape
        idx = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        new_run = jnp.concatenate([jnp.ones((b, 1), bool), seg[:, 1:] != seg[:, :-1]], axis=1)
        starts = jax.lax.cummax(jnp.where(new_run, idx, 0), axis=1)
        return cls(idx, seg, starts, seg, "segments")

    @classmethod
    def over_cache_slots(cls, kv_valid_bs, q_slots_bt) -> Mask:
        """Queries at cache slots `q_slots` [B, T] over a cache whose slot validity is `kv_valid` [B, S]
        (False for padding; slots above a query are hidden by causality, so slots not yet written may be
        marked valid)."""
        kv = jnp.asarray(kv_valid_bs).astype(bool)
        slots = jnp.asarray(q_slots_bt).astype(jnp.int32)
        first = jnp.argmax(kv, axis=1).astype(jnp.int32)
        return cls(slots, jnp.ones(slots.shape, jnp.int32), jnp.broadcast_to(first[:, None], slots.shape),
                   kv.astype(jnp.int32), "cache")

    def dense(self, window: int | None = None) -> jax.Array:
        """The [B, T, S] bool mask this describes (for the reference; O(T·S) memory)."""
        s = self.kv_segments.shape[1]
        key_slot = jnp.arange(s, dtype=jnp.int32)[None, None, :]
        q = self.q_slots[:, :, None]
        kv = self.kv_segments[:, None, :]
        visible = (key_slot <= q) & (kv == self.q_segments[:, :, None]) & (kv != 0)
        if window is not None:
            visible &= q - key_slot < window
        return visible


# ---------------------------------------------------------------------------------------------- entry point
def attend(q_bthd, k_bksd, v_bksd, mask: Mask, *, scale: float, window: int | None = None,
           config: AttentionConfig = DEFAULT_ATTENTION):
    """Grouped-query attention of queries [B, T, H, hd] over keys/values [B, K, S, hd] (H = G·K) under
    `mask` (and a sliding `window`, in slots). Softmax in float32; a query that sees no key gets 0.
    Returns [B, T, H, hd] in the query dtype."""
    impl = resolve(config.impl, q_bthd, k_bksd, mask, window)
    if impl == "reference":
        return reference(q_bthd, k_bksd, v_bksd, mask.dense(window), scale=scale)
    if impl == "cudnn":
        return dot_product(q_bthd, k_bksd, v_bksd, mask, scale=scale, window=window, implementation="cudnn")
    if impl == "splash":
        return splash(q_bthd, k_bksd, v_bksd, mask, scale=scale, window=window)
    block_q, block_k = config.blocks()
    return blockwise(q_bthd, k_bksd, v_bksd, mask, scale=scale, window=window, block_q=block_q, block_k=block_k)


def resolve(impl: str, q_bthd, k_bksd, mask: Mask, window: int | None) -> str:
    """The implementation a call runs: `impl`, except that "auto" picks the backend kernel and a backend
    kernel whose conditions the call does not meet (`cudnn_applies`, `splash_applies`) falls back to
    "blockwise". Decided at trace time from shapes, dtypes, the mask kind and the backend."""
    if impl in ("blockwise", "reference"):
        return impl
    backend = jax.default_backend()
    if impl == "cudnn" or (impl == "auto" and backend == "gpu"):
        return "cudnn" if backend == "gpu" and cudnn_applies(q_bthd, k_bksd, mask) else "blockwise"
    if impl == "splash" or (impl == "auto" and backend == "tpu"):
        single = jax.device_count() == 1 or impl == "splash"  # a Pallas call is not partitioned by GSPMD
        return "splash" if backend == "tpu" and single and splash_applies(q_bthd, k_bksd, mask) else "blockwise"
    return "blockwise"


def cudnn_applies(q_bthd, k_bksd, mask: Mask) -> bool:
    """cuDNN's fused attention: causal self-attention (one segment per row), bf16/f16, head_dim ≤ 256 and
    a multiple of 8."""
    d = q_bthd.shape[-1]
    return (mask.kind == "causal" and q_bthd.shape[1] == k_bksd.shape[2]
            and q_bthd.dtype in (jnp.bfloat16, jnp.float16) and d <= 256 and d % 8 == 0)


def splash_applies(q_bthd, k_bksd, mask: Mask) -> bool:
    """The splash kernel: self-attention (causal or packed segments), T a multiple of 128, head_dim a
    multiple of 128."""
    t = q_bthd.shape[1]
    return (mask.kind in ("causal", "segments") and t == k_bksd.shape[2] and t % 128 == 0
            and q_bthd.shape[-1] % 128 == 0)


# ---------------------------------------------------------------------------------------------- reference
def reference(q_bthd, k_bksd, v_bksd, mask_bts, *, scale: float):
    """Grouped-query attention of queries [B, T, H, hd] over keys/values [B, K, S, hd] (H = G·K) with a
    dense bool mask [B, T, S]; scores and softmax in float32, masked entries get probability 0 (a row with
    none visible averages all values). Returns [B, T, H, hd].

    The G query heads that share a key/value head are stacked along the query axis, so each key/value head
    is one [G·T, hd] @ [hd, S] product (2.4× faster forward, 1.6× forward + backward on XLA's CPU backend
    than the 5-D einsum over (t, g))."""
    b, t, h, d = q_bthd.shape
    kv_heads = k_bksd.shape[1]
    g = h // kv_heads
    q = q_bthd.reshape(b, t, kv_heads, g, d).transpose(0, 2, 3, 1, 4).reshape(b, kv_heads, g * t, d)
    scores = jnp.einsum("bkqd,bksd->bkqs", q, k_bksd, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(jnp.tile(mask_bts, (1, g, 1))[:, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_bksd.dtype)
    out = jnp.einsum("bkqs,bksd->bkqd", probs, v_bksd)
    return out.reshape(b, kv_heads, g, t, d).transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


# ---------------------------------------------------------------------------------------------- blockwise
def blockwise(q_bthd, k_bksd, v_bksd, mask: Mask, *, scale: float, window: int | None = None,
              block_q: int = 128, block_k: int = 128):
    """Flash-style attention (see the module docstring); same contract as `attend`. Differentiable in q,
    k and v (custom VJP)."""
    b, t, h, d = q_bthd.shape
    kv_heads, s = k_bksd.shape[1], k_bksd.shape[2]
    g = h // kv_heads
    tq = min(block_q, t)
    nq = -(-t // tq)
    pad = nq * tq - t
    bk = min(block_k, s)

    fields = _query_blocks(mask, window, tq)
    if nq == 1 and bk == s:
        return _single_block(q_bthd, k_bksd, v_bksd, *(f[0] for f in fields), mask.kv_segments.astype(jnp.int32),
                             scale, window)
    q = jnp.pad(q_bthd, ((0, 0), (0, pad), (0, 0), (0, 0)))
    q = q.reshape(b, nq, tq, kv_heads, g, d).transpose(1, 0, 3, 2, 4, 5).reshape(nq, b, kv_heads, tq * g, d)
    out = _flash(q, k_bksd, v_bksd, *fields, mask.kv_segments.astype(jnp.int32), scale, window, bk)
    out = out.reshape(nq, b, kv_heads, tq, g, d).transpose(1, 0, 3, 2, 4, 5).reshape(b, nq * tq, h, d)
    return out[:, :t]


def _single_block(q_bthd, k_bksd, v_bksd, slots, segs, lo, hi, kv_segments, scale, window):
    """The blockwise result when all queries and keys fit in one block each: the same masked softmax in one
    step, with no loops and plain autodiff (at most block_q × block_k scores per head, so nothing to save).
    Compiles as fast as the reference, which matters for the many short programs of tests and demos."""
    del lo, hi  # every key is in the one block
    b, t, h, d = q_bthd.shape
    kv_heads, s = k_bksd.shape[1], k_bksd.shape[2]
    g = h // kv_heads
    q = q_bthd.reshape(b, t, kv_heads, g, d).transpose(0, 2, 1, 3, 4).reshape(b, kv_heads, t * g, d)
    sc, vis = _scores(q, k_bksd, _visible(slots, segs, kv_segments, 0, 0, s, window), scale, g)
    sc = jnp.where(vis, sc, _NEG).reshape(b, kv_heads, t * g, s)
    m = jnp.max(sc, axis=-1)
    seen = m > _NEG
    p = jnp.exp(sc - m[..., None])
    denom = jnp.sum(p, axis=-1)
    out = jnp.einsum("bkqs,bksd->bkqd", p.astype(v_bksd.dtype), v_bksd, preferred_element_type=jnp.float32)
    out = jnp.where(seen[..., None], out / jnp.where(seen, denom, 1.0)[..., None], 0.0).astype(q_bthd.dtype)
    return out.reshape(b, kv_heads, t, g, d).transpose(0, 2, 1, 3, 4).reshape(b, t, h, d)


def _query_blocks(mask: Mask, window: int | None, tq: int):
    """(slots, segments, lo, hi), each [nq, B, tq]: the mask fields in query blocks of tq tokens (padded),
    with lo/hi the lowest/highest key slot each query may see (invalid queries: lo = _FAR, hi = −1)."""
    b, t = mask.q_slots.shape
    nq = -(-t // tq)
    valid = mask.q_segments != 0
    lo = mask.q_starts
    if window is not None:
        lo = jnp.maximum(lo, mask.q_slots - (window - 1))
    # a query block visits key blocks [min lo, max hi]; invalid queries widen neither bound
    lo = jnp.where(valid, lo, _FAR)
    hi = jnp.where(valid, mask.q_slots, -1)

    def blocks(x, fill):  # [B, T] → [nq, B, tq]
        x = jnp.pad(x, ((0, 0), (0, nq * tq - t)), constant_values=fill)
        return x.reshape(b, nq, tq).transpose(1, 0, 2)

    return blocks(mask.q_slots, 0), blocks(mask.q_segments, 0), blocks(lo, _FAR), blocks(hi, -1)


def key_block_ranges(mask: Mask, s: int, *, window: int | None = None, block_q: int = 128,
                     block_k: int = 128) -> jax.Array:
    """[nq, 2] int32: the key blocks [first, end) of size block_k (over S = `s` keys) that `blockwise`
    visits for each query block of block_q tokens; every other block costs nothing."""
    t = mask.q_slots.shape[1]
    bk = min(block_k, s)
    _, _, lo, hi = _query_blocks(mask, window, min(block_q, t))
    ranges = jax.vmap(lambda lo_b, hi_b: jnp.stack(_block_range(lo_b, hi_b, bk, -(-s // bk))))(lo, hi)
    return ranges.astype(jnp.int32)


def _key_block(k, v, kv_segments, kb, bk):
    """Key block `kb` (keys [kb·bk, kb·bk + bk)); the last block of a length that bk does not divide is
    read from S − bk on, and the keys it shares with the previous block are masked by `first`."""
    s = k.shape[2]
    first = kb * bk
    start = jnp.minimum(first, s - bk)
    k_blk = jax.lax.dynamic_slice_in_dim(k, start, bk, axis=2)
    v_blk = jax.lax.dynamic_slice_in_dim(v, start, bk, axis=2)
    seg_blk = jax.lax.dynamic_slice_in_dim(kv_segments, start, bk, axis=1)
    return start, first, k_blk, v_blk, seg_blk


def _visible(slots, segs, seg_blk, start, first, bk, window):
    """[B, tq, bk] bool: which keys of the block each query of the block sees."""
    key_slot = start + jnp.arange(bk, dtype=jnp.int32)
    q = slots[:, :, None]
    kv = seg_blk[:, None, :]
    vis = (key_slot <= q) & (key_slot >= first) & (kv == segs[:, :, None]) & (kv != 0)
    if window is not None:
        vis &= q - key_slot < window
    return vis


def _block_range(lo, hi, bk, nk):
    kb_lo = jnp.clip(jnp.min(lo) // bk, 0, nk)
    kb_hi = jnp.clip(jnp.max(hi) // bk + 1, 0, nk)
    return kb_lo, kb_hi


def _scores(q_blk, k_blk, vis, scale, g):
    """Masked float32 scores [B, K, tq·g, bk] of a query block against a key block."""
    b, kv_heads, rows, _ = q_blk.shape
    bk = k_blk.shape[2]
    sc = jnp.einsum("bkqd,bksd->bkqs", q_blk, k_blk, preferred_element_type=jnp.float32) * scale
    sc = sc.reshape(b, kv_heads, rows // g, g, bk)
    return sc, vis[:, None, :, None, :]


def _forward(q, k, v, slots, segs, lo, hi, kv_segments, scale, window, bk):
    """(out [nq, B, K, tq·g, hd] in q's dtype, lse [nq, B, K, tq·g] float32)."""
    _, b, kv_heads, rows, d = q.shape
    tq = slots.shape[-1]
    g = rows // tq
    nk = -(-k.shape[2] // bk)

    def per_query_block(_, xs):
        q_blk, slots_b, segs_b, lo_b, hi_b = xs

        def body(kb, carry):
            m, denom, acc = carry
            start, first, k_blk, v_blk, seg_blk = _key_block(k, v, kv_segments, kb, bk)
            sc, vis = _scores(q_blk, k_blk, _visible(slots_b, segs_b, seg_blk, start, first, bk, window), scale, g)
            sc = jnp.where(vis, sc, _NEG).reshape(b, kv_heads, rows, bk)
            m_new = jnp.maximum(m, jnp.max(sc, axis=-1))
            alpha = jnp.exp(m - m_new)
            p = jnp.exp(sc - m_new[..., None])
            denom = alpha * denom + jnp.sum(p, axis=-1)
            pv = jnp.einsum("bkqs,bksd->bkqd", p.astype(v.dtype), v_blk, preferred_element_type=jnp.float32)
            return m_new, denom, alpha[..., None] * acc + pv

        init = (jnp.full((b, kv_heads, rows), _NEG, jnp.float32), jnp.zeros((b, kv_heads, rows), jnp.float32),
                jnp.zeros((b, kv_heads, rows, d), jnp.float32))
        m, denom, acc = jax.lax.fori_loop(*_block_range(lo_b, hi_b, bk, nk), body, init)
        # the running max stays at _NEG exactly when no visible key was met (visible scores are finite);
        # until then the masked keys' weights exp(0) = 1 were accumulated, and are dropped here
        seen = m > _NEG
        out = jnp.where(seen[..., None], acc / jnp.where(seen, denom, 1.0)[..., None], 0.0)
        lse = jnp.where(seen, m + jnp.log(jnp.where(seen, denom, 1.0)), 0.0)
        return None, (out.astype(q.dtype), lse)

    _, (out, lse) = jax.lax.scan(per_query_block, None, (q, slots, segs, lo, hi))
    return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(8, 9, 10))
def _flash(q, k, v, slots, segs, lo, hi, kv_segments, scale, window, bk):
    return _forward(q, k, v, slots, segs, lo, hi, kv_segments, scale, window, bk)[0]


def _flash_fwd(q, k, v, slots, segs, lo, hi, kv_segments, scale, window, bk):
    out, lse = _forward(q, k, v, slots, segs, lo, hi, kv_segments, scale, window, bk)
    return out, (q, k, v, slots, segs, lo, hi, kv_segments, out, lse)


def _flash_bwd(scale, window, bk, residuals, d_out):
    """FlashAttention-2's backward: per query block, the probabilities of each visited key block are
    recomputed from the saved log-sum-exp; dq accumulates in the inner loop, dk and dv (float32, full
    length) in the carry of the loop over query blocks."""
    q, k, v, slots, segs, lo, hi, kv_segments, out, lse = residuals
    _, b, kv_heads, rows, d = q.shape
    tq = slots.shape[-1]
    g = rows // tq
    nk = -(-k.shape[2] // bk)
    delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1)  # [nq, B, K, rows]

    def per_query_block(carry, xs):
        q_blk, do_blk, lse_blk, delta_blk, slots_b, segs_b, lo_b, hi_b = xs

        def body(kb, inner):
            dq, dk, dv = inner
            start, first, k_blk, v_blk, seg_blk = _key_block(k, v, kv_segments, kb, bk)
            sc, vis = _scores(q_blk, k_blk, _visible(slots_b, segs_b, seg_blk, start, first, bk, window), scale, g)
            p = jnp.where(vis, jnp.exp(sc - lse_blk.reshape(sc.shape[:-1])[..., None]), 0.0)
            p = p.reshape(b, kv_heads, rows, bk)
            dv_blk = jnp.einsum("bkqs,bkqd->bksd", p.astype(do_blk.dtype), do_blk, preferred_element_type=jnp.float32)
            dp = jnp.einsum("bkqd,bksd->bkqs", do_blk, v_blk, preferred_element_type=jnp.float32)
            ds = p * (dp - delta_blk[..., None])
            dq = dq + scale * jnp.einsum("bkqs,bksd->bkqd", ds.astype(k_blk.dtype), k_blk,
                                         preferred_element_type=jnp.float32)
            dk_blk = scale * jnp.einsum("bkqs,bkqd->bksd", ds.astype(q_blk.dtype), q_blk,
                                        preferred_element_type=jnp.float32)
            dk = jax.lax.dynamic_update_slice_in_dim(
                dk, jax.lax.dynamic_slice_in_dim(dk, start, bk, axis=2) + dk_blk, start, axis=2)
            dv = jax.lax.dynamic_update_slice_in_dim(
                dv, jax.lax.dynamic_slice_in_dim(dv, start, bk, axis=2) + dv_blk, start, axis=2)
            return dq, dk, dv

        dq0 = jnp.zeros((b, kv_heads, rows, d), jnp.float32)
        dq, dk, dv = jax.lax.fori_loop(*_block_range(lo_b, hi_b, bk, nk), body, (dq0, *carry))
        return (dk, dv), dq.astype(q.dtype)

    zeros = jnp.zeros(k.shape, jnp.float32)
    (dk, dv), dq = jax.lax.scan(per_query_block, (zeros, zeros),
                                (q, d_out, lse, delta, slots, segs, lo, hi))
    return dq, dk.astype(k.dtype), dv.astype(v.dtype), None, None, None, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


# ---------------------------------------------------------------------------------------------- backend kernels
def dot_product(q_bthd, k_bksd, v_bksd, mask: Mask, *, scale: float, window: int | None = None,
                implementation: str = "cudnn"):
    """Causal self-attention (`Mask.causal`) through `jax.nn.dot_product_attention`. Its padding form is
    per-row sequence lengths (valid tokens first), so each row is rotated to start at its first valid token
    (left padding becomes right padding; slot distances, hence windows, are unchanged) and rotated back.
    Assumes each row's valid tokens are contiguous, as `LanguageModel` lays them out. `implementation`:
    "cudnn" (GPU) or "xla" (any backend; how the CPU tests check this conversion)."""
    t = mask.q_slots.shape[1]
    valid = mask.kv_segments != 0
    first = jnp.argmax(valid, axis=1).astype(jnp.int32)
    length = jnp.sum(valid, axis=1).astype(jnp.int32)
    rotated = (jnp.arange(t, dtype=jnp.int32)[None] + first[:, None]) % t  # position r holds slot rotated[r]
    back = (jnp.arange(t, dtype=jnp.int32)[None] - first[:, None]) % t  # slot j sits at position back[j]

    def take(x, index):  # x [B, T, N, hd]
        return jnp.take_along_axis(x, index[:, :, None, None], axis=1)

    out = jax.nn.dot_product_attention(
        take(q_bthd, rotated), take(k_bksd.transpose(0, 2, 1, 3), rotated),
        take(v_bksd.transpose(0, 2, 1, 3), rotated), scale=scale, is_causal=True, query_seq_lengths=length,
        key_value_seq_lengths=length, local_window_size=None if window is None else (window - 1, 0),
        implementation=implementation)
    return take(out, back)


def _splash_block(t: int) -> int:
    return next(bs for bs in (512, 256, 128) if t % bs == 0)


def splash(q_bthd, k_bksd, v_bksd, mask: Mask, *, scale: float, window: int | None = None,
           interpret: bool = False):
    """Self-attention (causal or packed segments) through the Pallas TPU splash-attention kernel: a static
    causal (or causal local) mask, padding and packing as segment ids, one MQA kernel per key/value head
    shared by its G query heads. `interpret=True` runs the kernel in Pallas' interpreter (any backend)."""
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    b, t, h, d = q_bthd.shape
    kv_heads = k_bksd.shape[1]
    g = h // kv_heads
    shape = (t, t)
    head_mask = sa.CausalMask(shape) if window is None else sa.LocalMask(shape, (window - 1, 0), 0)
    bs = _splash_block(t)
    blocks = sa.BlockSizes(block_q=bs, block_kv=bs, block_kv_compute=bs, block_q_dkv=bs, block_kv_dkv=bs,
                           block_kv_dkv_compute=bs, block_q_dq=bs, block_kv_dq=bs)
    kernel = sa.make_splash_mqa_single_device(sa.MultiHeadMask([head_mask] * g), block_sizes=blocks,
                                              interpret=interpret)
    # the kernel does not scale: fold the scale into q (in q's dtype, as the kernel's own examples do)
    q = (q_bthd * jnp.asarray(scale, q_bthd.dtype)).reshape(b, t, kv_heads, g, d).transpose(0, 2, 3, 1, 4)

    def per_row(q_kgtd, k_ksd, v_ksd, q_seg, kv_seg):
        ids = sa.SegmentIds(q=q_seg, kv=kv_seg)
        return jax.vmap(lambda qq, kk, vv: kernel(qq, kk, vv, segment_ids=ids))(q_kgtd, k_ksd, v_ksd)

    out = jax.vmap(per_row)(q, k_bksd, v_bksd, mask.q_segments, mask.kv_segments)  # [B, K, G, T, hd]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d).astype(q_bthd.dtype)
