"""Model pieces against independent references: RoPE frequencies (transformers), jit = no jit, sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

import entropy_jax.llm as llm
from entropy_jax.llm import generate as gen
from entropy_jax.llm import rope
from tests.llm.conftest import COMMON, FAMILIES, ragged_batch


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_rope_frequencies_equal_transformers(family):
    cls_name, extra = FAMILIES[family]
    hf = getattr(transformers, cls_name)(**{**COMMON, **extra})
    ours_short, ours_long, scaling = rope.inverse_frequencies(llm.LlmConfig.from_hf(hf.to_dict()))
    fn = ROPE_INIT_FUNCTIONS[hf.rope_parameters["rope_type"]]
    short, attention = fn(hf, "cpu")
    np.testing.assert_allclose(ours_short, short.numpy(), rtol=1e-6)
    assert scaling == pytest.approx(attention)
    if ours_long is not None:
        long, _ = fn(hf, "cpu", seq_len=hf.rope_parameters["original_max_position_embeddings"] + 1)
        np.testing.assert_allclose(ours_long, long.numpy(), rtol=1e-6)


def test_config_reads_transformers_4_style_rope_scaling():
    legacy = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
              "num_hidden_layers": 1, "num_attention_heads": 2, "rope_theta": 500000.0,
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
    c = llm.LlmConfig.from_hf(legacy)
    assert (c.rope.type, c.rope.theta, c.rope.factor, c.num_kv_heads, c.head_dim) == ("llama3", 500000.0, 8.0, 2, 4)
    assert hash(c) == hash(llm.LlmConfig.from_hf(legacy))  # static argument of jit


def test_presets_build_abstract_models():
    from entropy_jax.llm import model

    for preset in (llm.LlmConfig.smollm2_135m, llm.LlmConfig.qwen3_0_6b, llm.LlmConfig.qwen2_5_3b,
                   llm.LlmConfig.phi4_mini, llm.LlmConfig.llama3_8b):
        _, abstract = model.abstract(preset())
        n = sum(np.prod(a.shape) for a in jax.tree.leaves(abstract))
        assert n > 1e8
    _, abstract = model.abstract(llm.LlmConfig.qwen3_0_6b())
    assert abs(sum(np.prod(a.shape) for a in jax.tree.leaves(abstract)) - 596e6) < 2e6  # Qwen3-0.6B: 0.6B


def test_abstract_is_memoised_but_hands_out_its_own_tree():
    from flax import nnx

    from entropy_jax.llm import model

    config = llm.LlmConfig.smollm2_135m().replace(num_layers=2)
    graphdef, shapes = model.abstract(config, "bfloat16")
    again_graphdef, again = model.abstract(config, jnp.bfloat16)  # the same dtype spelt another way
    assert again_graphdef is graphdef and again == shapes and again is not shapes
    again["embed"] = None  # a caller editing its tree does not reach the next caller's
    assert model.abstract(config, np.dtype("bfloat16"))[1] == shapes
    # equal to building it afresh, and a different dtype is a different entry
    fresh = nnx.eval_shape(lambda: model.Decoder(config, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), nnx.to_pure_dict(nnx.split(fresh)[1])) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), shapes)
    assert {a.dtype for a in jax.tree.leaves(model.abstract(config, "float32")[1])} == {np.dtype("float32")}


def test_forward_jit_equals_no_jit(tiny, rng):
    lm = llm.load(tiny("qwen3"))
    _, ids, mask = ragged_batch(rng, [7, 4])
    jitted = jax.jit(llm.forward, static_argnums=0)(lm.graphdef, lm.params, jnp.asarray(ids), jnp.asarray(mask))
    with jax.disable_jit():
        eager = llm.forward(lm.graphdef, lm.params, jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5, rtol=0)


def test_nucleus_sampling_frequencies(key):
    logits = jnp.log(jnp.array([[0.4, 0.25, 0.15, 0.1, 0.06, 0.04]]))
    keys = jax.random.split(key, 40000)
    draw = jax.jit(jax.vmap(lambda k, t, p: gen.choose(logits, k, t, p, False)[0], in_axes=(0, None, None)))
    # top_p = 0.75: the nucleus is {0.4, 0.25, 0.15} (mass before the third token 0.65 < 0.75), renormalised
    freq = np.bincount(np.asarray(draw(keys, 1.0, 0.75)), minlength=6) / len(keys)
    np.testing.assert_allclose(freq, [0.5, 0.3125, 0.1875, 0, 0, 0], atol=0.01)
    # temperature 2 without truncation: softmax(log p / 2) ∝ √p
    freq = np.bincount(np.asarray(draw(keys, 2.0, 1.0)), minlength=6) / len(keys)
    expected = np.sqrt([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    np.testing.assert_allclose(freq, expected / expected.sum(), atol=0.01)
    assert (np.asarray(draw(keys[:100], 1.0, 1e-6)) == 0).all()  # tiny top_p keeps the top token


def test_sampled_generation_is_reproducible_and_records_untruncated_entropy(tiny, key):
    lm = llm.load(tiny("llama"))
    prompts = [[5, 9, 33], [7]]
    a = lm.generate(prompts, max_new_tokens=12, temperature=0.8, top_p=0.9, key=key, stop_token_ids=())
    b = lm.generate(prompts, max_new_tokens=12, temperature=0.8, top_p=0.9, key=key, stop_token_ids=())
    c = lm.generate(prompts, max_new_tokens=12, temperature=0.8, top_p=0.9, key=jax.random.fold_in(key, 1),
                    stop_token_ids=())
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert (a.tokens != c.tokens).any()
    # entropy and log-prob are of the raw distribution: recompute them from a plain forward of the sequence
    seq = np.array([[5, 9, 33] + a.tokens[0].tolist()])
    logits = np.asarray(lm.logits(seq))[0, 2:-1].astype(np.float64)
    log_p = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    np.testing.assert_allclose(a.entropy[0], -(np.exp(log_p) * log_p).sum(-1), atol=1e-4)
    np.testing.assert_allclose(a.log_prob[0], np.take_along_axis(log_p, a.tokens[0][:, None], 1)[:, 0], atol=1e-4)
    assert a.sampling["temperature"] == 0.8 and a.sampling["top_p"] == 0.9
