"""Run configs: the settings a resume compares are derived from the config; a config's CLI line rebuilds it."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import tyro

from entropy_jax import configs
from entropy_jax.eval.mcqa_run import ScoreConfig
from entropy_jax.eval.strata import JudgeConfig
from entropy_jax.thinking.matrix import MatrixConfig
from entropy_jax.train.lora import LoraConfig
from entropy_jax.train.pipeline import FinetuneConfig
from entropy_jax.train.trainer import TrainConfig


def test_settings_leave_out_runtime_fields_and_nest():
    cfg = FinetuneConfig(export=False, traces_cache=Path("/tmp/t"),
                         train=TrainConfig(lr=3e-5, save_every=5, lora=LoraConfig(rank=4)))
    s = configs.settings(cfg)
    for runtime_only in ("export", "traces_cache"):
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

    base = FinetuneConfig()
    check_settings(tmp_path, configs.settings(base), holds=["checkpoints"])
    (tmp_path / "checkpoints").mkdir()
    runtime_only = dataclasses.replace(base, export=False, traces_cache=tmp_path,
                                       train=dataclasses.replace(base.train, save_every=3, checkpoint_epochs=False))
    check_settings(tmp_path, configs.settings(runtime_only), holds=["checkpoints"])
    with pytest.raises(ValueError, match="other settings"):
        check_settings(tmp_path, configs.settings(dataclasses.replace(base, **change)), holds=["checkpoints"])


@pytest.mark.parametrize("cfg", [
    ScoreConfig(), ScoreConfig(model="/models/a b", limit=160, labels="numbers", system="Be brief."),
    JudgeConfig(mode="probe", scores=Path("r/mcqa/scores.jsonl"), limit=48),
    MatrixConfig(thinkers="none,gold,m", answerers="m", limit=32, answer_context=400),
    FinetuneConfig(), FinetuneConfig(student="s", threshold=0.5, export=False,
                                     train=TrainConfig(epochs=2, micro_batch=2, lr=3e-5, packing=False, clip_norm=None,
                                                       lora=LoraConfig(rank=4, targets=("q", "v")))),
])
def test_cli_line_of_a_library_config_rebuilds_it(cfg):
    line = configs.cli("launch.x", cfg, skip=())
    assert tyro.cli(type(cfg), args=shlex.split(line)[3:]) == cfg, line
    assert configs.cli("launch.x", type(cfg)()) == "python -m launch.x"  # defaults: no flags
    if isinstance(cfg, FinetuneConfig) and cfg.train.lora is not None:  # the LoRA subcommand comes last
        assert line.endswith("train.lora:lora-config --train.lora.rank 4 --train.lora.targets q v"), line
