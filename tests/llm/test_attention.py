"""Blockwise attention against the einsum reference (values and gradients), the backend kernels' mask
conversions on CPU, block skipping, memory, and the decode paths built on them."""

from __future__ import annotations

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from entropy_jax import llm
from entropy_jax.llm import attention as att
from entropy_jax.llm import generate as gen
from entropy_jax.llm import model as mdl

SCALE = 0.3


def _qkv(rng, b, t, s, h, kv_heads, d, dtype=np.float32):
    q = rng.normal(size=(b, t, h, d)).astype(dtype)
    k = rng.normal(size=(b, kv_heads, s, d)).astype(dtype)
    v = rng.normal(size=(b, kv_heads, s, d)).astype(dtype)
    return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)


def _left_padded(b, t, pads):
    valid = np.ones((b, t), bool)
    for i, p in enumerate(pads):
        valid[i, :p] = False
    return valid


def _masks():
    """(name, mask, S, query validity [B, T]) covering every mask kind."""
    t = 37
    left = _left_padded(3, t, [0, 11, 30])
    right = left[:, ::-1].copy()
    seg = np.array([[1] * 10 + [2] * 20 + [3] * 5 + [0] * 2, [1] * 37, [0] * 4 + [5] * 33])
    # a cache of 45 slots, prompt left-padded over slots [0, 20), queries at per-row slots
    kv_valid = np.ones((3, 45), bool)
    kv_valid[0, :3], kv_valid[1, :12] = False, False
    chunk = np.array([[20, 21, 22], [25, 26, 27], [40, 41, 42]])
    return [
        ("causal-left", att.Mask.causal(left), t, left),
        ("causal-right", att.Mask.causal(right), t, right),
        ("segments", att.Mask.segments(seg), t, seg > 0),
        ("cache-chunk", att.Mask.over_cache_slots(kv_valid, chunk), 45, np.ones((3, 3), bool)),
        ("cache-decode", att.Mask.over_cache_slots(kv_valid, chunk[:, :1]), 45, np.ones((3, 1), bool)),
    ]


MASKS = _masks()


# (mask, query heads, key/value heads, block_q, block_k, window): GQA, MQA and MHA; blocks that divide the
# lengths, that do not (5 keys per block over 37 or 45), and one block for everything
CASES = [("causal-left", 4, 2, 8, 8, None), ("causal-left", 3, 1, 16, 5, 6), ("causal-left", 2, 2, 64, 64, None),
         ("causal-right", 4, 2, 8, 8, 6), ("segments", 4, 2, 8, 8, None), ("segments", 3, 1, 16, 5, 6),
         ("cache-chunk", 4, 2, 2, 8, 6), ("cache-chunk", 3, 1, 16, 5, None), ("cache-decode", 4, 2, 8, 8, None),
         ("cache-decode", 2, 2, 64, 64, 6)]


@pytest.mark.parametrize(("name", "heads", "kv_heads", "block_q", "block_k", "window"), CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_blockwise_equals_reference_values_and_gradients(name, heads, kv_heads, block_q, block_k, window, rng):
    _, mask, s, valid = next(m for m in MASKS if m[0] == name)
    b, t = mask.q_slots.shape
    q, k, v = _qkv(rng, b, t, s, heads, kv_heads, 16)
    dense = mask.dense(window)
    ref = att.reference(q, k, v, dense, scale=SCALE)
    blk = jax.jit(lambda q, k, v, m: att.blockwise(q, k, v, m, scale=SCALE, window=window, block_q=block_q,
                                                   block_k=block_k))
    ours = blk(q, k, v, mask)
    seen = np.asarray(dense.any(-1))  # queries that see at least one key (the others get 0)
    assert seen[valid].all()
    np.testing.assert_allclose(np.asarray(ours)[seen], np.asarray(ref)[seen], atol=1e-5, rtol=0)
    assert (np.asarray(ours)[~seen] == 0).all()

    w = jnp.asarray(rng.normal(size=ref.shape).astype(np.float32)) * jnp.asarray(seen)[:, :, None, None]

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v) * w)

    g_ref = jax.grad(loss(lambda q, k, v: att.reference(q, k, v, dense, scale=SCALE)), (0, 1, 2))(q, k, v)
    g_blk = jax.jit(jax.grad(loss(lambda q, k, v: blk(q, k, v, mask)), (0, 1, 2)))(q, k, v)
    for wrt, a, r in zip("qkv", g_blk, g_ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), atol=1e-5, rtol=0, err_msg=f"d{wrt}")


def test_bfloat16_blockwise_stays_close_to_the_float32_reference(rng):
    _, mask, s, valid = MASKS[0]
    q, k, v = _qkv(rng, 3, 37, s, 4, 2, 16)
    ref = att.reference(q, k, v, mask.dense(), scale=SCALE)
    b16 = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    ours = att.blockwise(*b16, mask, scale=SCALE, block_q=8, block_k=8)
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ours.astype(jnp.float32))[valid], np.asarray(ref)[valid], atol=3e-2)


def test_attend_dispatch_on_cpu(rng):
    _, mask, s, valid = MASKS[0]
    q, k, v = _qkv(rng, 3, 37, s, 4, 2, 16)
    assert att.resolve("auto", q, k, mask, None) == "blockwise"
    assert att.resolve("cudnn", q, k, mask, None) == "blockwise"  # not a GPU: falls back
    assert att.resolve("splash", q, k, mask, None) == "blockwise"
    assert att.resolve("reference", q, k, mask, None) == "reference"
    outs = [att.attend(q, k, v, mask, scale=SCALE, config=att.AttentionConfig(impl))
            for impl in ("auto", "reference", "cudnn")]
    for o in outs[1:]:
        np.testing.assert_allclose(np.asarray(o)[valid], np.asarray(outs[0])[valid], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="attention impl 'flash'"):
        att.AttentionConfig("flash")


def test_backend_conditions():
    bf = jax.ShapeDtypeStruct((1, 256, 8, 128), jnp.bfloat16)
    kv = jax.ShapeDtypeStruct((1, 2, 256, 128), jnp.bfloat16)
    causal = att.Mask.causal(np.ones((1, 256), bool))
    assert att.cudnn_applies(bf, kv, causal) and att.splash_applies(bf, kv, causal)
    f32 = jax.ShapeDtypeStruct((1, 256, 8, 128), jnp.float32)
    assert not att.cudnn_applies(f32, kv, causal)  # cuDNN: half precision only
    segments = att.Mask.segments(np.ones((1, 256), np.int32))
    assert not att.cudnn_applies(bf, kv, segments) and att.splash_applies(bf, kv, segments)
    decode = att.Mask.over_cache_slots(np.ones((1, 256), bool), np.full((1, 1), 9))
    one = jax.ShapeDtypeStruct((1, 1, 8, 128), jnp.bfloat16)
    assert not att.cudnn_applies(one, kv, decode) and not att.splash_applies(one, kv, decode)
    odd = jax.ShapeDtypeStruct((1, 160, 8, 128), jnp.bfloat16)
    assert not att.splash_applies(odd, jax.ShapeDtypeStruct((1, 2, 160, 128), jnp.bfloat16),
                                  att.Mask.causal(np.ones((1, 160), bool)))


@pytest.mark.parametrize("window", [None, 5])
def test_cudnn_path_conversion_through_the_xla_implementation(window, rng):
    """The cuDNN path rotates left padding into sequence lengths; `implementation="xla"` runs the very same
    call on CPU."""
    valid = _left_padded(3, 37, [0, 11, 30])
    mask = att.Mask.causal(valid)
    q, k, v = _qkv(rng, 3, 37, 37, 4, 2, 16)
    ref = att.reference(q, k, v, mask.dense(window), scale=SCALE)
    ours = att.dot_product(q, k, v, mask, scale=SCALE, window=window, implementation="xla")
    np.testing.assert_allclose(np.asarray(ours)[valid], np.asarray(ref)[valid], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kind", "window"), [("causal", None), ("segments", 40)])
def test_splash_kernel_in_interpret_mode(kind, window, rng):
    t = 128
    if kind == "causal":
        valid = _left_padded(2, t, [0, 50])
        mask, seen = att.Mask.causal(valid), valid
    else:
        seg = np.array([[1] * 60 + [2] * 60 + [0] * 8, [3] * 128])
        mask, seen = att.Mask.segments(seg), seg > 0
    q, k, v = _qkv(rng, 2, t, t, 4, 2, 128)
    ref = att.reference(q, k, v, mask.dense(window), scale=SCALE)
    ours = att.splash(q, k, v, mask, scale=SCALE, window=window, interpret=True)
    np.testing.assert_allclose(np.asarray(ours)[seen], np.asarray(ref)[seen], atol=1e-5, rtol=0)


def test_blocks_above_the_diagonal_in_padding_outside_the_window_or_past_the_live_prefix_are_skipped():
    def ranges(mask, s, **kw):
        return np.asarray(att.key_block_ranges(mask, s, block_q=512, block_k=512, **kw))

    t = 2048
    full = att.Mask.causal(np.ones((2, t), bool))
    np.testing.assert_array_equal(ranges(full, t), [[0, 1], [0, 2], [0, 3], [0, 4]])
    padded = att.Mask.causal(_left_padded(2, t, [1100, 1300]))  # the first 1100 slots are padding in both rows
    r = ranges(padded, t)
    assert r[0, 0] >= r[0, 1] and r[1, 0] >= r[1, 1]  # query blocks of padding only: no key block at all
    np.testing.assert_array_equal(r[2:], [[2, 3], [2, 4]])
    np.testing.assert_array_equal(ranges(full, t, window=300), [[0, 1], [0, 2], [1, 3], [2, 4]])
    segments = att.Mask.segments(np.repeat(np.arange(1, 5), 512)[None])  # four examples of 512 tokens
    np.testing.assert_array_equal(ranges(segments, t), [[0, 1], [1, 2], [2, 3], [3, 4]])
    # a decode step in a 32k cache reads the live prefix only
    cache = np.ones((2, 32768), bool)
    np.testing.assert_array_equal(ranges(att.Mask.over_cache_slots(cache, np.array([[999], [1000]])), 32768),
                                  [[0, 2]])
    np.testing.assert_array_equal(ranges(att.Mask.over_cache_slots(cache, np.array([[5], [32767]])), 32768),
                                  [[0, 64]])


def test_memory_grows_with_t_times_block_not_t_squared():
    b, t, h, kv_heads, d, block = 1, 4096, 4, 2, 64, 256
    q = jax.ShapeDtypeStruct((b, t, h, d), jnp.float32)
    k = jax.ShapeDtypeStruct((b, kv_heads, t, d), jnp.float32)
    valid = jax.ShapeDtypeStruct((b, t), bool)

    def temp(fn):
        return jax.jit(fn).lower(q, k, k, valid).compile().memory_analysis().temp_size_in_bytes

    def fwd(q, k, v, valid):
        return att.blockwise(q, k, v, att.Mask.causal(valid), scale=SCALE, block_q=block, block_k=block)

    def train(q, k, v, valid):
        return jax.grad(lambda q, k, v: jnp.sum(fwd(q, k, v, valid)), (0, 1, 2))(q, k, v)

    scores = b * h * t * t * 4  # one float32 score matrix, what the reference materialises per layer
    linear = b * t * h * d * 4  # one float32 activation of the size of q
    block_scores = b * h * block * block * 4
    for name, fn, bound in (("forward", fwd, 4 * linear + 8 * block_scores),
                            ("forward+backward", train, 12 * linear + 16 * block_scores)):
        used = temp(fn)
        assert used <= bound, f"{name}: temp {used} B > {bound} B"
        assert used < scores / 8, name


# ---------------------------------------------------------------------------------------------- model level
def _tiny_config(**changes):
    base = {"family": "qwen3", "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "num_layers": 2,
            "num_heads": 4, "num_kv_heads": 2, "head_dim": 16, "max_position_embeddings": 256, "qk_norm": True}
    return llm.LlmConfig(**{**base, **changes})


def test_bfloat16_model_keeps_a_bfloat16_cache(key):
    config = _tiny_config()
    graphdef, params = mdl.init_params(config, key, jnp.bfloat16)
    ids, mask = jnp.ones((2, 8), jnp.int32), jnp.ones((2, 8), bool)
    logits, cache = jax.eval_shape(lambda p: gen.prefill(graphdef, p, ids, mask, cache_len=24), params)
    assert logits.dtype == jnp.float32
    assert {x.dtype for layer in cache for x in layer} == {jnp.dtype(jnp.bfloat16)}
    assert cache[0][0].shape == (2, 2, 24, 16)


def test_decode_step_with_per_row_slots_equals_a_full_forward(key, rng):
    """Rows with their own live lengths and write slots (what a continuous-batching engine needs): each
    row's next-token logits equal the last position of a plain forward of that row alone."""
    config = _tiny_config()
    graphdef, params = mdl.init_params(config, key, attention=att.AttentionConfig(block_q=4, block_k=4))
    lengths = [5, 9, 3]
    prompts = [rng.integers(0, config.vocab_size, size=n).tolist() for n in lengths]
    ids = np.zeros((3, 12), np.int32)
    valid = np.zeros((3, 12), bool)
    for i, p in enumerate(prompts):  # right-padded: row i's live prefix is slots [0, len)
        ids[i, :len(p)], valid[i, :len(p)] = p, True
    _, cache = jax.jit(gen.prefill, static_argnums=0, static_argnames="cache_len")(
        graphdef, params, jnp.asarray(ids), jnp.asarray(valid), cache_len=16)
    nxt = rng.integers(0, config.vocab_size, size=3)
    slot = jnp.asarray(lengths, jnp.int32)  # each row writes its next token right after its own prefix
    step = jax.jit(gen.step, static_argnums=0)
    logits, cache = step(graphdef, params, cache, jnp.asarray(nxt, jnp.int32), slot, jnp.ones((3, 16), bool), slot)
    seq = ids.copy()
    seq[np.arange(3), lengths] = nxt
    full = jax.jit(mdl.forward, static_argnums=0)(graphdef, params, jnp.asarray(seq),
                                                   jnp.asarray(np.arange(12) <= np.array(lengths)[:, None]))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(full)[np.arange(3), lengths], atol=1e-5, rtol=0)


def test_per_row_cache_write_equals_row_by_row_writes(rng):
    cache = jnp.asarray(rng.normal(size=(3, 2, 10, 4)).astype(np.float32))
    new = jnp.asarray(rng.normal(size=(3, 2, 2, 4)).astype(np.float32))
    slots = [0, 4, 8]
    ours = mdl.write_cache(cache, new, jnp.asarray(slots))
    for i, s in enumerate(slots):
        np.testing.assert_array_equal(ours[i], mdl.write_cache(cache[i:i + 1], new[i:i + 1], s)[0])


def _primitives(jaxpr, inside=False, found=None):
    """{(primitive name, whether inside a while loop)} over a jaxpr and all its sub-jaxprs."""
    found = set() if found is None else found
    for eqn in jaxpr.eqns:
        found.add((eqn.primitive.name, inside))
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            _primitives(sub, inside or eqn.primitive.name == "while", found)
    return found


def test_longrope_re_encoding_runs_outside_the_decode_loop(key):
    rope = llm.RopeConfig(type="longrope", original_max_position_embeddings=16, short_factor=(1.0,) * 4,
                          long_factor=(2.0,) * 4, partial_rotary_factor=0.5)
    config = _tiny_config(family="phi3", qk_norm=False, rope=rope, max_position_embeddings=64)
    graphdef, params = mdl.init_params(config, key)
    ids, mask = jnp.ones((2, 8), jnp.int32), jnp.ones((2, 8), bool)
    logits, cache = gen.prefill(graphdef, params, ids, mask, cache_len=32)

    def run(cache, logits):
        return gen.decode(graphdef, params, cache, logits, ids, mask, jnp.ones(2, bool), key, 1.0, 1.0,
                          jnp.asarray([-1]), max_new_tokens=24, greedy=True, pad_id=0)

    prims = _primitives(jax.make_jaxpr(run)(cache, logits).jaxpr)
    assert ("cond", False) in prims  # the one re-encoding, between the two loops
    assert ("cond", True) not in prims  # no branch inside any decode step
    out, _ = jax.jit(run)(cache, logits)
    assert int(out["steps"]) == 24
    # the same tokens as re-running every prefix through a plain forward (which switches factors itself)
    seq = np.concatenate([np.ones((2, 8), np.int32), np.asarray(out["tokens"])], axis=1)
    last = jax.jit(mdl.forward_last, static_argnums=0)
    for i in (5, 20):  # before and after the switch
        full = last(graphdef, params, jnp.asarray(seq[:, :8 + i]), jnp.ones((2, 8 + i), bool))
        np.testing.assert_array_equal(np.asarray(full).argmax(-1), seq[:, 8 + i])


def test_attention_choice_is_static_and_gives_the_same_logits(key, rng):
    config = _tiny_config(sliding_windows=(5, None))
    ids = jnp.asarray(rng.integers(0, config.vocab_size, size=(2, 21)), jnp.int32)
    mask = jnp.asarray(_left_padded(2, 21, [0, 7]))
    logits = {}
    for impl in ("blockwise", "reference"):
        graphdef, params = mdl.init_params(config, key, attention=att.AttentionConfig(impl, block_q=4, block_k=4))
        logits[impl] = np.asarray(jax.jit(mdl.forward, static_argnums=0)(graphdef, params, ids, mask))
    keep = np.asarray(mask)
    np.testing.assert_allclose(logits["blockwise"][keep], logits["reference"][keep], atol=1e-5, rtol=0)
    # a dense [B, T, T] mask (what callers passed before Mask) still works, through the reference
    from flax import nnx

    def dense_forward(graphdef, params, ids, mask):
        model = nnx.merge(graphdef, params)
        h, _ = model.hidden(ids, mdl.positions_from_mask(mask), mdl.causal_mask(mask))
        return model.project(h)

    dense = jax.jit(dense_forward, static_argnums=0)(graphdef, params, ids, mask)
    np.testing.assert_allclose(np.asarray(dense)[keep], logits["reference"][keep], atol=1e-5, rtol=0)
    g1 = mdl.abstract(config, attention=att.AttentionConfig("blockwise"))[0]
    g2 = mdl.abstract(config, attention=att.AttentionConfig("reference"))[0]
    assert g1 != g2 and hash(g1) != hash(g2)  # a different program, never a stale cache hit
    assert dataclasses.replace(att.AttentionConfig(), impl="reference") == att.AttentionConfig("reference")
