"""Decoder configuration: one frozen (hashable) dataclass for every supported family.

`LlmConfig.from_hf(config_dict)` reads a Hugging Face `config.json` (transformers 4.x `rope_scaling` +
`rope_theta`, or 5.x `rope_parameters`); presets for the checkpoints the chapters use are classmethods.
The config is a static argument of every jitted function, so it must stay hashable: tuples, not lists.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entropy_jax import _validate

# model_type -> family. Architectures (config["architectures"]) are accepted as well.
SUPPORTED: dict[str, str] = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3",
                             "mistral": "mistral"}
_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Phi3ForCausalLM": "phi3",
    "MistralForCausalLM": "mistral",
}
ROPE_TYPES = ("default", "linear", "llama3", "longrope", "yarn")


class UnsupportedModelError(ValueError):
    """The checkpoint's architecture is not one this decoder implements."""


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding parameters, as transformers' `rope_parameters` (5.x) define them.

    `type` is one of `ROPE_TYPES`. `partial_rotary_factor` < 1 rotates only the first
    `int(head_dim * partial_rotary_factor)` channels of each head (Phi-3/4-mini). YaRN (Qwen3/Qwen2.5 past
    their native context) uses `factor`, `original_max_position_embeddings`, `beta_fast`/`beta_slow`
    (default 32/1), `mscale`/`mscale_all_dim`, `attention_factor` and `truncate` (default True).
    """

    theta: float = 10000.0
    type: str = "default"
    factor: float | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None
    short_factor: tuple[float, ...] | None = None
    long_factor: tuple[float, ...] | None = None
    attention_factor: float | None = None
    partial_rotary_factor: float = 1.0
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool | None = None


@dataclasses.dataclass(frozen=True)
class LlmConfig:
    """Static description of a decoder-only transformer.

    Dimensions: `hidden_size` D, `num_heads` H query heads of `head_dim` each, `num_kv_heads` K
    key/value heads (grouped-query attention when K < H), `intermediate_size` F of the gated MLP.
    `sliding_windows[l]` is the attention window of layer l (None = full causal attention).
    """

    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope: RopeConfig = RopeConfig()
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_windows: tuple[int | None, ...] | None = None
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.family not in SUPPORTED.values():
            raise UnsupportedModelError(f"family {self.family!r}; supported: {sorted(set(SUPPORTED.values()))}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
        if self.rope.type not in ROPE_TYPES:
            raise UnsupportedModelError(f"rope type {self.rope.type!r}; supported: {list(ROPE_TYPES)}")
        if self.hidden_act not in ("silu", "swish"):
            raise UnsupportedModelError(f"hidden_act {self.hidden_act!r}; supported: ['silu']")
        if self.sliding_windows is not None and len(self.sliding_windows) != self.num_layers:
            raise ValueError(f"sliding_windows has {len(self.sliding_windows)} entries for {self.num_layers} layers")

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rope.partial_rotary_factor)

    def window(self, layer: int) -> int | None:
        return None if self.sliding_windows is None else self.sliding_windows[layer]

    def replace(self, **changes) -> LlmConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ from config.json
    @classmethod
    def from_hf(cls, hf: Mapping[str, Any], *, source: str | os.PathLike | None = None) -> LlmConfig:
        """Build from a Hugging Face `config.json` dict (or `PretrainedConfig.to_dict()`).

        Raises `UnsupportedModelError` listing the supported families for anything else, and
        ValueError for a missing or malformed field; `source` (the file it came from) prefixes
        both messages.
        """
        if not isinstance(hf, Mapping):
            raise TypeError(f"{source or 'config'}: expected a JSON object; got {type(hf).__name__}.")
        try:
            return cls._from_hf(hf)
        except UnsupportedModelError as e:
            raise UnsupportedModelError(f"{source}: {e}" if source else str(e)) from None
        except KeyError as e:
            raise ValueError(f"{source or 'config'}: missing field {e}.") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source or 'config'}: malformed field ({e}).") from None

    @classmethod
    def _from_hf(cls, hf: Mapping[str, Any]) -> LlmConfig:
        family = _family(hf)
        n_heads = int(hf["num_attention_heads"])
        n_kv = int(hf.get("num_key_value_heads") or n_heads)
        head_dim = int(hf.get("head_dim") or hf["hidden_size"] // n_heads)
        n_layers = int(hf["num_hidden_layers"])
        rope = _rope(hf, family)
        eos = hf.get("eos_token_id")
        eos_ids = tuple(int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]) if e is not None)

        windows: tuple[int | None, ...] | None = None
        window = hf.get("sliding_window")
        if family in ("phi3", "mistral") and window is not None:
            windows = (int(window),) * n_layers
        elif family in ("qwen2", "qwen3") and hf.get("use_sliding_window") and window is not None:
            types = hf.get("layer_types")
            if types is None:  # transformers 4.x rule: layers from max_window_layers on use the window
                first = int(hf.get("max_window_layers", n_layers))
                types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layers)]
            windows = tuple(int(window) if t == "sliding_attention" else None for t in types)

        attention_bias = bool(hf.get("attention_bias", False)) and family != "mistral"  # Mistral: no biases
        return cls(
            family=family,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=n_layers,
            num_heads=n_heads,
            num_kv_heads=n_kv,
            head_dim=head_dim,
            max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope=rope,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            # Qwen2 always has q/k/v biases and no o_proj bias; Llama/Qwen3 use one flag for all four.
            qkv_bias=True if family == "qwen2" else attention_bias,
            o_bias=False if family in ("qwen2", "phi3") else attention_bias,
            mlp_bias=bool(hf.get("mlp_bias", False)) if family == "llama" else False,
            qk_norm=family == "qwen3",
            sliding_windows=windows,
            hidden_act=str(hf.get("hidden_act", "silu")),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
            pad_token_id=hf.get("pad_token_id"),
        )

    # ------------------------------------------------------------------ presets
    # Shapes of the public checkpoints (from their config.json on the Hugging Face hub: Qwen/Qwen3-*,
    # Qwen/Qwen2.5-3B, microsoft/Phi-4-mini-instruct, meta-llama/Meta-Llama-3.1-8B, mistralai/Mistral-Small-
    # 24B-Base-2501, HuggingFaceTB/SmolLM2-135M-Instruct); weights come from `entropy_jax.llm.load`.
    @classmethod
    def smollm2_135m(cls) -> LlmConfig:
        return cls(family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                   num_heads=9, num_kv_heads=3, head_dim=64, max_position_embeddings=8192, rms_norm_eps=1e-5,
                   rope=RopeConfig(theta=100000.0), tie_word_embeddings=True, bos_token_id=1,
                   eos_token_ids=(2,), pad_token_id=2)

    @classmethod
    def qwen3_0_6b(cls) -> LlmConfig:
        return cls(family="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_layers=28,
                   num_heads=16, num_kv_heads=8, head_dim=128, max_position_embeddings=40960,
                   rope=RopeConfig(theta=1000000.0), tie_word_embeddings=True, qk_norm=True,
                   bos_token_id=151643, eos_token_ids=(151645,))

    @classmethod
    def qwen3_1_7b(cls) -> LlmConfig:
        return cls(family="qwen3", vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_layers=28,
                   num_heads=16, num_kv_heads=8, head_dim=128, max_position_embeddings=40960,
                   rope=RopeConfig(theta=1000000.0), tie_word_embeddings=True, qk_norm=True,
                   bos_token_id=151643, eos_token_ids=(151645,))

    @classmethod
    def qwen3_4b(cls) -> LlmConfig:
        return cls(family="qwen3", vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_layers=36,
                   num_heads=32, num_kv_heads=8, head_dim=128, max_position_embeddings=40960,
                   rope=RopeConfig(theta=1000000.0), tie_word_embeddings=True, qk_norm=True,
                   bos_token_id=151643, eos_token_ids=(151645,))

    @classmethod
    def qwen3_8b(cls) -> LlmConfig:
        return cls(family="qwen3", vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_layers=36,
                   num_heads=32, num_kv_heads=8, head_dim=128, max_position_embeddings=40960,
                   rope=RopeConfig(theta=1000000.0), qk_norm=True, bos_token_id=151643, eos_token_ids=(151645,))

    @classmethod
    def qwen3_14b(cls) -> LlmConfig:
        return cls(family="qwen3", vocab_size=151936, hidden_size=5120, intermediate_size=17408, num_layers=40,
                   num_heads=40, num_kv_heads=8, head_dim=128, max_position_embeddings=40960,
                   rope=RopeConfig(theta=1000000.0), qk_norm=True, bos_token_id=151643, eos_token_ids=(151645,))

    @classmethod
    def qwen2_5_3b(cls) -> LlmConfig:
        return cls(family="qwen2", vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_layers=36,
                   num_heads=16, num_kv_heads=2, head_dim=128, max_position_embeddings=32768,
                   rope=RopeConfig(theta=1000000.0), tie_word_embeddings=True, qkv_bias=True,
                   bos_token_id=151643, eos_token_ids=(151645,))

    @classmethod
    def llama3_8b(cls) -> LlmConfig:
        return cls(family="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_layers=32,
                   num_heads=32, num_kv_heads=8, head_dim=128, max_position_embeddings=131072, rms_norm_eps=1e-5,
                   rope=RopeConfig(theta=500000.0, type="llama3", factor=8.0, low_freq_factor=1.0,
                                   high_freq_factor=4.0, original_max_position_embeddings=8192),
                   bos_token_id=128000, eos_token_ids=(128001, 128008, 128009))

    @classmethod
    def phi4_mini(cls) -> LlmConfig:
        # Phi-4-mini-instruct: longrope over 48 rotary frequency pairs; factor lists are in its config.json,
        # so this preset (for shapes and benchmarks) uses unit factors.
        return cls(family="phi3", vocab_size=200064, hidden_size=3072, intermediate_size=8192, num_layers=32,
                   num_heads=24, num_kv_heads=8, head_dim=128, max_position_embeddings=131072, rms_norm_eps=1e-5,
                   rope=RopeConfig(theta=10000.0, type="longrope", original_max_position_embeddings=4096,
                                   short_factor=(1.0,) * 48, long_factor=(1.0,) * 48, partial_rotary_factor=0.75),
                   tie_word_embeddings=True, sliding_windows=(262144,) * 32, bos_token_id=199999,
                   eos_token_ids=(199999, 200020), pad_token_id=199999)

    @classmethod
    def mistral_small_24b(cls) -> LlmConfig:
        # Mistral-Small-24B-Base-2501: explicit head_dim (128 ≠ 5120 / 32), no sliding window
        return cls(family="mistral", vocab_size=131072, hidden_size=5120, intermediate_size=32768, num_layers=40,
                   num_heads=32, num_kv_heads=8, head_dim=128, max_position_embeddings=32768, rms_norm_eps=1e-5,
                   rope=RopeConfig(theta=100000000.0), bos_token_id=1, eos_token_ids=(2,))

    def with_yarn(self, factor: float, original: int | None = None) -> LlmConfig:
        """This config with YaRN rope scaling by `factor` over an original context of `original` positions
        (default: the current `max_position_embeddings`), as Qwen3's model cards document for contexts past
        32,768 tokens; the context window grows to factor × original."""
        original = original or self.max_position_embeddings
        rope = dataclasses.replace(self.rope, type="yarn", factor=float(factor),
                                   original_max_position_embeddings=int(original))
        return self.replace(rope=rope, max_position_embeddings=int(factor * original))


def read_hf_config(path: str | os.PathLike) -> dict[str, Any]:
    """A Hugging Face `config.json` as a dict; unreadable bytes or bad JSON name the file and line."""
    p = Path(path)
    hf = _validate.read_json(p)
    if not isinstance(hf, dict):  # bad file content, not a bad argument: ValueError
        raise ValueError(f"{p}: expected a JSON object; got {type(hf).__name__}.")  # noqa: TRY004
    return hf


def _family(hf: Mapping[str, Any]) -> str:
    model_type = hf.get("model_type")
    if model_type in SUPPORTED:
        return SUPPORTED[model_type]
    for arch in hf.get("architectures") or ():
        if arch in _ARCHITECTURES:
            return _ARCHITECTURES[arch]
    raise UnsupportedModelError(
        f"unsupported architecture (model_type={model_type!r}, architectures={hf.get('architectures')!r}); "
        f"supported model_type values: {sorted(SUPPORTED)} "
        f"(architectures {sorted(_ARCHITECTURES)})"
    )


def _rope(hf: Mapping[str, Any], family: str) -> RopeConfig:
    params = dict(hf.get("rope_parameters") or {})
    legacy = hf.get("rope_scaling") or {}
    params = {**legacy, **params}
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "su":  # early Phi-3 configs spelled longrope "su"
        rope_type = "longrope"
    partial = float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)))
    original = params.get("original_max_position_embeddings", hf.get("original_max_position_embeddings"))

    def floats(key):
        return None if params.get(key) is None else tuple(float(v) for v in params[key])

    def number(key):
        return None if params.get(key) is None else float(params[key])

    rope = RopeConfig(
        theta=theta,
        type=str(rope_type),
        factor=None if params.get("factor") is None else float(params["factor"]),
        low_freq_factor=None if params.get("low_freq_factor") is None else float(params["low_freq_factor"]),
        high_freq_factor=None if params.get("high_freq_factor") is None else float(params["high_freq_factor"]),
        original_max_position_embeddings=None if original is None else int(original),
        short_factor=floats("short_factor"),
        long_factor=floats("long_factor"),
        attention_factor=number("attention_factor"),
        partial_rotary_factor=partial,
        beta_fast=number("beta_fast"),
        beta_slow=number("beta_slow"),
        mscale=number("mscale"),
        mscale_all_dim=number("mscale_all_dim"),
        truncate=None if params.get("truncate") is None else bool(params["truncate"]),
    )
    if rope.type not in ROPE_TYPES:
        raise UnsupportedModelError(f"rope type {rope.type!r} ({family}); supported: {list(ROPE_TYPES)}")
    return rope
