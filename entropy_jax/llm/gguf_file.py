"""GGUF files without torch: metadata, tensor table, the Hugging Face config and the tokenizer they describe.

transformers' own GGUF path imports torch for its reader, so a machine with only our run-time dependencies
could not load a GGUF through it. This module parses the file itself (the format is a header, typed
key/value metadata, a tensor table and an aligned data section; all little-endian), memory-maps the tensor
data for `gguf.quants.dequantize` (numpy only), and rebuilds from the metadata

- `hf_config(meta, tensor_names)`: a `config.json`-style dict for the families the decoder supports, read
  through one key table (`CONFIG_KEYS`);
- `build_tokenizer(meta)`: a `transformers.PreTrainedTokenizerFast` (tokenizers' Rust BPE; no torch) with
  the file's vocabulary, merges, special tokens and chat template — byte-level BPE vocabularies ("gpt2":
  SmolLM2, Llama 3, Qwen2/3, Phi-4-mini) and SentencePiece BPE vocabularies ("llama": Llama 2, Mistral,
  Phi-3-mini).

Both are checked against transformers' own GGUF conversion in `tests/llm/test_gguf_file.py` (identical
token ids on several hundred strings, chat template included).
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"GGUF"
VERSIONS = (2, 3)
_SCALAR = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<?", 10: "<u8", 11: "<i8",
           12: "<f8"}
_STRING, _ARRAY = 8, 9
# llama.cpp token types (tokenizer.ggml.token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


class GgufError(ValueError):
    """A GGUF file is malformed or describes something this loader does not support."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table. `shape` is in NumPy (row-major) order, the reverse of GGUF's dims;
    `offset` is absolute in the file; `nbytes` the stored (possibly quantized) size."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int


@dataclasses.dataclass
class GgufFile:
    """A parsed GGUF: `metadata` {key: value} (strings, numbers, lists), `tensors` (table order)."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    _mapped: np.memmap | None = dataclasses.field(default=None, repr=False)

    @property
    def architecture(self) -> str:
        return str(self.metadata["general.architecture"])

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    def raw(self, info: TensorInfo) -> np.ndarray:
        """The stored bytes of a tensor as uint8 [..., row_bytes] (memory-mapped, read lazily)."""
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(info.ggml_type)]
        *lead, ne0 = info.shape
        if ne0 % block:
            raise GgufError(f"{self.path}: tensor {info.name} has a row of {ne0} values, not a multiple of its "
                            f"block size {block}")
        if self._mapped is None:
            self._mapped = np.memmap(self.path, dtype=np.uint8, mode="r")
        # a plain ndarray view: dequantizing a memmap subclass pays its bookkeeping on every slice
        data = np.asarray(self._mapped)[info.offset: info.offset + info.nbytes]
        return data.reshape(*lead, ne0 // block * type_size)

    def array(self, info: TensorInfo) -> np.ndarray:
        """A tensor dequantized to float32, in NumPy order (`info.shape`)."""
        import gguf

        out = gguf.quants.dequantize(self.raw(info), gguf.GGMLQuantizationType(info.ggml_type))
        return np.asarray(out, dtype=np.float32).reshape(info.shape)


def read(path: str | Path) -> GgufFile:
    """Parse a GGUF file's header, metadata and tensor table (the tensor data stays on disk).

    Arrays of strings (the vocabulary and merges) become Python lists, numeric arrays lists of Python
    numbers. Raises `GgufError` naming the file for a bad magic, an unsupported version or a truncated file.
    """
    path = Path(path)
    blob = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(blob)
    if bytes(buf[:4]) != MAGIC:
        raise GgufError(f"{path} is not a GGUF file (magic {bytes(buf[:4])!r})")
    try:
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in VERSIONS:
            raise GgufError(f"{path}: GGUF version {version} is not supported (supported: {VERSIONS})")
        pos = 24
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = _string(buf, pos)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            metadata[key], pos = _value(buf, pos + 4, vtype)
        entries = []
        for _ in range(n_tensors):
            name, pos = _string(buf, pos)
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
            ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            entries.append((name, tuple(int(d) for d in reversed(dims)), int(ggml_type), int(offset)))
    except struct.error as e:
        raise GgufError(f"{path} is truncated or corrupt ({e})") from e
    alignment = int(metadata.get("general.alignment", 32))
    start = -(-pos // alignment) * alignment
    tensors = tuple(TensorInfo(name, shape, t, start + off, _nbytes(path, name, shape, t))
                    for name, shape, t, off in entries)
    for t in tensors:
        if t.offset + t.nbytes > len(blob):
            raise GgufError(f"{path}: tensor {t.name} ends at byte {t.offset + t.nbytes}, past the end of the file "
                            f"({len(blob)} bytes): the file is truncated")
    return GgufFile(path=path, version=int(version), metadata=metadata, tensors=tensors)


def _nbytes(path, name, shape, ggml_type) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError) as e:
        raise GgufError(f"{path}: tensor {name} has an unknown ggml type {ggml_type}") from e
    return math.prod(shape) // block * type_size


def _string(buf, pos) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, pos)
    end = pos + 8 + n
    if end > len(buf):
        raise struct.error(f"string of {n} bytes at offset {pos} runs past the end")
    return bytes(buf[pos + 8: end]).decode("utf-8", errors="replace"), end


def _value(buf, pos, vtype):
    if vtype == _STRING:
        return _string(buf, pos)
    if vtype in _SCALAR:
        dt = np.dtype(_SCALAR[vtype])
        return np.frombuffer(buf, dt, 1, pos)[0].item(), pos + dt.itemsize
    if vtype == _ARRAY:
        item_type, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if item_type in _SCALAR:
            dt = np.dtype(_SCALAR[item_type])
            return np.frombuffer(buf, dt, count, pos).tolist(), pos + dt.itemsize * count
        out = []
        for _ in range(count):
            v, pos = _value(buf, pos, item_type)
            out.append(v)
        return out, pos
    raise struct.error(f"unknown metadata value type {vtype} at offset {pos}")


# ---------------------------------------------------------------------------------------------- config
# GGUF architecture → Hugging Face model_type (llama.cpp writes Mistral checkpoints as "llama").
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3"}

# "{arch}.<key>" → config.json key (None: read elsewhere)
CONFIG_KEYS: tuple[tuple[str, str], ...] = (
    ("context_length", "max_position_embeddings"),
    ("block_count", "num_hidden_layers"),
    ("feed_forward_length", "intermediate_size"),
    ("embedding_length", "hidden_size"),
    ("attention.head_count", "num_attention_heads"),
    ("attention.head_count_kv", "num_key_value_heads"),
    ("attention.key_length", "head_dim"),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
    ("attention.sliding_window", "sliding_window"),
    ("rope.freq_base", "rope_theta"),
    ("vocab_size", "vocab_size"),
)


def hf_config(meta: Mapping[str, Any], tensor_names: Sequence[str], factors: Mapping[str, np.ndarray] | None = None
              ) -> dict:
    """A `config.json`-style dict from GGUF metadata (what `LlmConfig.from_hf` reads).

    `factors` holds Phi-3's longrope factor tensors (`rope_factors_long.weight`, `rope_factors_short.weight`),
    which llama.cpp stores as tensors rather than metadata. Raises `GgufError` for other architectures.
    """
    arch = str(meta.get("general.architecture"))
    if arch not in ARCHITECTURES:
        raise GgufError(f"GGUF architecture {arch!r} is not supported; supported: {sorted(ARCHITECTURES)}")
    if "rope_freqs.weight" in set(tensor_names):
        raise GgufError("this GGUF carries per-frequency rope factors (rope_freqs.weight, Llama 3.1+ files); they "
                        "are not supported from GGUF: load the model's Hugging Face directory instead")
    cfg: dict[str, Any] = {"model_type": ARCHITECTURES[arch]}
    for key, name in CONFIG_KEYS:
        if f"{arch}.{key}" in meta:
            cfg[name] = meta[f"{arch}.{key}"]
    if isinstance(cfg.get("num_key_value_heads"), list):  # per-layer counts in some files
        cfg["num_key_value_heads"] = max(cfg["num_key_value_heads"])
    if "vocab_size" not in cfg:
        cfg["vocab_size"] = len(meta["tokenizer.ggml.tokens"])
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    rotary = meta.get(f"{arch}.rope.dimension_count")
    if rotary is not None and int(rotary) != head_dim:
        if arch != "phi3":
            raise GgufError(f"{arch}: rope.dimension_count {rotary} differs from head_dim {head_dim}, which only "
                            "Phi-3 (partial rotary) supports")
        cfg["partial_rotary_factor"] = int(rotary) / head_dim
    cfg["tie_word_embeddings"] = "output.weight" not in set(tensor_names)
    if arch == "llama" and any(n.endswith("attn_q.bias") for n in tensor_names):
        cfg["attention_bias"] = True
    rope = _rope_scaling(arch, meta, factors or {})
    if rope:
        cfg["rope_scaling"] = rope
    if cfg.get("sliding_window") is not None and arch in ("qwen2", "qwen3"):
        cfg["use_sliding_window"] = True
    for name, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("pad_token_id", "padding_token_id")):
        if f"tokenizer.ggml.{key}" in meta:
            cfg[name] = int(meta[f"tokenizer.ggml.{key}"])
    return cfg


def _rope_scaling(arch: str, meta, factors) -> dict | None:
    kind = meta.get(f"{arch}.rope.scaling.type")
    long = factors.get("rope_factors_long.weight")
    short = factors.get("rope_factors_short.weight")
    original = meta.get(f"{arch}.rope.scaling.original_context_length")
    if long is not None and short is not None:  # Phi-3/4 longrope
        out = {"rope_type": "longrope", "long_factor": [float(x) for x in np.ravel(long)],
               "short_factor": [float(x) for x in np.ravel(short)]}
        if original is not None:
            out["original_max_position_embeddings"] = int(original)
        if meta.get(f"{arch}.rope.scaling.attn_factor") is not None:
            out["attention_factor"] = float(meta[f"{arch}.rope.scaling.attn_factor"])
        return out
    if kind in (None, "none"):
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(meta[f"{arch}.rope.scaling.factor"])}
    if kind == "yarn":
        out = {"rope_type": "yarn", "factor": float(meta[f"{arch}.rope.scaling.factor"])}
        if original is not None:
            out["original_max_position_embeddings"] = int(original)
        return out
    raise GgufError(f"{arch}: rope scaling {kind!r} in a GGUF is not supported")


# ---------------------------------------------------------------------------------------------- tokenizer
# llama.cpp pre-tokenizer names → the split regex their merges were learned with (byte-level vocabularies).
# Names not listed use GPT-2's regex (the ByteLevel pre-tokenizer's own), as transformers does.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O_SPLIT = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZER_SPLITS = {
    "llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT, "gpt-4o": _GPT4O_SPLIT,
}


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map (byte-level BPE vocabularies are spelled in it)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def build_tokenizer(meta: Mapping[str, Any]):
    """A `transformers.PreTrainedTokenizerFast` for the vocabulary a GGUF's metadata describes.

    Control tokens (type 3) become special tokens, user-defined ones (type 4, e.g. `<think>`) added tokens
    matched whole; BOS is prepended when `tokenizer.ggml.add_bos_token` says so (llama.cpp's default for
    SentencePiece vocabularies without the flag); the chat template is `tokenizer.chat_template`.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    kind = meta.get("tokenizer.ggml.model")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    types: list[int] = list(meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or ()]
    if kind == "gpt2":
        alphabet = _byte_alphabet()
        letters = set(alphabet.values())
        spelled = [t if set(t) <= letters else "".join(alphabet[b] for b in t.encode("utf-8")) for t in tokens]
        vocab = {t: i for i, t in enumerate(spelled)}
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        split = PRE_TOKENIZER_SPLITS.get(meta.get("tokenizer.ggml.pre"))
        if split is None:
            tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        else:
            tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                        pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                 use_regex=False)])
        tk.decoder = decoders.ByteLevel()
        add_bos_default = False
        # a control token spelled outside the byte alphabet is a converter mislabel; never add it
        control_ok = [set(t) <= letters for t in tokens]
    elif kind == "llama":
        vocab = {t: i for i, t in enumerate(tokens)}
        if not merges:
            merges = _merges_from_scores(tokens, meta.get("tokenizer.ggml.scores"))
        unk_id = meta.get("tokenizer.ggml.unknown_token_id")
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None if unk_id is None else tokens[unk_id],
                                  fuse_unk=True, byte_fallback=True))
        prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
        if meta.get("general.architecture") == "phi3":  # its prefix space is a normalizer (its tokenizer.json)
            tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
            tk.pre_tokenizer = None
        else:
            tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁",
                                                        prepend_scheme="first" if prefix else "never", split=False)
        steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        if prefix:
            steps.append(decoders.Strip(content=" ", left=1, right=0))
        tk.decoder = decoders.Sequence(steps)
        add_bos_default = True
        control_ok = [True] * len(tokens)
    else:
        raise GgufError(f"GGUF tokenizer model {kind!r} is not supported; supported: ['gpt2', 'llama']")
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True)
                           for t, ty, ok in zip(tokens, types, control_ok) if ty == CONTROL and ok])
    tk.add_tokens([AddedToken(t, normalized=False, special=False)
                   for t, ty in zip(tokens, types) if ty == USER_DEFINED])

    def token(key):
        i = meta.get(f"tokenizer.ggml.{key}")
        return None if i is None else tokens[int(i)]

    bos = token("bos_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    if add_bos or add_eos:
        eos = token("eos_token_id")
        single = ([f"{bos}:0"] if add_bos else []) + ["$A:0"] + ([f"{eos}:0"] if add_eos else [])
        pair = single + ([f"{bos}:1"] if add_bos else []) + ["$B:1"] + ([f"{eos}:1"] if add_eos else [])
        specials = [(t, vocab_id) for t, vocab_id in ((bos, meta.get("tokenizer.ggml.bos_token_id")),
                                                      (eos, meta.get("tokenizer.ggml.eos_token_id")))
                    if t is not None and vocab_id is not None]
        tk.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                          special_tokens=list(dict.fromkeys(specials)))
    kwargs = {name: token(key) for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                                                 ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id"))}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if meta.get("tokenizer.chat_template"):
        kwargs["chat_template"] = meta["tokenizer.chat_template"]
    return PreTrainedTokenizerFast(tokenizer_object=tk, clean_up_tokenization_spaces=False, **kwargs)


def _merges_from_scores(tokens: Sequence[str], scores: Sequence[float] | None) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary without a merge list: every split of a token into two
    vocabulary tokens, ranked by the merged token's score (higher first), ties by the longer left then right
    part, then vocabulary order — the order transformers' converters use, so both give the same merges."""
    if scores is None:
        raise GgufError("a SentencePiece GGUF vocabulary without merges needs tokenizer.ggml.scores")
    ids = {t: i for i, t in enumerate(tokens)}
    found = []
    for token, score in dict(zip(tokens, scores)).items():
        pairs = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in ids and token[k:] in ids]
        pairs.sort(key=lambda lr: (ids[lr[0]], ids[lr[1]]))
        found += [(left, right, float(score)) for left, right in pairs]
    found.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)  # stable: ties keep vocabulary order
    return [(left, right) for left, right, _ in found]
