"""The train step against transformers-torch (loss, gradients, AdamW), accumulation, LoRA, precision,
compile counts, sharding and exact resume."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropy_jax import llm
from entropy_jax.data import mcqa
from entropy_jax.llm import model as mdl
from entropy_jax.llm import params as prm
from entropy_jax.train import examples as ex
from entropy_jax.train import lora as lora_lib
from entropy_jax.train import packing, sft, trainer

torch = pytest.importorskip("torch")


def _examples(tokenizer, n=6, start=0):
    qs = mcqa.load("demo", limit=start + n)[start:]
    out = [ex.cot_example(tokenizer, q, q.rationale) if i % 2 else ex.answer_example(tokenizer, q)
           for i, q in enumerate(qs)]
    return ex.tokenize(tokenizer, out)


def _batch(seqs, seq_len=1024, packed=True, micro_batch=None, accumulation=1):
    lay = packing.layout(seqs, seq_len, packed=packed)
    mb = micro_batch or len(lay.rows)
    (b,) = list(packing.batches(seqs, lay, micro_batch=mb, accumulation=accumulation))
    return {k: jnp.asarray(b[k]) for k in packing.FIELDS}


def _torch_model(directory):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()


def _torch_nll(model, seq) -> float:
    """Summed NLL (nats) of the completion tokens of one example, by transformers."""
    ids = torch.as_tensor(seq.ids[None].astype(np.int64))
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
    target = torch.as_tensor(seq.ids[1:].astype(np.int64))
    nll = -logp[torch.arange(len(target)), target].numpy()
    return float(nll[seq.completion[1:]].sum())


def test_packed_loss_equals_per_example_transformers_nll(student, student_dir):
    seqs = _examples(student.tokenizer, 6)
    batch = _batch(seqs, seq_len=1024)  # several examples per row
    assert int((np.asarray(batch["segments"]).max(-1) > 1).sum()) >= 1
    nll = sft.token_nll(student.graphdef, student.params, batch["tokens"][0], batch["positions"][0],
                        batch["segments"][0], batch["loss_pos"][0], batch["loss_targets"][0])
    ours = float(jnp.sum(nll * batch["loss_weights"][0]))
    model = _torch_model(student_dir)
    ref = sum(_torch_nll(model, s) for s in seqs)
    assert abs(ours - ref) <= 1e-4 * max(1.0, abs(ref)), (ours, ref)


def _flat_torch(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _ours_as_torch_names(params) -> dict[str, np.ndarray]:
    """Our params renamed/transposed to transformers' names (Llama layout, untied)."""
    flat = {k: np.asarray(v) for k, v in prm.flatten(jax.device_get(params)).items()}
    out = {"model.embed_tokens.weight": flat["embed.embedding"], "model.norm.weight": flat["norm.scale"],
           "lm_head.weight": flat["lm_head.kernel"].T}
    layers = {int(k.split(".")[1]) for k in flat if k.startswith("layers.")}
    for i in layers:
        p, h = f"layers.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = flat[p + "attn_norm.scale"]
        out[h + "post_attention_layernorm.weight"] = flat[p + "mlp_norm.scale"]
        for n in "qkvo":
            out[h + f"self_attn.{n}_proj.weight"] = flat[p + f"attn.{n}.kernel"].T
        for n in ("gate", "up", "down"):
            out[h + f"mlp.{n}_proj.weight"] = flat[p + f"mlp.{n}.kernel"].T
    return out


@pytest.mark.slow
def test_two_adamw_steps_match_torch(student, student_dir):
    """Completion-only loss, gradients, global-norm clipping and AdamW against a plain torch loop."""
    seqs = _examples(student.tokenizer, 4)
    # eps = 1e-6: where a gradient entry is as small as eps, Adam's step g / (|g| + eps) turns float32 rounding
    # of g into visible weight differences (measured: 1 entry in ~4000 at 2e-5 with eps = 1e-8); at 1e-6 the
    # update is a smooth function of every gradient that matters, so the comparison tests the math, not noise
    lr, clip, eps = 3e-3, 0.5, 1e-6
    tx = sft.optimizer(sft.OptimConfig(clip_norm=clip, eps=eps))
    step = jax.jit(sft.make_step(student.graphdef, tx, sft.StepConfig()))
    state = sft.init_state(jax.tree.map(jnp.array, student.params), tx=tx)
    batches = [_batch(seqs[:2], packed=False, micro_batch=2), _batch(seqs[2:], packed=False, micro_batch=2)]
    ours_loss = []
    for b in batches:
        state, m = step(state, None, b, jnp.float32(lr))
        ours_loss.append(float(m["loss"]))

    model = _torch_model(student_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=0.0)
    ref_loss = []
    for pair in (seqs[:2], seqs[2:]):
        total, count = 0.0, 0
        opt.zero_grad()
        for s in pair:  # sum of token NLLs over both examples / number of loss tokens = the batch mean
            ids = torch.as_tensor(s.ids[None].astype(np.int64))
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
            target = torch.as_tensor(s.ids[1:].astype(np.int64))
            keep = torch.as_tensor(s.completion[1:])
            total = total - logp[torch.arange(len(target)), target][keep].sum()
            count += int(keep.sum())
        loss = total / count
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        ref_loss.append(float(loss.detach()))
    np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-5, atol=1e-5)
    ours = _ours_as_torch_names(state["trainable"])
    ref = _flat_torch(model)
    assert set(ours) == set(ref)
    worst = max(float(np.abs(ours[k] - ref[k]).max()) for k in ref)
    moved = max(float(np.abs(ours[k] - _ours_as_torch_names(student.params)[k]).max()) for k in ref)
    assert moved > 1e-3  # the steps did change the weights
    assert worst <= 1e-5, worst


def test_accumulation_equals_one_large_batch(student):
    seqs = _examples(student.tokenizer, 4)
    tx = sft.optimizer(sft.OptimConfig(eps=1e-6))  # eps: see test_two_adamw_steps_match_torch
    step = jax.jit(sft.make_step(student.graphdef, tx, sft.StepConfig()))
    outs = []
    for mb, acc in ((4, 1), (2, 2), (1, 4)):
        state = sft.init_state(jax.tree.map(jnp.array, student.params), tx=tx)
        state, m = step(state, None, _batch(seqs, packed=False, micro_batch=mb, accumulation=acc), jnp.float32(1e-3))
        outs.append((float(m["loss"]), jax.device_get(state["trainable"])))
    for loss, params in outs[1:]:
        assert abs(loss - outs[0][0]) <= 1e-6
        diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(outs[0][1])))
        assert diff <= 1e-6, diff


def test_lora_merge_and_gradients_match_hand_formulas(student, key):
    cfg = lora_lib.LoraConfig(rank=3, alpha=6.0, targets=("q", "down"))
    paths = lora_lib.target_paths(student.params, cfg.targets)
    assert paths == ["layers.0.attn.q.kernel", "layers.0.mlp.down.kernel",
                     "layers.1.attn.q.kernel", "layers.1.mlp.down.kernel"]
    adapters = lora_lib.init(key, student.params, cfg)
    flat = prm.flatten(student.params)
    assert lora_lib.count(adapters) == sum(3 * sum(flat[p].shape) for p in paths)
    # b starts at zero: the merged model is the base model
    merged0 = prm.flatten(lora_lib.merge(student.params, adapters, cfg.scale))
    assert all(np.array_equal(np.asarray(merged0[p]), np.asarray(flat[p])) for p in flat)
    # with random b, W + (alpha / r) a @ b, computed in NumPy float64
    rng = np.random.default_rng(0)
    adapters = {p: {"a": jnp.asarray(rng.normal(size=ab["a"].shape), jnp.float32),
                    "b": jnp.asarray(rng.normal(size=ab["b"].shape) * 0.1, jnp.float32)} for p, ab in adapters.items()}
    merged = prm.flatten(lora_lib.merge(student.params, adapters, cfg.scale))
    for p in paths:
        a, b = (np.asarray(adapters[p][k], np.float64) for k in "ab")
        np.testing.assert_allclose(np.asarray(merged[p]), np.asarray(flat[p], np.float64) + 2.0 * a @ b,
                                   rtol=1e-5, atol=1e-5)

    # chain rule: dL/da = s · dL/dW @ bᵀ and dL/db = s · aᵀ @ dL/dW, with dL/dW at the merged kernel
    seqs = _examples(student.tokenizer, 2)
    batch = {k: v[0] for k, v in _batch(seqs).items()}

    def loss_of(params):
        nll = sft.token_nll(student.graphdef, params, batch["tokens"], batch["positions"], batch["segments"],
                            batch["loss_pos"], batch["loss_targets"])
        return jnp.sum(nll * batch["loss_weights"])

    g_full = prm.flatten(jax.grad(loss_of)(lora_lib.merge(student.params, adapters, cfg.scale)))
    g_lora = jax.grad(lambda ad: loss_of(lora_lib.merge(student.params, ad, cfg.scale)))(adapters)
    for p in paths:
        a, b, gw = (np.asarray(x, np.float64) for x in (adapters[p]["a"], adapters[p]["b"], g_full[p]))
        np.testing.assert_allclose(np.asarray(g_lora[p]["a"]), cfg.scale * gw @ b.T, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(np.asarray(g_lora[p]["b"]), cfg.scale * a.T @ gw, rtol=2e-4, atol=2e-5)


def test_low_rank_path_equals_the_merged_kernels(student, key):
    """Training runs x W + s (x a) b inside the decoder; evaluation and export use W + s a b: same function."""
    cfg = lora_lib.LoraConfig(rank=4, alpha=8.0, targets=("q", "v", "gate", "down"))
    rng = np.random.default_rng(1)
    adapters = {p: {"a": jnp.asarray(rng.normal(size=ab["a"].shape) * 0.3, jnp.float32),
                    "b": jnp.asarray(rng.normal(size=ab["b"].shape) * 0.3, jnp.float32)}
                for p, ab in lora_lib.init(key, student.params, cfg).items()}
    graphdef, _ = mdl.abstract(student.config, lora=lora_lib.spec(cfg, adapters))
    full = lora_lib.insert(student.params, adapters)
    assert set(full["layers"][0]["attn"]["q"]) == {"kernel", "lora_a", "lora_b"}
    assert set(full["layers"][0]["attn"]["k"]) == {"kernel"}
    seqs = _examples(student.tokenizer, 3)
    b = {k: v[0] for k, v in _batch(seqs).items()}
    args = (b["tokens"], b["positions"], b["segments"], b["loss_pos"], b["loss_targets"])
    low_rank = sft.token_nll(graphdef, full, *args)
    merged = sft.token_nll(student.graphdef, lora_lib.merge(student.params, adapters, cfg.scale), *args)
    plain = sft.token_nll(student.graphdef, student.params, *args)
    w = np.asarray(b["loss_weights"]) > 0
    assert np.abs(np.asarray(low_rank) - np.asarray(plain))[w].max() > 1e-2  # the adapters matter
    np.testing.assert_allclose(np.asarray(low_rank)[w], np.asarray(merged)[w], rtol=1e-5, atol=1e-5)


def test_lora_target_that_matches_nothing_is_an_error(student):
    with pytest.raises(ValueError, match=r"LoRA target 'qkv' matches no parameter.*\['down', 'gate', 'k', 'o', 'q'"):
        lora_lib.target_paths(student.params, ("q", "qkv"))
    with pytest.raises(ValueError, match="rank"):
        lora_lib.LoraConfig(rank=0)
    # regexes over full paths select single layers
    assert lora_lib.target_paths(student.params, (r"layers\.1\.attn\.[qv]\.kernel",)) == [
        "layers.1.attn.q.kernel", "layers.1.attn.v.kernel"]


def test_lora_training_moves_only_the_adapters_and_bf16_keeps_float32_masters(student, tmp_path):
    seqs = _examples(student.tokenizer, 4)
    cfg = trainer.TrainConfig(epochs=1, micro_batch=2, seq_len=1024, lr=1e-2, compute_dtype="bfloat16",
                              lora=lora_lib.LoraConfig(rank=4, targets=("q", "v", "up")))
    res = trainer.fit(student, lambda e: seqs, cfg, tmp_path, progress=False)
    run = res["run"]
    floats = [x for x in jax.tree.leaves(run.state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)  # adapters and Adam moments
    base = prm.flatten(student.params)
    merged = prm.flatten(res["params"])
    frozen = prm.flatten(run.frozen)
    assert all(np.array_equal(np.asarray(frozen[p]), np.asarray(base[p])) for p in base)  # base untouched
    changed = {p for p in base if not np.array_equal(np.asarray(merged[p]), np.asarray(base[p]))}
    assert changed == set(lora_lib.target_paths(student.params, ("q", "v", "up")))
    losses = [r["loss"] for r in map(__import__("json").loads, (tmp_path / "train_log.jsonl").read_text().splitlines())
              if "loss" in r]
    assert np.isfinite(losses).all()


def test_bf16_compute_tracks_the_float32_loss(student):
    seqs = _examples(student.tokenizer, 4)
    tx = sft.optimizer(sft.OptimConfig())
    b = _batch(seqs, packed=False, micro_batch=4)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        graphdef, _ = mdl.abstract(student.config, sft.COMPUTE_DTYPES[dtype])
        raw = sft.make_step(graphdef, tx, sft.StepConfig(compute_dtype=dtype))
        state = sft.init_state(jax.tree.map(jnp.array, student.params), tx=tx)
        # the matrix products really run in the compute dtype (not float32 on rounded weights)
        jaxpr = str(jax.make_jaxpr(raw)(state, None, b, jnp.float32(1e-3)))
        want = "bf16" if dtype == "bfloat16" else "f32"
        assert re.search(rf"{want}\[[\d,]+\] = dot_general", jaxpr), dtype
        state, m = jax.jit(raw)(state, None, b, jnp.float32(1e-3))
        losses[dtype] = float(m["loss"])
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state["trainable"]))
    # bf16 has an 8-bit mantissa: the mean loss agrees to its relative precision, not to float32's
    assert abs(losses["bfloat16"] - losses["float32"]) <= 2 ** -7 * losses["float32"], losses
    assert losses["bfloat16"] != losses["float32"]  # it really ran in bf16


def test_compiles_once_per_shape_bucket(student, tmp_path):
    trainer.clear_compiled()
    seqs = _examples(student.tokenizer, 8)
    def order(e):  # the orders pack differently (other rows, other loss-slot counts): still one shape
        return seqs[::-1] if e % 2 else seqs

    packed = trainer.fit(student, order, trainer.TrainConfig(epochs=3, micro_batch=2, seq_len=1024), tmp_path / "p",
                         progress=False)
    assert packed["global_step"] >= 3 and packed["trace_counts"]["train_step"] == 1
    # a second run of the same model and optimizer (another schedule and length) reuses the compiled step
    again = trainer.fit(student, order, trainer.TrainConfig(epochs=2, micro_batch=2, seq_len=1024, lr=3e-4),
                        tmp_path / "p2", progress=False)
    assert again["trace_counts"]["train_step"] == 0
    bucketed = trainer.fit(student, lambda e: seqs, trainer.TrainConfig(epochs=2, micro_batch=2, seq_len=1024,
                                                                         packing=False, weight_decay=0.01),
                           tmp_path / "b", progress=False)
    lay = packing.layout(seqs, 1024, packed=False)
    shapes = {s["tokens"].shape for s in packing.batches(seqs, lay, micro_batch=2)}
    assert bucketed["trace_counts"]["train_step"] == len(shapes) >= 2


def test_a_sweep_with_one_min_loss_slots_compiles_once_and_can_skip_epoch_checkpoints(student, tmp_path):
    trainer.clear_compiled()
    qs = mcqa.load("demo", limit=6)
    answers = ex.tokenize(student.tokenizer, [ex.answer_example(student.tokenizer, q) for q in qs])
    cots = ex.tokenize(student.tokenizer, [ex.cot_example(student.tokenizer, q, q.rationale) for q in qs])
    k_answers = packing.layout(answers, 1024).loss_slots
    k_cots = packing.layout(cots, 1024).loss_slots
    assert k_answers < k_cots  # left alone, the two supervisions are two compiled shapes
    cfg = trainer.TrainConfig(epochs=1, micro_batch=2, seq_len=1024, min_loss_slots=k_cots, checkpoint_epochs=False)
    a = trainer.fit(student, lambda e: answers, cfg, tmp_path / "a", progress=False)
    c = trainer.fit(student, lambda e: cots, cfg, tmp_path / "c", progress=False)
    assert a["trace_counts"]["train_step"] == 1 and c["trace_counts"]["train_step"] == 0
    assert a["run"].data[0][1].loss_slots == c["run"].data[0][1].loss_slots == k_cots
    assert not any((tmp_path / "a" / "checkpoints").glob("*"))  # no epoch-end checkpoint written
    assert packing.slot_bucket(3, 1024) == 16 and packing.slot_bucket(17, 1024) == 32
    assert packing.slot_bucket(200, 1024) == 256 and packing.slot_bucket(600, 512) == 512


def test_sharded_steps_equal_unsharded(student_dir, tmp_path):
    assert jax.device_count() == 8
    mesh = llm.make_mesh(data=2, fsdp=2, tensor=2)
    seqs = _examples(llm.load(student_dir).tokenizer, 8)
    cfg = trainer.TrainConfig(epochs=1, micro_batch=4, accumulation=1, seq_len=512, lr=1e-3)
    logs, params = {}, {}
    for name, m in (("one", None), ("mesh", mesh)):
        lm = llm.load(student_dir, mesh=m)
        res = trainer.fit(lm, lambda e: seqs, cfg, tmp_path / name, progress=False)
        logs[name] = [r["loss"] for r in map(__import__("json").loads,
                                              (tmp_path / name / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
        params[name] = jax.device_get(res["params"])
        if m is not None:  # the kernels really are split over the mesh
            k = res["run"].state["trainable"]["layers"][0]["mlp"]["gate"]["kernel"]
            assert len(k.sharding.device_set) == 8 and k.addressable_shards[0].data.shape != k.shape
    assert len(logs["one"]) >= 2
    np.testing.assert_allclose(logs["mesh"], logs["one"], rtol=0, atol=1e-5)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(params["mesh"]), jax.tree.leaves(params["one"])))
    assert diff <= 1e-5, diff


def test_interrupted_and_resumed_run_ends_with_the_same_params(student, tmp_path):
    seqs = _examples(student.tokenizer, 8)
    cfg = trainer.TrainConfig(epochs=2, micro_batch=1, accumulation=2, seq_len=512, lr=1e-3, warmup_ratio=0.3)

    def order(e):
        return [seqs[i] for i in np.random.default_rng(e).permutation(len(seqs))]

    full = trainer.fit(student, order, cfg, tmp_path / "full", progress=False)
    part = trainer.fit(student, order, cfg, tmp_path / "cut", progress=False, stop_after_steps=3)
    assert part["status"] == "interrupted" and part["global_step"] == 3 < full["global_step"]
    with pytest.raises(FileExistsError, match="resume"):
        trainer.fit(student, order, cfg, tmp_path / "cut", progress=False)
    rest = trainer.fit(student, order, cfg, tmp_path / "cut", progress=False, resume=True)
    assert rest["status"] == "finished" and rest["global_step"] == full["global_step"]
    for a, b in zip(jax.tree.leaves(jax.device_get(rest["params"])), jax.tree.leaves(jax.device_get(full["params"]))):
        assert np.array_equal(a, b)
    # the log of the resumed run holds each step once, with the uninterrupted run's losses
    def losses(d):
        return [(r["step"], r["loss"]) for r in map(__import__("json").loads, (d / "train_log.jsonl").read_text().splitlines())
                if "loss" in r]
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")
    assert [h["cumulative_loss_tokens"] for h in rest["history"]] == [h["cumulative_loss_tokens"] for h in full["history"]]
