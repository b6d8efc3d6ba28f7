"""Completion-only supervised fine-tuning: the loss, the optimizer and ONE jitted train step.

The step takes a batch [A, B, T] (A accumulation micro-batches of B rows, see `packing`), runs forward and
backward on each micro-batch inside a `lax.scan`, sums the token losses and gradients, and applies one
optax update. The loss is the mean next-token negative log-likelihood (nats) over the loss-bearing
(completion) positions of the whole step, so A micro-batches of B rows give exactly the gradient of one
batch of A·B rows. Target log-probabilities are gathered (`take_along_axis`), never via one-hot [B, T, V].

Memory (`StepConfig`): `remat` rematerialises each decoder layer in the backward pass ("none"; "full":
only each layer's input is kept; "dots": the outputs of the weight matmuls are kept, attention and
elementwise work are recomputed, `jax.checkpoint_policies.dots_with_no_batch_dims_saveable`);
`loss_chunk` > 0 projects that many loss positions per row at a time onto the vocabulary
(`train.loss.chunked_nll`, custom VJP: no [B, K, V] float32 logits in the forward or the backward; 0 =
all K at once, the plain path).

Precision (`StepConfig.precision`), bytes per trained parameter, A = 1 (A > 1 adds a 4-byte float32
gradient accumulator), compute in bfloat16 unless said:

    option        kept between steps                              + during the step            total
    fp32          params f32 4 + Adam mu 4 + nu 4 = 12             bf16 copy 2 + f32 grads 4     18
                  (float32 compute: no copy)                                                    (16)
    bf16_master   params bf16 2 + f32 master 4 + mu 4 + nu 4 = 14  bf16 grads 2                  16
    bf16          params bf16 2 + mu 4 + nu 4 = 10 (no master)     bf16 grads 2                  12

"fp32" is the default: float32 master weights and moments, the forward and backward in `compute_dtype` by
casting the weights inside the step. "bf16_master" keeps the bfloat16 weights the step computes with and
a float32 master copy (`state["master"]`) that the optimizer updates: the same numbers as "fp32" with
bfloat16 compute (tested), without the per-step cast copy and with bfloat16 gradients. "bf16" drops the
master: updates are rounded to bfloat16 (relative spacing 2^-8), so an update smaller than that part of a
weight is lost; moments stay float32. Logits, log-softmax and the loss are float32 in every option.

Full fine-tuning trains every parameter. With LoRA, `trainable` holds only the adapters and the base
weights are a frozen, non-donated argument: no gradients or optimizer moments for them. The precision
applies to the adapters; the frozen base is kept in float32 under "fp32" and in the compute dtype
(bfloat16: 2 bytes per base parameter) under the other two (`trainer.prepare`).

Sharding: with a mesh, parameters follow `llm.sharding.PARAM_RULES` (fsdp shards the model dimension),
optimizer moments and the master copy follow their parameters (`state_shardings`), the batch is split
over (data, fsdp) on its B axis; the step is `jax.jit` with in/out shardings and donates the train state.
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
from entropy_jax.train.loss import chunked_nll
from entropy_jax.train.packing import FIELDS

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
PRECISIONS = ("fp32", "bf16_master", "bf16")
# what each layer keeps for the backward pass (None: no rematerialisation)
REMAT_POLICIES = {"none": None, "full": jax.checkpoint_policies.nothing_saveable,
                  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}


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
    """Linear warmup over `warmup_steps` = w steps, lr · (s + 1) / (w + 1) at step s < w (the first step
    already learns: lr / (w + 1), not 0), `lr` at step w, then cosine decay to `final_lr_ratio` · lr at
    `total_steps` (evaluated on the host, passed to the step as a scalar)."""
    warmup = max(0, warmup_steps)
    total = max(total_steps, warmup + 1)
    return optax.warmup_cosine_decay_schedule(init_value=lr / (warmup + 1), peak_value=lr, warmup_steps=warmup,
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
def head_weight(model) -> tuple[jax.Array, bool]:
    """(the vocabulary projection's weight, transposed): the tied input embedding [V, D] or lm_head [D, V]."""
    if model.config.tie_word_embeddings:
        return model.embed.embedding[...], True
    return model.lm_head.kernel[...], False


def token_nll(graphdef, params, tokens_bt, positions_bt, segments_bt, loss_pos_bk, loss_targets_bk, *,
              constrain=None, remat: Callable | None = None, loss_chunk: int = 0, mesh: Mesh | None = None,
              scan_layers: bool = False):
    """Negative log-likelihood [B, K] float32 (nats) of `loss_targets` as the next token at the row positions
    `loss_pos` [B, K], with per-example positions and block-diagonal causal attention (packed rows). Only
    those K positions are projected onto the vocabulary: all at once (`loss_chunk` = 0: [B, K, V] float32
    logits) or `loss_chunk` positions per row at a time (`loss.chunked_nll`; logits accumulated in float32).
    `constrain` pins each layer's activations (e.g. to the batch sharding), `mesh` the chunks of the
    chunked loss; `remat` is the decoder's per-layer transform, `scan_layers` runs the layers as a scan."""
    model = nnx.merge(graphdef, params)
    h, _ = model.hidden(tokens_bt, positions_bt, Mask.segments(segments_bt), constrain=constrain, remat=remat,
                        scan=scan_layers)
    h_bkd = jnp.take_along_axis(h, loss_pos_bk[..., None], axis=1)
    if loss_chunk:
        w, transposed = head_weight(model)
        return chunked_nll(h_bkd, w, loss_targets_bk, chunk=loss_chunk, transposed=transposed, mesh=mesh)
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
    built with their `lora.spec`. `remat` is a key of `REMAT_POLICIES`, `loss_chunk` the loss positions per
    row projected at once (0 = all), `precision` one of `PRECISIONS` (see the module docstring; the
    bfloat16 options need `compute_dtype="bfloat16"`), `scan_layers` runs the decoder layers as one
    `lax.scan` (`Decoder.hidden(scan=True)`)."""

    compute_dtype: str = "float32"
    lora: bool = False
    remat: str = "none"
    loss_chunk: int = 0
    precision: str = "fp32"
    scan_layers: bool = False

    def __post_init__(self):
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype {self.compute_dtype!r}; use one of {sorted(COMPUTE_DTYPES)}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat {self.remat!r}; use one of {list(REMAT_POLICIES)}")
        if self.loss_chunk < 0:
            raise ValueError(f"loss_chunk must be ≥ 0 (0 = unchunked), got {self.loss_chunk}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}; use one of {list(PRECISIONS)}")
        if self.precision != "fp32" and self.compute_dtype != "bfloat16":
            raise ValueError(f"precision {self.precision!r} stores bfloat16 weights: it needs "
                             f"compute_dtype='bfloat16', got {self.compute_dtype!r}")

    @property
    def param_dtype(self):
        """dtype of the trainable params the step computes with (and of their gradients)."""
        return jnp.float32 if self.precision == "fp32" else jnp.bfloat16

    def remat_transform(self) -> Callable | None:
        if self.remat == "none":
            return None
        return functools.partial(jax.checkpoint, policy=REMAT_POLICIES[self.remat], prevent_cse=True)


def make_step(graphdef, tx: optax.GradientTransformation, config: StepConfig, mesh: Mesh | None = None) -> Callable:
    """step(state, frozen, batch, lr) → (state, metrics). `state` = {"trainable", "opt", "step"} (+ "master",
    the float32 copy, under precision "bf16_master"; see `init_state`); `frozen` is the base params under
    LoRA (None for full fine-tuning); batch fields [A, B, T] (`packing.FIELDS`); lr a float32 scalar (the
    schedule's value for this step). `graphdef` should be built in the compute dtype
    (`model.abstract(config, dtype, lora=...)`): the embedding casts its output to the graph's dtype."""
    dtype = COMPUTE_DTYPES[config.compute_dtype]
    constrain = None
    if mesh is not None:  # activations stay split over the batch, layer after layer (as in the forward)
        act = NamedSharding(mesh, P(shd.BATCH, None, None))
        constrain = functools.partial(jax.lax.with_sharding_constraint, shardings=act)
    remat = config.remat_transform()
    master = config.precision == "bf16_master"

    def full_params(trainable, frozen):
        return lora_lib.insert(frozen, trainable) if config.lora else trainable

    def micro_loss(trainable, frozen, micro):
        params = cast(full_params(trainable, frozen), dtype)
        nll = token_nll(graphdef, params, micro["tokens"], micro["positions"], micro["segments"],
                        micro["loss_pos"], micro["loss_targets"], constrain=constrain, remat=remat,
                        loss_chunk=config.loss_chunk, mesh=mesh, scan_layers=config.scan_layers)
        w = micro["loss_weights"]
        return jnp.sum(nll * w), jnp.sum(w)

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def step(state, frozen, batch, lr):
        trainable = state["trainable"]
        fields = {k: batch[k] for k in FIELDS}
        if config.precision == "fp32":
            zeros = jax.tree.map(jnp.zeros_like, trainable)

            def accumulate(carry, micro):
                loss_sum, w_sum, g_sum = carry
                (loss, w), g = grad_fn(trainable, frozen, micro)
                return (loss_sum + loss, w_sum + w, jax.tree.map(jnp.add, g_sum, g)), None

            (loss_sum, w_sum, g_sum), _ = jax.lax.scan(accumulate, (jnp.float32(0), jnp.float32(0), zeros), fields)
        elif batch["tokens"].shape[0] == 1:  # one micro-batch: its bfloat16 gradients, no accumulator
            (loss_sum, w_sum), g_sum = grad_fn(trainable, frozen, jax.tree.map(lambda x: x[0], fields))
        else:  # bfloat16 gradients summed into a float32 accumulator
            zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), trainable)

            def accumulate(carry, micro):
                loss_sum, w_sum, g_sum = carry
                (loss, w), g = grad_fn(trainable, frozen, micro)
                return (loss_sum + loss, w_sum + w, jax.tree.map(lambda a, b: a + b.astype(a.dtype), g_sum, g)), None

            (loss_sum, w_sum, g_sum), _ = jax.lax.scan(accumulate, (jnp.float32(0), jnp.float32(0), zeros), fields)
        denom = jnp.maximum(w_sum, 1.0)
        grads = jax.tree.map(lambda g: g.astype(jnp.float32) / denom, g_sum)
        weights = state["master"] if master else trainable
        direction, opt = tx.update(grads, state["opt"], weights)
        new = jax.tree.map(lambda p, d: (p - lr * d).astype(p.dtype), weights, direction)
        metrics = {"loss": loss_sum / denom, "loss_tokens": w_sum, "grad_norm": optax.tree.norm(grads)}
        out = {"trainable": new, "opt": opt, "step": state["step"] + 1}
        if master:
            out["master"], out["trainable"] = new, cast(new, config.param_dtype)
        return out, metrics

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
    out = {"trainable": trainable, "opt": opt, "step": rep}
    if "master" in state_shape:  # the float32 copy is sharded like the weights it mirrors
        out["master"] = trainable
    return out


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


def init_state(trainable, *, tx: optax.GradientTransformation, precision: str = "fp32") -> dict[str, Any]:
    """The train state of float32 `trainable` params under `precision` (`PRECISIONS`): "fp32" keeps them;
    "bf16_master" stores them in bfloat16 plus the float32 copy as "master"; "bf16" only in bfloat16. Adam's
    moments are float32 in every option."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; use one of {list(PRECISIONS)}")
    f32 = cast(trainable, jnp.float32)
    state = {"trainable": f32 if precision == "fp32" else cast(f32, jnp.bfloat16), "opt": tx.init(f32),
             "step": jnp.int32(0)}
    if precision == "bf16_master":
        state["master"] = f32
    return state
