"""Token-for-token parity with transformers' torch models on tiny random checkpoints of every family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import entropy_jax.llm as llm
from tests.llm.conftest import FAMILIES, ragged_batch, reference

ALL = sorted(FAMILIES)


def _torch_logits(ref, ids, mask):
    with torch.no_grad():
        return ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


@pytest.mark.parametrize("family", ALL)
def test_logits_match_transformers_on_a_padded_batch(family, tiny, rng):
    directory = tiny(family)
    lm, ref = llm.load(directory), reference(directory)
    _, ids, mask = ragged_batch(rng, [19, 11, 4, 19])
    right = np.zeros_like(ids), np.zeros_like(mask)  # the same rows right-padded
    for i in range(len(ids)):
        n = mask[i].sum()
        right[0][i, :n], right[1][i, :n] = ids[i, -n:], 1
    for x, m in ((ids, mask), right):
        ours = np.asarray(lm.logits(x, m))
        assert ours.dtype == np.float32 and ours.shape == (*x.shape, lm.config.vocab_size)
        np.testing.assert_allclose(ours[m.astype(bool)], _torch_logits(ref, x, m)[m.astype(bool)], atol=1e-4, rtol=0)
    # padding changes nothing: row 2 alone, unpadded, gives the same logits as inside the batch (except with
    # longrope, where the whole call switches to the long factors once any row passes the original context)
    if FAMILIES[family][1].get("rope_scaling", {}).get("type") == "longrope":
        return
    alone = np.asarray(lm.logits(ids[2:3, -4:]))[0]
    np.testing.assert_allclose(alone, np.asarray(lm.logits(ids, mask))[2, -4:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ALL)
def test_greedy_generation_and_entropies_match_transformers(family, tiny, rng):
    directory = tiny(family)
    lm, ref = llm.load(directory), reference(directory)
    prompts, ids, mask = ragged_batch(rng, [9, 3, 14])
    out = lm.generate(prompts, max_new_tokens=24, stop_token_ids=())
    with torch.no_grad():
        hf = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                          max_new_tokens=24, eos_token_id=None, pad_token_id=0, output_logits=True,
                          return_dict_in_generate=True)
    np.testing.assert_array_equal(out.tokens, hf.sequences[:, ids.shape[1]:].numpy())
    assert out.valid.all() and out.seconds["decode_steps"] == 24
    raw = torch.stack(hf.logits, 1).float()
    log_p = torch.log_softmax(raw, -1)
    entropy = -(log_p.exp() * log_p).sum(-1).numpy()
    chosen = torch.gather(log_p, -1, torch.tensor(out.tokens)[..., None])[..., 0].numpy()
    np.testing.assert_allclose(out.entropy, entropy, atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.log_prob, chosen, atol=1e-4, rtol=0)
    assert out.entropy_settings["temperature"] == 1.0 and out.entropy_settings["units"] == "nats"


def test_stop_tokens_end_rows_like_transformers(tiny, rng):
    directory = tiny("qwen2")  # untied: tied tiny random models tend to repeat their last token forever
    lm, ref = llm.load(directory), reference(directory)
    prompts, ids, mask = ragged_batch(rng, [5, 12, 8])
    free = lm.generate(prompts, max_new_tokens=16, stop_token_ids=())
    # a token that some row r first emits at a step k ≥ 1 (tiny random models often repeat one token)
    r, k = next((r, j) for r in range(3) for j in range(1, 16)
                if free.tokens[r, j] not in free.tokens[r, :j])
    stop = int(free.tokens[r, k])
    out = lm.generate(prompts, max_new_tokens=16, stop_token_ids=(stop,))
    with torch.no_grad():
        hf = ref.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                          max_new_tokens=16, eos_token_id=stop, pad_token_id=0)
    hf_new = hf[:, ids.shape[1]:].numpy()
    for i in range(len(prompts)):
        n = out.lengths[i]
        assert out.tokens[i, n - 1] == stop or n == 16
        np.testing.assert_array_equal(out.tokens[i, :n], hf_new[i, :n])
        assert (out.tokens[i, n:] == lm.config.pad_token_id).all()
        assert (out.entropy[i, n:] == 0).all() and (out.entropy[i, :n] > 0).all()
        np.testing.assert_allclose(out.entropy[i, :n], free.entropy[i, :n], atol=1e-5)
    assert out.lengths[r] == k + 1


def test_sharded_index_and_bfloat16_checkpoint(tiny, tmp_path, rng):
    """A checkpoint saved in bf16 and split into shards (model.safetensors.index.json) loads to the same model."""
    ref = reference(tiny("qwen2"))
    ref.to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    lm = llm.load(tmp_path)  # bf16 weights, computed in fp32
    _, ids, mask = ragged_batch(rng, [7, 10])
    expected = _torch_logits(ref.to(torch.float32), ids, mask)
    np.testing.assert_allclose(np.asarray(lm.logits(ids, mask))[mask.astype(bool)], expected[mask.astype(bool)],
                               atol=1e-4, rtol=0)


def test_bfloat16_compute_stays_close_to_float32(tiny, rng):
    directory = tiny("llama")
    lm32, lm16 = llm.load(directory), llm.load(directory, dtype="bfloat16")
    assert {a.dtype for a in __import__("jax").tree.leaves(lm16.params)} == {np.dtype("bfloat16")}
    _, ids, mask = ragged_batch(rng, [12, 6])
    a, b = np.asarray(lm32.logits(ids, mask)), np.asarray(lm16.logits(ids, mask))
    assert b.dtype == np.float32
    keep = mask.astype(bool)
    # bf16 keeps 8 mantissa bits: a few relative 1e-2 after two layers, argmax almost always equal
    assert np.abs(a - b)[keep].max() < 0.05 * np.abs(a[keep]).max()
    assert (a.argmax(-1) == b.argmax(-1))[keep].mean() > 0.9
