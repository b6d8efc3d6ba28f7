"""Rotary position embeddings: default, linear, llama3, YaRN (Qwen3/Qwen2.5 long context) and longrope (Phi-3/4)
frequencies, partial rotary.

Frequencies are computed once in NumPy float64 and rounded to float32 (transformers computes them in float32);
angles position × frequency are formed in float32 even for bf16 models, because bf16 positions lose whole
integers above 256.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from entropy_jax.llm.config import LlmConfig


def inverse_frequencies(config: LlmConfig) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(short [R/2], long [R/2] or None, attention_scaling) for rotary dimension R = config.rotary_dim.

    `long` is only set for longrope: it replaces `short` once a sequence reaches past
    `original_max_position_embeddings`. `attention_scaling` multiplies cos and sin (longrope's √(1+ln s/ln L),
    YaRN's 0.1 ln s + 1).
    """
    rope = config.rope
    dim = config.rotary_dim
    exponent = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    base = np.float32(rope.theta) ** exponent
    inv = (1.0 / base).astype(np.float32)
    if rope.type == "default":
        return inv, None, 1.0
    if rope.type == "linear":
        return (inv / np.float32(rope.factor)).astype(np.float32), None, 1.0
    if rope.type == "llama3":
        factor, low, high = rope.factor, rope.low_freq_factor, rope.high_freq_factor
        old = rope.original_max_position_embeddings
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled).astype(np.float32), None, 1.0
    if rope.type == "yarn":
        return _yarn(config, base)
    # longrope
    original = rope.original_max_position_embeddings or config.max_position_embeddings
    factor = rope.factor if rope.factor is not None else config.max_position_embeddings / original
    scaling = rope.attention_factor
    if scaling is None:
        scaling = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    for name, values in (("short_factor", rope.short_factor), ("long_factor", rope.long_factor)):
        if values is None or len(values) != dim // 2:
            raise ValueError(f"longrope {name} needs {dim // 2} entries (rotary_dim/2), got {values!r}")
    short = (1.0 / (np.asarray(rope.short_factor, np.float32) * base)).astype(np.float32)
    long = (1.0 / (np.asarray(rope.long_factor, np.float32) * base)).astype(np.float32)
    return short, long, float(scaling)


def _yarn(config: LlmConfig, base: np.ndarray) -> tuple[np.ndarray, None, float]:
    """YaRN (Peng et al. 2023) as transformers computes it: frequencies whose wavelength exceeds the original
    context (fewer than `beta_slow` rotations over it) are interpolated by 1/factor, those with more than
    `beta_fast` rotations kept, a linear ramp over the rotary dimensions in between; cos and sin scaled by
    0.1 ln(factor) + 1 (or mscale / mscale_all_dim) unless `attention_factor` is given."""
    rope, dim = config.rope, config.rotary_dim
    original = rope.original_max_position_embeddings or config.max_position_embeddings
    factor = rope.factor if rope.factor is not None else config.max_position_embeddings / original

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    scaling = rope.attention_factor
    if scaling is None:
        scaling = (mscale(factor, rope.mscale) / mscale(factor, rope.mscale_all_dim)
                   if rope.mscale and rope.mscale_all_dim else mscale(factor))

    def correction_dim(rotations):  # the rotary dimension that turns `rotations` times over the original context
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(rope.theta))

    low, high = correction_dim(rope.beta_fast or 32), correction_dim(rope.beta_slow or 1)
    if rope.truncate is None or rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low), 0, 1)
    keep = (1 - ramp).astype(np.float32)  # 1: extrapolate (original frequency), 0: interpolate
    extrapolated = (1.0 / base).astype(np.float32)
    interpolated = (1.0 / (np.float32(factor) * base)).astype(np.float32)
    inv = interpolated * (1 - keep) + extrapolated * keep
    return inv.astype(np.float32), None, float(scaling)


def cos_sin(config: LlmConfig, positions_bt: jax.Array, max_position: jax.Array | None = None):
    """cos, sin of shape [B, T, R] (float32) for integer positions [B, T].

    For longrope the long factors apply to the whole call once `max_position + 1` exceeds the original
    context (transformers' rule); `max_position` defaults to the largest position in the call. A [B]
    `max_position` chooses the factors row by row (rows of a continuous-batching engine are independent
    sequences, each switching when it alone crosses the original context).
    """
    short, long, scaling = inverse_frequencies(config)
    inv = jnp.asarray(short)
    if long is not None:
        original = config.rope.original_max_position_embeddings or config.max_position_embeddings
        top = jnp.max(positions_bt) if max_position is None else jnp.asarray(max_position)
        if top.ndim == 1:
            top = top[:, None, None]
        inv = jnp.where(top + 1 > original, jnp.asarray(long), inv)
    angles = positions_bt.astype(jnp.float32)[..., None] * inv
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles) * scaling, jnp.sin(angles) * scaling


def apply(x_bthd: jax.Array, cos_btr: jax.Array, sin_btr: jax.Array) -> jax.Array:
    """Rotate the first R channels of every head ("rotate half" convention); the rest pass through."""
    rotary = cos_btr.shape[-1]
    cos = cos_btr[:, :, None, :].astype(x_bthd.dtype)
    sin = sin_btr[:, :, None, :].astype(x_bthd.dtype)
    x_rot, x_pass = x_bthd[..., :rotary], x_bthd[..., rotary:]
    half = rotary // 2
    rotated = jnp.concatenate([-x_rot[..., half:], x_rot[..., :half]], axis=-1)
    out = x_rot * cos + rotated * sin
    return out if rotary == x_bthd.shape[-1] else jnp.concatenate([out, x_pass], axis=-1)
