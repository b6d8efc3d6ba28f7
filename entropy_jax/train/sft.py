"""Completion-only supervised fine-tuning: the loss, the optimizer and ONE jitted train step.

The step takes a batch [A, B, T] (A accumulation micro-batches of B rows, see `packing`), runs forward and
backward on each micro-batch inside a `lax.scan`, sums the token losses and gradients, and applies one
optax update. The loss is the mean next-token negative log-likelihood (nats) over the loss-bearing
(completion) positions of the whole step, so A micro-batches of B rows give exactly the gradient of one
batch of A·B rows. Target log-probabilities are gathered (`take_along_axis`), never via one-hot [B, T, V].

Precision: master weights (and optimizer state) stay float32; the forward and backward run in
`compute_dtype` (bfloat16 by default on accelerators) by casting the weights inside the step; logits,
log-softmax and the loss are float32.

Full fine-tuning trains every parameter. With LoRA, `trainable` holds only the adapters and the base
weights are a frozen, non-donated argument: no gradients or optimizer moments for them.

Sharding: with a mesh, parameters follow `llm.sharding.PARAM_RULES` (fsdp shards the model dimension),
optimizer moments follow their parameters, the batch is split over (data, fsdp) on its B axis; the step is
`jax.jit` with in/out shardings and donates the train state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from entropy_jax.llm import sharding as shd
from entropy_jax.llm.attention import Mask
from entropy_jax.train import lora as lora_lib
from entropy_jax.train.packing import FIELDS

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with global-norm clipping. Weight decay applies to kernels, embeddings and LoRA adapters only
    (not norms or biases). The learning rate is not part of it: it is an argument of every step, so one
    compiled step serves any schedule (`schedule`)."""

    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float | None = 1.0


def schedule(lr: float, *, total_steps: int, warmup_steps: int = 0, final_lr_ratio: float = 0.1) -> optax.Schedule:
    """Linear warmup from 0 to `lr` over `warmup_steps`, then cosine decay to `final_lr_ratio` · lr at
    `total_steps` (evaluated on the host, passed to the step as a scalar)."""
    warmup = max(0, warmup_steps)
    total = max(total_steps, warmup + 1)
    return optax.warmup_cosine_decay_schedule(init_value=0.0 if warmup else lr, peak_value=lr, warmup_steps=warmup,
                                              decay_steps=total, end_value=lr * final_lr_ratio)


def _decay_mask(tree):
    def walk(node, path):
        if isinstance(node, Mapping):
            return {k: walk(v, path + (k,)) for k, v in node.items()}
        last = path[-1] if path else ""
        return last in ("kernel", "embedding", "a", "b")

    return walk(tree, ())


def optimizer(config: OptimConfig) -> optax.GradientTransformation:
    """The AdamW direction (clip → Adam moments → decoupled weight decay); the step scales it by −lr."""
    parts = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm else []
    parts += [optax.scale_by_adam(b1=config.b1, b2=config.b2, eps=config.eps),
              optax.add_decayed_weights(config.weight_decay, mask=_decay_mask)]
    return optax.chain(*parts)


# ---------------------------------------------------------------------------------------------- loss
def token_nll(graphdef, params, tokens_bt, positions_bt, segments_bt, loss_pos_bk, loss_targets_bk, *,
              constrain=None):
    """Negative log-likelihood [B, K] float32 (nats) of `loss_targets` as the next token at the row positions
    `loss_pos` [B, K], with per-example positions and block-diagonal causal attention (packed rows). Only
    those K positions are projected onto the vocabulary. `constrain` pins each layer's activations (e.g. to
    the batch sharding)."""
    model = nnx.merge(graphdef, params)
    h, _ = model.hidden(tokens_bt, positions_bt, Mask.segments(segments_bt), constrain=constrain)
    h_bkd = jnp.take_along_axis(h, loss_pos_bk[..., None], axis=1)
    logits = model.project(h_bkd)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, loss_targets_bk[..., None], axis=-1)[..., 0]
    return lse - target_logit


def cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static settings of the train step (hashable: part of the jit cache key). With `lora`, the trainable
    params are adapters (`lora.init`) inserted into the frozen base, and the graphdef must be the decoder
    built with their `lora.spec`."""

    compute_dtype: str = "float32"
    lora: bool = False


def make_step(graphdef, tx: optax.GradientTransformation, config: StepConfig, mesh: Mesh | None = None) -> Callable:
    """step(state, frozen, batch, lr) → (state, metrics). `state` = {"trainable", "opt", "step"}; `frozen` is
    the base params under LoRA (None for full fine-tuning); batch fields [A, B, T] (`packing.FIELDS`); lr a
    float32 scalar (the schedule's value for this step). `graphdef` should be built in the compute dtype
    (`model.abstract(config, dtype, lora=...)`): the embedding casts its output to the graph's dtype."""
    dtype = COMPUTE_DTYPES[config.compute_dtype]
    constrain = None
    if mesh is not None:  # activations stay split over the batch, layer after layer (as in the forward)
        act = NamedSharding(mesh, P(shd.BATCH, None, None))
        constrain = functools.partial(jax.lax.with_sharding_constraint, shardings=act)

    def full_params(trainable, frozen):
        return lora_lib.insert(frozen, trainable) if config.lora else trainable

    def micro_loss(trainable, frozen, micro):
        params = cast(full_params(trainable, frozen), dtype)
        nll = token_nll(graphdef, params, micro["tokens"], micro["positions"], micro["segments"],
                        micro["loss_pos"], micro["loss_targets"], constrain=constrain)
        w = micro["loss_weights"]
        return jnp.sum(nll * w), jnp.sum(w)

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def step(state, frozen, batch, lr):
        trainable = state["trainable"]
        zeros = jax.tree.map(jnp.zeros_like, trainable)

        def accumulate(carry, micro):
            loss_sum, w_sum, g_sum = carry
            (loss, w), g = grad_fn(trainable, frozen, micro)
            return (loss_sum + loss, w_sum + w, jax.tree.map(jnp.add, g_sum, g)), None

        fields = {k: batch[k] for k in FIELDS}
        (loss_sum, w_sum, g_sum), _ = jax.lax.scan(accumulate, (jnp.float32(0), jnp.float32(0), zeros), fields)
        denom = jnp.maximum(w_sum, 1.0)
        grads = jax.tree.map(lambda g: g / denom, g_sum)
        direction, opt = tx.update(grads, state["opt"], trainable)
        new = jax.tree.map(lambda p, d: (p - lr * d).astype(p.dtype), trainable, direction)
        metrics = {"loss": loss_sum / denom, "loss_tokens": w_sum, "grad_norm": optax.tree.norm(grads)}
        return {"trainable": new, "opt": opt, "step": state["step"] + 1}, metrics

    return step


# ---------------------------------------------------------------------------------------------- sharding
def _dict_suffix(path) -> str:
    """The trailing dict keys of a pytree path, dotted: optax's `...mu['layers']['0']['attn']` → layers.0.attn."""
    keys = []
    for k in reversed(path):
        if not isinstance(k, jax.tree_util.DictKey):
            break
        keys.append(str(k.key))
    return ".".join(reversed(keys))


def state_shardings(state_shape, mesh: Mesh, lora: bool):
    """NamedShardings for a train state (from `jax.eval_shape`): params by `PARAM_RULES` (LoRA adapters are
    small and replicated), every optimizer leaf shaped like a parameter (Adam's moments) like that
    parameter, everything else (counts, the step) replicated."""
    rep = NamedSharding(mesh, P())
    if lora:
        trainable = jax.tree.map(lambda _: rep, state_shape["trainable"])
    else:
        trainable = shd.param_shardings(state_shape["trainable"], mesh)
    by_path = {_dict_suffix(p): (s, tuple(x.shape)) for (p, s), x in zip(
        jax.tree_util.tree_flatten_with_path(trainable)[0], jax.tree.leaves(state_shape["trainable"]))}

    def opt_leaf(path, x):
        s, shape = by_path.get(_dict_suffix(path), (None, None))
        return s if s is not None and shape == tuple(x.shape) else rep

    opt = jax.tree_util.tree_map_with_path(opt_leaf, state_shape["opt"])
    return {"trainable": trainable, "opt": opt, "step": rep}


def batch_shardings(mesh: Mesh) -> dict[str, NamedSharding]:
    """Batch fields [A, B, T or K]: B over (data, fsdp)."""
    s = NamedSharding(mesh, P(None, shd.BATCH, None))
    return {k: s for k in FIELDS}


def jit_step(step: Callable, *, mesh: Mesh | None = None, state_sharding=None, frozen_sharding=None) -> Callable:
    """`jax.jit` of a train step, donating the train state; with a mesh, explicit in/out shardings."""
    if mesh is None:
        return jax.jit(step, donate_argnums=(0,))
    rep = NamedSharding(mesh, P())
    metrics = {"loss": rep, "loss_tokens": rep, "grad_norm": rep}
    return jax.jit(step, donate_argnums=(0,),
                   in_shardings=(state_sharding, frozen_sharding, batch_shardings(mesh), rep),
                   out_shardings=(state_sharding, metrics))


def init_state(trainable, *, tx: optax.GradientTransformation) -> dict[str, Any]:
    return {"trainable": trainable, "opt": tx.init(trainable), "step": jnp.int32(0)}
