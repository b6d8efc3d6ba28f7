"""Params pytree → Hugging Face directory (`export.py`), checked against transformers' torch models and our loader.

Every export is of perturbed params (seeded noise on every tensor, norms and biases included), so a correct
reload cannot come from copying the source files; the references are transformers' own reading of the written
directory and our forward on the params in memory.
"""

from __future__ import annotations

import json
import re

import jax
import ml_dtypes
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from entropy_jax import llm
from entropy_jax.llm import export, model
from entropy_jax.llm.config import LlmConfig, RopeConfig
from tests.llm.conftest import FAMILIES, VOCAB, ragged_batch, reference

ALL = sorted(FAMILIES)
ATOL = 1e-4
LENGTHS = [19, 11, 4, 19]  # left-padded rows; 19 > 16 also crosses Phi-3's original context (long factors)


def _perturb(params, rng, scale=0.05):
    """params + seeded Gaussian noise (float32), every leaf changed."""
    return jax.tree.map(lambda x: np.asarray(x, np.float32) + scale * rng.standard_normal(x.shape, np.float32),
                        params)


def _random_params(config, rng):
    """Random float32 params of `config`'s shapes (eager `init_params` costs seconds per config)."""
    return jax.tree.map(lambda a: 0.3 * rng.standard_normal(a.shape, np.float32), model.abstract(config)[1])


def _torch_logits(directory, ids, mask):
    with torch.no_grad():
        return reference(directory)(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


# `LanguageModel.logits` is this pure forward plus shape bucketing; one jitted function for the whole file, so
# our reference forward and the forward on reloaded params (same graphdef and shapes) share one compilation.
_FORWARD = jax.jit(llm.forward, static_argnums=0)


def _ours(config, params, ids, mask):
    """Our float32 logits for a params pytree in memory."""
    graphdef, _ = model.abstract(config)
    return np.asarray(_FORWARD(graphdef, params, ids, mask))


def _max_diff(a, b, mask):
    return float(np.abs(a - b)[mask.astype(bool)].max())


def _header(path) -> dict:
    """The JSON header of a safetensors file, read by hand (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def _tensors(directory) -> dict[str, np.ndarray]:
    out = {}
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), framework="np") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


# ---------------------------------------------------------------------------------------------- every family
@pytest.mark.parametrize("family", ALL)
def test_perturbed_export_matches_transformers_and_our_reload(family, tiny, tmp_path, rng):
    src = tiny(family)
    lm = llm.load(src)
    params = _perturb(lm.params, rng)
    out = tmp_path / "export"
    result = export.save_lm(lm, out, params=params)
    assert result.files == ("model.safetensors",) and (out / "config.json").exists()

    # the same tensor names and shapes as transformers' own checkpoint (fused Phi-3 projections, no lm_head
    # when tied), but new values
    written, original = _tensors(out), _tensors(src)
    assert {k: v.shape for k, v in written.items()} == {k: v.shape for k, v in original.items()}
    assert all(not np.array_equal(written[k], original[k]) for k in written)
    assert result.total_bytes == sum(v.nbytes for v in written.values())

    _, ids, mask = ragged_batch(rng, LENGTHS)
    ours = _ours(lm.config, params, ids, mask)
    theirs = _torch_logits(out, ids, mask)
    assert _max_diff(ours, theirs, mask) <= ATOL

    again = llm.load(out)
    assert again.config == lm.config
    _leaves_equal(again.params, params)  # float32 export: bit-exact
    assert _max_diff(_ours(again.config, again.params, ids, mask), ours, mask) <= ATOL

    report = export.verify_export(out, params, ids, mask)
    assert report["ok"] and report["dtype"] == "float32"
    assert report["reload_max_abs_diff"] <= ATOL and report["transformers_max_abs_diff"] <= ATOL


# ---------------------------------------------------------------------------------------------- config.json from LlmConfig
def _tiny(family, **kw) -> LlmConfig:
    base = dict(family=family, vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
                num_kv_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=1,
                eos_token_ids=(2,), pad_token_id=0)
    return LlmConfig(**{**base, **kw})


# No source config.json: each family's config.json is built by `to_hf_config`, with the features its transformers
# config can express switched on.
BUILT = {
    "llama": _tiny("llama", rope=RopeConfig(theta=20000.0, type="linear", factor=2.0), qkv_bias=True, o_bias=True,
                   mlp_bias=True, eos_token_ids=(2, 5)),
    "qwen2": _tiny("qwen2", qkv_bias=True, tie_word_embeddings=True, sliding_windows=(None, 6),
                   rope=RopeConfig(theta=1e6)),
    "qwen3": _tiny("qwen3", head_dim=32, qk_norm=True, qkv_bias=True, o_bias=True, rms_norm_eps=1e-6),
    "phi3": _tiny("phi3", sliding_windows=(12, 12), tie_word_embeddings=True,
                  rope=RopeConfig(type="longrope", original_max_position_embeddings=16, partial_rotary_factor=0.5,
                                  short_factor=(1.0, 1.2, 1.5, 2.0), long_factor=(2.0, 3.0, 4.0, 6.0))),
}


@pytest.mark.parametrize("family", sorted(BUILT))
def test_config_built_from_llmconfig_round_trips_and_loads_in_transformers(family, tmp_path, rng):
    config = BUILT[family]
    hf = export.to_hf_config(config)
    assert LlmConfig.from_hf(hf) == config
    assert hf["model_type"] == family and hf["architectures"] == [export.ARCHITECTURES[family]]

    params = _random_params(config, rng)  # norms and biases random too, not ones and zeros
    lm = llm.from_params(config, model.abstract(config)[0], params)
    result = export.save_lm(lm, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(json.dumps(hf))
    assert json.loads((tmp_path / "generation_config.json").read_text()) == {
        "bos_token_id": 1, "eos_token_id": list(config.eos_token_ids) if len(config.eos_token_ids) > 1 else 2,
        "pad_token_id": 0}
    # transformers' own parse of the directory reads back as the same config
    parsed = transformers.AutoConfig.from_pretrained(str(tmp_path))
    assert type(parsed).__name__ == {"llama": "LlamaConfig", "qwen2": "Qwen2Config", "qwen3": "Qwen3Config",
                                     "phi3": "Phi3Config"}[family]
    assert LlmConfig.from_hf(parsed.to_dict()) == config

    _, ids, mask = ragged_batch(rng, LENGTHS)
    ours = _ours(config, params, ids, mask)
    assert _max_diff(ours, _torch_logits(tmp_path, ids, mask), mask) <= ATOL
    assert result.verification is None


# ---------------------------------------------------------------------------------------------- shards and dtypes
def test_sharded_export_writes_an_index_both_loaders_read(tiny, tmp_path, rng):
    lm = llm.load(tiny("qwen2"))
    params = _perturb(lm.params, rng)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    export.save_lm(lm, single, params=params)
    limit = 20_000  # the 160×64 float32 embedding and lm_head (40 kB) get shards of their own
    result = export.save_lm(lm, sharded, params=params, max_shard_bytes=limit)

    n = len(result.files)
    assert n > 3 and result.files == tuple(f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1))
    assert sorted(p.name for p in sharded.glob("*.safetensors")) == list(result.files)
    assert not (sharded / "model.safetensors").exists() and not list(sharded.glob("*.partial"))
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    headers = {f: _header(sharded / f) for f in result.files}
    for f, h in headers.items():
        names = [k for k in h if k != "__metadata__"]
        assert h["__metadata__"] == {"format": "pt"}
        assert all(index["weight_map"][k] == f for k in names)
        size = sum(h[k]["data_offsets"][1] - h[k]["data_offsets"][0] for k in names)
        assert size <= limit or len(names) == 1
    whole = _tensors(single)
    assert set(index["weight_map"]) == set(whole) == {k for h in headers.values() for k in h if k != "__metadata__"}
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in whole.values()) == result.total_bytes

    # both loaders read the shards as the single file
    _leaves_equal(llm.load(sharded).params, llm.load(single).params)
    a, b = reference(sharded).state_dict(), reference(single).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _, ids, mask = ragged_batch(rng, LENGTHS)
    assert _max_diff(_torch_logits(sharded, ids, mask), _ours(lm.config, params, ids, mask), mask) <= ATOL


def test_bfloat16_export_stores_bf16_and_reloads_as_the_rounded_model(tiny, tmp_path, rng):
    lm = llm.load(tiny("llama"))
    params = _perturb(lm.params, rng)
    export.save_lm(lm, tmp_path, params=params, dtype="bfloat16")

    header = _header(tmp_path / "model.safetensors")
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    stored = _tensors(tmp_path)["model.layers.1.self_attn.q_proj.weight"]
    q = np.asarray(params["layers"][1]["attn"]["q"]["kernel"])
    assert stored.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(stored.view(np.uint16), q.T.astype(ml_dtypes.bfloat16).view(np.uint16))

    rounded = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16).astype(np.float32), params)
    _, ids, mask = ragged_batch(rng, LENGTHS)
    expected = _ours(lm.config, rounded, ids, mask)
    unrounded = _ours(lm.config, params, ids, mask)
    assert _max_diff(expected, unrounded, mask) > 10 * ATOL  # the rounding is visible at this tolerance
    assert _max_diff(_ours(lm.config, llm.load(tmp_path).params, ids, mask), expected, mask) <= ATOL
    assert _max_diff(_torch_logits(tmp_path, ids, mask), expected, mask) <= ATOL

    # verify_export given the LanguageModel (config from it, not from config.json)
    report = export.verify_export(tmp_path, llm.from_params(lm.config, lm.graphdef, params), ids, mask)
    assert report["ok"] and report["dtype"] == "bfloat16"
    assert report["reload_max_abs_diff"] <= ATOL and report["transformers_max_abs_diff"] <= ATOL


# ---------------------------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def small():
    config = _tiny("llama")
    return config, _random_params(config, np.random.default_rng(1))


def _edit(params, edit):
    copy = jax.tree.map(np.copy, params)
    edit(copy)
    return copy


def test_missing_extra_or_misshapen_params_are_named(small, tmp_path):
    config, params = small
    cases = {
        "layers.1.mlp.up.kernel": lambda p: p["layers"][1]["mlp"]["up"].pop("kernel"),
        "layers.0.attn.q.bias": lambda p: p["layers"][0]["attn"]["q"].update(bias=np.zeros(64, np.float32)),
        "layers.0.attn.k.kernel: (64, 16) vs (64, 32)":
            lambda p: p["layers"][0]["attn"]["k"].update(kernel=np.zeros((64, 16), np.float32)),
    }
    for name, edit in cases.items():
        with pytest.raises(export.ExportError, match=re.escape(name)):
            export.save_pretrained(config, _edit(params, edit), tmp_path / "out")
        assert not (tmp_path / "out").exists()  # nothing written


def test_non_finite_params_are_refused_before_anything_is_written(small, tmp_path):
    config, params = small
    good = tmp_path / "good"
    export.save_pretrained(config, params, good, max_shard_bytes=10_000)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    for bad in (np.nan, np.inf):
        broken = _edit(params, lambda p, bad=bad: p["layers"][1]["attn"]["o"]["kernel"].__setitem__((3, 5), bad))
        with pytest.raises(export.ExportError, match=r"NaN or inf.*layers\.1\.attn\.o\.kernel"):
            export.save_pretrained(config, broken, tmp_path / "fresh", max_shard_bytes=10_000)
        assert not (tmp_path / "fresh").exists()
        # refused before the previous export is touched, even with overwrite=True
        with pytest.raises(export.ExportError, match=r"NaN or inf"):
            export.save_pretrained(config, broken, good, max_shard_bytes=10_000, overwrite=True)
        assert {p.name: p.read_bytes() for p in good.iterdir()} == before


def test_existing_checkpoint_needs_overwrite_which_removes_stale_shards(small, tmp_path):
    config, params = small
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("not a checkpoint")
    export.save_pretrained(config, params, out)  # a directory without a checkpoint is fine
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.save_pretrained(config, params, out)
    only_config = tmp_path / "only_config"
    only_config.mkdir()
    (only_config / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="config.json"):
        export.save_pretrained(config, params, only_config)

    # single file → shards: model.safetensors goes; shards → single file: every shard and the index go
    sharded = export.save_pretrained(config, params, out, max_shard_bytes=10_000, overwrite=True)
    assert sorted(p.name for p in out.glob("model*")) == sorted([*sharded.files, "model.safetensors.index.json"])
    changed = _edit(params, lambda p: p["norm"].__setitem__("scale", p["norm"]["scale"] * 2))
    export.save_pretrained(config, changed, out, overwrite=True)
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]
    assert (out / "README.md").exists()
    _leaves_equal(llm.load(out).params, changed)


def test_unexportable_configs_are_export_errors(small, tmp_path):
    config, params = small
    partial = config.replace(rope=RopeConfig(partial_rotary_factor=0.5))  # transformers: phi3 only
    with pytest.raises(export.ExportError, match=r"partial_rotary_factor=0\.5 .*phi3.*not llama"):
        export.to_hf_config(partial)
    with pytest.raises(export.ExportError, match="partial_rotary_factor"):
        export.save_pretrained(partial, params, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # Llama has one attention_bias flag for q/k/v and o: o_proj bias alone would read back differently
    o_only = config.replace(o_bias=True)
    with pytest.raises(export.ExportError, match="o_bias"):
        export.save_pretrained(o_only, _random_params(o_only, np.random.default_rng(0)), tmp_path / "out")
    with pytest.raises(export.ExportError, match="sliding"):
        export.to_hf_config(config.replace(sliding_windows=(8, None)))
    with pytest.raises(export.ExportError, match="num_layers"):  # a source config.json of another model
        export.save_pretrained(config, params, tmp_path / "out",
                               hf_config={**export.to_hf_config(config), "num_hidden_layers": 3})
    with pytest.raises(ValueError, match="int8"):
        export.save_pretrained(config, params, tmp_path / "out", dtype="int8")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_saved_with_the_export_loads_back(tiny_chat, tmp_path, rng):
    src = tiny_chat("qwen2")
    lm = llm.load(src)
    export.save_lm(lm, tmp_path, params=_perturb(lm.params, rng))
    original = transformers.AutoTokenizer.from_pretrained(str(src))
    back = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    text = "Entropy of 2+2=4?\n  {x: 'y'} ~ <|im_end|>"
    assert back(text)["input_ids"] == original(text)["input_ids"]
    assert back.convert_ids_to_tokens(back(text)["input_ids"])[-1] == "<|im_end|>"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    assert (back.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            == original.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    assert (back.eos_token_id, back.pad_token_id) == (original.eos_token_id, original.pad_token_id)
    assert llm.load(tmp_path).encode(["Hi!"], chat=True) == lm.encode(["Hi!"], chat=True)
    assert json.loads((tmp_path / "generation_config.json").read_text()) == json.loads(
        (src / "generation_config.json").read_text())


def test_an_interrupted_write_leaves_no_partial_file(small, tmp_path, monkeypatch):
    config, params = small
    calls = {"n": 0}
    host = export._host

    def failing(x):  # the disk fills up (or the job is killed) while the third tensor is written
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("No space left on device")
        return host(x)

    monkeypatch.setattr(export, "_host", failing)
    with pytest.raises(OSError, match="No space"):
        export.save_pretrained(config, params, tmp_path)
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.safetensors"))
