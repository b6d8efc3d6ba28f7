"""Our torch-free GGUF reader, config and tokenizer against `gguf`'s own reader and transformers' GGUF path.

transformers' GGUF conversion needs torch, so it is the test-only reference here; at run time the decoder
reads GGUFs with `entropy_jax.llm.gguf_file` alone (tests/test_no_torch.py checks that).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from entropy_jax import llm
from entropy_jax.llm import gguf_file
from entropy_jax.llm.config import LlmConfig

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")  # transformers' GGUF reader imports it


@pytest.fixture(scope="module")
def embedded():
    path = llm.embedded_gguf()
    return path, gguf_file.read(path)


@pytest.fixture(scope="module")
def tokenizers(embedded):
    path, parsed = embedded
    ours = gguf_file.build_tokenizer(parsed.metadata)
    theirs = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return ours, theirs


def varied_strings(repo_root) -> list[str]:
    """A few hundred strings: every question and option text of the first 60 demo questions plus edge cases
    (digits, whitespace runs, unicode, emoji, code, control tokens spelled in text, contractions)."""
    rows = [json.loads(line) for line in (repo_root / "entropy_jax" / "data" / "mcqa_demo.jsonl").read_text().splitlines()[:60]]
    texts = [r["question"] for r in rows] + [o for r in rows for o in r["options"]]
    texts += [
        "", " ", "  ", "\n", "\n\n\n", "\t", " \t\n ", "a", "A", " A", "A.", "(A)", "[[B]]", "Answer: C",
        "2024", " 2024", "3.14159", "1,000,000", "x^2 + 2x + 1 = 0", "12345678901234567890", "0x1F", "-42",
        "café naïve façade", "Straße", "Ünïcödé", "日本語のテキスト", "中文字符", "한국어", "Русский текст",
        "emoji 😀👍🏽", "👨‍👩‍👧", "mixed ascii and ü", "don't won't it's we've they'll I'd",
        "def f(x):\n    return x**2\n", "if (a && b) { c++; }", "<html><body>hi</body></html>",
        "<|im_start|>user\nhi<|im_end|>", "<|endoftext|>", "text<|im_end|>more", "<think>abc</think>",
        "trailing space ", " leading space", "multiple   inner    spaces", "tab\tseparated\tvalues",
        "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "e.g. i.e. etc.",
        "http://example.com/path?q=1&r=2", "user@example.com", "C:\\Windows\\path", "$100 €50 £20 ¥1000",
        "α β γ δ ε", "∑ ∫ √ ∞ ≤ ≥", "“quotes” ‘single’ «guillemets»", "em—dash en–dash", "…ellipsis",
    ]
    return texts


def test_metadata_and_tensor_table_equal_gguf_reader(embedded):
    path, parsed = embedded
    reader = gguf.GGUFReader(str(path))
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        assert parsed.metadata[key] == field.contents(), key
    assert len(parsed.tensors) == len(reader.tensors)
    for ours, ref in zip(parsed.tensors, reader.tensors):
        assert (ours.name, ours.shape, ours.ggml_type, ours.offset, ours.nbytes) == (
            ref.name, tuple(reversed(ref.shape.tolist())), int(ref.tensor_type), ref.data_offset, ref.n_bytes)
    for info, ref in list(zip(parsed.tensors, reader.tensors))[:6]:  # quantized and float tensors
        np.testing.assert_array_equal(parsed.array(info).ravel(),
                                      gguf.quants.dequantize(ref.data, ref.tensor_type).ravel())


def test_config_equals_transformers_gguf_config(embedded):
    path, parsed = embedded
    ours = gguf_file.hf_config(parsed.metadata, parsed.tensor_names)
    theirs = transformers.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict()
    assert LlmConfig.from_hf(ours) == LlmConfig.from_hf(theirs)


def test_token_ids_equal_transformers_gguf_tokenizer(tokenizers, repo_root):
    ours, theirs = tokenizers
    texts = varied_strings(repo_root)
    assert len(texts) >= 300
    for text in texts:
        for special in (True, False):
            a = ours(text, add_special_tokens=special)["input_ids"]
            b = theirs(text, add_special_tokens=special)["input_ids"]
            assert a == b, text
        assert ours.decode(a) == theirs.decode(b), text
        assert ours.decode(a, skip_special_tokens=True) == theirs.decode(b, skip_special_tokens=True), text
    assert len(ours) == len(theirs)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id, ours.unk_token_id) == (
        theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id, theirs.unk_token_id)
    assert sorted(ours.all_special_ids) == sorted(theirs.all_special_ids)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2 = ?"}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! 😀"},
     {"role": "user", "content": "Answer with A, B, C or D.\n\nA. x\nB. y"}],
])
def test_chat_template_renders_and_encodes_like_transformers(tokenizers, messages):
    ours, theirs = tokenizers
    for gen in (True, False):
        a = ours.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        b = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        assert a == b
        assert ours(a, add_special_tokens=False)["input_ids"] == theirs(b, add_special_tokens=False)["input_ids"]


def _write_sentencepiece_gguf(path, *, add_bos: bool | None):
    """A tiny GGUF with a SentencePiece BPE vocabulary (Llama-2 style: byte tokens, ▁ pieces, scores)."""
    pieces = ["▁", "▁t", "▁th", "▁the", "he", "h", "t", "e", "▁a", "a", "n", "▁an", "d", "▁and", "o", "▁o",
              "f", "▁of", "x", "▁x", "1", "2", "▁1", "s", "▁is", "i", "▁i", "c", "▁c", "at", "▁cat"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces + ["<extra>"]
    types = [gguf_file.UNKNOWN, gguf_file.CONTROL, gguf_file.CONTROL] + [gguf_file.BYTE] * 256 + \
        [gguf_file.NORMAL] * len(pieces) + [gguf_file.USER_DEFINED]
    scores = [0.0] * 259 + [-float(len(p)) * 0.5 - i * 0.01 for i, p in enumerate(pieces)] + [0.0]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_scores(scores)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("add_bos", [None, False])
def test_sentencepiece_vocabulary_equals_transformers(tmp_path, add_bos):
    path = _write_sentencepiece_gguf(tmp_path / "spm.gguf", add_bos=add_bos)
    ours = gguf_file.build_tokenizer(gguf_file.read(path).metadata)
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    for text in ["the cat", "the cat and the 12 x", " the  cat", "unknown ü char", "is it a cat?", "t",
                 "<extra> the", "\n", ""]:
        a, b = ours(text)["input_ids"], theirs(text)["input_ids"]
        assert a == b, text
        assert ours.decode(a) == theirs.decode(b), text


def test_unsupported_inputs_are_named(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(gguf_file.GgufError, match="not a GGUF file"):
        gguf_file.read(bad)
    good = _write_sentencepiece_gguf(tmp_path / "ok.gguf", add_bos=None)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(gguf_file.GgufError, match="truncated"):
        gguf_file.read(cut)
    with pytest.raises(gguf_file.GgufError, match="architecture 'mamba'"):
        gguf_file.hf_config({"general.architecture": "mamba"}, ())
    with pytest.raises(gguf_file.GgufError, match="tokenizer model 'bert'"):
        gguf_file.build_tokenizer({"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["a"]})
    meta = gguf_file.read(good).metadata
    with pytest.raises(gguf_file.GgufError, match="rope_freqs"):
        gguf_file.hf_config(meta, ("token_embd.weight", "rope_freqs.weight"))


def test_qwen3_and_phi3_metadata_map_to_their_configs():
    qwen3 = {"general.architecture": "qwen3", "qwen3.block_count": 2, "qwen3.context_length": 4096,
             "qwen3.embedding_length": 64, "qwen3.feed_forward_length": 96, "qwen3.attention.head_count": 4,
             "qwen3.attention.head_count_kv": 2, "qwen3.attention.key_length": 32, "qwen3.rope.freq_base": 1e6,
             "qwen3.attention.layer_norm_rms_epsilon": 1e-6, "tokenizer.ggml.tokens": ["x"] * 160,
             "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.bos_token_id": 1}
    c = LlmConfig.from_hf(gguf_file.hf_config(qwen3, ("token_embd.weight",)))
    assert (c.family, c.head_dim, c.qk_norm, c.vocab_size, c.tie_word_embeddings, c.rope.theta) == (
        "qwen3", 32, True, 160, True, 1e6)
    phi3 = {"general.architecture": "phi3", "phi3.block_count": 2, "phi3.context_length": 128,
            "phi3.embedding_length": 64, "phi3.feed_forward_length": 96, "phi3.attention.head_count": 4,
            "phi3.attention.head_count_kv": 4, "phi3.rope.dimension_count": 12, "phi3.rope.freq_base": 1e4,
            "phi3.rope.scaling.original_context_length": 16, "phi3.attention.layer_norm_rms_epsilon": 1e-5,
            "phi3.attention.sliding_window": 6, "tokenizer.ggml.tokens": ["x"] * 160}
    factors = {"rope_factors_long.weight": np.arange(1, 7, dtype=np.float32),
               "rope_factors_short.weight": np.ones(6, np.float32)}
    c = LlmConfig.from_hf(gguf_file.hf_config(phi3, ("token_embd.weight", "output.weight"), factors))
    assert c.rotary_dim == 12 and c.rope.type == "longrope" and c.rope.long_factor == (1, 2, 3, 4, 5, 6)
    assert c.rope.original_max_position_embeddings == 16 and c.sliding_windows == (6, 6)
    assert not c.tie_word_embeddings
