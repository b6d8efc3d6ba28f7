"""Continuous-batching generation with per-token full-vocabulary entropy (the engine behind trace generation).

    requests = engine.make_requests(lm, ["What is 2+2?", "Name a prime."], chat=True, max_new_tokens=[32, 64])
    results, stats = engine.generate(lm, requests, slots=8, on_result=write_and_fsync)
    results[0].tokens, results[0].entropy, results[0].stop_reason      # in request order
    stats.forward_passes, stats.wasted_row_steps, stats.tokens_per_s

**Slots.** The engine holds N decode slots over one KV cache [N, K, S, hd] per layer (the compute dtype: a bf16
model gets a bf16 cache). Each slot runs one request with its own position, write slot, token count, budget,
stop ids and PRNG key. A request's prompt is written at cache slots [0, L) (no padding, so a token's cache slot is
its position) and its n-th generated token at slot L + n − 1; every slot's live prefix is its own.

**Device work** (pure functions of (params, slot state) pytrees, jitted once per shape, state buffers donated):

- `insert`: prefill a group of sequences [n, R] (right-padded to a length bucket R = `bucket(longest)`, rows to a
  power of two), choose each one's next token, and scatter the rows' caches and state into their slots. New
  requests and longrope re-encodings (below) both go through it.
- `chunk`: up to `chunk_steps` decode steps over all N slots in one `lax.while_loop`. A step feeds every running slot's
  pending token, records the next token's entropy and log-prob, and stops a slot at one of its stop ids or its
  budget. The loop leaves early when a slot finishes while requests wait (so the host can refill it), or when a
  longrope slot must be re-encoded. Finished and empty slots ride along (these are the wasted row-steps) but query
  cache slot 0, so with the blockwise attention (`attention.blockwise`) a step reads the key blocks up to the
  longest live prefix among running slots, not the whole allocation.

**Host scheduler** (Python, between chunks): a queue in the order of `policy`; whenever slots are free, the next
requests are prefilled together and inserted; finished requests are handed to `on_result` at once (callers append
and fsync each one, which makes a long run resumable per request) and come back from `generate` in request order.
Policies: "longest" (default): longest first by prompt + budget, which keeps the last, longest requests from
running alone at the end (longest-processing-time-first scheduling); "prompt": longest prompt first; "fifo":
request order. The order never changes any request's tokens.

**What a token records** is exactly what `generate.decode` records (`ENTROPY_SETTINGS`): the full-vocabulary
Shannon entropy of softmax(raw logits) and the chosen token's log-probability under it, float32, nats.

**Sampling.** temperature 0 is greedy (argmax); otherwise temperature/top-p sampling (`generate._choose`) with the
key `fold_in(fold_in(key(seed), stable_hash(request.id)), token index)`, so a request's tokens depend only on
(seed, its id, its prompt), not on the slot it runs in or the other requests (`request_key`). With that key
`LanguageModel.generate` of the request alone draws the same tokens.

**Longrope (Phi-3/4).** Rows choose their rope factors independently (`rope.cos_sin` with a per-row
`max_position`). When a slot's next token would sit at the original context length, the slot leaves the chunk and
its whole sequence (prompt + generated) is prefilled again with the long factors and re-inserted, as
`generate.decode` re-encodes a static batch outside its loop (transformers' rule).

**Memory.** S = `bucket(max over requests of prompt length + max_new_tokens)` (or `cache_len`); N is rounded up to
a multiple of the mesh's batch shards. The cache is not paged: N·S slots are allocated up front.

**Sharding.** Under a (data, fsdp, tensor) mesh (`LanguageModel.mesh`, `make_mesh`) the slots are sharded over
(data, fsdp) and the cache's key/value heads over tensor (where they divide); the parameters keep their own
shardings; host inputs are placed shard by shard and the per-chunk outputs are replicated, so every process of a
multi-host run runs the same scheduler and reads the same results.

**Static batching** (`batching="static"`) runs today's path for comparison: `LanguageModel.generate` over
consecutive batches of `slots` requests in request order, each until its longest row finishes (rows stop at
their own budgets; one decode program per bucket of the batch's largest budget), cut back to every request's
own stop ids; same `Result`s and `Stats`. (Its sampling draws use one key per batch, and
longrope switches a whole batch at once, as `generate.decode` does: only greedy outputs are comparable.)

**Reproducibility.** With a fixed `cache_len` and `slots`, a decode step computes each slot's row with the same
shapes whatever the other slots hold, so a slot's results depend on the others only through its prefill: XLA's
CPU matmuls (and GPU ones) may sum in another order when the number of rows or the padded length changes, which
moves entropies in the last float32 bit (tokens have not been seen to change). `reproducible=True` prefills
the requests of one length bucket together and always `slots` rows per call (the rest padding), so a request's
results are a function of (request, seed, slots, cache_len) alone, bit for bit: a resumed trace run that passes
the cache length of the whole question set writes exactly the rows of an uninterrupted run. The price is
prefill compute on padding rows (small next to decoding long traces).

Stats (`Stats`): forward passes (prefill calls + decode steps), generated tokens, row-steps (slots × decode
steps), wasted row-steps (row-steps that produced no kept token), prefill / decode seconds, tokens per second.

**For callers** (the trace generator, `launch.generate`):

- Build requests with `make_requests(lm, texts, chat=True, max_new_tokens=..., ids=question_ids,
  stop_token_ids=...)` (or `Request(...)` from token ids); per-request stop ids carry e.g. `</think>` besides the
  end of turn. Ids key the results and the sampling: use the stable id of the item (a question id).
- Resumable runs: drop the ids already in the store before calling, and append + fsync each `Result` in
  `on_result` (`Result.to_dict()` is JSON-ready); a killed run then loses only the requests still decoding,
  and no finished request is generated twice. In a multi-process run every process runs the same scheduler and
  calls `on_result` with the same results: write from process 0 only.
- `Stats.to_dict()` has `forward_passes`, `generated_tokens`, `row_steps`, `wasted_row_steps`, `tokens_per_s`,
  prefill/decode seconds and the trace counts of the call; `progress=True` shows a tqdm bar with tokens/s.
- Shapes and compilations: one chunk program per (slots, cache length, number of stop ids, greedy/sampled,
  chunk_steps) and one insert program per (rows bucket, length bucket), cached on the `LanguageModel`; pass a
  fixed `cache_len` to share them across calls with different requests.
- Cost of a step: the blockwise attention visits key blocks up to the longest live prefix among the running
  slots, for every slot (one block range per step); a ragged/paged kernel reading each slot's own prefix would
  cut attention reads further (not implemented).
"""

from __future__ import annotations

import collections
import dataclasses
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from entropy_jax.info import entropy_from_logits
from entropy_jax.llm import generate as gen
from entropy_jax.llm import sharding as shd
from entropy_jax.llm.api import bucket
from entropy_jax.llm.attention import Mask
from entropy_jax.llm.model import positions_from_mask

BATCHING = ("continuous", "static")
POLICIES = ("longest", "prompt", "fifo")
STOP_REASONS = ("eos", "length")


# ---------------------------------------------------------------------------------------------- requests, results
@dataclasses.dataclass(frozen=True)
class Request:
    """One generation request: `prompt` token ids, at most `max_new_tokens` new tokens, stopping at any of
    `stop_token_ids` (None: the model's `LanguageModel.stop_token_ids()`; () never stops early), and an `id`
    (None: its index in the request list, as a string). Ids must be unique within a call: the sampling key is
    derived from the id."""

    prompt: tuple[int, ...]
    max_new_tokens: int = 64
    stop_token_ids: tuple[int, ...] | None = None
    id: Any = None

    def __post_init__(self):
        object.__setattr__(self, "prompt", tuple(int(t) for t in self.prompt))
        if self.stop_token_ids is not None:
            object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        if int(self.max_new_tokens) < 1:
            raise ValueError(f"request {self.id!r}: max_new_tokens must be ≥ 1, got {self.max_new_tokens}")
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished request. `tokens` [n] int32 are the generated ids (a final stop token included), `entropy`
    and `log_prob` [n] float32 (nats) their full-vocabulary entropies and log-probabilities; `stop_reason` is
    "eos" (ended at one of its stop ids) or "length" (used its whole budget); `index` the request's position in
    the request list; `text` the decoded tokens (special tokens skipped) when the model has a tokenizer."""

    id: Any
    index: int
    tokens: np.ndarray
    entropy: np.ndarray
    log_prob: np.ndarray
    stop_reason: str
    prompt_length: int
    text: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: lists of ints and floats."""
        return {"id": self.id, "index": self.index, "tokens": self.tokens.tolist(),
                "entropy": self.entropy.tolist(), "log_prob": self.log_prob.tolist(),
                "stop_reason": self.stop_reason, "prompt_length": self.prompt_length, "text": self.text}


@dataclasses.dataclass
class Stats:
    """What a `generate` call cost. A forward pass is one model call (a prefill of a group of sequences, or one
    decode step over all slots); `row_steps` counts rows × decode steps, `wasted_row_steps` those whose output
    was no kept token (finished or empty slots, rows past their own end in a static batch). Seconds are wall
    time, compilation included unless the shapes were compiled before."""

    batching: str
    slots: int
    cache_len: int
    requests: int
    forward_passes: int = 0
    prefill_passes: int = 0
    decode_steps: int = 0
    reencodes: int = 0
    generated_tokens: int = 0
    row_steps: int = 0
    wasted_row_steps: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    seconds: float = 0.0
    policy: str = ""
    trace_counts: dict = dataclasses.field(default_factory=dict)
    entropy_settings: dict = dataclasses.field(default_factory=dict)
    sampling: dict = dataclasses.field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"tokens_per_s": self.tokens_per_s}


def make_requests(lm, prompts: Sequence[str] | Sequence[Sequence[int]], *, max_new_tokens: int | Sequence[int] = 64,
                  ids: Sequence[Any] | None = None, chat: bool = False, system: str | None = None,
                  stop_token_ids: Sequence[int] | None = None) -> list[Request]:
    """Requests from text prompts (encoded by `lm.encode`, chat template with `chat=True`) or token-id lists;
    `max_new_tokens` one budget for all or one per prompt; `ids` default to the indices (as strings)."""
    prompts = list(prompts)
    if prompts and isinstance(prompts[0], str):
        token_lists = lm.encode(prompts, chat=chat, system=system)
    else:
        token_lists = [list(map(int, p)) for p in prompts]
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    ids = [None] * len(prompts) if ids is None else list(ids)
    if len(budgets) != len(prompts) or len(ids) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(budgets)} budgets and {len(ids)} ids")
    stops = None if stop_token_ids is None else tuple(stop_token_ids)
    return [Request(tuple(p), b, stops, i) for p, b, i in zip(token_lists, budgets, ids)]


def stable_hash(request_id) -> int:
    """A 32-bit hash of `str(request_id)` that is the same in every process and session (CRC-32)."""
    return zlib.crc32(str(request_id).encode("utf-8"))


def request_key(seed: int, request_id) -> jax.Array:
    """The PRNG key of a request: `fold_in(key(seed), stable_hash(id))`; token n is drawn with
    `fold_in(request_key, n)`."""
    return jax.random.fold_in(jax.random.key(seed), jnp.uint32(stable_hash(request_id)))


# ---------------------------------------------------------------------------------------------- device functions
def _emit(logits_nv, key_data, index_n, temperature, top_p, greedy: bool):
    """Next tokens [n] from float32 logits [n, V], with the full-vocabulary entropy and the chosen token's
    log-prob (as `generate.decode` records them). Row r draws with fold_in(its key, index_n[r])."""
    if greedy:
        token = jnp.argmax(logits_nv, axis=-1).astype(jnp.int32)
    else:
        def draw(logits_v, kd, index):
            k = jax.random.fold_in(jax.random.wrap_key_data(kd), index)
            return gen.choose(logits_v[None], k, temperature, top_p, False)[0]

        token = jax.vmap(draw)(logits_nv, key_data, index_n)
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits_nv, axis=-1), token[:, None], axis=-1)[:, 0]
    return token, entropy_from_logits(logits_nv), log_prob


def _finished(token, n_gen_after, budget, stops_nm):
    return jnp.any(token[:, None] == stops_nm, axis=-1) | (n_gen_after >= budget)


def init_state(config, slots: int, cache_len: int, dtype, max_stops: int, key_shape: tuple[int, ...]):
    """Empty slot state: the KV cache (`generate.init_cache`) and per slot its pending token (emitted, not yet
    fed), that token's position (= its cache slot), tokens emitted so far, budget, done flag (True: free or
    finished), stop ids [N, max_stops] (−1 padded) and PRNG key data."""
    n = slots
    return {
        "cache": gen.init_cache(config, n, cache_len, dtype),
        "token": jnp.zeros((n,), jnp.int32),
        "pos": jnp.zeros((n,), jnp.int32),
        "n_gen": jnp.zeros((n,), jnp.int32),
        "budget": jnp.ones((n,), jnp.int32),
        "done": jnp.ones((n,), bool),
        "stops": jnp.full((n, max_stops), -1, jnp.int32),
        "key": jnp.zeros((n, *key_shape), jnp.uint32),
    }


def insert(graphdef, params, state, tokens_nr, lengths_n, slot_n, gen_n, budget_n, stops_nm, key_nk,
           temperature, top_p, *, greedy: bool, per_row_rope: bool, constrain: Callable | None = None):
    """Prefill sequences [n, R] (row r's tokens at [0, lengths_n[r]), right-padded), choose their next tokens
    (index gen_n[r] of their requests: 0 for a new request, the tokens so far for a re-encoding) and write
    cache rows, pending tokens and per-slot fields into slots `slot_n` (a slot index ≥ N drops that row: batch
    padding). Returns (state, {"token", "entropy", "log_prob", "finished"} [n])."""
    model = nnx.merge(graphdef, params)
    n, r = tokens_nr.shape
    valid = jnp.arange(r, dtype=jnp.int32)[None, :] < lengths_n[:, None]
    cache = gen.init_cache(model.config, n, r, gen.compute_dtype(model))
    h, cache = model.hidden(tokens_nr, positions_from_mask(valid), Mask.causal(valid), cache, slot=0,
                            constrain=constrain, max_position=(lengths_n - 1) if per_row_rope else None)
    h_last = jnp.take_along_axis(h, (lengths_n - 1)[:, None, None], axis=1)
    logits = model.project(h_last)[:, 0]
    token, entropy, log_prob = _emit(logits, key_nk, gen_n, temperature, top_p, greedy)
    finished = _finished(token, gen_n + 1, budget_n, stops_nm)

    def put(x, v):
        return x.at[slot_n].set(v.astype(x.dtype), mode="drop")

    new_cache = tuple((k.at[slot_n, :, :r].set(nk.astype(k.dtype), mode="drop"),
                       v.at[slot_n, :, :r].set(nv.astype(v.dtype), mode="drop"))
                      for (k, v), (nk, nv) in zip(state["cache"], cache))
    state = {"cache": new_cache, "token": put(state["token"], token), "pos": put(state["pos"], lengths_n),
             "n_gen": put(state["n_gen"], gen_n + 1), "budget": put(state["budget"], budget_n),
             "done": put(state["done"], finished), "stops": put(state["stops"], stops_nm),
             "key": put(state["key"], key_nk)}
    return state, {"token": token, "entropy": entropy, "log_prob": log_prob, "finished": finished}


def step_mask(pos_n, done_n, cache_len: int) -> tuple[jax.Array, Mask]:
    """The query slots [N] and attention mask of one decode step over all slots: a running slot queries its
    pending token's slot over the cache slots ≤ it (its prompt starts at slot 0); an idle slot (done) queries
    slot 0, so the key blocks the blockwise attention visits end at the longest live prefix among running
    slots (`attention.key_block_ranges`), whatever the allocation `cache_len`."""
    q = jnp.where(done_n, 0, pos_n).astype(jnp.int32)
    return q, Mask.over_cache_slots(jnp.ones((q.shape[0], cache_len), bool), q[:, None])


def chunk(graphdef, params, state, temperature, top_p, exit_on_finish, *, steps: int, greedy: bool,
          switch: int | None, constrain: Callable | None = None):
    """Up to `steps` decode steps over all slots (one `lax.while_loop`). Leaves early when no slot runs, when a
    slot finished and `exit_on_finish` (requests are waiting), or when a running slot's pending token sits at
    position `switch` (longrope's original context: that slot must be re-encoded first).

    Returns (state, out): out["token"], out["entropy"], out["log_prob"] [N, steps] and out["valid"] (a token was
    emitted), out["steps"] (decode steps run), and copies of state["done"] and state["n_gen"] [N]."""
    model = nnx.merge(graphdef, params)
    n = state["token"].shape[0]
    s = state["cache"][0][0].shape[2]

    def blocked(st):
        return jnp.any(~st["done"] & (st["pos"] == switch)) if switch is not None else jnp.bool_(False)

    def cond(carry):
        j, st, _, finished_any = carry
        return (j < steps) & jnp.any(~st["done"]) & ~(exit_on_finish & finished_any) & ~blocked(st)

    def body(carry):
        j, st, out, finished_any = carry
        active = ~st["done"]
        q, mask = step_mask(st["pos"], st["done"], s)  # idle slots write dead data at slot 0
        h, cache = model.hidden(st["token"][:, None], q[:, None], mask, st["cache"], slot=q, constrain=constrain,
                                max_position=q if switch is not None else None)
        logits = model.project(h)[:, 0]
        token, entropy, log_prob = _emit(logits, st["key"], st["n_gen"], temperature, top_p, greedy)
        finished = active & _finished(token, st["n_gen"] + 1, st["budget"], st["stops"])
        st = dict(st, cache=cache, token=jnp.where(active, token, st["token"]),
                  pos=jnp.where(active, st["pos"] + 1, st["pos"]),
                  n_gen=jnp.where(active, st["n_gen"] + 1, st["n_gen"]), done=st["done"] | finished)
        out = {"token": out["token"].at[:, j].set(jnp.where(active, token, -1)),
               "entropy": out["entropy"].at[:, j].set(jnp.where(active, entropy, 0.0)),
               "log_prob": out["log_prob"].at[:, j].set(jnp.where(active, log_prob, 0.0)),
               "valid": out["valid"].at[:, j].set(active)}
        return j + 1, st, out, finished_any | jnp.any(finished)

    out = {"token": jnp.full((n, steps), -1, jnp.int32), "entropy": jnp.zeros((n, steps), jnp.float32),
           "log_prob": jnp.zeros((n, steps), jnp.float32), "valid": jnp.zeros((n, steps), bool)}
    j, state, out, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), state, out, jnp.bool_(False)))
    return state, out | {"steps": j, "done": state["done"], "n_gen": state["n_gen"]}


# ---------------------------------------------------------------------------------------------- the engine
def _longrope_switch(config) -> int | None:
    rope = config.rope
    if rope.type != "longrope":
        return None
    return rope.original_max_position_embeddings or config.max_position_embeddings


def _length_groups(items: list, cache_len: int) -> list[list]:
    """Insert items (slot, request index, sequence, tokens before) grouped by the length bucket of their
    sequences, in order of first appearance: one prefill call per group."""
    groups: dict[int, list] = {}
    for item in items:
        groups.setdefault(min(bucket(len(item[2])), cache_len), []).append(item)
    return list(groups.values())


def _row_bucket(n: int, slots: int, multiple: int) -> int:
    """Rows of an insert call: the next power of two ≥ n, at most `slots`, a multiple of the batch shards."""
    b = min(1 << max(0, n - 1).bit_length(), slots)
    return -(-b // multiple) * multiple


class _Engine:
    """The jitted functions of one (model, slots, cache length, sampling mode) and their shardings; built once
    per shape through the model's one jit factory (`LanguageModel.jit`, which counts traces), so later calls
    with the same shapes do not recompile."""

    def __init__(self, lm, slots: int, cache_len: int, max_stops: int, greedy: bool, steps: int):
        self.lm, self.slots, self.cache_len, self.max_stops = lm, slots, cache_len, max_stops
        self.greedy, self.steps = greedy, steps
        self.switch = _longrope_switch(lm.config)
        self.mesh = lm.mesh
        self.key_shape = tuple(jax.random.key_data(jax.random.key(0)).shape)
        self.dtype = lm.dtype
        self.constrain = lm.activation_constraint()
        self.multiple = shd.batch_multiple(self.mesh)

    # ----------------------------------------------------------- shardings
    def _batch(self, ndim):
        return None if self.mesh is None else shd.batch_sharding(self.mesh, ndim)

    def _replicated(self):
        return None if self.mesh is None else NamedSharding(self.mesh, P())

    def state_shardings(self):
        return {"cache": self.lm.cache_sharding(self.slots, self.cache_len), "token": self._batch(1),
                "pos": self._batch(1), "n_gen": self._batch(1), "budget": self._batch(1), "done": self._batch(1),
                "stops": self._batch(2), "key": self._batch(1 + len(self.key_shape))}

    def place(self, array, ndim_sharding=None):
        """Host array → device (shard by shard under a mesh: `ndim_sharding` a sharding, or None replicated)."""
        array = np.asarray(array)
        if self.mesh is None:
            return jnp.asarray(array)
        return shd.place(array, self._replicated() if ndim_sharding is None else ndim_sharding)

    # ----------------------------------------------------------- jitted functions
    def init(self):
        lm = self.lm

        def fn():
            return init_state(lm.config, self.slots, self.cache_len, self.dtype, self.max_stops, self.key_shape)

        return lm.jit(("engine_init", self.slots, self.cache_len, self.max_stops), fn,
                      lambda: ((), self.state_shardings()))()

    def insert_fn(self, rows: int, length: int):
        lm = self.lm

        def fn(params, state, tokens, lengths, slot, gen_n, budget, stops, keys, temperature, top_p):
            return insert(lm.graphdef, params, state, tokens, lengths, slot, gen_n, budget, stops, keys,
                          temperature, top_p, greedy=self.greedy, per_row_rope=self.switch is not None,
                          constrain=self.constrain)

        def shardings():
            rep, b1, b2 = self._replicated(), self._batch(1), self._batch(2)
            st = self.state_shardings()
            return ((lm.param_shardings(), st, b2, b1, b1, b1, b1, b2, self._batch(1 + len(self.key_shape)), rep,
                     rep), (st, {"token": rep, "entropy": rep, "log_prob": rep, "finished": rep}))

        key = ("engine_insert", self.slots, self.cache_len, self.max_stops, self.greedy, rows, length)
        return lm.jit(key, fn, shardings, donate=(1,))

    def chunk_fn(self):
        lm = self.lm

        def fn(params, state, temperature, top_p, exit_on_finish):
            return chunk(lm.graphdef, params, state, temperature, top_p, exit_on_finish, steps=self.steps,
                         greedy=self.greedy, switch=self.switch, constrain=self.constrain)

        def shardings():
            rep = self._replicated()
            out = {k: rep for k in ("token", "entropy", "log_prob", "valid", "steps", "done", "n_gen")}
            return (lm.param_shardings(), self.state_shardings(), rep, rep, rep), (self.state_shardings(), out)

        key = ("engine_chunk", self.slots, self.cache_len, self.max_stops, self.greedy, self.steps)
        return lm.jit(key, fn, shardings, donate=(1,))


@dataclasses.dataclass
class _Running:
    """Host record of a request in a slot."""

    index: int
    tokens: list = dataclasses.field(default_factory=list)
    entropy: list = dataclasses.field(default_factory=list)
    log_prob: list = dataclasses.field(default_factory=list)


def schedule(requests: Sequence[Request], policy: str = "longest") -> list[int]:
    """Request indices in the order the engine starts them (see the module docstring; ties keep request order)."""
    if policy not in POLICIES:
        raise ValueError(f"scheduling policy {policy!r}; use one of {list(POLICIES)}")
    idx = list(range(len(requests)))
    if policy == "longest":
        return sorted(idx, key=lambda i: -(len(requests[i].prompt) + requests[i].max_new_tokens))
    if policy == "prompt":
        return sorted(idx, key=lambda i: -len(requests[i].prompt))
    return idx


def _checked(lm, requests: Sequence[Request]) -> list[Request]:
    """Requests with ids and stop ids filled in, validated (errors name the request)."""
    out, seen = [], set()
    default_stops = None
    for i, r in enumerate(requests):
        if not isinstance(r, Request):
            raise TypeError(f"request {i}: expected an engine.Request, got {type(r).__name__}")
        rid = str(i) if r.id is None else r.id
        if rid in seen:
            raise ValueError(f"request {i}: duplicate id {rid!r} (ids key the results and the sampling)")
        seen.add(rid)
        if not r.prompt:
            raise ValueError(f"request {rid!r}: empty prompt")
        lo, hi = min(r.prompt), max(r.prompt)
        if lo < 0 or hi >= lm.config.vocab_size:
            raise ValueError(f"request {rid!r}: token ids must lie in [0, {lm.config.vocab_size}), got [{lo}, {hi}]")
        limit = lm.config.max_position_embeddings
        if len(r.prompt) + r.max_new_tokens > limit:
            raise ValueError(f"request {rid!r}: {len(r.prompt)} prompt tokens + {r.max_new_tokens} new tokens exceed "
                             f"the context window of {limit} positions")
        stops = r.stop_token_ids
        if stops is None:
            default_stops = tuple(lm.stop_token_ids()) if default_stops is None else default_stops
            stops = default_stops
        out.append(dataclasses.replace(r, id=rid, stop_token_ids=stops))
    if not out:
        raise ValueError("no requests given")
    return out


def _result(lm, r: Request, index: int, tokens, entropy, log_prob, decode_text: bool) -> Result:
    tokens = np.asarray(tokens, np.int32)
    reason = "eos" if len(tokens) and int(tokens[-1]) in r.stop_token_ids else "length"
    text = None
    if decode_text and lm.tokenizer is not None:
        text = lm.tokenizer.decode(tokens.tolist(), skip_special_tokens=True)
    return Result(r.id, index, tokens, np.asarray(entropy, np.float32), np.asarray(log_prob, np.float32), reason,
                  len(r.prompt), text)


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="req")


def generate(lm, requests: Sequence[Request], *, slots: int = 8, batching: str = "continuous",
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, policy: str = "longest",
             chunk_steps: int = 32, cache_len: int | None = None, on_result: Callable[[Result], None] | None = None,
             progress: bool = False, decode_text: bool = True, reproducible: bool = False
             ) -> tuple[list[Result], Stats]:
    """Generate every request; returns (results in request order, stats).

    Args:
      lm: a `LanguageModel` (its mesh, if any, shards the slots over (data, fsdp) and heads over tensor).
      requests: `Request`s (`make_requests` builds them from prompts).
      slots: decode slots N (requests running at once; rounded up to a multiple of the mesh's batch shards).
        In static mode: the batch size.
      batching: "continuous" (the engine) or "static" (today's `LanguageModel.generate` over consecutive
        batches, for comparison).
      temperature, top_p: 0 is greedy; else sampling with per-request keys from (`seed`, request id).
      policy: the order requests start in ("longest", "prompt", "fifo"; see the module docstring).
      chunk_steps: decode steps per compiled chunk at most (the host refills between chunks).
      cache_len: cache slots per decode slot (default: the longest prompt + budget, bucketed). Entropies can
        differ in the last float32 bit between cache lengths; a run resumed with a subset of its requests
        passes the cache length of the whole set to reproduce it bit for bit.
      on_result: called with each `Result` as soon as its request finishes (in finishing order, once each; on
        every process of a multi-process run).
      progress: show a tqdm bar with tokens/s.
      decode_text: fill `Result.text` with the tokenizer.
      reproducible: make every request's tokens, entropies and log-probs bitwise independent of the other
        requests of the call (see "Reproducibility" in the module docstring); costs extra prefill rows.
    """
    if batching not in BATCHING:
        raise ValueError(f"batching {batching!r}; use one of {list(BATCHING)}")
    if slots < 1:
        raise ValueError(f"slots must be ≥ 1, got {slots}")
    if chunk_steps < 1:
        raise ValueError(f"chunk_steps must be ≥ 1, got {chunk_steps}")
    sampling = gen.Sampling(1, float(temperature), float(top_p))  # validates temperature and top_p
    reqs = _checked(lm, requests)
    if batching == "static":
        return _static(lm, reqs, slots=slots, sampling=sampling, seed=seed, on_result=on_result, progress=progress,
                       decode_text=decode_text)
    need = max(len(r.prompt) + r.max_new_tokens for r in reqs)
    if cache_len is None:
        cache_len = bucket(need)
    elif cache_len < need:
        raise ValueError(f"cache_len {cache_len} is shorter than the longest prompt + budget ({need})")
    multiple = shd.batch_multiple(lm.mesh)
    n_slots = -(-slots // multiple) * multiple
    max_stops = max(1, max(len(r.stop_token_ids) for r in reqs))
    eng = _Engine(lm, n_slots, cache_len, max_stops, sampling.greedy, chunk_steps)
    stats = Stats("continuous", n_slots, cache_len, len(reqs), policy=policy,
                  entropy_settings=dict(gen.ENTROPY_SETTINGS, vocab_size=lm.config.vocab_size),
                  sampling={"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": seed})
    counts_before = dict(lm.trace_counts)
    t_start = time.perf_counter()

    temp = eng.place(np.float32(max(sampling.temperature, 1e-6)))
    topp = eng.place(np.float32(sampling.top_p))
    flags = {b: eng.place(np.bool_(b)) for b in (False, True)}
    keys = {}
    if not sampling.greedy:
        keys = {i: np.asarray(jax.random.key_data(request_key(seed, r.id))) for i, r in enumerate(reqs)}
    zero_key = np.zeros(eng.key_shape, np.uint32)
    state = eng.init()
    waiting = collections.deque(schedule(reqs, policy))
    running: dict[int, _Running] = {}  # slot → request
    free = list(range(n_slots))
    results: list[Result | None] = [None] * len(reqs)
    bar = _progress_bar(progress, len(reqs), "generate")

    def finish(slot: int):
        run = running.pop(slot)
        r = reqs[run.index]
        res = _result(lm, r, run.index, run.tokens, run.entropy, run.log_prob, decode_text)
        results[run.index] = res
        stats.generated_tokens += len(res.tokens)
        free.append(slot)
        if on_result is not None:
            on_result(res)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(tok_s=f"{stats.generated_tokens / max(time.perf_counter() - t_start, 1e-9):.1f}")

    def groups(items: list) -> list[list]:
        return _length_groups(items, cache_len) if reproducible else [items]

    def do_insert(items: list[tuple[int, int, list[int], int]]):
        """items: (slot, request index, sequence, tokens generated before) → one prefill call."""
        nonlocal state
        rows = n_slots if reproducible else _row_bucket(len(items), n_slots, multiple)
        length = min(bucket(max(len(seq) for _, _, seq, _ in items)), cache_len)
        tokens = np.zeros((rows, length), np.int32)
        lengths = np.ones(rows, np.int32)
        slot_idx = np.full(rows, n_slots, np.int32)  # out of range: padding rows are dropped
        gen_n = np.zeros(rows, np.int32)
        budget = np.ones(rows, np.int32)
        stops = np.full((rows, max_stops), -1, np.int32)
        key_data = np.zeros((rows, *eng.key_shape), np.uint32)
        for row, (slot, index, seq, before) in enumerate(items):
            r = reqs[index]
            tokens[row, :len(seq)], lengths[row], slot_idx[row], gen_n[row] = seq, len(seq), slot, before
            budget[row] = r.max_new_tokens
            stops[row, :len(r.stop_token_ids)] = r.stop_token_ids
            key_data[row] = keys.get(index, zero_key)
        b1, b2 = eng._batch(1), eng._batch(2)
        args = (eng.place(tokens, b2), eng.place(lengths, b1), eng.place(slot_idx, b1), eng.place(gen_n, b1),
                eng.place(budget, b1), eng.place(stops, b2), eng.place(key_data, eng._batch(key_data.ndim)))
        t0 = time.perf_counter()
        state, out = eng.insert_fn(rows, length)(lm.params, state, *args, temp, topp)
        out = jax.device_get(out)
        stats.prefill_seconds += time.perf_counter() - t0
        stats.prefill_passes += 1
        for row, (slot, index, _, _) in enumerate(items):
            run = running.setdefault(slot, _Running(index))
            run.tokens.append(int(out["token"][row]))
            run.entropy.append(float(out["entropy"][row]))
            run.log_prob.append(float(out["log_prob"][row]))
        for row, (slot, _, _, _) in enumerate(items):
            if out["finished"][row]:
                finish(slot)

    while waiting or running:
        # longrope: slots whose pending token sits at the original context are re-encoded with the long factors
        if eng.switch is not None:
            redo = [(slot, run.index, list(reqs[run.index].prompt) + run.tokens, len(run.tokens))
                    for slot, run in sorted(running.items())
                    if len(reqs[run.index].prompt) + len(run.tokens) - 1 == eng.switch]
            if redo:
                stats.reencodes += len(redo)
                for group in groups(redo):
                    do_insert(group)
                continue
        if waiting and free:
            free.sort()
            take = [(free.pop(0), waiting.popleft()) for _ in range(min(len(free), len(waiting)))]
            for group in groups([(slot, index, list(reqs[index].prompt), 0) for slot, index in take]):
                do_insert(group)
            continue
        if not running:
            continue
        t0 = time.perf_counter()
        state, out = eng.chunk_fn()(lm.params, state, temp, topp, flags[bool(waiting)])
        out = jax.device_get(out)
        stats.decode_seconds += time.perf_counter() - t0
        steps = int(out["steps"])
        if steps == 0:  # host and device disagree about which slots run: fail rather than spin
            raise RuntimeError(f"engine: a decode chunk made no progress with slots {sorted(running)} running")
        stats.decode_steps += steps
        stats.row_steps += steps * n_slots
        stats.wasted_row_steps += steps * n_slots - int(out["valid"].sum())
        for slot, run in list(running.items()):
            keep = out["valid"][slot, :steps]
            run.tokens.extend(out["token"][slot, :steps][keep].tolist())
            run.entropy.extend(out["entropy"][slot, :steps][keep].tolist())
            run.log_prob.extend(out["log_prob"][slot, :steps][keep].tolist())
            if out["done"][slot]:
                finish(slot)
    if bar is not None:
        bar.close()
    stats.forward_passes = stats.prefill_passes + stats.decode_steps
    stats.seconds = time.perf_counter() - t_start
    stats.trace_counts = {k: v - counts_before.get(k, 0) for k, v in lm.trace_counts.items()
                          if v != counts_before.get(k, 0)}
    return results, stats


# ---------------------------------------------------------------------------------------------- static batching
def _static(lm, reqs: list[Request], *, slots: int, sampling: gen.Sampling, seed: int, on_result, progress: bool,
            decode_text: bool) -> tuple[list[Result], Stats]:
    """Today's path: `LanguageModel.generate` over consecutive batches of `slots` requests (request order), each
    row stopping at its own budget (one compiled decode loop per bucket of the batch's largest budget) and at
    the stop ids all the batch's requests share, then cut back to every request's own stop ids."""
    stats = Stats("static", slots, 0, len(reqs), policy="fifo",
                  entropy_settings=dict(gen.ENTROPY_SETTINGS, vocab_size=lm.config.vocab_size),
                  sampling={"temperature": sampling.temperature, "top_p": sampling.top_p, "seed": seed})
    counts_before = dict(lm.trace_counts)
    results: list[Result | None] = [None] * len(reqs)
    bar = _progress_bar(progress, len(reqs), "generate (static)")
    t_start = time.perf_counter()
    for b, start in enumerate(range(0, len(reqs), slots)):
        batch = reqs[start:start + slots]
        # rows stop early only at ids every request of the batch stops at; each is cut at its own ids below
        shared = [t for t in batch[0].stop_token_ids if all(t in r.stop_token_ids for r in batch[1:])]
        key = None if sampling.greedy else jax.random.fold_in(jax.random.key(seed), b)
        g = lm.generate([list(r.prompt) for r in batch], max_new_tokens=[r.max_new_tokens for r in batch],
                        temperature=sampling.temperature, top_p=sampling.top_p, key=key, stop_token_ids=shared,
                        decode_text=False)
        steps = int(g.seconds["decode_steps"])
        rows = lm.pad_batch(len(batch))
        stats.prefill_seconds += g.seconds["prefill"]
        stats.decode_seconds += g.seconds["decode"]
        stats.prefill_passes += 1
        stats.decode_steps += steps
        stats.row_steps += steps * rows
        stats.cache_len = max(stats.cache_len, g.cache_len)
        for i, r in enumerate(batch):
            tokens = g.tokens[i][g.valid[i]]
            end = min(len(tokens), r.max_new_tokens)
            hits = np.flatnonzero(np.isin(tokens[:end], r.stop_token_ids)) if r.stop_token_ids else []
            if len(hits):
                end = int(hits[0]) + 1
            res = _result(lm, r, start + i, tokens[:end], g.entropy[i][g.valid[i]][:end],
                          g.log_prob[i][g.valid[i]][:end], decode_text)
            results[start + i] = res
            stats.generated_tokens += len(res.tokens)
            # every kept token after the first came out of one decode step of this batch
            stats.wasted_row_steps -= len(res.tokens) - 1
        stats.wasted_row_steps += steps * rows
        for res in results[start:start + len(batch)]:
            if on_result is not None:
                on_result(res)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{stats.generated_tokens / max(time.perf_counter() - t_start, 1e-9):.1f}")
    if bar is not None:
        bar.close()
    stats.forward_passes = stats.prefill_passes + stats.decode_steps
    stats.seconds = time.perf_counter() - t_start
    stats.trace_counts = {k: v - counts_before.get(k, 0) for k, v in lm.trace_counts.items()
                          if v != counts_before.get(k, 0)}
    return results, stats
