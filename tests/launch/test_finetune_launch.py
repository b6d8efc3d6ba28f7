"""launch.finetune and launch.frontier end to end on tiny random chat models (offline)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from entropy_jax.train import LoraConfig, TrainConfig
from launch import finetune, frontier
from tests.train.conftest import tiny_chat_model

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
def test_report_section_runs_all_six_policies(models, tmp_path, monkeypatch):
    from entropy_jax.train import gating, pipeline
    from launch import reproduce

    student, _ = models
    scored = []
    real = gating.answer_entropies
    monkeypatch.setattr(gating, "answer_entropies", lambda *a, **k: scored.append(len(a[1])) or real(*a, **k))
    config = reproduce.Config(quick=True, out=tmp_path, progress=False)
    text = reproduce.chapter4(config, student=str(student), sizes=dict(train_limit=12, eval_size=8, epochs=1))
    # the gating entropies and the untrained evaluation are the same for every policy: computed by the first run
    # of the sweep, the same files in every run
    assert scored == [12]
    for name in ("gating.json", "eval/epoch_000.json"):
        files = {p.parent.name if name == "gating.json" else p.parent.parent.name: p.read_bytes()
                 for p in (tmp_path / "finetune").glob(f"*/{name}")}
        assert len(files) == 6 and len(set(files.values())) == 1, name
    # what is shared is keyed by content: other labels are another key, scored afresh
    import entropy_jax.llm as llm

    base = pipeline.FinetuneConfig(student=str(student), train_data="demo", eval_data="demo", train_limit=12,
                                   eval_size=8)
    train, _ = pipeline.split_questions(base)
    reuse: dict = {}
    lm = llm.load(str(student))
    pipeline.gate(base, lm, train, tmp_path / "a", reuse=reuse)
    pipeline.gate(base, lm, train, tmp_path / "b", reuse=reuse)
    pipeline.gate(dataclasses.replace(base, labels="numbers"), lm, train, tmp_path / "c", reuse=reuse)
    assert scored == [12, 12, 12] and len(reuse) == 2
    assert (tmp_path / "a" / "gating.json").read_bytes() == (tmp_path / "b" / "gating.json").read_bytes()
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
