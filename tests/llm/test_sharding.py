"""Sharded = unsharded on 8 simulated CPU devices; one compilation per shape bucket."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import entropy_jax.llm as llm
from entropy_jax.llm import sharding
from tests.llm.conftest import ragged_batch


def test_mesh_shapes_and_errors():
    assert dict(llm.make_mesh(data=-1, fsdp=2, tensor=2).shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert dict(llm.make_mesh(data=1, fsdp=-1, tensor=1).shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    with pytest.raises(ValueError, match="needs 12 devices"):
        llm.make_mesh(data=3, fsdp=2, tensor=2)
    with pytest.raises(ValueError, match="at most one"):
        llm.make_mesh(data=-1, fsdp=-1)


def test_partition_rules_by_name_drop_axes_that_do_not_divide():
    mesh = llm.make_mesh(data=2, fsdp=2, tensor=2)
    assert sharding.param_spec("layers.3.attn.q.kernel", (64, 128), mesh) == P("fsdp", "tensor")
    assert sharding.param_spec("layers.0.mlp.down.kernel", (96, 64), mesh) == P("tensor", "fsdp")
    assert sharding.param_spec("embed.embedding", (160, 64), mesh) == P("tensor", "fsdp")
    assert sharding.param_spec("layers.0.attn_norm.scale", (64,), mesh) == P()
    assert sharding.param_spec("layers.0.attn.k.kernel", (64, 3), mesh) == P("fsdp")  # 3 columns
    assert sharding.param_spec("lm_head.kernel", (64, 49151), mesh) == P("fsdp")


@pytest.mark.parametrize("family", ["qwen3", "phi3"])
def test_sharded_forward_and_generation_equal_unsharded(family, tiny, rng):
    directory = tiny(family)
    mesh = llm.make_mesh(data=2, fsdp=2, tensor=2)
    single, sharded = llm.load(directory), llm.load(directory, mesh=mesh)
    q = sharded.params["layers"][0]["attn"]["q"]["kernel"]
    assert q.sharding.spec == P("fsdp", "tensor") and len(q.addressable_shards) == 8
    prompts, ids, mask = ragged_batch(rng, [13, 5, 9])  # 3 rows: padded to 4 for the (data, fsdp) shards
    a = np.asarray(single.logits(ids, mask))
    b = sharded.logits(ids, mask)
    np.testing.assert_allclose(np.asarray(b), a, atol=1e-5, rtol=0)
    g1 = single.generate(prompts, max_new_tokens=20, stop_token_ids=())
    g8 = sharded.generate(prompts, max_new_tokens=20, stop_token_ids=())
    np.testing.assert_array_equal(g8.tokens, g1.tokens)
    np.testing.assert_allclose(g8.entropy, g1.entropy, atol=1e-5, rtol=0)
    np.testing.assert_allclose(g8.log_prob, g1.log_prob, atol=1e-5, rtol=0)
    # the row added to fill the (data, fsdp) shards counts as finished: stopping every real row at its first
    # token ends the loop after one step, as without a mesh
    first = tuple(dict.fromkeys(g1.tokens[:, 0].tolist()))
    s1 = single.generate(prompts, max_new_tokens=20, stop_token_ids=first)
    s8 = sharded.generate(prompts, max_new_tokens=20, stop_token_ids=first)
    assert s1.seconds["decode_steps"] == s8.seconds["decode_steps"] == 1
    np.testing.assert_array_equal(s8.tokens, s1.tokens)


def test_compiles_once_per_shape_bucket(tiny, rng):
    lm = llm.load(tiny("llama"))
    for lengths in ([5, 9], [12, 3], [16, 1]):  # all in the 16-token bucket, batch 2
        _, ids, mask = ragged_batch(rng, lengths)
        lm.logits(ids, mask)
        prompts, *_ = ragged_batch(rng, lengths)
        lm.generate(prompts, max_new_tokens=6, stop_token_ids=())
    assert lm.trace_counts == {"forward": 1, "prefill": 1, "decode": 1}
    lm.generate([[5] * 17], max_new_tokens=6)  # next bucket (32) and batch 1: one more of each
    assert lm.trace_counts == {"forward": 1, "prefill": 2, "decode": 2}
    key = jax.random.key(0)
    lm.generate([[5, 6, 7]], max_new_tokens=6, temperature=0.7, top_p=0.9, key=key)  # sampling: new program
    lm.generate([[5, 6, 7]], max_new_tokens=6, temperature=1.3, top_p=0.5, key=key)  # same program
    assert lm.trace_counts["decode"] == 3


def test_buckets_are_powers_of_two_then_four_per_octave():
    assert [llm.bucket(n) for n in (1, 16, 17, 100, 128)] == [16, 16, 32, 128, 128]
    assert [llm.bucket(n) for n in (129, 130, 161, 200, 256, 257, 1000, 1025)] == [
        160, 160, 192, 224, 256, 320, 1024, 1280]
    assert llm.bucket(100, limit=64) == 128 and llm.bucket(40, limit=48) == 48  # capped only when n fits
