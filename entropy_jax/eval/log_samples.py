"""Read lm-evaluation-harness `--log_samples` output as Chapter 3 score rows.

    rows = read_log_samples("results/lm_eval")          # a directory, or one samples_<task>_<date>.jsonl
    correct = np.array([r["correct"] for r in rows])
    roc_auc(np.array([r["entropy"] for r in rows]), ~correct)

One row per logged document, in the score-row format of `launch/mcqa_entropy.py` (so the same metrics,
stratification and bootstrap apply): `id`, `task`, `doc_id`, `prompt`, `pred`, `pred_index`, `answer`,
`answer_index`, `correct`, `entropy`, `option_probs`, `option_logprobs`, `max_prob`, `margin`,
`label_entropy`, `label_mass`, `stratum`, `subject`, `n_prompt_tokens`, `entropy_source`.

Multiple-choice samples (one loglikelihood request per option):
- `option_logprobs`: lm-eval's per-option log-likelihood log p(continuation | context) (nats);
  `option_probs` = softmax over the options (renormalised, as in Chapter 3), `label_mass` = Σ exp(option
  log-likelihood) (the probability on the option strings; with one-token labels " A", " B", … the
  label probabilities, one token variant each where Chapter 3 sums "A" and " A"), and `max_prob`,
  `margin`, `label_entropy` from those. `pred` is lm-eval's own choice (the first argmax of the
  log-likelihoods: its `acc`); `correct` is the sample's `acc` metric when logged, else pred == answer.
  For `acc_mutual_info` tasks only the conditional half of the requests is read.
- `entropy`: the full-vocabulary next-token entropy at the answer step (nats), present only when the
  samples come from the `entropy_jax` backend (`entropy_jax.eval.lm_eval`), which logs it in each request's
  arguments; `entropy_source` is then "entropy_jax". From any other backend (`hf`, `vllm`, APIs, …)
  `entropy` and `n_prompt_tokens` are None: the option log-likelihoods, hence option_probs, max_prob,
  margin, label_entropy and label_mass, ROC-AUC/PRR/AURC of those signals and ECE of max_prob, CAN be
  computed; the full-vocabulary entropy CANNOT (lm-eval keeps only the scored continuations, not the
  next-token distribution) — rerun with `--model entropy_jax` for it.

Generation samples (`generate_until`): `pred` is the filtered response, `answer` the target, `correct` the
sample's `exact_match` (or the metric named by `metric=`) as a bool, `entropy` the entropy of the first
generated token and `mean_entropy` the mean over the returned text's tokens (entropy_jax backend only);
the option fields are None.

`id` is the document's own "id" field when it has one, else "<task>/<doc_id>"; `stratum` and `subject`
are the document's fields of those names (None when absent).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

RECORD_KEY = "entropy_jax"  # the key `entropy_jax.eval.lm_eval` logs under (kept here so reading needs no lm-eval)
_FILE = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[\d\-.]+)\.jsonl$")


def _files(path: Path, task: str | None) -> list[tuple[str, Path]]:
    if path.is_file():
        m = _FILE.match(path.name)
        return [(m["task"] if m else (task or path.stem), path)]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such lm-eval samples file or output directory")
    found: dict[str, list[Path]] = {}
    for f in sorted(path.rglob("samples_*.jsonl")):
        m = _FILE.match(f.name)
        name = m["task"] if m else f.stem[len("samples_"):]
        if task is None or name == task:
            found.setdefault(name, []).append(f)
    if not found:
        what = f"for task {task!r} " if task else ""
        raise FileNotFoundError(f"{path}: no lm-eval samples_*.jsonl files {what}(run lm-eval with --log_samples "
                                f"--output_path DIR)")
    repeated = {k: v for k, v in found.items() if len(v) > 1}
    if repeated:
        listing = "; ".join(f"{k}: {', '.join(str(p) for p in v)}" for k, v in repeated.items())
        raise ValueError(f"{path} holds several runs of the same task ({listing}); pass one file")
    return [(k, v[0]) for k, v in found.items()]


def read_log_samples(path, *, task: str | None = None, metric: str | None = None) -> list[dict]:
    """Score rows (see the module docstring) from lm-eval `--log_samples` output.

    Args:
      path: a `samples_<task>_<date>.jsonl` file, or a directory searched recursively for them (lm-eval's
        `--output_path`); a directory with two runs of one task is an error naming the files.
      task: read only this task's file.
      metric: the per-sample metric that decides `correct` (default: acc, else exact_match).
    Returns:
      list of dicts, one per document, file by file in the order lm-eval wrote them.
    Raises:
      FileNotFoundError when nothing is found; ValueError naming the file and line of a malformed sample.
    """
    rows = []
    for name, f in _files(Path(path), task):
        with f.open(encoding="utf-8") as fh:
            samples = []
            for line_no, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        samples.append((line_no, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{f}:{line_no}: not JSON ({e})") from None
        for line_no, sample in samples:
            try:
                rows.append(sample_row(sample, task=name, metric=metric))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{f}:{line_no}: {e}") from None
    return rows


def rows_from_samples(samples: Iterable[Mapping], *, task: str, metric: str | None = None) -> list[dict]:
    """Score rows from in-memory samples: `lm_eval.simple_evaluate(..., log_samples=True)["samples"][task]`."""
    return [sample_row(s, task=task, metric=metric) for s in samples]


def _arguments(sample: Mapping) -> list[tuple]:
    """Request arguments as tuples, from the JSONL form ({"gen_args_0": {"arg_0": …}}) or the in-memory one."""
    args = sample["arguments"]
    if isinstance(args, Mapping):
        keys = sorted(args, key=lambda k: int(k.rsplit("_", 1)[1]))
        return [tuple(args[k][a] for a in sorted(args[k], key=lambda a: int(a.rsplit("_", 1)[1]))) for k in keys]
    return [tuple(a) for a in args]


def _plain(arguments: tuple) -> tuple:
    """Request arguments without the entropy_jax record."""
    if arguments and isinstance(arguments[-1], Mapping) and RECORD_KEY in arguments[-1]:
        return arguments[:-1]
    return arguments


def _record(arguments: tuple) -> dict | None:
    """The request's first entropy_jax record (one per response; lm-eval's filters keep the first)."""
    if len(_plain(arguments)) == len(arguments):
        return None
    recs = arguments[-1][RECORD_KEY]
    return recs[0] if recs else None


def _flag(x) -> bool:
    if isinstance(x, str):
        if x not in ("True", "False"):
            raise ValueError(f"expected 'True' or 'False', got {x!r}")
        return x == "True"
    return bool(x)


def _correct(sample: Mapping, names: tuple[str, ...]) -> bool | None:
    for name in names:
        if name in sample and sample[name] is not None:
            value = float(sample[name])
            if value not in (0.0, 1.0):
                raise ValueError(f"metric {name!r} is {value}, not 0/1; pass metric= naming a 0/1 metric")
            return value == 1.0
    return None


def _answer_index(target: str, labels: list[str]) -> int | None:
    t = str(target).strip()
    if t.isdigit() and int(t) < len(labels):
        return int(t)
    return labels.index(t) if t in labels else None


def sample_row(sample: Mapping, *, task: str, metric: str | None = None) -> dict:
    """One logged sample → one score row (multiple choice or generation; see the module docstring)."""
    doc = sample.get("doc") or {}
    doc_id = sample["doc_id"]
    args = _arguments(sample)
    resps = sample["filtered_resps"]
    base = {
        "id": str(doc["id"]) if isinstance(doc, Mapping) and doc.get("id") is not None else f"{task}/{doc_id}",
        "task": task, "doc_id": doc_id, "prompt": _plain(args[0])[0] if args else None,
        "stratum": doc.get("stratum") if isinstance(doc, Mapping) else None,
        "subject": doc.get("subject") if isinstance(doc, Mapping) else None,
    }
    first = _plain(args[0]) if args else ()
    if len(first) >= 2 and isinstance(first[1], Mapping):  # generate_until: (context, gen_kwargs)
        return base | _generation_row(sample, args, resps[0] if isinstance(resps, list) else resps, metric)
    return base | _choice_row(sample, args, resps, metric)


def _choice_row(sample: Mapping, args: list[tuple], resps, metric: str | None) -> dict:
    n = len(resps)
    if "acc_mutual_info" in sample.get("metrics", ()):
        n //= 2  # the second half are the unconditional requests
    if n < 1:
        raise ValueError("a multiple-choice sample without responses")
    lls = np.array([float(r[0]) for r in resps[:n]], np.float64)
    if not np.all(np.isfinite(lls)):
        raise ValueError(f"option log-likelihoods must be finite, got {lls.tolist()}")
    labels = [str(_plain(a)[1]).strip() for a in args[:n]]
    top = lls.max()
    probs = np.exp(lls - top)
    probs /= probs.sum()
    order = np.sort(probs)[::-1]
    nz = probs[probs > 0]
    pred = int(np.argmax(lls))
    answer = _answer_index(sample.get("target", ""), labels)
    correct = _correct(sample, (metric,) if metric else ("acc",))
    if correct is None:
        if answer is None:
            raise ValueError(f"no 'acc' metric and target {sample.get('target')!r} matches no option {labels}")
        correct = pred == answer
    rec = _record(args[0])
    return {
        "pred": labels[pred], "pred_index": pred,
        "answer": labels[answer] if answer is not None else None, "answer_index": answer,
        "correct": bool(correct),
        "entropy": None if rec is None else float(rec["entropy"]),
        "option_probs": probs.tolist(), "option_logprobs": lls.tolist(),
        "max_prob": float(order[0]), "margin": float(order[0] - (order[1] if n > 1 else 0.0)),
        "label_entropy": float(-(nz * np.log(nz)).sum()),
        "label_mass": float(np.exp(top) * np.exp(lls - top).sum()),
        "is_greedy": [_flag(r[1]) for r in resps[:n]],
        "n_prompt_tokens": None if rec is None else int(rec["n_context_tokens"]),
        "entropy_source": None if rec is None else RECORD_KEY,
    }


def _generation_row(sample: Mapping, args: list[tuple], text: str, metric: str | None) -> dict:
    correct = _correct(sample, (metric,) if metric else ("exact_match", "acc"))
    if correct is None:
        raise ValueError(f"no 0/1 metric among {sample.get('metrics')}; pass metric=")
    rec = _record(args[0])
    ents = None if rec is None else rec.get("token_entropies") or []
    return {
        "pred": text, "pred_index": None, "answer": str(sample.get("target")), "answer_index": None,
        "correct": correct, "entropy": None if rec is None else float(rec["entropy"]),
        "mean_entropy": None if rec is None else (float(np.mean(ents)) if ents else None),
        "option_probs": None, "option_logprobs": None, "max_prob": None, "margin": None, "label_entropy": None,
        "label_mass": None, "n_prompt_tokens": None if rec is None else int(rec["n_context_tokens"]),
        "entropy_source": None if rec is None else RECORD_KEY,
    }
