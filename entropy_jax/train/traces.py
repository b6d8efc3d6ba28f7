"""Teacher chain-of-thought traces (Chapter 4, Step 3), generated once and cached.

A teacher is one of
- `"rationale"`: the data set's own `rationale` field (the shipped demo set has one per question);
- a traces file (`.jsonl`, rows `{"id", "text"}`, optional `"pred"`): traces made elsewhere;
- any model source `entropy_jax.llm.load` accepts: greedy chain-of-thought with the step-by-step prompt
  (`llm.prompts.cot_prompt`), the answer parsed from the last `[[X]]`, through the shared trace generator
  (`entropy_jax.llm.traces`, the one Chapter 5's thinkers use), which also records every generated token's
  full-vocabulary entropy (nats).

Generated traces are appended one by one, as they finish, to a JSONL cache keyed by the teacher, its files
(`llm.fingerprint`) and its generation settings, each row with its question's content key; a later run (or a
resumed one) generates only the questions the cache lacks (or whose question changed), so no finished teacher
trace is generated twice. Traces are text: the student re-tokenizes them, so teacher and student vocabularies
need not agree.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from entropy_jax import _validate
from entropy_jax.llm import prompts
from entropy_jax.llm import traces as gen
from entropy_jax.stores import safe_name


@dataclasses.dataclass(frozen=True)
class Trace:
    """One teacher trace. `pred` is the parsed option index (None: no `[[X]]` found); `n_tokens` the tokens
    the teacher generated for it (teacher tokenizer; 0 for rationales and files); `stop` "eos" or "length"
    for generated traces; `entropies` the per-token full-vocabulary entropies of a generated trace (nats) and
    `mean_entropy` their mean (None for rationales and files)."""

    id: str
    text: str
    pred: int | None
    correct: bool | None
    n_tokens: int = 0
    stop: str | None = None
    mean_entropy: float | None = None
    entropies: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TraceSet:
    """Traces by question id, and what producing them cost in this run."""

    traces: dict[str, Trace]
    source: str
    generated_tokens: int = 0      # teacher tokens generated in this call (0 when all came from the cache)
    generated_questions: int = 0
    cached_questions: int = 0
    dropped_wrong: tuple[str, ...] = ()
    skipped_long: tuple[str, ...] = ()  # questions whose prompt left no room for the teacher's budget

    def summary(self) -> dict:
        correct = [t.correct for t in self.traces.values() if t.correct is not None]
        return {"source": self.source, "n": len(self.traces), "generated_tokens": self.generated_tokens,
                "generated_questions": self.generated_questions, "cached_questions": self.cached_questions,
                "dropped_wrong": len(self.dropped_wrong), "skipped_long": len(self.skipped_long),
                "teacher_accuracy": (sum(correct) / len(correct)) if correct else None,
                "teacher_tokens_total": sum(t.n_tokens for t in self.traces.values())}


def _labels(q, style):
    return prompts.option_labels(len(q.options), style)


def from_rationales(questions) -> TraceSet:
    """The data set's `rationale` fields; questions without one get no trace."""
    traces = {q.id: Trace(q.id, q.rationale, q.answer, True) for q in questions if q.rationale}
    return TraceSet(traces, "rationale")


def from_file(path: str | Path, questions, *, style: str = "letters") -> TraceSet:
    """Traces from a JSONL file of `{"id", "text"}` rows (optional "pred": label or index; else parsed from
    the text's last `[[X]]`). Rows for ids not in `questions` are ignored; malformed rows name the line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"traces file {path} does not exist")
    by_id = {q.id: q for q in questions}
    traces = {}
    for n, line in enumerate(_validate.read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            qid, text = str(row["id"]), row["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected a JSON object with 'id' and 'text' ({e})") from e
        if not isinstance(text, str):
            raise ValueError(f"{path}:{n}: 'text' must be a string")
        q = by_id.get(qid)
        if q is None:
            continue
        labels = _labels(q, style)
        pred = row.get("pred")
        if isinstance(pred, str):
            pred = [x.upper() for x in labels].index(pred.upper()) if pred.upper() in labels else None
        elif pred is None:
            pred = prompts.parse_bracketed(text, labels)
        traces[qid] = Trace(qid, text, pred, None if pred is None else pred == q.answer,
                            int(row.get("n_tokens", 0)))
    return TraceSet(traces, str(path))


def cache_key(source: str, max_new_tokens: int, style: str, system: str | None, model: str | None = None) -> dict:
    """What a cached trace must have been generated with to be reused (the step-by-step prompt, greedy;
    `model`: the teacher's `llm.traces.model_key`)."""
    return gen.cache_key(source, mode="cot", max_new_tokens=max_new_tokens, style=style, system=system, model=model)


def _teacher_trace(q, t: gen.GeneratedTrace) -> Trace:
    return Trace(t.id, t.text, t.pred, t.pred == q.answer, t.n_tokens, t.stop, t.mean_entropy, t.entropies)


def _trace_set(run: gen.TraceRun, questions, source: str) -> TraceSet:
    by_id = {q.id: q for q in questions}
    return TraceSet({i: _teacher_trace(by_id[i], t) for i, t in run.traces.items()}, source,
                    generated_tokens=run.generated_tokens, generated_questions=run.generated_questions,
                    cached_questions=run.cached_questions, skipped_long=run.skipped_long)


def generate(teacher, questions, *, cache: str | Path, source: str, max_new_tokens: int = 512,
             batch_size: int = 8, style: str = "letters", system: str | None = None, progress=None,
             skip_long: bool = False) -> TraceSet:
    """Greedy CoT traces of `teacher` (a `LanguageModel`) for `questions`, reusing and extending `cache`. A
    question whose prompt leaves no room for `max_new_tokens` is an error naming it, or with `skip_long` gets no
    trace (counted in `skipped_long`)."""
    run = gen.generate(teacher, questions, source=source, cache=cache, mode="cot", max_new_tokens=max_new_tokens,
                       batch_size=batch_size, style=style, system=system, progress=progress, skip_long=skip_long)
    return _trace_set(run, questions, source)


def keep_correct(traces: TraceSet, keep_wrong: bool) -> TraceSet:
    """Drop traces whose parsed answer is wrong or missing, unless `keep_wrong` (then all are kept)."""
    if keep_wrong:
        return traces
    wrong = tuple(i for i, t in traces.traces.items() if t.correct is not True)
    kept = {i: t for i, t in traces.traces.items() if t.correct is True}
    return dataclasses.replace(traces, traces=kept, dropped_wrong=wrong)


def load_teacher_traces(teacher: str, questions, *, cache_dir: str | Path, style: str = "letters",
                        max_new_tokens: int = 512, batch_size: int = 8, dtype: str = "float32", mesh=None,
                        progress=None, system: str | None = None, skip_long: bool = False) -> TraceSet:
    """Dispatch on the teacher: "rationale", a `.jsonl` traces file, or a model source (loaded only when
    the cache `cache_dir/<safe name>.jsonl` lacks some question; `skip_long` as in `generate`)."""
    if teacher == "rationale":
        return from_rationales(questions)
    if teacher.endswith(".jsonl"):
        return from_file(teacher, questions, style=style)
    cache = Path(cache_dir) / f"{safe_name(teacher)}.jsonl"
    run = gen.cached(questions, source=teacher, cache=cache, mode="cot", max_new_tokens=max_new_tokens, style=style,
                     system=system)
    if run is not None:
        return _trace_set(run, questions, teacher)
    from entropy_jax import llm

    lm = llm.load(teacher, dtype=dtype, mesh=mesh)
    return generate(lm, questions, cache=cache, source=teacher, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, style=style, system=system, progress=progress, skip_long=skip_long)
