"""Next-token negative log-likelihood over the full vocabulary without materialising [B, K, V] logits.

`chunked_nll(h_bkd, w, targets_bk, chunk=C)` projects C loss positions per row at a time onto the vocabulary
(a `lax.scan` over K / C chunks), so the largest float32 buffer is one chunk's logits [B, C, V], in the
forward and in the backward alike: a custom VJP saves only the hidden states, the weight and the per-position
log-normaliser (logsumexp, [B, K]) and recomputes each chunk's logits in the backward pass, where it forms
softmax − one-hot for that chunk, its input gradient and its contribution to the weight gradient (summed in
float32 over the chunks). For Phi-4-mini (V = 200,064) with K = 1,024 loss positions per row and 8 rows,
the unchunked float32 logits are 6.6 GB (and their softmax in the backward as much again); with C = 256 per
row and 1 row per device, one chunk is 205 MB.

Logits are accumulated in float32 (`preferred_element_type`) whatever the dtype of h and w, so in bfloat16
compute the loss is not rounded to bfloat16 logits (spacing 0.125 at |logit| ≥ 16). `nll_reference` is the
plain, unchunked formula (the test reference): equal to `chunked_nll` within float32 round-off, values and
gradients.

The weight is the LM head `[D, V]` (`transposed=False`) or the tied input embedding `[V, D]` (`transposed=True`).

With a mesh, each chunk is pinned the FSDP way: hidden states and logits split over the batch (data ×
fsdp), logits and the weight over the vocabulary on `tensor`, the weight gathered over fsdp for the
chunk's product, and the float32 weight-gradient accumulator kept in the weight's own parameter sharding
(left alone, XLA's partitioner may instead split the contraction over fsdp and all-reduce whole-batch
[B, C, V] logits).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from entropy_jax.llm import sharding as shd


def _logits(h, w, transposed: bool):
    spec = "bcd,vd->bcv" if transposed else "bcd,dv->bcv"
    return jnp.einsum(spec, h, w, preferred_element_type=jnp.float32)


def nll_reference(h_bkd, w, targets_bk, *, transposed: bool = False):
    """NLL [B, K] float32 (nats) of `targets_bk` under softmax(h w) with all [B, K, V] logits at once."""
    logits = _logits(h_bkd, w, transposed)
    lse = jax.nn.logsumexp(logits, axis=-1)
    return lse - jnp.take_along_axis(logits, targets_bk[..., None], axis=-1)[..., 0]


def _split(x, chunk: int, n: int):
    """[B, K, ...] → [n, B, chunk, ...] (K padded with zeros to n · chunk)."""
    b, k = x.shape[:2]
    pad = n * chunk - k
    if pad:
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x.reshape(b, n, chunk, *x.shape[2:]), 1, 0)


def _join(x, k: int):
    """[n, B, chunk, ...] → [B, K, ...] (the padding dropped)."""
    n, b, c = x.shape[:3]
    return jnp.moveaxis(x, 0, 1).reshape(b, n * c, *x.shape[3:])[:, :k]


def _chunk_count(k: int, chunk: int) -> tuple[int, int]:
    c = max(1, min(chunk, k))
    return c, -(-k // c)


class _Pins:
    """Sharding constraints of one chunk (identity functions without a mesh). Hashable: a static argument."""

    def __init__(self, mesh: Mesh | None, w_shape: tuple[int, ...], transposed: bool):
        self.mesh, self.w_shape, self.transposed = mesh, tuple(w_shape), transposed

    def __hash__(self):
        return hash((self.mesh, self.w_shape, self.transposed))

    def __eq__(self, other):
        return isinstance(other, _Pins) and (self.mesh, self.w_shape, self.transposed) == (
            other.mesh, other.w_shape, other.transposed)

    def _pin(self, x, spec):
        if self.mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, shd.fit_spec(spec, x.shape, self.mesh)))

    def rows(self, x):  # [B, C, D] hidden states (and their gradient)
        return self._pin(x, P(shd.BATCH))

    def logits(self, x):  # [B, C, V]
        return self._pin(x, P(shd.BATCH, None, "tensor"))

    def gathered(self, w):  # the weight for the product: vocabulary over tensor, D whole
        return self._pin(w, P("tensor", None) if self.transposed else P(None, "tensor"))

    def stored(self, w):  # the weight's own parameter sharding (its gradient accumulator)
        path = "embed.embedding" if self.transposed else "lm_head.kernel"
        return w if self.mesh is None else self._pin(w, shd.param_spec(path, self.w_shape, self.mesh))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _chunked(h_bkd, w, targets_bk, chunk, transposed, pins):
    return _forward(h_bkd, w, targets_bk, chunk, transposed, pins)[0]


def _forward(h_bkd, w, targets_bk, chunk, transposed, pins):
    k = h_bkd.shape[1]
    c, n = _chunk_count(k, chunk)
    wg = pins.gathered(w)

    def one(_, xs):
        h_c, t_c = xs
        logits = pins.logits(_logits(pins.rows(h_c), wg, transposed))
        lse = jax.nn.logsumexp(logits, axis=-1)
        return None, (lse - jnp.take_along_axis(logits, t_c[..., None], axis=-1)[..., 0], lse)

    _, (nll, lse) = jax.lax.scan(one, None, (_split(h_bkd, c, n), _split(targets_bk, c, n)))
    return _join(nll, k), _join(lse, k)


def _fwd(h_bkd, w, targets_bk, chunk, transposed, pins):
    nll, lse = _forward(h_bkd, w, targets_bk, chunk, transposed, pins)
    return nll, (h_bkd, w, targets_bk, lse)


def _bwd(chunk, transposed, pins, res, g_bk):
    h_bkd, w, targets_bk, lse_bk = res
    k = h_bkd.shape[1]
    c, n = _chunk_count(k, chunk)
    v = w.shape[0] if transposed else w.shape[1]
    wg = pins.gathered(w)

    def one(dw, xs):
        h_c, t_c, lse_c, g_c = xs
        h_c = pins.rows(h_c)
        logits = pins.logits(_logits(h_c, wg, transposed))
        # d nll / d logits = softmax − one-hot(target), scaled by the incoming cotangent
        p = jnp.exp(logits - lse_c[..., None])
        hit = jnp.arange(v, dtype=t_c.dtype) == t_c[..., None]
        dlogits = pins.logits((g_c[..., None] * (p - hit.astype(p.dtype))).astype(h_c.dtype))
        if transposed:
            dh = jnp.einsum("bcv,vd->bcd", dlogits, wg)
            dw_c = jnp.einsum("bcv,bcd->vd", dlogits, h_c, preferred_element_type=jnp.float32)
        else:
            dh = jnp.einsum("bcv,dv->bcd", dlogits, wg)
            dw_c = jnp.einsum("bcd,bcv->dv", h_c, dlogits, preferred_element_type=jnp.float32)
        return pins.stored(dw + pins.stored(dw_c)), pins.rows(dh.astype(h_c.dtype))

    xs = (_split(h_bkd, c, n), _split(targets_bk, c, n), _split(lse_bk, c, n), _split(g_bk, c, n))
    dw, dh = jax.lax.scan(one, pins.stored(jnp.zeros(w.shape, jnp.float32)), xs)
    return _join(dh, k), dw.astype(w.dtype), None


_chunked.defvjp(_fwd, _bwd)


def chunked_nll(h_bkd, w, targets_bk, *, chunk: int, transposed: bool = False, mesh: Mesh | None = None):
    """NLL [B, K] float32 (nats) of `targets_bk` [B, K] (int) as the next tokens after hidden states
    `h_bkd` [B, K, D], under softmax over the vocabulary of h w (`w` [D, V], or [V, D] with `transposed`),
    `chunk` positions per row at a time (K is padded up to a multiple of it; chunk ≥ K is one chunk).
    Differentiable in h and w (custom VJP: the backward recomputes each chunk's logits). With `mesh`
    (inside a jit over it), each chunk is pinned to the batch / vocabulary shardings (module docstring)."""
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    return _chunked(h_bkd, w, targets_bk, int(chunk), bool(transposed), _Pins(mesh, w.shape, bool(transposed)))
