"""bench/plan.py: the JSON interface, `--layers N` against a direct compile, the extrapolation, the mesh search
and the train task with its pass-through step options (tiny sizes, the test process's 8 CPU devices)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from bench import plan as pl
from entropy_jax.llm import LlmConfig
from entropy_jax.llm import model as mdl


def _run(capsys, *argv) -> dict:
    assert pl.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_answer_plan_json_and_agreement_with_a_direct_compile(capsys):
    out = _run(capsys, "--model", "smollm2-135m", "--task", "answer", "--batch", "2", "--tokens", "256",
               "--layers", "2", "--tensor", "1")
    assert set(out["per_device"]) >= {"argument_bytes", "temp_bytes", "output_bytes"}
    assert out["layers_compiled"] == 2 and out["extrapolated"] is False and out["devices"] == 1
    assert set(out["fits"]) == {"H100-80GB", "H200-141GB", "TPUv5p-95GB"} and all(out["fits"].values())
    config = LlmConfig.smollm2_135m().replace(num_layers=2)
    graphdef, params = mdl.abstract(config, jnp.bfloat16)
    ids = jax.ShapeDtypeStruct((2, 256), jnp.int32)
    mask = jax.ShapeDtypeStruct((2, 256), jnp.bool_)
    direct = jax.jit(lambda p, x, m: mdl.forward_last(graphdef, p, x, m)).lower(params, ids, mask).compile()
    ma = direct.memory_analysis()
    assert out["per_device"]["argument_bytes"] == ma.argument_size_in_bytes
    assert out["per_device"]["temp_bytes"] == pytest.approx(ma.temp_size_in_bytes, rel=0.10)
    assert out["flops"] > 2 * 2 * 256 * 2 * config.hidden_size * config.intermediate_size * 3


def test_extrapolation_from_two_and_four_layers_matches_a_full_compile(capsys):
    base = ["--model", "smollm2-135m", "--task", "decode", "--batch", "2", "--tokens", "200", "--cache", "256",
            "--tensor", "1"]
    full_config = LlmConfig.smollm2_135m()
    extrapolated = _run(capsys, *base)
    assert extrapolated["extrapolated"] is True and [m["layers"] for m in extrapolated["measured"]] == [2, 4]
    six = _run(capsys, *base, "--layers", "6")
    # the line through 2 and 4 layers, evaluated at 6, against the compile of 6 layers
    m2, m4 = (m["per_device"] for m in extrapolated["measured"])
    for k in ("argument_bytes", "output_bytes"):
        assert 2 * m4[k] - m2[k] == six["per_device"][k]  # exact: every layer adds its weights and cache
    at_six = 2 * m4["temp_bytes"] - m2["temp_bytes"]
    assert at_six == pytest.approx(six["per_device"]["temp_bytes"], rel=0.10)
    assert extrapolated["layers"] == full_config.num_layers


def test_mesh_search_and_sharded_decode(capsys):
    out = _run(capsys, "--model", "smollm2-135m", "--task", "decode", "--batch", "4", "--tokens", "128",
               "--tensor", "2", "--data", "2", "--layers", "2")
    assert out["mesh"] == {"data": 2, "fsdp": 1, "tensor": 2} and out["devices"] == 4
    one = _run(capsys, "--model", "smollm2-135m", "--task", "decode", "--batch", "4", "--tokens", "128",
               "--layers", "2")
    assert one["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1} and one["tried"] == [[1, 1, 1]]
    # sharding over heads and rows: each device holds less
    assert out["per_device"]["argument_bytes"] < one["per_device"]["argument_bytes"]


def test_train_task_with_lora_and_step_options(capsys):
    out = _run(capsys, "--model", "smollm2-135m", "--task", "train", "--batch", "2", "--tokens", "64",
               "--fsdp", "2", "--layers", "2", "--lora-rank", "4", "--step", "compute_dtype=float32")
    assert out["task"] == "train" and out["lora_rank"] == 4 and out["mesh"]["fsdp"] == 2
    assert out["per_device"]["alias_bytes"] > 0  # the donated train state
    full = _run(capsys, "--model", "smollm2-135m", "--task", "train", "--batch", "2", "--tokens", "64",
                "--fsdp", "2", "--layers", "2")
    # full fine-tuning holds float32 master weights and two Adam moments per parameter
    assert full["per_device"]["argument_bytes"] > 2 * out["per_device"]["argument_bytes"]
    with pytest.raises(SystemExit, match="--step 'no_such_option=1'"):
        pl.main(["--model", "smollm2-135m", "--task", "train", "--batch", "2", "--tokens", "64", "--layers", "2",
                 "--step", "no_such_option=1", "--tensor", "1"])
