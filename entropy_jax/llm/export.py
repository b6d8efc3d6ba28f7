"""Params pytree → Hugging Face directory (`config.json`, safetensors, tokenizer), checked by loading it back.

`save_pretrained(config, params, directory)` is the inverse of the loader's key table (`params.HF_TABLE`):
kernels [in, out] are transposed back to torch's [out, in], Phi-3's q/k/v are re-fused into `qkv_proj` and
gate/up into `gate_up_proj`, `lm_head` is omitted when the embeddings are tied. Tensors are written one at a
time (host memory holds one tensor, never a whole shard), into `model.safetensors` or, above
`max_shard_bytes`, numbered shards with `model.safetensors.index.json`. Safetensors only, never pickle.

`config.json` is the checkpoint's own dict when one is given (`hf_config`: nothing the source had is lost),
otherwise built from `LlmConfig` by `to_hf_config`. Either way `LlmConfig.from_hf(written) == config` is
checked before any weight is written, so a config that transformers would read differently is an error,
not a silently different model.

A MaxText export "ran without errors" yet produced bad models: `verify_export(directory, params_or_lm,
token_ids)` compares our logits with those of our own reload and of transformers' torch model (when torch
is importable) on the exported directory. Pass `verify_tokens=` to `save_pretrained` to run it right away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from entropy_jax.llm import model as mdl
from entropy_jax.llm import params as prm
from entropy_jax.llm.config import LlmConfig

# export dtype → (numpy dtype, safetensors dtype tag)
DTYPES: dict[str, tuple[Any, str]] = {
    "float32": (np.dtype(np.float32), "F32"),
    "bfloat16": (np.dtype(jnp.bfloat16), "BF16"),
    "float16": (np.dtype(np.float16), "F16"),
}
DEFAULT_MAX_SHARD_BYTES = 5_000_000_000
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                 "phi3": "Phi3ForCausalLM"}
# Keys of a source config.json that would describe the export wrongly: a GGUF's quantization (the export holds
# dequantized floats, which transformers would then try to dequantize again) and where the source came from.
_DROP_KEYS = ("quantization_config", "_name_or_path", "_commit_hash")
# Files that make up the weights of an HF directory; a stale one would shadow or mix with the new export.
_WEIGHT_FILE = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json")


class ExportError(ValueError):
    """Params or config cannot be written as (or did not round-trip through) a Hugging Face checkpoint."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `save_pretrained` wrote: weight files (in order), total tensor bytes, and the verification
    report (`verify_export`'s dict) when `verify_tokens` was given."""

    directory: Path
    files: tuple[str, ...]
    total_bytes: int
    verification: dict | None = None


# ---------------------------------------------------------------------------------------------- config.json
def _rope_parameters(config: LlmConfig) -> dict:
    r = config.rope
    if r.partial_rotary_factor != 1.0 and config.family != "phi3":
        # transformers applies partial rotary for Phi-3 only; exporting it for another family would
        # load into a model with full rotary and different logits
        raise ExportError(f"partial_rotary_factor={r.partial_rotary_factor} is only exportable for phi3, "
                          f"not {config.family}")
    p: dict[str, Any] = {"rope_type": r.type, "rope_theta": r.theta}
    for name in ("factor", "low_freq_factor", "high_freq_factor", "attention_factor"):
        if getattr(r, name) is not None:
            p[name] = getattr(r, name)
    if r.type in ("llama3", "longrope") and r.original_max_position_embeddings is not None:
        p["original_max_position_embeddings"] = r.original_max_position_embeddings
    for name in ("short_factor", "long_factor"):
        if getattr(r, name) is not None:
            p[name] = list(getattr(r, name))
    if config.family == "phi3":
        p["partial_rotary_factor"] = r.partial_rotary_factor
    return p


def _windows(config: LlmConfig) -> tuple[int | None, list[str]]:
    """(the one window size, per-layer types) of `config.sliding_windows`."""
    windows = config.sliding_windows or (None,) * config.num_layers
    sizes = sorted({w for w in windows if w is not None})
    if len(sizes) > 1:
        raise ExportError(f"sliding windows of different sizes {sizes} cannot be written to a "
                          f"{config.family} config.json (one `sliding_window` for all layers)")
    types = ["full_attention" if w is None else "sliding_attention" for w in windows]
    return (sizes[0] if sizes else None), types


def to_hf_config(config: LlmConfig, dtype: str = "float32") -> dict:
    """A transformers 5 `config.json` dict for `config` (its family's model_type, architectures, sizes,
    rope parameters, biases, windows, special token ids). Raises `ExportError` for what the family's
    transformers config cannot express (e.g. o_proj bias without q/k/v bias in Llama)."""
    import transformers

    c = config
    eos = list(c.eos_token_ids)
    hf: dict[str, Any] = {
        "model_type": c.family,
        "architectures": [ARCHITECTURES[c.family]],
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": c.hidden_act,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_parameters": _rope_parameters(c),
        "tie_word_embeddings": c.tie_word_embeddings,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": None if not eos else (eos[0] if len(eos) == 1 else eos),
        "pad_token_id": c.pad_token_id,
        "dtype": dtype,
        "transformers_version": transformers.__version__,
    }
    window, types = _windows(c)
    if c.family == "llama":
        if window is not None:
            raise ExportError("transformers' Llama has no sliding-window attention; config has "
                              f"sliding_windows={c.sliding_windows}")
        hf.update(attention_bias=c.qkv_bias, mlp_bias=c.mlp_bias, pretraining_tp=1)
    elif c.family in ("qwen2", "qwen3"):
        first = types.index("sliding_attention") if window is not None else c.num_layers
        hf.update(use_sliding_window=window is not None, sliding_window=window, layer_types=types,
                  max_window_layers=first)
        if c.family == "qwen3":
            hf["attention_bias"] = c.qkv_bias
    else:  # phi3: one window for every layer or none
        if window is not None and "full_attention" in types:
            raise ExportError(f"Phi-3 applies its sliding window to every layer; config has {c.sliding_windows}")
        hf.update(sliding_window=window, partial_rotary_factor=c.rope.partial_rotary_factor,
                  embd_pdrop=0.0, resid_pdrop=0.0)
        if c.rope.original_max_position_embeddings is not None:
            hf["original_max_position_embeddings"] = c.rope.original_max_position_embeddings
    return hf


def _check_round_trip(config: LlmConfig, hf: Mapping, what: str) -> None:
    back = LlmConfig.from_hf(hf)
    if back != config:
        diff = {f.name: (getattr(config, f.name), getattr(back, f.name)) for f in dataclasses.fields(config)
                if getattr(config, f.name) != getattr(back, f.name)}
        raise ExportError(f"{what} would load as a different model; field: (ours, as read back) {diff}")


def _config_dict(config: LlmConfig, hf_config: Mapping | None, dtype: str) -> dict:
    if hf_config is None:
        hf = to_hf_config(config, dtype)
        _check_round_trip(config, hf, f"the {config.family} config.json built from LlmConfig")
        return hf
    hf = {k: v for k, v in hf_config.items() if k not in _DROP_KEYS}
    hf["dtype"] = dtype
    if "torch_dtype" in hf:  # transformers 4.x spelling, kept consistent when the source used it
        hf["torch_dtype"] = dtype
    hf.setdefault("model_type", config.family)
    if not hf.get("architectures"):  # GGUF-derived configs have architectures = None
        hf["architectures"] = [ARCHITECTURES[config.family]]
    _check_round_trip(config, hf, "the given hf_config")
    return hf


# ---------------------------------------------------------------------------------------------- tensors
@dataclasses.dataclass(frozen=True)
class _Tensor:
    name: str                       # Hugging Face tensor name
    shape: tuple[int, ...]          # as written (torch layout)
    make: Callable[[], np.ndarray]  # host array in torch layout (export dtype applied by the writer)


def _plan(config: LlmConfig, flat: Mapping[str, Any]) -> list[_Tensor]:
    """The checkpoint tensors in transformers' order, each produced lazily from our params."""

    def same(path):
        return lambda: _host(flat[path])

    def linear(*paths):  # kernels [in, out] → torch [out, in], several stacked row-wise (Phi-3 fusions)
        return lambda: np.concatenate([_host(flat[p]).T for p in paths], axis=0)

    def shape(*paths, transpose=False):
        shapes = [tuple(flat[p].shape) for p in paths]
        if not transpose:
            return shapes[0]
        return (sum(s[1] for s in shapes), shapes[0][0])

    plan = [_Tensor("model.embed_tokens.weight", shape("embed.embedding"), same("embed.embedding"))]
    fused = config.family == "phi3"
    for i in range(config.num_layers):
        hf, us = f"model.layers.{i}.", f"layers.{i}."
        plan.append(_Tensor(hf + "input_layernorm.weight", shape(us + "attn_norm.scale"), same(us + "attn_norm.scale")))
        if fused:
            qkv = [f"{us}attn.{p}.kernel" for p in "qkv"]
            plan.append(_Tensor(hf + "self_attn.qkv_proj.weight", shape(*qkv, transpose=True), linear(*qkv)))
        for p in ("q", "k", "v", "o"):
            kernel, bias = f"{us}attn.{p}.kernel", f"{us}attn.{p}.bias"
            if not (fused and p != "o"):
                plan.append(_Tensor(f"{hf}self_attn.{p}_proj.weight", shape(kernel, transpose=True), linear(kernel)))
            if bias in flat:
                plan.append(_Tensor(f"{hf}self_attn.{p}_proj.bias", shape(bias), same(bias)))
        for p in ("q", "k"):
            norm = f"{us}attn.{p}_norm.scale"
            if norm in flat:
                plan.append(_Tensor(f"{hf}self_attn.{p}_norm.weight", shape(norm), same(norm)))
        plan.append(_Tensor(hf + "post_attention_layernorm.weight", shape(us + "mlp_norm.scale"),
                            same(us + "mlp_norm.scale")))
        if fused:
            gate_up = [f"{us}mlp.gate.kernel", f"{us}mlp.up.kernel"]
            plan.append(_Tensor(hf + "mlp.gate_up_proj.weight", shape(*gate_up, transpose=True), linear(*gate_up)))
        for p in ("gate", "up", "down"):
            kernel, bias = f"{us}mlp.{p}.kernel", f"{us}mlp.{p}.bias"
            if not (fused and p != "down"):
                plan.append(_Tensor(f"{hf}mlp.{p}_proj.weight", shape(kernel, transpose=True), linear(kernel)))
            if bias in flat:
                plan.append(_Tensor(f"{hf}mlp.{p}_proj.bias", shape(bias), same(bias)))
    plan.append(_Tensor("model.norm.weight", shape("norm.scale"), same("norm.scale")))
    if not config.tie_word_embeddings:
        plan.append(_Tensor("lm_head.weight", shape("lm_head.kernel", transpose=True), linear("lm_head.kernel")))
    return plan


def _host(x) -> np.ndarray:
    """A parameter as a host NumPy array (gathered first when it is sharded over several processes)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def _check_params(config: LlmConfig, params: Mapping) -> dict[str, Any]:
    """Flat params, after checking that they are exactly the parameters `config`'s decoder has, all finite
    (checked on device before any file is touched: a refused export must not replace a previous one)."""
    flat = prm.flatten(params)
    want = prm.flatten(mdl.abstract(config)[1])
    missing, extra = sorted(set(want) - set(flat)), sorted(set(flat) - set(want))
    bad = [f"{p}: {tuple(flat[p].shape)} vs {tuple(want[p].shape)}" for p in sorted(set(want) & set(flat))
           if tuple(flat[p].shape) != tuple(want[p].shape)]
    problems = []
    if missing:
        problems.append(f"parameters missing: {missing}")
    if extra:
        problems.append(f"parameters this {config.family} config does not have: {extra}")
    if bad:
        problems.append(f"shapes (params vs config): {bad}")
    if problems:
        raise ExportError("params do not match the config; " + "; ".join(problems))
    non_finite = [p for p in sorted(flat) if not bool(jnp.isfinite(jnp.asarray(flat[p])).all())]
    if non_finite:
        raise ExportError(f"parameters holding NaN or inf values: {non_finite}; refusing to export")
    return flat


def _shards(plan: list[_Tensor], itemsize: int, max_shard_bytes: int) -> list[list[_Tensor]]:
    """Consecutive groups of at most `max_shard_bytes` (a larger single tensor gets a shard of its own)."""
    shards: list[list[_Tensor]] = [[]]
    size = 0
    for t in plan:
        n = int(np.prod(t.shape)) * itemsize
        if shards[-1] and size + n > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += n
    return shards


def _write_safetensors(path: Path | None, tensors: list[_Tensor], np_dtype, tag: str) -> None:
    """Stream tensors into one safetensors file: the header (names, shapes, offsets) is known from the
    shapes alone, so each tensor is materialized, converted and written in turn. `path=None` (not the
    primary process) only materializes them, keeping collective gathers in step across processes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}  # transformers refuses files without it
    offset = 0
    for t in tensors:
        n = int(np.prod(t.shape)) * np_dtype.itemsize
        header[t.name] = {"dtype": tag, "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format aligns the data buffer to 8 bytes with trailing spaces
    tmp = None if path is None else path.with_name(path.name + ".partial")
    try:
        with contextlib.ExitStack() as stack:
            f = None if tmp is None else stack.enter_context(open(tmp, "wb"))
            if f is not None:
                f.write(len(blob).to_bytes(8, "little"))
                f.write(blob)
            for t in tensors:
                a = t.make()
                if tuple(a.shape) != tuple(t.shape):
                    raise ExportError(f"{t.name}: produced {a.shape}, planned {t.shape}")
                if not np.isfinite(a.astype(np.float32)).all():
                    raise ExportError(f"{t.name} holds NaN or inf values; refusing to export")
                if f is not None:
                    f.write(np.ascontiguousarray(a.astype(np_dtype)).view(np.uint8).reshape(-1).data)
    except BaseException:  # no half-written .partial left behind
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    if tmp is not None:  # renamed only once complete: an interrupted export leaves no truncated shard
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- public API
def save_pretrained(
    config: LlmConfig,
    params: Mapping,
    directory: str | Path,
    *,
    tokenizer=None,
    hf_config: Mapping | None = None,
    dtype: str = "float32",
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    generation_config: Mapping | None = None,
    overwrite: bool = False,
    verify_tokens=None,
) -> ExportResult:
    """Write `params` (our layout, see `model.py`) as a Hugging Face checkpoint directory.

    Args:
      config: the decoder's `LlmConfig`; params must have exactly its parameters and shapes.
      params: nested dict of arrays (any dtype, possibly sharded over a mesh).
      directory: created if needed. Existing `config.json` or weight files are an error unless `overwrite`,
        which deletes the old weight files first (a stale shard or index would shadow the new weights).
      tokenizer: saved with its own `save_pretrained` when given.
      hf_config: the source checkpoint's `config.json` dict (keep it when the model came from one: nothing
        is lost); None builds one with `to_hf_config`. Must read back (`LlmConfig.from_hf`) as `config`.
      dtype: tensor dtype on disk, "float32", "bfloat16" or "float16" (rounded to nearest even).
      max_shard_bytes: above this, weights go into numbered shards + `model.safetensors.index.json`.
      generation_config: written as `generation_config.json`; None writes the config's bos/eos/pad ids.
      verify_tokens: token ids [B, T] (or (ids, mask)); when given, `verify_export` runs on the result and
        a mismatch raises `ExportError`.

    Returns an `ExportResult`. Only process 0 writes files when params span several processes.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
    if sys.byteorder != "little":  # safetensors is little-endian; the writer copies native bytes
        raise ExportError("save_pretrained writes native bytes and needs a little-endian host")
    np_dtype, tag = DTYPES[dtype]
    directory = Path(directory)
    primary = jax.process_index() == 0
    flat = _check_params(config, params)
    hf = _config_dict(config, hf_config, dtype)
    plan = _plan(config, flat)
    for t in plan:  # the inverse must land on the loader's key table, or the reload fails later
        if prm.map_key(t.name, config) is None:
            raise ExportError(f"internal: exported name {t.name} matches no rule of params.HF_TABLE")
    shards = _shards(plan, np_dtype.itemsize, max_shard_bytes)
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])

    if primary:
        directory.mkdir(parents=True, exist_ok=True)
        old = sorted(p.name for p in directory.iterdir() if _WEIGHT_FILE.fullmatch(p.name))
        if (old or (directory / "config.json").exists()) and not overwrite:
            raise FileExistsError(f"{directory} already holds a checkpoint ({old or ['config.json']}); "
                                  f"pass overwrite=True to replace it")
        for name in old:
            (directory / name).unlink()
        (directory / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
        if generation_config is None:
            eos = list(config.eos_token_ids)
            generation_config = {k: v for k, v in (("bos_token_id", config.bos_token_id),
                                                   ("eos_token_id", eos[0] if len(eos) == 1 else (eos or None)),
                                                   ("pad_token_id", config.pad_token_id)) if v is not None}
        (directory / "generation_config.json").write_text(json.dumps(dict(generation_config), indent=2) + "\n")
    for name, shard in zip(names, shards):
        _write_safetensors(directory / name if primary else None, shard, np_dtype, tag)
    total = sum(int(np.prod(t.shape)) * np_dtype.itemsize for t in plan)
    if primary and len(shards) > 1:
        index = {"metadata": {"total_size": total},
                 "weight_map": {t.name: name for name, shard in zip(names, shards) for t in shard}}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    if primary and tokenizer is not None:
        tokenizer.save_pretrained(str(directory))

    report = None
    if verify_tokens is not None:
        ids, mask = verify_tokens if isinstance(verify_tokens, tuple) else (verify_tokens, None)
        report = verify_export(directory, params, ids, mask)
    return ExportResult(directory=directory, files=tuple(names), total_bytes=total, verification=report)


def save_lm(lm, directory: str | Path, *, params: Mapping | None = None, **kwargs) -> ExportResult:
    """`save_pretrained` for a `LanguageModel`: its config and tokenizer, `params` (e.g. fine-tuned or
    LoRA-merged weights; default `lm.params`), and — when `lm` was loaded from a Hugging Face directory —
    that directory's `config.json` and `generation_config.json`, so the export keeps everything they say."""
    source = Path(lm.source) if lm.source else None
    if source is not None and source.is_dir() and (source / "config.json").exists():
        kwargs.setdefault("hf_config", json.loads((source / "config.json").read_text()))
        if (source / "generation_config.json").exists():
            kwargs.setdefault("generation_config", json.loads((source / "generation_config.json").read_text()))
    kwargs.setdefault("tokenizer", lm.tokenizer)
    return save_pretrained(lm.config, lm.params if params is None else params, directory, **kwargs)


def verify_export(
    directory: str | Path,
    params_or_lm,
    token_ids,
    attention_mask=None,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-5,
    use_transformers: bool = True,
    raise_on_mismatch: bool = True,
) -> dict:
    """Load an export back and compare its logits with ours on `token_ids` [B, T] (mask [B, T], any padding).

    `params_or_lm` is what was exported: a `LanguageModel` or a params pytree (the config is then read from
    the directory). The reference is our forward in float32 on those params rounded to the exported dtype
    (bf16 rounding is intended by a bf16 export, not an error). Compared, on unmasked positions:
    our own reload (`entropy_jax.llm.load`, float32) and, when torch is importable and `use_transformers`,
    `transformers.AutoModelForCausalLM.from_pretrained(directory)` in float32.

    Our reload runs the same code on the same weights and must agree within `atol`. transformers is an
    independent float32 implementation whose rounding differences grow with depth and with the scale of the
    logits (1.5e-4 measured for a 30-layer model whose logits reach 30), so it must agree within
    atol + rtol · max |logit| (the scale of the compared logits).

    Returns {"reload_max_abs_diff", "transformers_max_abs_diff" (None when not run), "atol", "rtol", "dtype",
    "ok"}; raises `ExportError` on a mismatch when `raise_on_mismatch`.
    """
    from entropy_jax.llm import api

    directory = Path(directory)
    hf = json.loads((directory / "config.json").read_text())
    dtype = str(hf.get("dtype") or hf.get("torch_dtype") or "float32")
    params = getattr(params_or_lm, "params", params_or_lm)
    config = getattr(params_or_lm, "config", None) or LlmConfig.from_hf(hf)
    ids = np.asarray(token_ids)
    ids = ids[None] if ids.ndim == 1 else ids
    mask = np.ones(ids.shape, bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
    mask = mask[None] if mask.ndim == 1 else mask

    cast = DTYPES[dtype][0] if dtype in DTYPES else np.dtype(np.float32)
    reference = jax.tree.map(lambda x: jnp.asarray(x).astype(cast).astype(jnp.float32), params)
    graphdef, _ = mdl.abstract(config, jnp.float32)
    ours = np.asarray(api.from_params(config, graphdef, reference).logits(ids, mask))
    reload = np.asarray(api.load(directory, tokenizer=False).logits(ids, mask))
    report: dict[str, Any] = {
        "reload_max_abs_diff": float(np.abs(reload - ours)[mask].max()),
        "transformers_max_abs_diff": None,
        "atol": atol,
        "rtol": rtol,
        "dtype": dtype,
    }
    ok = report["reload_max_abs_diff"] <= atol
    if use_transformers:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            from transformers import AutoModelForCausalLM

            ref = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
            with torch.no_grad():
                theirs = ref(input_ids=torch.as_tensor(ids, dtype=torch.long),
                             attention_mask=torch.as_tensor(mask, dtype=torch.long)).logits.float().numpy()
            report["transformers_max_abs_diff"] = float(np.abs(theirs - ours)[mask].max())
            scale = float(np.abs(ours)[mask].max())
            report["logit_scale"] = scale
            ok = ok and report["transformers_max_abs_diff"] <= atol + rtol * scale
    report["ok"] = ok
    if raise_on_mismatch and not report["ok"]:
        raise ExportError(f"export {directory} does not reproduce the model's logits: {report}")
    return report


__all__: Sequence[str] = ["DTYPES", "ExportError", "ExportResult", "save_lm", "save_pretrained", "to_hf_config",
                          "verify_export"]
