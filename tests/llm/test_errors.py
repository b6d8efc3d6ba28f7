"""Bad input gets an error that names the problem."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import entropy_jax.llm as llm
from entropy_jax.llm import CheckpointError, UnsupportedModelError
from tests.llm.conftest import build


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build("llama", tmp_path_factory.mktemp("llama_err"), max_position_embeddings=32)


def _copy(src, dst, edit):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    tensors = load_file(str(src / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    return dst


def test_unsupported_architecture_lists_supported(tiny_llama, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError, match=r"'llama'.*'phi3'.*'qwen2'.*'qwen3'"):
        llm.load(tmp_path)


def test_unmatched_and_unfilled_keys_are_named(tiny_llama, tmp_path):
    def edit(t):
        t["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
        del t["model.layers.1.mlp.up_proj.weight"]

    bad = _copy(tiny_llama, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as err:
        llm.load(bad)
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" in str(err.value)
    assert "layers.1.mlp.up.kernel" in str(err.value)


def test_nan_and_shape_mismatch_are_named(tiny_llama, tmp_path):
    def edit(t):
        t["model.layers.1.self_attn.v_proj.weight"][3, 5] = float("nan")
        t["model.norm.weight"] = torch.ones(63)

    bad = _copy(tiny_llama, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as err:
        llm.load(bad)
    assert "NaN" in str(err.value) and "model.layers.1.self_attn.v_proj.weight" in str(err.value)
    assert "model.norm.weight → norm.scale: checkpoint (63,) vs model (64,)" in str(err.value)


def test_pickle_checkpoints_are_refused(tiny_llama, tmp_path):
    (tmp_path / "config.json").write_text((tiny_llama / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pytorch_model.bin.*never loaded"):
        llm.load(tmp_path)


def test_bad_dtype_and_sources(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="dtype 'int8' is not supported"):
        llm.load(tiny_llama, dtype="int8")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        llm.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an alias"):
        llm.load("./no/such/model")


def test_bad_token_inputs(tiny_llama):
    lm = llm.load(tiny_llama)
    with pytest.raises(TypeError, match="integer token ids"):
        lm.logits(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="context window of 32"):
        lm.logits(np.ones((1, 33), np.int32))
    with pytest.raises(ValueError, match=r"empty prompt: rows \[1\]"):
        lm.logits(np.ones((2, 4), np.int32), np.array([[1, 1, 1, 1], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 160\)"):
        lm.logits(np.array([[3, 400]]))
    with pytest.raises(ValueError, match="attention_mask shape"):
        lm.logits(np.ones((1, 4), np.int32), np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"empty prompt: prompts \[1\]"):
        lm.generate([[3, 4], []], max_new_tokens=2)
    with pytest.raises(ValueError, match="30 prompt tokens \\+ 8 new tokens exceed the context window of 32"):
        lm.generate([[3] * 30], max_new_tokens=8)
    with pytest.raises(ValueError, match="explicit PRNG key"):
        lm.generate([[3, 4]], temperature=0.5)
    with pytest.raises(ValueError, match="top_p"):
        lm.generate([[3, 4]], top_p=0.0)
    with pytest.raises(ValueError, match="no tokenizer"):
        lm.generate(["text needs a tokenizer"])


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"model_type": "llama",\n "hidden_size": 64,\n', r"config.json, line 3: invalid JSON"),
        (b'{"model_type": "llama", "name": "caf\xe9"}', r"config.json, line 1: not UTF-8 text"),
        (b'["llama"]', r"config.json: expected a JSON object; got list"),
        (b'{"model_type": "llama", "vocab_size": 10}', r"config.json: missing field 'num_attention_heads'"),
        (b'{"model_type": "llama", "num_attention_heads": "four"}', r"config.json: malformed field"),
    ],
)
def test_malformed_config_json_names_the_file(tmp_path, content, message):
    # No weights needed: the config is read (and refused) before any tensor.
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path)) + ".*" + message):
        llm.load(tmp_path, tokenizer=False)
