"""lm-evaluation-harness end to end: the `entropy_jax` backend against lm-eval's own HF backend.

A tiny random Llama (transformers + torch, saved in-process) with a byte-level BPE tokenizer trained on
the task's own text (so " A" and "A" are different tokens, as in real vocabularies) and a 64-token
context window (so contexts are truncated from the left, rolling windows roll, generation contexts are
cut); three local tasks written into tmp_path (multiple choice, rolling log-likelihood, generation), read
offline through `dataset_path: json`. Skipped only when lm-eval is not installed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("torch")  # the HF reference (torch is in the test extra)

import lm_eval
import lm_eval.evaluator
import torch
import transformers
from lm_eval.api.instance import Instance
from lm_eval.loggers import EvaluationTracker
from lm_eval.tasks import TaskManager

from entropy_jax.data.mcqa import DEMO_PATH
from entropy_jax.eval import metrics as M
from entropy_jax.eval.lm_eval import EntropyJaxLM
from entropy_jax.eval.log_samples import read_log_samples, rows_from_samples
from tests.llm.conftest import build

ROOT = Path(__file__).resolve().parents[2]
N_DOCS = 6
CONTEXT = 64
MC_TEXT = ("{{question.strip()}}\\nA. {{options[0]}}\\nB. {{options[1]}}\\nC. {{options[2]}}\\nD. {{options[3]}}"
           "\\nAnswer:")


def _tokenizer(texts):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>",
                                                bos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model directory, task directory, the documents) — built once for the module."""
    root = tmp_path_factory.mktemp("lm_eval")
    docs = [json.loads(line) for line in DEMO_PATH.read_text().splitlines()]
    docs = docs[:N_DOCS // 2] + docs[-(N_DOCS - N_DOCS // 2):]  # both strata
    texts = [d["question"] + "\n" + "\n".join(f"{lab}. {o}" for lab, o in zip("ABCD", d["options"]))
             + "\nAnswer: A B C D" for d in docs]
    tok = _tokenizer(texts)
    assert tok(" A")["input_ids"] != tok("A")["input_ids"] and len(tok(" A")["input_ids"]) == 1
    model = build("llama", root / "model", vocab_size=len(tok), max_position_embeddings=CONTEXT,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    tok.save_pretrained(model)
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    tasks = root / "tasks"
    tasks.mkdir()
    common = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {root / 'hf'}\n"
              f"test_split: test\n")
    (tasks / "tiny_mc.yaml").write_text(
        f"task: tiny_mc\n{common}output_type: multiple_choice\ndoc_to_text: \"{MC_TEXT}\"\n"
        "doc_to_choice: [\"A\", \"B\", \"C\", \"D\"]\ndoc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    (tasks / "tiny_ppl.yaml").write_text(
        f"task: tiny_ppl\n{common}output_type: loglikelihood_rolling\ndoc_to_text: \"\"\n"
        "doc_to_target: \"{{question}} {{options | join(', ')}}. {{rationale}}\"\n"
        "metric_list:\n  - metric: word_perplexity\n")
    (tasks / "tiny_gen.yaml").write_text(
        f"task: tiny_gen\n{common}output_type: generate_until\ndoc_to_text: \"{MC_TEXT}\"\n"
        "doc_to_target: \"{{['A', 'B', 'C', 'D'][answer]}}\"\n"
        "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 6\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    return model, tasks, docs


def _evaluate(model, model_args: str | None, tasks: Path, output: Path):
    """`lm-eval run --model MODEL --model_args ARGS --tasks … --log_samples --output_path OUTPUT`, in-process
    (the CLI's own steps minus argument parsing, and minus its index of lm-eval's thousands of built-in tasks).
    `model` is a registered name or an `LM` built as lm-eval builds it."""
    tracker = EvaluationTracker(output_path=str(output))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        # lm-eval's environment report (torch.utils.collect_env, ~8 s) is metadata only
        mp.setattr(lm_eval.evaluator, "add_env_info", lambda storage: None)
        results = lm_eval.simple_evaluate(
            model=model, model_args=model_args, tasks=["tiny_mc", "tiny_ppl", "tiny_gen"], batch_size=4,
            task_manager=TaskManager(include_path=str(tasks), include_defaults=False), log_samples=True,
            evaluation_tracker=tracker)
    written = copy.deepcopy(results)
    samples = written.pop("samples")
    tracker.save_results_aggregated(results=written, samples=samples)
    for name in samples:
        tracker.save_results_samples(task_name=name, samples=samples[name])
    return results


@pytest.fixture(scope="module")
def backend(setup):
    """Our backend, built from a model_args string through lm-eval's registry, as `--model entropy_jax` is."""
    model, _, _ = setup
    cls = lm_eval.api.registry.get_model("entropy_jax")
    assert cls is EntropyJaxLM and lm_eval.api.registry.get_model("hf").__name__ == "HFLM"  # both registered
    return cls.create_from_arg_string(f"pretrained={model},dtype=float32", {"batch_size": 4, "device": None})


@pytest.fixture(scope="module")
def runs(setup, backend, tmp_path_factory):
    """(HF results, ours); each run's --log_samples files lie under results["out"]."""
    model, tasks, _ = setup
    out = {name: tmp_path_factory.mktemp(name) for name in ("hf", "ours")}
    hf = _evaluate("hf", f"pretrained={model},dtype=float32,device=cpu", tasks, out["hf"])
    ours = _evaluate(backend, None, tasks, out["ours"])
    return hf | {"out": out["hf"]}, ours | {"out": out["ours"]}


def _lls(result, task="tiny_mc"):
    return np.array([[float(r[0]) for r in s["filtered_resps"]] for s in result["samples"][task]])


def test_matches_hf_backend_end_to_end(runs):
    hf, ours = runs
    # multiple choice: per-option log-likelihoods, greedy flags and accuracy
    assert _lls(ours).shape == (N_DOCS, 4)
    np.testing.assert_allclose(_lls(ours), _lls(hf), atol=1e-4, rtol=0)
    greedy = [[r[1] for r in s["filtered_resps"]] for s in ours["samples"]["tiny_mc"]]
    assert greedy == [[r[1] for r in s["filtered_resps"]] for s in hf["samples"]["tiny_mc"]]
    assert ours["results"]["tiny_mc"]["acc,none"] == hf["results"]["tiny_mc"]["acc,none"]
    # rolling log-likelihood: every document spans several 64-token windows
    ppl = [[float(s["filtered_resps"][0]) for s in r["samples"]["tiny_ppl"]] for r in (ours, hf)]
    np.testing.assert_allclose(ppl[0], ppl[1], atol=1e-4, rtol=0)
    assert all(rec["n_windows"] > 1 for rec in (s["arguments"][0][-1]["entropy_jax"][0]
                                                for s in ours["samples"]["tiny_ppl"]))
    # greedy generation until "\n": identical text
    texts = [[s["filtered_resps"][0] for s in r["samples"]["tiny_gen"]] for r in (ours, hf)]
    assert texts[0] == texts[1]
    assert ours["results"]["tiny_gen"]["exact_match,none"] == hf["results"]["tiny_gen"]["exact_match,none"]


def _entropy(logits_v: torch.Tensor) -> float:
    lp = torch.log_softmax(logits_v.double(), -1)
    return float(-(lp.exp() * lp).sum())


def test_logged_entropy_is_the_answer_step_entropy(setup, runs):
    model, _, _ = setup
    _, ours = runs
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(model))
    truncated = 0
    for s in ours["samples"]["tiny_mc"]:
        recs = [a[-1]["entropy_jax"] for a in s["arguments"]]
        assert all(len(r) == 1 for r in recs)  # one record per response
        context = s["arguments"][0][0]
        ids = tok(context)["input_ids"]
        kept = (ids + tok(context + " A")["input_ids"][len(ids):])[-(CONTEXT + 1):][:-1]
        with torch.no_grad():
            expected = _entropy(ref(torch.tensor([kept])).logits[0, -1])
        for (rec,), (_, cont, _) in zip(recs, s["arguments"]):
            assert rec["n_continuation_tokens"] == 1 and len(rec["token_entropies"]) == 1
            assert abs(rec["entropy"] - expected) < 1e-4, cont
            assert rec["n_context_tokens"] + rec["truncated"] == len(ids)
        truncated += recs[0][0]["truncated"] > 0
    assert 0 < truncated  # the 64-token window cut some contexts on the left, as HF does
    for s in ours["samples"]["tiny_gen"]:
        (rec,) = s["arguments"][0][-1]["entropy_jax"]
        ids = tok(s["arguments"][0][0])["input_ids"][-(CONTEXT - 6):]
        with torch.no_grad():
            expected = _entropy(ref(torch.tensor([ids])).logits[0, -1])
        assert abs(rec["entropy"] - expected) < 1e-4
        assert rec["n_tokens"] == len(rec["token_entropies"]) <= rec["n_generated"] <= 6
    info = ours["config"]["entropy_jax"]
    assert info["entropy_settings"]["units"] == "nats" and info["vocab_size"] == len(tok)


def test_log_samples_reader_and_metrics(setup, runs):
    _, _, docs = setup
    hf, ours = runs
    rows = read_log_samples(ours["out"], task="tiny_mc")
    assert rows == rows_from_samples(ours["samples"]["tiny_mc"], task="tiny_mc")
    by_id = {d["id"]: d for d in docs}
    lls = _lls(ours)
    for r, s, ll in zip(rows, ours["samples"]["tiny_mc"], lls):
        d = by_id[r["id"]]
        assert (r["stratum"], r["subject"], r["answer_index"]) == (d["stratum"], d["subject"], d["answer"])
        assert r["entropy_source"] == "entropy_jax"
        assert r["entropy"] == s["arguments"][0][-1]["entropy_jax"][0]["entropy"]
        p = np.exp(ll - ll.max())
        np.testing.assert_allclose(r["option_probs"], p / p.sum(), rtol=1e-12)
        assert r["label_mass"] == pytest.approx(np.exp(ll).sum(), rel=1e-12)
        assert r["pred_index"] == int(np.argmax(ll)) and r["correct"] == bool(s["acc"])
        assert r["max_prob"] == max(r["option_probs"]) and r["pred"] == "ABCD"[r["pred_index"]]
    correct = np.array([r["correct"] for r in rows])
    signals = {"entropy": np.array([r["entropy"] for r in rows]),
               "1 - max_prob": 1 - np.array([r["max_prob"] for r in rows])}
    report = M.error_detection_report(signals, correct, n_boot=50)
    assert report["entropy"]["roc_auc"] == M.roc_auc(signals["entropy"], ~correct)
    assert set(M.summary_by(np.array([r["stratum"] for r in rows]), lambda c: float(np.mean(c)), correct)) == {
        "knowledge", "reasoning"}
    gen = read_log_samples(ours["out"], task="tiny_gen")
    assert [g["pred"] for g in gen] == [s["filtered_resps"][0] for s in ours["samples"]["tiny_gen"]]
    assert all(g["entropy_source"] == "entropy_jax" and g["option_probs"] is None for g in gen)
    # another backend's samples: option probabilities yes, full-vocabulary entropy no
    other = read_log_samples(hf["out"], task="tiny_mc")
    assert other == rows_from_samples(hf["samples"]["tiny_mc"], task="tiny_mc")
    assert all(o["entropy"] is None and o["entropy_source"] is None for o in other)
    np.testing.assert_allclose([o["option_probs"] for o in other], [r["option_probs"] for r in rows], atol=1e-4)
    assert [o["correct"] for o in other] == [r["correct"] for r in rows]
    with pytest.raises(FileNotFoundError, match="no_such_task"):
        read_log_samples(ours["out"], task="no_such_task")


def test_backend_reuses_compilations_and_shards(setup, backend, runs):
    model, _, _ = setup
    _, ours = runs
    # the whole run compiled one scoring shape (every input fills the 64-token window: the four options of
    # a question share one row, rolling windows are full) plus one prefill and one decode loop
    compiled = dict(backend.trace_counts)
    assert compiled == {"continuation_stats": 1, "prefill": 1, "decode": 1}
    pairs = [(a[0], a[1]) for s in ours["samples"]["tiny_mc"] for a in s["arguments"]]

    def requests():
        return [Instance("loglikelihood", {}, p, i, ("tiny_mc", i, 1)) for i, p in enumerate(pairs)]

    reqs = requests()
    first = backend.loglikelihood(reqs)
    assert backend.trace_counts == compiled  # same shapes: no new compilation
    np.testing.assert_allclose([ll for ll, _ in first], _lls(ours).ravel(), atol=1e-6)
    assert len(reqs[0].args) == 3 and backend.loglikelihood(reqs) == first  # a second pass replaces the record
    sharded = EntropyJaxLM(pretrained=str(model), batch_size=4, data=2, fsdp=2, tensor=2)
    assert sharded.lm.mesh is not None and dict(sharded.lm.mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    np.testing.assert_allclose([ll for ll, _ in sharded.loglikelihood(requests())], [ll for ll, _ in first],
                               atol=1e-5)


def test_imports_stay_optional():
    """`import entropy_jax.eval` imports neither lm-eval nor torch; the backend module imports lm-eval only."""
    code = ("import sys; import entropy_jax.eval; a = {m for m in ('lm_eval', 'torch') if m in sys.modules}; "
            "import entropy_jax.eval.lm_eval; b = {m for m in ('lm_eval', 'torch') if m in sys.modules}; "
            "print(sorted(a), sorted(b))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.stdout.split("\n")[0] == "[] ['lm_eval']"


def test_metrics_of_logged_samples_with_and_without_entropy(setup, runs, tmp_path):
    """`mcqa_run.lm_eval_metrics` (the launcher's --lm-eval-samples): our backend's samples give every signal;
    the HF backend's have no full-vocabulary entropy, which is dropped and named, the other signals kept."""
    from entropy_jax.eval import mcqa_run
    hf, ours = runs
    got = mcqa_run.lm_eval_metrics(ours["out"], tmp_path / "ours", task="tiny_mc", n_boot=50)
    rows = read_log_samples(ours["out"], task="tiny_mc")
    correct = np.array([r["correct"] for r in rows])
    assert got["dropped_signals"] == {} and set(got["overall"]["error_detection"]) == set(mcqa_run.SIGNALS)
    assert got["overall"]["accuracy"] == ours["results"]["tiny_mc"]["acc,none"]
    assert got["overall"]["error_detection"]["entropy"]["roc_auc"] == pytest.approx(
        M.roc_auc(np.array([r["entropy"] for r in rows]), ~correct))
    assert got["overall"]["mean_entropy"] == pytest.approx(np.mean([r["entropy"] for r in rows]))
    assert set(got["by_stratum"]) == {"knowledge", "reasoning"} and got["entropy_sources"] == ["entropy_jax"]
    assert got["entropy_settings"]["units"] == "nats" and got["tasks"] == ["tiny_mc"]
    assert json.loads((tmp_path / "ours" / "metrics.json").read_text())["n_scored"] == N_DOCS
    assert (tmp_path / "ours" / "entropy_hist.png").stat().st_size > 0

    other = mcqa_run.lm_eval_metrics(hf["out"], tmp_path / "hf", task="tiny_mc", n_boot=50)
    assert set(other["dropped_signals"]) == {"entropy"} and "--model entropy_jax" in other["dropped_signals"]["entropy"]
    assert set(other["overall"]["error_detection"]) == set(mcqa_run.SIGNALS) - {"entropy"}
    assert other["overall"]["mean_entropy"] is None and other["entropy_settings"] is None
    assert other["overall"]["accuracy"] == got["overall"]["accuracy"]
    assert other["overall"]["ece_15"] == pytest.approx(got["overall"]["ece_15"], abs=1e-3)
    assert "| all |" in mcqa_run.markdown(other) and "Dropped signals: entropy" in mcqa_run.markdown(other)
    assert not (tmp_path / "hf" / "entropy_hist.png").exists() and (tmp_path / "hf" / "risk_coverage.png").exists()
    # generation samples: entropy (ours), no option probabilities, no ECE
    gen = mcqa_run.lm_eval_metrics(ours["out"], tmp_path / "gen", task="tiny_gen", n_boot=50)
    assert set(gen["overall"]["error_detection"]) == {"entropy"} and gen["overall"]["ece_15"] is None
    assert gen["overall"]["accuracy"] == ours["results"]["tiny_gen"]["exact_match,none"]
    with pytest.raises(ValueError, match="holds a scoring run"):
        (tmp_path / "scored").mkdir()
        (tmp_path / "scored" / "scores.jsonl").write_text("")
        mcqa_run.lm_eval_metrics(ours["out"], tmp_path / "scored", task="tiny_mc", n_boot=50)
