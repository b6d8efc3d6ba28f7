"""The train step's memory options: chunked cross-entropy (against a float64 NumPy closed form and the plain
loss), per-layer rematerialisation, the precision options and their shardings, the warmup's first step."""

from __future__ import annotations

import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropy_jax.llm import model as mdl
from entropy_jax.llm import sharding as shd
from entropy_jax.llm.config import LlmConfig
from entropy_jax.train import lora as lora_lib
from entropy_jax.train import loss, sft, trainer


def _config(tied: bool, layers: int = 2) -> LlmConfig:
    return LlmConfig(family="llama", vocab_size=97, hidden_size=32, intermediate_size=48, num_layers=layers,
                     num_heads=4, num_kv_heads=2, head_dim=8, max_position_embeddings=64, rms_norm_eps=1e-5,
                     tie_word_embeddings=tied)


def _batch(rng, b=2, t=24, k=10, vocab=97, a=1):
    """A step batch [A, B, T] / [A, B, K] of two packed examples per row, some loss slots empty."""
    seg = np.ones((b, t), np.int32)
    seg[:, t // 2:] = 2
    seg[0, -3:] = 0
    pos = np.where(seg == 2, np.arange(t) - t // 2, np.arange(t)).astype(np.int32)
    pos[seg == 0] = 0
    lp = np.sort(rng.choice(t - 3, (a, b, k), replace=True), axis=-1).astype(np.int32)
    lw = np.ones((a, b, k), np.float32)
    lw[:, 0, -2:] = 0.0
    return {"tokens": jnp.asarray(rng.integers(0, vocab, (a, b, t)), jnp.int32),
            "positions": jnp.asarray(np.broadcast_to(pos, (a, b, t))),
            "segments": jnp.asarray(np.broadcast_to(seg, (a, b, t))),
            "loss_pos": jnp.asarray(lp), "loss_targets": jnp.asarray(rng.integers(0, vocab, (a, b, k)), jnp.int32),
            "loss_weights": jnp.asarray(lw)}


# ---------------------------------------------------------------------------------------------- chunked loss
# K = 12 loss positions: chunks that do not divide K (5, padded), that do (4), one chunk (12), wider than K (100)
@pytest.mark.parametrize(("chunk", "transposed"), [(5, False), (4, True), (12, True), (100, False)])
def test_chunked_nll_and_gradients_equal_the_float64_closed_form(rng, transposed, chunk):
    b, k, d, v = 2, 12, 8, 50
    h = rng.normal(size=(b, k, d)).astype(np.float32)
    w = rng.normal(size=(v, d) if transposed else (d, v)).astype(np.float32)
    t = rng.integers(0, v, (b, k)).astype(np.int32)
    g = rng.normal(size=(b, k)).astype(np.float32)  # an arbitrary cotangent
    # float64 closed form: nll = lse(h W) − (h W)[t]; d/dlogits = g (softmax − onehot)
    w64 = (w.T if transposed else w).astype(np.float64)
    logits = h.astype(np.float64) @ w64
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll = lse - np.take_along_axis(logits, t[..., None], -1)[..., 0]
    dlog = g[..., None] * (np.exp(logits - lse[..., None]) - np.eye(v)[t])
    dh = dlog @ w64.T
    dw = np.einsum("bkd,bkv->dv", h.astype(np.float64), dlog)
    dw = dw.T if transposed else dw

    def f(h, w):
        return loss.chunked_nll(h, w, jnp.asarray(t), chunk=chunk, transposed=transposed)

    for fn in (f, jax.jit(f)):
        out, vjp = jax.vjp(fn, jnp.asarray(h), jnp.asarray(w))
        got_dh, got_dw = vjp(jnp.asarray(g))
        np.testing.assert_allclose(np.asarray(out), nll, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got_dh), dh, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got_dw), dw, rtol=1e-4, atol=1e-5)
    # the plain all-at-once formula agrees as well
    ref = loss.nll_reference(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t), transposed=transposed)
    np.testing.assert_allclose(np.asarray(ref), nll, rtol=1e-5, atol=1e-5)


def test_chunked_loss_never_forms_all_logits_forward_or_backward(rng):
    b, k, d, v = 2, 16, 8, 50
    h, w = jnp.ones((b, k, d)), jnp.ones((d, v))
    t = jnp.zeros((b, k), jnp.int32)

    def total(h, w, chunk):
        return jnp.sum(loss.chunked_nll(h, w, t, chunk=chunk) if chunk else loss.nll_reference(h, w, t))

    chunked = str(jax.make_jaxpr(jax.grad(functools.partial(total, chunk=4), argnums=(0, 1)))(h, w))
    plain = str(jax.make_jaxpr(jax.grad(functools.partial(total, chunk=0), argnums=(0, 1)))(h, w))
    assert f"f32[{b},{k},{v}]" in plain  # the reference materialises the [B, K, V] logits
    assert f"f32[{b},{k},{v}]" not in chunked and f"f32[{b},4,{v}]" in chunked  # one chunk at a time
    with pytest.raises(ValueError, match="chunk"):
        loss.chunked_nll(h, w, t, chunk=0)


@pytest.mark.parametrize("transposed", [False, True])
def test_chunked_nll_on_a_mesh_equals_one_device(rng, transposed):
    """Pinned the FSDP way (rows over data × fsdp, vocabulary over tensor): the same values and gradients."""
    mesh = shd.make_mesh(data=2, fsdp=2, tensor=2)
    b, k, d, v = 4, 12, 16, 64
    h = jnp.asarray(rng.normal(size=(b, k, d)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(v, d) if transposed else (d, v)), jnp.float32)
    t = jnp.asarray(rng.integers(0, v, (b, k)), jnp.int32)
    path = "embed.embedding" if transposed else "lm_head.kernel"
    w_s = jax.sharding.NamedSharding(mesh, shd.param_spec(path, w.shape, mesh))
    h_s = shd.batch_sharding(mesh, 3)

    def f(h, w, mesh=None):
        nll = loss.chunked_nll(h, w, t, chunk=5, transposed=transposed, mesh=mesh)
        return jnp.sum(nll * jnp.arange(k)), nll

    (_, ref), g_ref = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(h, w)
    sharded = jax.jit(jax.value_and_grad(functools.partial(f, mesh=mesh), argnums=(0, 1), has_aux=True),
                      in_shardings=(h_s, w_s))
    (_, got), g = sharded(jax.device_put(h, h_s), jax.device_put(w, w_s))
    assert g[1].sharding.is_equivalent_to(w_s, 2)  # the weight gradient comes out in the weight's sharding
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6, atol=1e-6)
    for a, r in zip(g, g_ref):  # sums over other partitions: float32 round-off of the largest entries
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-5, atol=1e-6 * float(jnp.abs(r).max()))


# (remat, loss positions per chunk, scanned layers): chunks that do not divide K = 10 (4, 3) and one chunk (10);
# the chunked loss alone is checked against the closed form above
_VARIANTS = {"untied": [("dots", 4, False), ("full", 10, True)], "tied": [("full", 3, False), ("none", 0, True)]}


@pytest.mark.parametrize("tied", [False, True])
def test_token_nll_chunked_rematerialised_and_scanned_equal_the_plain_loss(key, rng, tied):
    # the tied model has 3 layers with q/k norms and q/k/v biases: more per-layer structure to stack and scan
    cfg = _config(tied) if not tied else _config(tied, layers=3).replace(qk_norm=True, qkv_bias=True)
    graphdef, params = mdl.init_params(cfg, key)
    bt = {k: v[0] for k, v in _batch(rng).items()}

    def total(p, graphdef=graphdef, **kw):
        nll = sft.token_nll(graphdef, p, bt["tokens"], bt["positions"], bt["segments"], bt["loss_pos"],
                            bt["loss_targets"], **kw)
        return jnp.sum(nll * bt["loss_weights"])

    v0, g0 = jax.jit(jax.value_and_grad(total))(params)
    for name, chunk, scan in _VARIANTS["tied" if tied else "untied"]:
        kw = {"remat": sft.StepConfig(remat=name).remat_transform(), "loss_chunk": chunk, "scan_layers": scan}
        fn = functools.partial(total, **kw)
        jaxpr = str(jax.make_jaxpr(jax.grad(fn))(params)).replace("\n", " ")
        if scan:  # one scan over the layers, forward and backward
            assert re.search(rf"scan\[.*length={cfg.num_layers}", jaxpr)
        if name != "none":  # the rematerialised forward really is a checkpoint (per layer, or the scan body)
            assert len(re.findall(r"\b(checkpoint|remat2?)\[", jaxpr)) >= (1 if scan else cfg.num_layers)
        v, g = jax.jit(jax.value_and_grad(fn))(params)
        assert abs(float(v) - float(v0)) <= 1e-5 * abs(float(v0)), (name, chunk, scan)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g0)):  # float32 round-off of sums over B·K·V terms
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))
    if tied:  # layers of different structure (a sliding window on one) run as the loop: the very same program
        graphdef_m, _ = mdl.abstract(cfg.replace(sliding_windows=(None, 5, None)))
        scanned = str(jax.make_jaxpr(functools.partial(total, graphdef=graphdef_m, scan_layers=True))(params))
        assert "scan[" not in scanned
        assert scanned == str(jax.make_jaxpr(functools.partial(total, graphdef=graphdef_m))(params))


def test_step_options_and_their_errors():
    with pytest.raises(ValueError, match="remat 'some'"):
        sft.StepConfig(remat="some")
    with pytest.raises(ValueError, match="precision 'bf16_master'.*compute_dtype='bfloat16'"):
        sft.StepConfig(precision="bf16_master")
    with pytest.raises(ValueError, match="loss_chunk"):
        trainer.TrainConfig(loss_chunk=-1)
    with pytest.raises(ValueError, match="precision 'fp16'"):
        trainer.TrainConfig(precision="fp16", compute_dtype="bfloat16")


# ---------------------------------------------------------------------------------------------- the step
def _run(graphdef, params, batches, cfg: sft.StepConfig, lr=3e-3, mesh=None):
    tx = sft.optimizer(sft.OptimConfig(eps=1e-6))
    state = sft.init_state(jax.tree.map(jnp.array, params), tx=tx, precision=cfg.precision)
    step = jax.jit(sft.make_step(graphdef, tx, cfg, mesh))
    losses = []
    for b in batches:
        state, m = step(state, None, b, jnp.float32(lr))
        losses.append(float(m["loss"]))
    return state, losses


def test_bf16_master_is_fp32_with_bf16_compute_and_bf16_drops_the_master(key, rng):
    cfg = _config(tied=True)
    _, params = mdl.init_params(cfg, key)
    graphdef, _ = mdl.abstract(cfg, jnp.bfloat16)
    # two micro-batches: bfloat16 gradients summed into the float32 accumulator
    batches = [_batch(rng, a=2)] * 3
    ref, l_ref = _run(graphdef, params, batches, sft.StepConfig(compute_dtype="bfloat16"))
    got, l_got = _run(graphdef, params, batches, sft.StepConfig(compute_dtype="bfloat16", precision="bf16_master"))
    assert {x.dtype for x in jax.tree.leaves(got["trainable"])} == {jnp.dtype(jnp.bfloat16)}
    assert {x.dtype for x in jax.tree.leaves(got["master"])} == {jnp.dtype(jnp.float32)}
    moments = [x for x in jax.tree.leaves(got["opt"]) if x.ndim]
    assert moments and {x.dtype for x in moments} == {jnp.dtype(jnp.float32)}
    # the same numbers as float32 masters computing in bfloat16: the master is the float32 weights
    np.testing.assert_allclose(l_got, l_ref, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got["master"]), jax.tree.leaves(ref["trainable"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
    for a, b in zip(jax.tree.leaves(got["trainable"]), jax.tree.leaves(got["master"])):
        assert np.array_equal(np.asarray(a), np.asarray(b.astype(jnp.bfloat16)))
    # one micro-batch (its bfloat16 gradients, no accumulator) and no master: updates rounded to bfloat16
    one = [{k: v[:1] for k, v in batches[0].items()}] * 3
    pure, l_pure = _run(graphdef, params, one, sft.StepConfig(compute_dtype="bfloat16", precision="bf16"))
    assert "master" not in pure and {x.dtype for x in jax.tree.leaves(pure["trainable"])} == {jnp.dtype(jnp.bfloat16)}
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(pure["opt"]) if x.ndim)
    assert l_pure[-1] < l_pure[0]  # it learns


def test_moments_and_master_are_sharded_like_their_parameters():
    assert jax.device_count() == 8
    mesh = shd.make_mesh(data=1, fsdp=4, tensor=2)
    _, abstract = mdl.abstract(_config(tied=False).replace(hidden_size=64, intermediate_size=128))
    tx = sft.optimizer(sft.OptimConfig())
    shape = jax.eval_shape(functools.partial(sft.init_state, tx=tx, precision="bf16_master"), abstract)
    s = sft.state_shardings(shape, mesh, lora=False)
    params = {path: x.spec for _, path, x in _flat(s["trainable"])}
    assert sum("fsdp" in str(spec) for spec in params.values()) >= 10  # kernels and the embedding are split
    assert {path: x.spec for _, path, x in _flat(s["master"])} == params
    moments = [(head, path, x.spec) for head, path, x in _flat(s["opt"]) if path in params]
    assert {head for head, _, _ in moments} == {"[1].mu", "[1].nu"}  # Adam's two moments of every parameter
    assert len(moments) == 2 * len(params) and all(spec == params[path] for _, path, spec in moments)


def _flat(tree):
    """(non-dict prefix of the path, dotted trailing dict keys, leaf) of every sharding in a state tree."""
    out = []
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        n = 0
        while n < len(path) and isinstance(path[len(path) - 1 - n], jax.tree_util.DictKey):
            n += 1
        out.append((jax.tree_util.keystr(path[: len(path) - n]), ".".join(str(k.key) for k in path[len(path) - n:]), x))
    return out


# ---------------------------------------------------------------------------------------------- schedule
def test_warmup_starts_above_zero():
    lr = sft.schedule(1.0, total_steps=20, warmup_steps=3, final_lr_ratio=0.1)
    np.testing.assert_allclose([float(lr(s)) for s in range(4)], [0.25, 0.5, 0.75, 1.0], rtol=1e-6)
    assert float(lr(20)) == pytest.approx(0.1)
    assert float(sft.schedule(2e-5, total_steps=10, warmup_steps=0)(0)) == pytest.approx(2e-5)


# ---------------------------------------------------------------------------------------------- the trainer
def test_trainer_first_step_learns_and_lora_keeps_a_bf16_base(student, tmp_path):
    from tests.train.test_sft import _examples

    seqs = _examples(student.tokenizer, 4)
    cfg = trainer.TrainConfig(epochs=1, micro_batch=2, seq_len=1024, packing=False, lr=1e-2, warmup_ratio=0.5,
                              compute_dtype="bfloat16", precision="bf16_master", remat="full", loss_chunk=8,
                              lora=lora_lib.LoraConfig(rank=4, targets=("q", "v", "up")))
    res = trainer.fit(student, lambda e: seqs, cfg, tmp_path, progress=False)
    run = res["run"]
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "lr" in r]
    assert len(steps) == 2 and steps[0]["lr"] == pytest.approx(1e-2 / 2)  # warmup of 1 step: lr / 2, not 0
    assert {x.dtype for x in jax.tree.leaves(run.frozen)} == {jnp.dtype(jnp.bfloat16)}  # frozen base in bf16
    assert {x.dtype for x in jax.tree.leaves(run.state["master"])} == {jnp.dtype(jnp.float32)}
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(run.state["opt"]) if x.ndim)
    # merged into the float32 LanguageModel's weights: float32, and only the targets moved
    merged = jax.tree.leaves(res["params"])
    assert {x.dtype for x in merged} == {jnp.dtype(jnp.float32)}
    moved = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(merged, jax.tree.leaves(student.params))]
    assert sum(moved) == len(lora_lib.target_paths(student.params, ("q", "v", "up")))


def test_sharded_options_track_unsharded_and_resume_is_bitwise(student, student_dir, tmp_path):
    import dataclasses

    from entropy_jax import llm
    from tests.train.test_sft import _examples

    mesh = llm.make_mesh(data=2, fsdp=2, tensor=2)
    seqs = _examples(student.tokenizer, 8)
    cfg = trainer.TrainConfig(epochs=1, micro_batch=4, seq_len=512, lr=1e-3, compute_dtype="bfloat16",
                              precision="bf16_master", remat="dots", loss_chunk=8, scan_layers=True)
    uncut = dataclasses.replace(cfg, checkpoint_epochs=False)  # a runtime field: no checkpoint to write

    def losses(d):
        return [r["loss"] for r in map(json.loads, (d / "train_log.jsonl").read_text().splitlines()) if "loss" in r]

    trainer.fit(student, lambda e: seqs, uncut, tmp_path / "one", progress=False,
                stop_after_steps=1)
    lm = llm.load(student_dir, mesh=mesh)
    full = trainer.fit(lm, lambda e: seqs, uncut, tmp_path / "mesh", progress=False)
    assert full["global_step"] >= 2
    master = full["run"].state["master"]["layers"][0]["mlp"]["gate"]["kernel"]
    assert len(master.sharding.device_set) == 8 and master.addressable_shards[0].data.shape != master.shape
    # bf16 compute: the same first-step loss up to bfloat16 reduction order (Adam then amplifies such
    # differences into weight differences of order lr, so the params are not compared across meshes)
    np.testing.assert_allclose(losses(tmp_path / "mesh")[0], losses(tmp_path / "one")[0], rtol=2e-3)
    # interrupted after one step and resumed: bitwise the uninterrupted run (the master copy is checkpointed)
    trainer.fit(lm, lambda e: seqs, cfg, tmp_path / "cut", progress=False, stop_after_steps=1)
    rest = trainer.fit(lm, lambda e: seqs, cfg, tmp_path / "cut", progress=False, resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "mesh")
    for a, b in zip(jax.tree.leaves(jax.device_get(rest["params"])), jax.tree.leaves(jax.device_get(full["params"]))):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------- the plan
def test_train_step_plan_bytes_are_the_sharded_state_and_extrapolate_linearly():
    from entropy_jax.train import plan

    assert jax.device_count() == 8
    mesh = shd.make_mesh(data=1, fsdp=4, tensor=2)
    cfg = _config(tied=True, layers=3).replace(hidden_size=64, intermediate_size=128, vocab_size=256)
    kw = {"batch": 4, "seq_len": 32, "loss_slots": 8, "mesh": mesh}
    plans = {n: plan.train_step_plan(cfg, layers=n, **kw) for n in (1, 2)}
    p = plans[2]
    assert p["layers"] == 2 and p["model_layers"] == 3 and p["bytes"]["temp"] > 0 and p["flops"] > 0
    assert p["bytes"]["peak"] >= p["bytes"]["argument"] > 0

    def by_hand(layers):
        """Per-device bytes of the step's arguments: the train state (bf16 weights, f32 master and moments)
        sharded as the trainer shards it, the batch [1, 4 rows, 32 or 8] split over fsdp, the learning rate."""
        _, params = mdl.abstract(plan.with_layers(cfg, layers))
        tx = sft.optimizer(sft.OptimConfig())
        state = jax.eval_shape(functools.partial(sft.init_state, tx=tx, precision="bf16_master"), params)
        shard = sft.state_shardings(state, mesh, lora=False)
        total = sum(int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
                    for x, s in zip(jax.tree.leaves(state), jax.tree.leaves(shard)))
        return total + 3 * (4 // 4) * 32 * 4 + 3 * (4 // 4) * 8 * 4 + 4, sum(x.size for x in jax.tree.leaves(params))

    assert (p["bytes"]["argument"], p["params"]) == by_hand(2)
    # linear in depth: extrapolated from 1 and 2 layers to the model's 3, the arguments are the 3-layer state's
    ext = plan.extrapolate([plans[1], plans[2]], 3)
    assert (ext["bytes"]["argument"], ext["params"]) == by_hand(3) and ext["extrapolated_from"] == [1, 2]
    assert ext["per_layer"]["argument"] == p["bytes"]["argument"] - plans[1]["bytes"]["argument"]
    assert plan.fits(p) and not plan.fits(p, device_bytes=p["bytes"]["peak"] - 1)
    with pytest.raises(ValueError, match="batch=3"):
        plan.train_step_plan(cfg, layers=1, **{**kw, "batch": 3})
