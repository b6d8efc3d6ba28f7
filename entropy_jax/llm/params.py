"""Checkpoint → parameter pytree, through one key table.

`HF_TABLE` maps every Hugging Face tensor name to model paths (see the layout in `model.py`); GGUF tensors are
first renamed to their Hugging Face names by `GGUF_NAMES` (with llama.cpp's q/k row permutation undone), so
both formats go through the same table. Loading is strict: a checkpoint tensor no rule matches, a model
parameter no tensor fills, a shape mismatch or a non-finite weight is a `CheckpointError` naming them all.
Safetensors only (memory-mapped, one tensor at a time); pickled `.bin` checkpoints are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import jax
import numpy as np

from entropy_jax.llm.config import LlmConfig


class CheckpointError(ValueError):
    """A checkpoint does not match the model it is loaded into."""


# --------------------------------------------------------------------------------------------- transforms
def _linear(w, config):  # torch Linear [out, in] → kernel [in, out]
    return {"": w.T}


def _same(w, config):
    return {"": w}


def _split_qkv(w, config):  # Phi-3 fused [q; k; v] rows
    q = config.num_heads * config.head_dim
    kv = config.num_kv_heads * config.head_dim
    if w.shape[0] != q + 2 * kv:
        raise CheckpointError(f"qkv_proj has {w.shape[0]} rows, expected {q} + 2×{kv}")
    return {"q": w[:q].T, "k": w[q:q + kv].T, "v": w[q + kv:].T}


def _split_gate_up(w, config):  # Phi-3 fused [gate; up] rows
    f = config.intermediate_size
    if w.shape[0] != 2 * f:
        raise CheckpointError(f"gate_up_proj has {w.shape[0]} rows, expected 2×{f}")
    return {"gate": w[:f].T, "up": w[f:].T}


_L = r"model\.layers\.(?P<l>\d+)\."
# (regex over the checkpoint name, model path template, transform). Templates use the regex groups;
# a transform returning several parts fills the template's `{part}`.
HF_TABLE: tuple[tuple[str, str, Callable], ...] = (
    (r"model\.embed_tokens\.weight", "embed.embedding", _same),
    (r"model\.norm\.weight", "norm.scale", _same),
    (r"lm_head\.weight", "lm_head.kernel", _linear),
    (_L + r"input_layernorm\.weight", "layers.{l}.attn_norm.scale", _same),
    (_L + r"post_attention_layernorm\.weight", "layers.{l}.mlp_norm.scale", _same),
    (_L + r"self_attn\.(?P<p>[qkvo])_proj\.weight", "layers.{l}.attn.{p}.kernel", _linear),
    (_L + r"self_attn\.(?P<p>[qkvo])_proj\.bias", "layers.{l}.attn.{p}.bias", _same),
    (_L + r"self_attn\.(?P<p>[qk])_norm\.weight", "layers.{l}.attn.{p}_norm.scale", _same),
    (_L + r"self_attn\.qkv_proj\.weight", "layers.{l}.attn.{part}.kernel", _split_qkv),
    (_L + r"mlp\.(?P<p>gate|up|down)_proj\.weight", "layers.{l}.mlp.{p}.kernel", _linear),
    (_L + r"mlp\.(?P<p>gate|up|down)_proj\.bias", "layers.{l}.mlp.{p}.bias", _same),
    (_L + r"mlp\.gate_up_proj\.weight", "layers.{l}.mlp.{part}.kernel", _split_gate_up),
)
_COMPILED = tuple((re.compile(pattern), template, fn) for pattern, template, fn in HF_TABLE)

# GGUF (llama.cpp) tensor names → Hugging Face names.
GGUF_NAMES: tuple[tuple[str, str], ...] = (
    (r"token_embd\.weight", "model.embed_tokens.weight"),
    (r"output_norm\.weight", "model.norm.weight"),
    (r"output\.weight", "lm_head.weight"),
    (r"blk\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"blk\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"blk\.(\d+)\.attn_q\.(weight|bias)", r"model.layers.\1.self_attn.q_proj.\2"),
    (r"blk\.(\d+)\.attn_k\.(weight|bias)", r"model.layers.\1.self_attn.k_proj.\2"),
    (r"blk\.(\d+)\.attn_v\.(weight|bias)", r"model.layers.\1.self_attn.v_proj.\2"),
    (r"blk\.(\d+)\.attn_output\.(weight|bias)", r"model.layers.\1.self_attn.o_proj.\2"),
    (r"blk\.(\d+)\.attn_q_norm\.weight", r"model.layers.\1.self_attn.q_norm.weight"),
    (r"blk\.(\d+)\.attn_k_norm\.weight", r"model.layers.\1.self_attn.k_norm.weight"),
    (r"blk\.(\d+)\.attn_qkv\.weight", r"model.layers.\1.self_attn.qkv_proj.weight"),
    (r"blk\.(\d+)\.ffn_gate\.weight", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"blk\.(\d+)\.ffn_down\.weight", r"model.layers.\1.mlp.down_proj.weight"),
    # Phi-3 GGUF stores the fused gate_up projection under ffn_up (it has no ffn_gate).
    (r"blk\.(\d+)\.ffn_up\.weight", r"model.layers.\1.mlp.up_proj.weight"),
)
# Tensors that carry configuration, not weights: Phi-3's longrope factors (read into the config by
# `api.gguf_metadata`) and llama.cpp's precomputed Llama 3 rope frequencies (the config's rope scaling
# reproduces them).
GGUF_CONFIG_TENSORS = ("rope_factors_long.weight", "rope_factors_short.weight")
GGUF_NON_WEIGHTS = (r"rope_factors_(long|short)\.weight", r"rope_freqs\.weight")


def map_key(name: str, config: LlmConfig) -> list[tuple[str, Callable]] | None:
    """The model path template(s) and transform a checkpoint tensor name maps to, or None if no rule matches."""
    for pattern, template, fn in _COMPILED:
        m = pattern.fullmatch(name)
        if m:
            return [(template.format(part="{part}", **m.groupdict()), fn)]
    return None


# --------------------------------------------------------------------------------------------- readers
def safetensors_files(directory: Path) -> list[Path]:
    """The safetensors shards of a Hugging Face directory (index file honoured); refuses pickle checkpoints."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [directory / f for f in sorted(set(weight_map.values()))]
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt*"))
        hint = f" (found pickle checkpoints {pickles}, which are never loaded: convert them to safetensors)" if pickles else ""
        raise CheckpointError(f"no *.safetensors in {directory}{hint}")
    return files


def iter_safetensors(files: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    for file in files:
        with safe_open(str(file), framework="np") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's converter interleaves the two rotary halves of each q/k head; undo it.
    rows = w.shape[0]
    tail = w.shape[1:]
    return w.reshape(n_head, rows // n_head // 2, 2, *tail).swapaxes(1, 2).reshape(rows, *tail)


def iter_gguf(parsed, config: LlmConfig) -> Iterator[tuple[str, np.ndarray]]:
    """Tensors of a parsed GGUF (`gguf_file.read`), dequantized to float32 one at a time, renamed to Hugging
    Face names (`GGUF_NAMES`); llama.cpp's q/k row permutation of Llama-architecture files is undone."""
    architecture = parsed.architecture
    for info in parsed.tensors:
        name = info.name
        if any(re.fullmatch(p, name) for p in GGUF_NON_WEIGHTS):
            continue
        w = parsed.array(info)
        for pattern, replacement in GGUF_NAMES:
            if re.fullmatch(pattern, name):
                hf_name = re.sub(pattern, replacement, name)
                break
        else:
            yield name, w  # reported as unmatched by `convert`
            continue
        if architecture == "llama" and re.search(r"self_attn\.[qk]_proj", hf_name):
            heads = config.num_heads if ".q_proj" in hf_name else config.num_kv_heads
            w = _unpermute(w, heads)
        if architecture == "phi3" and hf_name.endswith("mlp.up_proj.weight"):
            hf_name = hf_name.replace("up_proj", "gate_up_proj")
        yield hf_name, w


# --------------------------------------------------------------------------------------------- conversion
def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """{"layers.0.attn.q.kernel": leaf, …}: a nested params mapping as one level of dotted paths."""
    out = {}
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


def unflatten(flat: Mapping[str, object], like: Mapping) -> dict:
    """The inverse of `flatten`: dotted paths back into the nesting of `like`."""
    def build(node, prefix):
        return {k: build(v, f"{prefix}{k}.") if isinstance(v, Mapping) else flat[f"{prefix}{k}"]
                for k, v in node.items()}

    return build(like, "")


def convert(
    tensors: Iterator[tuple[str, np.ndarray]],
    config: LlmConfig,
    abstract_params: Mapping,
    *,
    dtype,
    place: Callable[[str, np.ndarray], jax.Array] | None = None,
) -> dict:
    """Fill `abstract_params` (pytree of ShapeDtypeStruct) from named checkpoint tensors.

    `place(path, host_array)` puts each converted tensor on device(s) (default `jax.device_put`), so one
    tensor at a time lives on the host. Raises `CheckpointError` listing every unmatched key, unfilled
    parameter, shape mismatch and non-finite tensor.
    """
    targets = flatten(abstract_params)
    place = place or (lambda path, a: jax.device_put(a))
    filled: dict[str, jax.Array] = {}
    unmatched, bad_shape, non_finite, dropped = [], [], [], []
    for name, w in tensors:
        rule = map_key(name, config)
        if rule is None:
            unmatched.append(name)
            continue
        (template, fn), = rule
        if template == "lm_head.kernel" and config.tie_word_embeddings:
            dropped.append(name)  # tied: the output layer is the embedding, as in transformers
            continue
        if not np.issubdtype(w.dtype, np.floating) and w.dtype.name not in ("bfloat16",):
            non_finite.append(f"{name} (dtype {w.dtype})")
            continue
        if not np.isfinite(w.astype(np.float32) if w.dtype.name == "bfloat16" else w).all():
            non_finite.append(name)
            continue
        for part, array in fn(w, config).items():
            path = template.format(part=part)
            if path not in targets:
                unmatched.append(f"{name} (→ {path}, which this {config.family} config does not have)")
                continue
            want = targets[path]
            if tuple(array.shape) != tuple(want.shape):
                bad_shape.append(f"{name} → {path}: checkpoint {tuple(array.shape)} vs model {tuple(want.shape)}")
                continue
            filled[path] = place(path, np.ascontiguousarray(array).astype(dtype))
    unfilled = sorted(set(targets) - set(filled))
    problems = []
    if unmatched:
        problems.append(f"{len(unmatched)} checkpoint tensor(s) match no rule of the key table: {unmatched}")
    if unfilled:
        problems.append(f"{len(unfilled)} model parameter(s) left unfilled: {unfilled}")
    if bad_shape:
        problems.append(f"shape mismatches: {bad_shape}")
    if non_finite:
        problems.append(f"non-finite (NaN/inf) or non-float weights: {non_finite}")
    if problems:
        raise CheckpointError("; ".join(problems))
    return unflatten(filled, abstract_params)
