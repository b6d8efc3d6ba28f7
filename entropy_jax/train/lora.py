"""Low-rank adaptation (LoRA) of the decoder's projection kernels, as pure functions over params pytrees.

For a target kernel W [in, out] the adapter holds a [in, r] and b [r, out]; the adapted layer computes
x W + (alpha / r) · (x a) b. `b` starts at zero, so training starts from the base model exactly.

Training runs the low-rank path: `spec` gives the decoder a graph with `lora_a`/`lora_b` next to each target
kernel and `insert` puts the adapters into the frozen base params, so gradients exist for a and b only —
never a full [in, out] gradient of W — and the optimizer holds moments for the adapters alone. `merge`
folds the adapters into the kernels (W + scale · a @ b) for evaluation with the plain decoder and for export
as an ordinary checkpoint; both paths are the same function of the input (tested).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from entropy_jax.llm import params as prm
from entropy_jax.llm.model import LoraSpec

# Projection names of the decoder's layout (model.py): attention q/k/v/o and MLP gate/up/down.
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")
_KERNEL = re.compile(r"layers\.(\d+)\.(attn|mlp)\.(\w+)\.kernel")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """rank r, scale alpha (the update is multiplied by alpha / r) and the target projections."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be ≥ 1, got {self.rank}")
        if not self.targets:
            raise ValueError("LoRA needs at least one target projection")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def target_paths(params: Mapping, targets: tuple[str, ...]) -> list[str]:
    """Dotted paths of the kernels the targets name (`PROJECTIONS` entries, or regexes over full paths
    such as `layers\\.(0|1)\\.attn\\.q\\.kernel`). A target that matches no kernel is an error listing the
    projections this model has."""
    kernels = [p for p in prm.flatten(params) if _KERNEL.fullmatch(p)]
    have = sorted({_KERNEL.fullmatch(p).group(3) for p in kernels})
    chosen: list[str] = []
    for t in targets:
        if t in PROJECTIONS or re.fullmatch(r"\w+", t):
            hits = [p for p in kernels if _KERNEL.fullmatch(p).group(3) == t]
        else:
            hits = [p for p in kernels if re.fullmatch(t, p)]
        if not hits:
            raise ValueError(f"LoRA target {t!r} matches no parameter; this model's projections are {have} "
                             f"(paths like {kernels[0] if kernels else 'layers.0.attn.q.kernel'})")
        chosen += [p for p in hits if p not in chosen]
    return sorted(chosen, key=lambda p: (int(_KERNEL.fullmatch(p).group(1)), p))


def init(key: jax.Array, params: Mapping, config: LoraConfig) -> dict[str, dict[str, jax.Array]]:
    """Adapters {path: {"a": [in, r], "b": [r, out]}} (float32): a ~ N(0, 1/in), b = 0."""
    flat = prm.flatten(params)
    out = {}
    for i, path in enumerate(target_paths(params, config.targets)):
        d_in, d_out = flat[path].shape
        a = jax.random.normal(jax.random.fold_in(key, i), (d_in, config.rank), jnp.float32) * d_in**-0.5
        out[path] = {"a": a, "b": jnp.zeros((config.rank, d_out), jnp.float32)}
    return out


def spec(config: LoraConfig, adapters: Mapping) -> LoraSpec:
    """The decoder's static description of these adapters (for `model.abstract(..., lora=...)`)."""
    return LoraSpec(rank=config.rank, scale=config.scale, paths=frozenset(adapters))


def insert(params: Mapping, adapters: Mapping[str, Mapping[str, jax.Array]]) -> dict:
    """params (base layout) + adapters → the params of the decoder built with `spec`: each adapted Dense gets
    `lora_a` and `lora_b` next to its kernel. Pure; jittable."""
    flat = dict(prm.flatten(params))
    for path, ab in adapters.items():
        stem = path.rsplit(".", 1)[0]
        flat[f"{stem}.lora_a"], flat[f"{stem}.lora_b"] = ab["a"], ab["b"]

    def build(node, prefix):
        out = {k: build(v, f"{prefix}{k}.") if isinstance(v, Mapping) else flat[f"{prefix}{k}"] for k, v in node.items()}
        for extra in ("lora_a", "lora_b"):
            if f"{prefix}{extra}" in flat:
                out[extra] = flat[f"{prefix}{extra}"]
        return out

    return build(params, "")


def merge(params: Mapping, adapters: Mapping[str, Mapping[str, jax.Array]], scale: float) -> dict:
    """params with every adapted kernel replaced by W + scale · a @ b (in W's dtype). Pure; jittable."""
    flat = dict(prm.flatten(params))
    for path, ab in adapters.items():
        w = flat[path]
        delta = jnp.matmul(ab["a"], ab["b"], precision=jax.lax.Precision.HIGHEST)
        flat[path] = (w.astype(jnp.float32) + scale * delta).astype(w.dtype)
    return prm.unflatten(flat, params)


def count(adapters: Mapping) -> int:
    """Number of trainable adapter parameters."""
    return int(sum(x.size for x in jax.tree.leaves(adapters)))
