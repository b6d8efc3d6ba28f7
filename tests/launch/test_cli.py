"""The launchers' command lines: every launcher's config round-trips through the CLI line `configs.cli` writes
(the "reproduce with" commands of REPORT.md), every console script is a launcher's `cli`, and the launchers run
from a checkout."""

from __future__ import annotations

import importlib
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tyro

from entropy_jax import configs
from entropy_jax.train.lora import LoraConfig
from entropy_jax.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
LAUNCHERS = ["mcqa_entropy", "annotate_strata", "finetune", "thinker_answerer", "frontier", "generate",
             "maxent_table1", "maxent_regimes", "nmf_rank", "nmf_stability", "reproduce"]


def _launcher(name):
    return importlib.import_module(f"launch.{name}")


@pytest.mark.parametrize("name", LAUNCHERS)
def test_cli_line_of_a_config_rebuilds_it(name):
    mod = _launcher(name)
    cls = mod.Config
    examples = {
        "mcqa_entropy": dict(model="/models/a b", limit=160, labels="numbers", system="Be brief.", out=Path("r/m"),
                             metrics_only=True, data_axis=-1, prompt="mmlu", instruction="none",
                             fewshot=Path("dev 5.jsonl"), lm_eval_samples=Path("r/lm"), lm_eval_task="mmlu_x"),
        "annotate_strata": dict(mode="probe", scores=Path("r/mcqa/scores.jsonl"), limit=48, prompt="plain",
                                instruction="Rate {labels}: \"carefully\"."),
        "finetune": dict(student="s", train_limit=12, eval_size=24, threshold=0.5, policy="random", prompt="plain",
                         fewshot=Path("shots.jsonl"),
                         train=TrainConfig(epochs=2, micro_batch=2, seq_len=256, lr=3e-5, packing=False,
                                           checkpoint_epochs=False, clip_norm=None,
                                           lora=LoraConfig(rank=4, targets=("q", "v")))),
        "thinker_answerer": dict(thinkers="none,gold,m", answerers="m", limit=32, max_think_tokens=160,
                                 batch_size=16, answer_context=400, instruction="none", prompt="mmlu"),
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




def test_every_console_script_is_a_launcher_cli():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    # the one script that is not a launcher: lm-eval's CLI with our backend registered
    assert scripts.pop("entropy-jax-lm-eval") == "entropy_jax.eval.lm_eval:main"
    assert sorted(target.split(":")[0].rsplit(".", 1)[1] for target in scripts.values()) == sorted(LAUNCHERS)
    for name, target in scripts.items():
        module, func = target.split(":")
        stem = module.rsplit(".", 1)[1]
        assert module == f"entropy_jax.launch.{stem}" and func == "cli"
        assert name == f"entropy-jax-{stem.replace('_', '-')}"
        assert callable(_launcher(stem).cli)


def test_a_launcher_runs_from_the_checkout_and_its_help_names_its_flags(repo_root):
    out = subprocess.run([sys.executable, "-m", "launch.mcqa_entropy", "--help"], cwd=repo_root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "--metrics-only" in out.stdout and "--n-boot" in out.stdout
