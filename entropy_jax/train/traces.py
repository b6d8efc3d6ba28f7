"""Teacher chain-of-thought traces (Chapter 4, Step 3), generated once and cached.

A teacher is one of
- `"rationale"`: the data set's own `rationale` field (the shipped demo set has one per question);
- a traces file (`.jsonl`, rows `{"id", "text"}`, optional `"pred"`): traces made elsewhere;
- any model source `entropy_jax.llm.load` accepts: greedy chain-of-thought with the step-by-step prompt
  (`examples.cot_prompt`), the answer parsed from the last `[[X]]`, through the LLM core's batched
  KV-cache generation.

Generated traces are appended batch by batch to a JSONL cache keyed by the teacher and its generation
settings; a later run (or a resumed one) generates only the questions the cache lacks, so no teacher token
is generated twice. Traces are text: the student re-tokenizes them, so teacher and student vocabularies
need not agree.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

from entropy_jax.llm import scoring
from entropy_jax.train.examples import COT_INSTRUCTION, cot_prompt, parse_bracketed


@dataclasses.dataclass(frozen=True)
class Trace:
    """One teacher trace. `pred` is the parsed option index (None: no `[[X]]` found); `n_tokens` the tokens
    the teacher generated for it (teacher tokenizer; 0 for rationales and files); `stop` "eos" or "length"
    for generated traces."""

    id: str
    text: str
    pred: int | None
    correct: bool | None
    n_tokens: int = 0
    stop: str | None = None

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

    def summary(self) -> dict:
        correct = [t.correct for t in self.traces.values() if t.correct is not None]
        return {"source": self.source, "n": len(self.traces), "generated_tokens": self.generated_tokens,
                "generated_questions": self.generated_questions, "cached_questions": self.cached_questions,
                "dropped_wrong": len(self.dropped_wrong),
                "teacher_accuracy": (sum(correct) / len(correct)) if correct else None,
                "teacher_tokens_total": sum(t.n_tokens for t in self.traces.values())}


def _labels(q, style):
    return scoring.option_labels(len(q.options), style)


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
    for n, line in enumerate(path.read_text().splitlines(), 1):
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
            pred = parse_bracketed(text, labels)
        traces[qid] = Trace(qid, text, pred, None if pred is None else pred == q.answer,
                            int(row.get("n_tokens", 0)))
    return TraceSet(traces, str(path))


def cache_key(source: str, max_new_tokens: int, style: str, system: str | None) -> dict:
    """What a cached trace must have been generated with to be reused (the prompt is COT_INSTRUCTION)."""
    return {"teacher": source, "max_new_tokens": int(max_new_tokens), "style": style, "system": system,
            "decoding": "greedy", "prompt": COT_INSTRUCTION}


def read_keyed(path: Path, key: dict) -> dict[str, dict]:
    """{id: row} of the rows of a JSONL cache whose "key" equals `key` (later rows win; a half-written last
    line of a killed run is ignored)."""
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if row.get("key") == key:
            out[row["id"]] = row
    return out


def append_keyed(f, rows: Sequence[dict], key: dict) -> None:
    """Append one batch of cache rows (each tagged with `key`) and force it to disk, so a kill after this
    call keeps the whole batch and `read_keyed` finds it."""
    for row in rows:
        f.write(json.dumps(row | {"key": key}) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _cache_rows(path: Path, key: dict) -> dict[str, Trace]:
    return {i: Trace(**{f.name: row.get(f.name) for f in dataclasses.fields(Trace)})
            for i, row in read_keyed(path, key).items()}


def generate(teacher, questions, *, cache: str | Path, source: str, max_new_tokens: int = 512,
             batch_size: int = 8, style: str = "letters", system: str | None = None, progress=None) -> TraceSet:
    """Greedy CoT traces of `teacher` (a `LanguageModel`) for `questions`, reusing and extending `cache`."""
    cache = Path(cache)
    key = cache_key(source, max_new_tokens, style, system)
    traces = _cache_rows(cache, key)
    todo = [q for q in questions if q.id not in traces]
    result = TraceSet({}, source, cached_questions=len(questions) - len(todo))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("a") as f:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start: start + batch_size]
            prompts = [cot_prompt(teacher.tokenizer, q, style=style, system=system) for q in chunk]
            ids = [teacher.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
            # fixed row count: the last, shorter batch reuses the compiled program
            pad = ids + [ids[-1]] * (batch_size - len(ids))
            out = teacher.generate(pad, max_new_tokens=max_new_tokens)
            stops = set(teacher.stop_token_ids())
            made = []
            for i, q in enumerate(chunk):
                toks = out.tokens[i][out.valid[i]]
                stop = "eos" if len(toks) and int(toks[-1]) in stops else "length"
                text = teacher.tokenizer.decode(toks, skip_special_tokens=True)
                pred = parse_bracketed(text, _labels(q, style))
                t = Trace(q.id, text, pred, pred == q.answer, len(toks), stop)
                traces[q.id] = t
                result.generated_tokens += len(toks)
                result.generated_questions += 1
                made.append(t.to_dict())
            append_keyed(f, made, key)
            if progress is not None:
                progress(len(chunk))
    result.traces = {q.id: traces[q.id] for q in questions}
    return result


def keep_correct(traces: TraceSet, keep_wrong: bool) -> TraceSet:
    """Drop traces whose parsed answer is wrong or missing, unless `keep_wrong` (then all are kept)."""
    if keep_wrong:
        return traces
    wrong = tuple(i for i, t in traces.traces.items() if t.correct is not True)
    kept = {i: t for i, t in traces.traces.items() if t.correct is True}
    return dataclasses.replace(traces, traces=kept, dropped_wrong=wrong)


def load_teacher_traces(teacher: str, questions, *, cache_dir: str | Path, style: str = "letters",
                        max_new_tokens: int = 512, batch_size: int = 8, dtype: str = "float32", mesh=None,
                        progress=None, system: str | None = None) -> TraceSet:
    """Dispatch on the teacher: "rationale", a `.jsonl` traces file, or a model source (loaded only when
    the cache lacks some question)."""
    if teacher == "rationale":
        return from_rationales(questions)
    if teacher.endswith(".jsonl"):
        return from_file(teacher, questions, style=style)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in teacher.strip("/"))[-80:]
    cache = Path(cache_dir) / f"{name}.jsonl"
    key = cache_key(teacher, max_new_tokens, style, system)
    if all(q.id in _cache_rows(cache, key) for q in questions):
        return generate(None, questions, cache=cache, source=teacher, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, style=style, system=system)
    from entropy_jax import llm

    lm = llm.load(teacher, dtype=dtype, mesh=mesh)
    return generate(lm, questions, cache=cache, source=teacher, max_new_tokens=max_new_tokens,
                    batch_size=batch_size, style=style, system=system, progress=progress)


def coverage(traces: TraceSet, ids: Sequence[str]) -> dict[str, int]:
    have = sum(i in traces.traces for i in ids)
    return {"with_trace": have, "without_trace": len(ids) - have}
