"""launch.finetune and launch.frontier end to end on tiny random chat models (offline)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from entropy_jax.train import LoraConfig, TrainConfig
from launch import finetune, frontier
from tests.train.conftest import tiny_chat_model

ROOT = Path(__file__).resolve().parents[2]
SMALL_TRAIN = TrainConfig(epochs=2, micro_batch=2, seq_len=512, lr=2e-3)
SMALL = dict(train_limit=12, eval_size=8, score_batch=4, progress=False, data_axis=1, train=SMALL_TRAIN)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A student and a teacher of another family, seed and vocabulary order (their tokenizers disagree)."""
    root = tmp_path_factory.mktemp("ft_models")
    student = tiny_chat_model(root / "student", "llama")
    teacher = tiny_chat_model(root / "teacher", "qwen2", seed=1)
    tok = json.loads((teacher / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    n_special = 4
    plain = sorted((t for t in vocab if vocab[t] >= n_special), key=vocab.get)
    # reverse the ids of the ordinary characters: the same text becomes other ids
    tok["model"]["vocab"] = {t: i for t, i in vocab.items() if i < n_special} | {
        t: n_special + len(plain) - 1 - k for k, t in enumerate(plain)}
    (teacher / "tokenizer.json").write_text(json.dumps(tok))
    return student, teacher


def _safetensors(directory: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.entry
@pytest.mark.slow
def test_gated_run_with_a_model_teacher_writes_everything_and_exports(models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from entropy_jax import llm

    student, teacher = models
    assert AutoTokenizer.from_pretrained(str(student))("A. 3")["input_ids"] != \
        AutoTokenizer.from_pretrained(str(teacher))("A. 3")["input_ids"]
    out = tmp_path / "sweep" / "gated"
    s = finetune.main(finetune.Config(student=str(student), teacher=str(teacher), policy="gated", out=out,
                                      keep_wrong=True, teacher_max_new_tokens=16, hard_quantile=0.5, **SMALL))
    assert s["status"] == "finished" and s["n_train"] == 12 and s["n_eval"] == 8
    bands = json.loads((out / "bands.json").read_text())
    assert bands["method"] == "quantile" and bands["sizes"] == {"regular": 6, "hard": 6}
    plan = json.loads((out / "plan.json").read_text())
    assert plan["by_band"] == {"regular": {"answer": 6, "cot": 0}, "hard": {"answer": 0, "cot": 6}}
    # the teacher generated every hard trace once: tokens are counted in the first epoch only
    assert s["teacher"]["generated_questions"] == 12 and s["teacher"]["generated_tokens"] > 0
    hist = s["history"]
    assert [h["epoch"] for h in hist] == [0, 1]
    assert hist[0]["teacher_tokens_generated"] == s["teacher"]["generated_tokens"] and hist[1]["teacher_tokens_generated"] == 0
    for h in hist:
        assert h["loss_tokens_by_kind"].keys() == {"answer", "cot"} and 0 < h["loss_tokens"] < h["tokens"]
        assert 0 <= h["eval"]["accuracy"] <= 1 and h["eval"]["n"] == 8
    assert hist[1]["cumulative_loss_tokens"] == 2 * hist[0]["loss_tokens"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, s["global_step"] + 1))
    assert s["train_step_traces"] <= 1  # 0 when an earlier test in this process compiled the same step
    assert (out / "eval" / "epoch_000.json").exists() and (out / "eval" / "epoch_002.json").exists()

    # the exported model: transformers-torch and our loader both reproduce the fine-tuned weights' logits
    final = out / "final"
    assert s["export"]["verification"]["ok"] and s["export"]["verification"]["transformers_max_abs_diff"] <= 1e-4
    trained = llm.load(final)
    ids = trained.encode(["What is 2 + 2?", "Name a colour."], chat=True)
    width = max(map(len, ids))
    batch = np.zeros((2, width), np.int64)
    mask = np.zeros((2, width), np.int64)
    for i, row in enumerate(ids):
        batch[i, width - len(row):], mask[i, width - len(row):] = row, 1
    ours = np.asarray(trained.logits(batch, mask))
    ref = AutoModelForCausalLM.from_pretrained(str(final), dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = ref(input_ids=torch.as_tensor(batch), attention_mask=torch.as_tensor(mask)).logits.numpy()
    assert np.abs(ours - theirs)[mask.astype(bool)].max() <= 1e-4
    before = _safetensors(student)
    after = _safetensors(final)
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # training changed the weights

    # a second policy of the sweep reuses the cached traces; the frontier plots both
    s2 = finetune.main(finetune.Config(student=str(student), teacher=str(teacher), policy="random", out=out.parent / "random",
                                       keep_wrong=True, teacher_max_new_tokens=16, hard_quantile=0.5, export=False, **SMALL))
    assert s2["teacher"]["generated_tokens"] == 0 and s2["teacher"]["cached_questions"] == 12
    res = frontier.main(frontier.Config(sweep=out.parent, progress=False))
    assert [r["policy"] for r in res["runs"]] == ["gated", "random"]
    for r in res["runs"]:
        pts = r["points"]
        assert [p["epoch"] for p in pts] == [0, 1, 2] and pts[0]["tokens"] == 0 < pts[1]["tokens"] < pts[2]["tokens"]
    assert (out.parent / "frontier.png").stat().st_size > 0 and "| gated |" in (out.parent / "frontier.md").read_text()


def _launch(out: Path, student: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "launch.finetune", "--student", str(student), "--policy", "distill", "--out", str(out),
           "--train-limit", "12", "--eval-size", "8", "--train.epochs", "2", "--train.micro-batch", "1",
           "--train.seq-len", "512", "--train.lr", "2e-3", "--score-batch", "4", "--train.save-every", "1",
           "--no-progress", "--no-export", "--data-axis", "1", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_steps(out: Path, proc: subprocess.Popen, n: int, timeout: float = 300) -> None:
    log = out / "train_log.jsonl"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"finished before step {n}: {proc.communicate()[0]}")
        if log.exists() and sum('"loss"' in line for line in log.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    raise AssertionError(f"no step {n} within {timeout} s")


@pytest.mark.entry
@pytest.mark.slow
def test_kill_9_then_sigterm_then_resume_ends_with_the_uninterrupted_params(models, tmp_path):
    import orbax.checkpoint as ocp

    student, _ = models
    common = dict(policy="distill", train_limit=12, eval_size=8, score_batch=4, progress=False, export=False,
                  data_axis=1, train=TrainConfig(epochs=2, micro_batch=1, seq_len=512, lr=2e-3, save_every=1))
    full = finetune.main(finetune.Config(student=str(student), out=tmp_path / "full", **common))
    assert full["global_step"] >= 8

    cut = tmp_path / "cut"
    proc = _launch(cut, student)
    _wait_for_steps(cut, proc, 3)
    proc.send_signal(signal.SIGKILL)  # kill -9: no handler runs, maybe mid-save
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    proc = _launch(cut, student, "--resume")
    _wait_for_steps(cut, proc, 6)
    proc.send_signal(signal.SIGTERM)  # graceful: saves a checkpoint at the current step and exits 128 + 15
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "resume with --resume" in output
    status = json.loads((cut / "summary.json").read_text())
    assert status["status"] == "interrupted" and status["global_step"] < full["global_step"]

    rest = finetune.main(finetune.Config(student=str(student), out=cut, resume=True, **common))
    assert rest["status"] == "finished" and rest["global_step"] == full["global_step"]

    def final_params(d):
        mgr = ocp.CheckpointManager(d / "checkpoints")
        step = mgr.latest_step()
        tree = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]["trainable"]
        mgr.close()
        return step, tree

    import jax

    (s1, a), (s2, b) = final_params(tmp_path / "full"), final_params(cut)
    assert s1 == s2 == full["global_step"]
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 10
    for x, y in zip(leaves_a, leaves_b):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert [h["eval"]["accuracy"] for h in rest["history"]] == [h["eval"]["accuracy"] for h in full["history"]]
    losses = [[(r["step"], r["loss"]) for r in map(json.loads, (d / "train_log.jsonl").read_text().splitlines())
               if "loss" in r] for d in (tmp_path / "full", cut)]
    assert losses[0] == losses[1]

    # a resumed run must keep the settings of the run it continues
    with pytest.raises(ValueError, match="other settings"):
        finetune.main(finetune.Config(student=str(student), out=cut, resume=True,
                                      **(common | {"train": dataclasses.replace(common["train"], lr=1e-3)})))


@pytest.mark.entry
def test_bad_inputs_are_clear_errors(models, tmp_path):
    student, _ = models
    no_answers = tmp_path / "no_answers.jsonl"
    no_answers.write_text('{"id": "a", "question": "2 + 2?", "options": ["3", "4"]}\n')
    with pytest.raises(ValueError, match=r"no_answers.jsonl, line 1: missing field 'answer'"):
        finetune.main(finetune.Config(student=str(student), train_data=str(no_answers), out=tmp_path / "a", **SMALL))
    with pytest.raises(ValueError, match=r"LoRA target 'qkv_proj' matches no parameter"):
        lora = LoraConfig(rank=4, targets=("q", "qkv_proj"))
        finetune.main(finetune.Config(student=str(student), out=tmp_path / "b",
                                      **(SMALL | {"train": dataclasses.replace(SMALL_TRAIN, lora=lora)})))
    with pytest.raises(ValueError, match="hard band is empty"):
        finetune.main(finetune.Config(student=str(student), out=tmp_path / "c", threshold=1e9, **SMALL))
    with pytest.raises(ValueError, match="--policy: must be one of .*got 'cot'"):
        finetune.main(finetune.Config(student=str(student), out=tmp_path / "d", policy="cot", **SMALL))
    with pytest.raises(ValueError, match="--sweep: no such directory"):
        frontier.main(frontier.Config(sweep=tmp_path / "empty", progress=False))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no launch.finetune runs"):
        frontier.main(frontier.Config(sweep=tmp_path / "empty", progress=False))


@pytest.mark.entry
@pytest.mark.slow
def test_report_section_runs_all_six_policies(models, tmp_path):
    from launch import reproduce

    student, _ = models
    config = reproduce.Config(quick=True, out=tmp_path, progress=False)
    text = reproduce.chapter4(config, student=str(student), sizes=dict(train_limit=12, eval_size=8, epochs=1))
    assert text.startswith("## Chapter 4")
    for name in ("sft", "distill", "gated", "curriculum", "gated_inverse", "random"):
        assert f"| {name} |" in text
        assert (tmp_path / "finetune" / name / "summary.json").exists()
    assert "![Accuracy–token frontier](finetune/frontier.png)" in text
    assert (tmp_path / "finetune" / "frontier.png").stat().st_size > 0
    assert (tmp_path / "finetune" / "gated" / "final" / "config.json").exists()  # only gated is exported
    assert not (tmp_path / "finetune" / "sft" / "final").exists()
    sums = {n: json.loads((tmp_path / "finetune" / n / "summary.json").read_text()) for n in ("sft", "distill", "gated")}
    # distillation supervises whole traces: more loss-bearing tokens than answer-only SFT; gated lies between
    tokens = {n: s["final"]["loss_tokens"] for n, s in sums.items()}
    assert tokens["sft"] < tokens["gated"] < tokens["distill"], tokens


@pytest.mark.entry
def test_a_truncated_or_foreign_summary_in_a_sweep_is_an_error_naming_the_file(tmp_path):
    from entropy_jax.stores import StoreError

    summary = {"settings": {"policy": "sft", "student": "s", "train_data": "demo"}, "base_eval": {"accuracy": 0.5},
               "history": [{"epoch": 0, "cumulative_loss_tokens": 10, "cumulative_tokens": 20,
                            "eval": {"accuracy": 0.75}}], "plan": {"answer": 4, "cot": 0}}
    for policy in ("sft", "gated"):
        (tmp_path / policy).mkdir()
        (tmp_path / policy / "summary.json").write_text(json.dumps(summary | {"settings": summary["settings"]
                                                                              | {"policy": policy}}))
    cut = tmp_path / "gated" / "summary.json"
    cut.write_text(cut.read_text()[:60])  # a copy cut short, a disk filled while writing
    with pytest.raises(StoreError, match=rf"^{cut}: not a readable summary \(.*line 1.*\); rerun that run or leave "
                                         "it out$"):
        frontier.main(frontier.Config(sweep=tmp_path, progress=False))
    with pytest.raises(SystemExit) as e:
        frontier.cli(["--sweep", str(tmp_path), "--no-progress"])
    assert str(e.value).startswith(f"error: {cut}: not a readable summary")
    cut.write_text('{"status": "finished"}')  # JSON, but not a run's summary
    with pytest.raises(StoreError, match=rf"^{cut}: not a launch.finetune summary \(no settings, base_eval, history, "
                                         r"plan\)"):
        frontier.main(frontier.Config(sweep=tmp_path, progress=False))
    assert not (tmp_path / "frontier.json").exists() and not (tmp_path / "frontier.png").exists()
    cut.write_text(json.dumps(summary | {"settings": summary["settings"] | {"policy": "gated"}}))  # rerun: it plots
    assert [r["policy"] for r in frontier.main(frontier.Config(sweep=tmp_path, progress=False))["runs"]] == ["gated", "sft"]
