"""The continuous-batching engine (`entropy_jax.llm.engine`) against generating each request alone.

The reference for a request is `LanguageModel.generate` of that prompt alone (batch of one, today's decode
loop), run without stop ids for `NMAX` tokens and cut at the request's own budget and first stop id: greedy (and
per-request-key sampled) decoding is a prefix property, so this equals generating it alone with its own budget
and stop ids, and every request shares one compiled reference loop.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from entropy_jax import llm
from entropy_jax.llm import attention as att
from entropy_jax.llm import engine
from tests.llm.conftest import FAMILIES, VOCAB

NMAX = 25
CACHE = 64  # one cache length for the tiny models' engine calls, so tests sharing a model share its programs
# prompt lengths around the tiny phi3's original context (16): a request that crosses it while decoding, one
# whose prompt ends on it, one prefilled past it, and short ones; budgets from 1 to NMAX. The other families
# get prompts of ≤ 16 tokens (one length bucket, fewer compilations)
LENGTHS = [3, 9, 15, 16, 20, 5, 2]
SHORT = [3, 9, 15, 16, 11, 5, 2]
BUDGETS = [20, 4, 10, 5, 8, 25, 1]
# the decoder families (one tiny random model each); the FAMILIES variants (tied embeddings, a Phi-3 window,
# YaRN) change nothing the engine touches
ENGINE_FAMILIES = ["llama", "qwen2", "qwen3", "phi3", "mistral"]


@pytest.fixture(scope="module")
def shared(tiny):
    """shared(family) → one LanguageModel per family for this module (compiled programs are reused)."""
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = llm.load(tiny(family))
        return cache[family]

    return get


def _alone(lm, prompt, *, key=None, temperature=0.0, top_p=1.0):
    g = lm.generate([list(prompt)], max_new_tokens=NMAX, stop_token_ids=(), temperature=temperature, top_p=top_p,
                    key=key, decode_text=False)
    return g.tokens[0], g.entropy[0], g.log_prob[0]


def _cut(ref, budget, stops):
    tokens, entropy, log_prob = ref
    end = budget
    hits = np.flatnonzero(np.isin(tokens[:budget], stops)) if stops else []
    if len(hits):
        end = int(hits[0]) + 1
    return tokens[:end], entropy[:end], log_prob[:end]


def _requests(lm, rng, lengths=LENGTHS, budgets=BUDGETS):
    """Requests with their own stop ids: every other request stops at a token its reference generates
    (so some end with "eos" for sure), the others at an id that never occurs (−1 is no token)."""
    prompts = [rng.integers(3, VOCAB, size=n).tolist() for n in lengths]
    refs = [_alone(lm, p) for p in prompts]
    reqs = []
    for i, (p, b, ref) in enumerate(zip(prompts, budgets, refs)):
        stops = (int(ref[0][min(2, b - 1)]), -1) if i % 2 else (-1, -1)
        reqs.append(engine.Request(p, b, stops, id=f"q{i}"))
    return reqs, refs


def _assert_alone(results, reqs, refs):
    assert [r.id for r in results] == [q.id for q in reqs]  # request order
    for res, q, ref in zip(results, reqs, refs):
        tokens, entropy, log_prob = _cut(ref, q.max_new_tokens, q.stop_token_ids)
        np.testing.assert_array_equal(res.tokens, tokens, err_msg=f"request {q.id}")
        np.testing.assert_allclose(res.entropy, entropy, atol=1e-4, rtol=0, err_msg=f"request {q.id}")
        np.testing.assert_allclose(res.log_prob, log_prob, atol=1e-4, rtol=0, err_msg=f"request {q.id}")
        assert res.prompt_length == len(q.prompt)
        assert res.stop_reason == ("eos" if tokens[-1] in q.stop_token_ids else "length")


@pytest.mark.parametrize("family", ENGINE_FAMILIES)
def test_greedy_equals_each_request_alone(family, shared, rng):
    assert family in FAMILIES
    lm = shared(family)
    reqs, refs = _requests(lm, rng, LENGTHS if family == "phi3" else SHORT)
    results, stats = engine.generate(lm, reqs, slots=2, chunk_steps=8, cache_len=CACHE)
    _assert_alone(results, reqs, refs)
    assert {r.stop_reason for r in results} == {"eos", "length"}
    # accounting: every kept token came from an insert (first tokens, re-encodings) or a productive row-step
    assert stats.generated_tokens == sum(len(r.tokens) for r in results)
    assert stats.row_steps - stats.wasted_row_steps == stats.generated_tokens - len(reqs) - stats.reencodes
    assert stats.forward_passes == stats.prefill_passes + stats.decode_steps
    assert stats.trace_counts.get("engine_chunk", 0) <= 1
    if family == "phi3":  # the requests at 15 and 16 prompt tokens and the one of 3 + 20 cross the context of 16
        assert stats.reencodes == 3


def test_sampling_depends_on_seed_and_request_id_not_on_slots_or_order(shared, rng):
    lm = shared("llama")
    prompts = [rng.integers(3, VOCAB, size=n).tolist() for n in (4, 11, 7, 2, 9)]
    reqs = [engine.Request(p, b, (), id=f"s{i}") for i, (p, b) in enumerate(zip(prompts, (12, 5, 25, 9, 16)))]
    kw = {"temperature": 0.9, "top_p": 0.9, "seed": 3, "decode_text": False, "cache_len": CACHE}
    a, _ = engine.generate(lm, reqs, slots=3, **kw)
    b, _ = engine.generate(lm, reqs[::-1], slots=2, policy="fifo", **kw)
    by_id = {r.id: r for r in b}
    for r in a:
        np.testing.assert_array_equal(r.tokens, by_id[r.id].tokens)
        np.testing.assert_allclose(r.entropy, by_id[r.id].entropy, atol=1e-5, rtol=0)
    # the same draws as generating the request alone with its key (token n drawn with fold_in(key, n))
    for r, q in zip(a, reqs):
        ref = _alone(lm, q.prompt, key=engine.request_key(3, q.id), temperature=0.9, top_p=0.9)
        tokens, entropy, log_prob = _cut(ref, q.max_new_tokens, ())
        np.testing.assert_array_equal(r.tokens, tokens)
        np.testing.assert_allclose(r.entropy, entropy, atol=1e-4, rtol=0)
        np.testing.assert_allclose(r.log_prob, log_prob, atol=1e-4, rtol=0)
    c, _ = engine.generate(lm, reqs, slots=3, **(kw | {"seed": 4}))
    assert any(not np.array_equal(x.tokens, y.tokens) for x, y in zip(a, c))


def test_results_callback_runs_once_per_request_and_nothing_recompiles(tiny, rng):
    lm = llm.load(tiny("qwen2"))  # a fresh model: every program it runs is compiled in this test
    prompts = [rng.integers(3, VOCAB, size=n).tolist() for n in (5, 3, 8, 2, 6, 4, 7, 3, 9, 5)]
    budgets = [24, 2, 3, 2, 4, 16, 2, 3, 5, 2]
    reqs = [engine.Request(p, b, (), id=i) for i, (p, b) in enumerate(zip(prompts, budgets))]
    seen = []
    results, stats = engine.generate(lm, reqs, slots=2, policy="fifo", chunk_steps=4, cache_len=CACHE,
                                     on_result=seen.append)
    assert sorted(r.id for r in seen) == list(range(len(reqs)))  # once each
    assert all(any(r is s for s in seen) for r in results)  # the very results returned
    assert [len(r.tokens) for r in results] == budgets
    # requests came and went many times through one compiled chunk; a second call with other requests of the
    # same cache length compiles nothing new
    assert stats.prefill_passes >= 5 and stats.trace_counts["engine_chunk"] == 1
    assert stats.trace_counts["engine_insert"] <= 2  # rows 1 and 2, one length bucket (16)
    more = [engine.Request(rng.integers(3, VOCAB, size=n).tolist(), b, (), id=f"m{n}")
            for n, b in ((7, 9), (3, 14), (12, 2), (4, 6))]
    _, again = engine.generate(lm, more, slots=2, chunk_steps=4, cache_len=CACHE)
    assert again.trace_counts.get("engine_chunk", 0) == 0
    assert lm.trace_counts["engine_chunk"] == 1


def test_results_are_reported_as_they_finish(shared, rng):
    lm = shared("qwen2")
    reqs = [engine.Request(rng.integers(3, VOCAB, size=4).tolist(), b, (), id=f"r{b}") for b in (20, 3, 2, 4)]
    order = []
    results, _ = engine.generate(lm, reqs, slots=2, policy="fifo", chunk_steps=4, cache_len=CACHE,
                                 on_result=lambda r: order.append(r.id))
    # r20 holds one slot; r3, r2, r4 pass through the other and finish (and are reported) before it
    assert order == ["r3", "r2", "r4", "r20"]
    assert [r.id for r in results] == ["r20", "r3", "r2", "r4"]


def test_sharded_engine_equals_unsharded(shared, tiny, rng):
    plain = shared("llama")
    sharded = llm.load(tiny("llama"), mesh=llm.make_mesh(data=4, tensor=2))
    reqs = [engine.Request(rng.integers(3, VOCAB, size=n).tolist(), b, (), id=i)
            for i, (n, b) in enumerate(((5, 12), (9, 3), (2, 20), (7, 6), (12, 9), (3, 2)))]
    a, _ = engine.generate(plain, reqs, slots=3, decode_text=False, cache_len=CACHE)
    b, stats = engine.generate(sharded, reqs, slots=4, decode_text=False, cache_len=CACHE)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.tokens, y.tokens)
        np.testing.assert_allclose(x.entropy, y.entropy, atol=1e-5, rtol=0)
        np.testing.assert_allclose(x.log_prob, y.log_prob, atol=1e-5, rtol=0)
    assert stats.slots == 4
    shardings = engine._Engine(sharded, 4, stats.cache_len, 1, True, 32).state_shardings()
    assert shardings["cache"][0][0].spec == P(("data", "fsdp"), "tensor")  # slots over data, kv heads over tensor
    assert shardings["token"].spec == P(("data", "fsdp"))


def test_static_batching_gives_the_same_tokens_with_more_forward_passes(shared, rng):
    lm = shared("llama")
    reqs = [engine.Request(rng.integers(3, VOCAB, size=n).tolist(), b, (), id=i)
            for i, (n, b) in enumerate(((5, 20), (9, 3), (2, 4), (7, 18), (12, 2), (3, 5)))]
    cont, cs = engine.generate(lm, reqs, slots=3, cache_len=CACHE)
    stat, ss = engine.generate(lm, reqs, slots=3, batching="static")
    for x, y in zip(cont, stat):
        np.testing.assert_array_equal(x.tokens, y.tokens)
        np.testing.assert_allclose(x.entropy, y.entropy, atol=1e-4, rtol=0)
        assert x.stop_reason == y.stop_reason and x.id == y.id
    assert cs.generated_tokens == ss.generated_tokens == sum(q.max_new_tokens for q in reqs)
    # static: two batches of 3 run 20 and 18 steps whatever their other rows need
    assert ss.decode_steps == 20 + 18 and ss.row_steps == 3 * ss.decode_steps
    assert ss.row_steps - ss.wasted_row_steps == ss.generated_tokens - len(reqs)
    assert cs.forward_passes < ss.forward_passes and cs.wasted_row_steps < ss.wasted_row_steps


def test_a_decode_step_reads_the_live_prefix_not_the_allocation():
    # slots at live lengths 5 and 700, one idle (done), one finished at 3000: in a 32k cache with key blocks of
    # 512, the step visits key blocks [0, 2) (up to slot 700), not all 64
    pos = jax.numpy.asarray([5, 700, 9000, 3000])
    done = jax.numpy.asarray([False, False, True, True])
    q, mask = engine.step_mask(pos, done, 32768)
    np.testing.assert_array_equal(q, [5, 700, 0, 0])
    np.testing.assert_array_equal(att.key_block_ranges(mask, 32768, block_k=512), [[0, 2]])


def test_bfloat16_model_gets_a_bfloat16_cache(key):
    config = llm.LlmConfig(family="llama", vocab_size=97, hidden_size=32, intermediate_size=48, num_layers=2,
                           num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=64)
    graphdef, params = llm.init_params(config, key, jax.numpy.bfloat16)
    lm = llm.from_params(config, graphdef, params)
    state = engine._Engine(lm, 2, 32, 1, True, 4).init()
    assert {x.dtype for layer in state["cache"] for x in layer} == {jax.numpy.dtype(jax.numpy.bfloat16)}
    assert state["cache"][0][0].shape == (2, 2, 32, 8)


def test_bad_requests_are_named(shared):
    lm = shared("llama")
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        engine.generate(lm, [engine.Request([4], 2, id="a"), engine.Request([5], 2, id="a")])
    with pytest.raises(ValueError, match="request 'b': empty prompt"):
        engine.generate(lm, [engine.Request([], 2, id="b")])
    with pytest.raises(ValueError, match="request 'c'.*context window"):
        engine.generate(lm, [engine.Request([4] * 2000, 60, id="c")])
    with pytest.raises(ValueError, match=r"request 'd'.*\[0, 160\)"):
        engine.generate(lm, [engine.Request([4, 999], 2, id="d")])
    with pytest.raises(ValueError, match="max_new_tokens"):
        engine.Request([4], 0, id="e")
    with pytest.raises(ValueError, match="batching 'paged'"):
        engine.generate(lm, [engine.Request([4], 2)], batching="paged")
    with pytest.raises(ValueError, match="policy 'random'"):
        engine.generate(lm, [engine.Request([4], 2)], policy="random")
    with pytest.raises(ValueError, match="cache_len 8"):
        engine.generate(lm, [engine.Request([4] * 5, 6)], cache_len=8)


# the check: 24 chat requests to the embedded SmolLM2, budgets from 4 to 160 tokens, 4 slots. The suite
# runs its first 12 prompts with budgets 4 to 80 (the same properties, a quarter of the decode steps: the full
# size is ~3 minutes of a 2-core CI machine); ENTROPY_JAX_FULL_CHECKS=1 runs the size (bench/RESULTS.md
# records its forward passes).
CHAT = [
    "What is 2+2?", "Name a prime number.", "What colour is the sky?", "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.", "List three fruits.", "What is the capital of France?",
    "Describe a cat.", "Why is the sun hot?", "Give me a synonym for happy.", "How many legs does a spider have?",
    "Tell me a short story about a robot.", "What is water made of?", "Translate 'hello' into Spanish.",
    "What does a bee do?", "Explain gravity to a child.", "Name two planets.", "What is the opposite of cold?",
    "Write a limerick about a dog.", "How do plants grow?", "What is a triangle?", "Why do we sleep?",
    "Suggest a name for a goldfish.", "What is the boiling point of water?",
]
FULL = os.environ.get("ENTROPY_JAX_FULL_CHECKS") == "1"


@pytest.mark.slow
def test_smollm2_continuous_equals_static_with_at_most_0_6_of_its_forward_passes():
    lm = llm.load("smollm2-135m-instruct")
    chat, top = (CHAT, 160) if FULL else (CHAT[:12], 80)
    budgets = np.random.default_rng(0).permutation(np.linspace(4, top, len(chat)).round().astype(int))
    reqs = engine.make_requests(lm, chat, chat=True, max_new_tokens=budgets.tolist())
    cont, cs = engine.generate(lm, reqs, slots=4, batching="continuous", decode_text=False)
    stat, ss = engine.generate(lm, reqs, slots=4, batching="static", decode_text=False)
    for x, y in zip(cont, stat):
        np.testing.assert_array_equal(x.tokens, y.tokens, err_msg=f"request {x.id}")
        np.testing.assert_allclose(x.entropy, y.entropy, atol=1e-4, rtol=0, err_msg=f"request {x.id}")
        assert x.stop_reason == y.stop_reason
    assert {r.stop_reason for r in cont} == {"eos", "length"}
    assert cs.generated_tokens == ss.generated_tokens
    assert cs.forward_passes <= 0.6 * ss.forward_passes, (cs.forward_passes, ss.forward_passes)
