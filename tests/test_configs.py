"""Run configs: the settings a resume compares are derived from the config; a config's CLI line rebuilds it."""

from __future__ import annotations

import dataclasses
import importlib
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tyro

from entropy_jax import configs
from entropy_jax.train.lora import LoraConfig
from entropy_jax.train.trainer import TrainConfig

LAUNCHERS = ["mcqa_entropy", "annotate_strata", "finetune", "thinker_answerer", "frontier", "generate",
             "maxent_table1", "maxent_regimes", "nmf_rank", "nmf_stability", "reproduce"]


def _launcher(name):
    return importlib.import_module(f"launch.{name}")


def test_settings_leave_out_runtime_fields_and_nest():
    from launch import finetune

    cfg = finetune.Config(out=Path("/tmp/x"), progress=False, resume=True, data_axis=1,
                          train=TrainConfig(lr=3e-5, save_every=5, lora=LoraConfig(rank=4)))
    s = configs.settings(cfg)
    for runtime_only in ("out", "progress", "resume", "data_axis", "fsdp", "tensor", "export", "traces_cache"):
        assert runtime_only not in s
    assert s["train"]["lr"] == 3e-5 and "save_every" not in s["train"] and "checkpoint_epochs" not in s["train"]
    assert s["train"]["lora"] == {"rank": 4, "alpha": 16.0, "targets": ["q", "k", "v", "o", "gate", "up", "down"]}
    # every other field is compared: a field added to TrainConfig (or the launcher) is compared without a list
    compared = {f.name for f in dataclasses.fields(TrainConfig) if not configs.is_runtime(f)}
    assert set(s["train"]) == compared


@pytest.mark.parametrize("change", [dict(policy="sft"), dict(train=TrainConfig(epochs=2, lr=1e-3)),
                                    dict(train=TrainConfig(epochs=2, lora=LoraConfig(rank=2))),
                                    dict(train=TrainConfig(epochs=2, min_loss_slots=8)), dict(keep_wrong=True)])
def test_a_changed_result_field_is_refused_on_resume_a_runtime_field_is_not(tmp_path, change):
    from entropy_jax.stores import check_settings
    from launch import finetune

    base = finetune.Config(out=tmp_path)
    check_settings(tmp_path, configs.settings(base), holds=["checkpoints"])
    (tmp_path / "checkpoints").mkdir()
    runtime_only = dataclasses.replace(base, progress=False, data_axis=1, export=False,
                                       train=dataclasses.replace(base.train, save_every=3, checkpoint_epochs=False))
    check_settings(tmp_path, configs.settings(runtime_only), holds=["checkpoints"])
    with pytest.raises(ValueError, match="other settings"):
        check_settings(tmp_path, configs.settings(dataclasses.replace(base, **change)), holds=["checkpoints"])


@pytest.mark.parametrize("name", LAUNCHERS)
def test_cli_line_of_a_config_rebuilds_it(name):
    mod = _launcher(name)
    cls = mod.Config
    examples = {
        "mcqa_entropy": dict(model="/models/a b", limit=160, labels="numbers", system="Be brief.", out=Path("r/m"),
                             metrics_only=True, data_axis=-1),
        "annotate_strata": dict(mode="probe", scores=Path("r/mcqa/scores.jsonl"), limit=48),
        "finetune": dict(student="s", train_limit=12, eval_size=24, threshold=0.5, policy="random",
                         train=TrainConfig(epochs=2, micro_batch=2, seq_len=256, lr=3e-5, packing=False,
                                           checkpoint_epochs=False, clip_norm=None,
                                           lora=LoraConfig(rank=4, targets=("q", "v")))),
        "thinker_answerer": dict(thinkers="none,gold,m", answerers="m", limit=32, max_think_tokens=160,
                                 batch_size=16, answer_context=400),
        "frontier": dict(runs=(Path("a"), Path("b")), x="tokens", title="t"),
        "generate": dict(prompt="What is 2 + 2? Say \"4\".", max_new_tokens=48, temperature=0.7, out=Path("g.json")),
        "maxent_table1": dict(priors=8, ms=(35, 7)),
        "maxent_regimes": dict(priors=60, samples=50, alphas=(0.1, 1.0)),
        "nmf_rank": dict(ranks="2:32:2", seeds=4, n_iter=300),
        "nmf_stability": dict(rank=16, noise=0.25, seeds=2),
        "reproduce": dict(quick=True, out=Path("results"), sections=("Chapter 4", "Chapter 5")),
    }
    for kw in ({}, examples[name]):
        cfg = cls(**kw)
        line = configs.cli(f"launch.{name}", cfg, skip=())
        args = shlex.split(line)
        assert args[:3] == ["python", "-m", f"launch.{name}"]
        assert tyro.cli(cls, args=args[3:]) == cfg, line
    assert configs.cli(f"launch.{name}", cls()) == f"python -m launch.{name}"  # defaults: no flags


def test_every_launcher_runs_from_the_checkout_and_its_help_names_its_flags(repo_root):
    out = subprocess.run([sys.executable, "-m", "launch.mcqa_entropy", "--help"], cwd=repo_root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "--metrics-only" in out.stdout and "--n-boot" in out.stdout
