"""Long sequences against transformers (blockwise attention over many key blocks, left padding), YaRN
frequencies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from entropy_jax import llm
from entropy_jax.llm import rope
from tests.llm.conftest import COMMON, build, reference


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_1500_token_left_padded_logits_match_transformers(family, tmp_path, rng):
    """Random weights far from init (10× the init scale: peaked attention, logits of tens), 1,500 tokens, the
    second row left-padded by 400: our logits equal transformers' within 5e-4 at every valid position."""
    directory = build(family, tmp_path, seed=3, initializer_range=0.2, max_position_embeddings=2048)
    lm, ref = llm.load(directory), reference(directory)
    t = 1500
    ids = rng.integers(3, COMMON["vocab_size"], size=(2, t))
    mask = np.ones((2, t), np.int64)
    mask[1, :400] = 0
    ids[1, :400] = 0
    ours = np.asarray(lm.logits(ids, mask))
    with torch.no_grad():
        theirs = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    keep = mask.astype(bool)
    scale = np.abs(theirs[keep]).max()
    assert scale > 5  # far from init: the comparison is not between near-zero logits
    np.testing.assert_allclose(ours[keep], theirs[keep], atol=5e-4, rtol=0)


@pytest.mark.parametrize("extra", [
    {"factor": 4.0, "original_max_position_embeddings": 32},
    {"factor": 2.5, "original_max_position_embeddings": 40, "beta_fast": 16, "beta_slow": 2, "truncate": False},
    {"factor": 4.0, "original_max_position_embeddings": 32, "mscale": 0.707, "mscale_all_dim": 1.0},
    {"factor": 8.0, "original_max_position_embeddings": 16, "attention_factor": 1.3},
], ids=["qwen3-card", "betas-untruncated", "mscale", "attention-factor"])
def test_yarn_frequencies_and_scaling_equal_transformers(extra):
    hf = transformers.Qwen3Config(**COMMON, head_dim=32, max_position_embeddings=128,
                                  rope_scaling={"rope_type": "yarn", **extra})
    config = llm.LlmConfig.from_hf(hf.to_dict())
    assert config.rope.type == "yarn" and hash(config) == hash(llm.LlmConfig.from_hf(hf.to_dict()))
    ours, long, scaling = rope.inverse_frequencies(config)
    theirs, attention = ROPE_INIT_FUNCTIONS["yarn"](hf, "cpu")
    assert long is None
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6)
    assert scaling == pytest.approx(attention)


def test_with_yarn_extends_the_qwen3_context_as_its_model_card_says():
    base = llm.LlmConfig.qwen3_14b()
    long = base.with_yarn(4.0, original=32768)
    assert long.max_position_embeddings == 131072 and long.rope.type == "yarn"
    assert long.rope.original_max_position_embeddings == 32768 and long.rope.theta == base.rope.theta
    short, _, scaling = rope.inverse_frequencies(long)
    assert scaling == pytest.approx(0.1 * np.log(4.0) + 1)
    default, _, _ = rope.inverse_frequencies(base)
    assert short[0] == default[0] and short[-1] == pytest.approx(default[-1] / 4)  # fast kept, slow interpolated
