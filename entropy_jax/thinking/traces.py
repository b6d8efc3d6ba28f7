"""Thinker traces (Chapter 5): reasoning written once per thinker and question, cached, with its entropy.

A thinker is one of
- `"none"`: no trace (the answerer sees the bare Chapter 3 prompt);
- `"gold"`: the data set's `rationale` (a worked solution: the strongest thinker we can get offline);
- `"shuffled"` / `"shuffled:<thinker>"`: another question's trace — gold rationales, or the traces of the
  named thinker — assigned by a seeded derangement (no question keeps its own trace): a controlled weak
  thinker that is fluent and confident but about the wrong problem;
- any model source `entropy_jax.llm.load` accepts: the shared trace generator (`entropy_jax.llm.traces`,
  greedy, on the continuous-batching engine). Models whose tokenizer has `<think>`/`</think>` tokens (Qwen3) think
  in their own thinking mode (chat template with `enable_thinking=True`; the trace is the `<think>…</think>`
  span and generation stops at `</think>`); any other model gets the step-by-step prompt
  (`llm.prompts.COT_INSTRUCTION`, which ends in `[[X]]`, so the thinker's own answer is parsed too).

Every generated token's full-vocabulary entropy (temperature 1, nats) and the token ids come from the
generation itself (no extra forward pass) and are stored with the trace. Model traces are appended one by
one, as they finish, to a JSONL store (`traces/<safe name>.jsonl` in a matrix run), keyed by the thinker, its
files (`llm.fingerprint`) and its generation settings, each row with its question's content key: a later or
resumed run generates only the questions the cache lacks (or whose question changed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from entropy_jax.llm import traces as gen
from entropy_jax.llm.traces import THINK_CLOSE, THINK_OPEN, model_mode, think_span, thinking_tokens

__all__ = [
    "SOURCES", "THINK_CLOSE", "THINK_OPEN", "ThinkTrace", "TraceSet", "cache_key", "cached", "derangement",
    "generate", "gold", "model_mode", "none", "read_cache", "shuffled", "think_span", "thinker_prompt",
    "thinking_tokens",
]

SOURCES = ("none", "gold", "shuffled")  # thinkers that need no model


@dataclasses.dataclass(frozen=True)
class ThinkTrace:
    """One question's trace from one thinker.

    `text` is what answerers read (None: no trace). For model thinkers: `tokens` the generated ids (thinker
    vocabulary; the opening `<think>` and the closing `</think>`/EOS included), `entropies` their full-
    vocabulary entropies (nats), `mean_entropy` their mean, `n_tokens` their count, `n_prompt_tokens` the
    thinker's prompt length and `stop` why generation ended: "end_think" (closed its thinking span), "eos"
    or "length" (hit `max_think_tokens`: the trace is cut by the budget). `pred`: the option the trace
    itself concludes (parsed `[[X]]`; None when it states none). `donor`: for shuffled traces, the
    question whose trace this is.
    """

    id: str
    text: str | None
    n_tokens: int = 0
    mean_entropy: float | None = None
    entropies: tuple[float, ...] = ()
    tokens: tuple[int, ...] = ()
    n_prompt_tokens: int = 0
    stop: str | None = None
    pred: int | None = None
    donor: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["entropies"], d["tokens"] = list(self.entropies), list(self.tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ThinkTrace:
        kw = {f.name: d.get(f.name, f.default) for f in dataclasses.fields(cls)}
        kw["entropies"], kw["tokens"] = tuple(kw["entropies"] or ()), tuple(kw["tokens"] or ())
        return cls(**kw)


@dataclasses.dataclass
class TraceSet:
    """A thinker's traces by question id, and what producing them cost in this call."""

    thinker: str
    traces: dict[str, ThinkTrace]
    mode: str  # "source" | "think" | "cot"
    generated_tokens: int = 0
    generated_questions: int = 0
    cached_questions: int = 0
    seconds: float = 0.0

    def summary(self, questions=None) -> dict:
        """n, trace length and entropy statistics, stop reasons, the trace's own accuracy, throughput."""
        ts = [t for t in self.traces.values() if t.text is not None]
        lengths = np.array([t.n_tokens for t in ts], float)
        ent = np.array([t.mean_entropy for t in ts if t.mean_entropy is not None], float)
        stops: dict[str, int] = {}
        for t in ts:
            if t.stop is not None:
                stops[t.stop] = stops.get(t.stop, 0) + 1
        own = None
        if questions is not None:
            answers = {q.id: q.answer for q in questions}
            stated = [t for t in ts if t.pred is not None and t.id in answers]
            own = {"stated": len(stated), "accuracy_of_stated": (float(np.mean([t.pred == answers[t.id]
                                                                                for t in stated]))
                                                                 if stated else None)}
        n_words = [len(t.text.split()) for t in ts]
        return {
            "thinker": self.thinker, "mode": self.mode, "n": len(self.traces), "with_text": len(ts),
            "mean_tokens": float(lengths.mean()) if len(ts) and self.mode != "source" else None,
            "median_tokens": float(np.median(lengths)) if len(ts) and self.mode != "source" else None,
            "max_tokens": int(lengths.max()) if len(ts) and self.mode != "source" else None,
            "mean_words": float(np.mean(n_words)) if n_words else None,
            "mean_entropy": float(ent.mean()) if len(ent) else None,
            "token_weighted_entropy": (float(sum(sum(t.entropies) for t in ts) / max(lengths.sum(), 1))
                                       if len(ent) else None),
            "stops": stops, "own_answer": own,
            "generated_tokens": self.generated_tokens, "generated_questions": self.generated_questions,
            "cached_questions": self.cached_questions,
            "tokens_per_s": self.generated_tokens / self.seconds if self.seconds > 0 else None,
        }


# ------------------------------------------------------------------------------------------- thinkers
def thinker_prompt(tokenizer, q, *, mode: str, style: str = "letters", system: str | None = None) -> str:
    """The exact text a model thinker continues (`llm.traces.prompt`): "think" = the Chapter 3 question with
    thinking enabled, "cot" = the step-by-step prompt."""
    return gen.prompt(tokenizer, q, mode=mode, style=style, system=system)


def cache_key(thinker: str, *, mode: str, max_think_tokens: int, style: str, system: str | None,
              model: str | None = None) -> dict:
    """What a cached trace must have been generated with to be reused (`model`: the thinker's
    `llm.traces.model_key`)."""
    return gen.cache_key(thinker, mode=mode, max_new_tokens=max_think_tokens, style=style, system=system,
                         model=model)


def _think_trace(t: gen.GeneratedTrace) -> ThinkTrace:
    return ThinkTrace(t.id, t.text, t.n_tokens, t.mean_entropy, t.entropies, t.tokens, t.n_prompt_tokens, t.stop,
                      t.pred)


def read_cache(path: str | Path, key: dict, questions=None) -> dict[str, ThinkTrace]:
    """Cached traces with this key (a torn last line of a killed run is ignored); with `questions`, only those
    made from the questions' current content."""
    return {i: _think_trace(t) for i, t in gen.read_cache(path, key, questions).items()}


def cached(thinker: str, questions, *, cache: str | Path, mode: str, max_think_tokens: int, style: str = "letters",
           system: str | None = None) -> TraceSet | None:
    """The thinker's traces of every question from its cache (no model needed), or None when some are missing
    (or were made from another version of the question or of the thinker's files)."""
    run = gen.cached(questions, source=thinker, cache=cache, mode=mode, max_new_tokens=max_think_tokens, style=style,
                     system=system)
    if run is None:
        return None
    return TraceSet(thinker, {i: _think_trace(t) for i, t in run.traces.items()}, mode,
                    cached_questions=run.cached_questions)


def generate(lm, questions, *, thinker: str, cache: str | Path, max_think_tokens: int = 512,
             batch_size: int = 8, style: str = "letters", system: str | None = None, mode: str = "auto",
             progress: Callable[[int], None] | None = None) -> TraceSet:
    """Greedy traces of model `lm` for `questions`, reusing and extending the JSONL `cache` (the shared
    generator, `entropy_jax.llm.traces.generate`).

    Each trace is at most `max_think_tokens` tokens; `batch_size` traces are decoded at once (the engine's
    slots), and each is appended to the cache as soon as it finishes.
    """
    run = gen.generate(lm, questions, source=thinker, cache=cache, mode=mode, max_new_tokens=max_think_tokens,
                       batch_size=batch_size, style=style, system=system, progress=progress)
    return TraceSet(thinker, {i: _think_trace(t) for i, t in run.traces.items()}, run.mode,
                    generated_tokens=run.generated_tokens, generated_questions=run.generated_questions,
                    cached_questions=run.cached_questions, seconds=run.seconds)


def gold(questions) -> TraceSet:
    """The data set's rationales; questions without one get no trace (text None)."""
    return TraceSet("gold", {q.id: ThinkTrace(q.id, q.rationale or None, pred=q.answer if q.rationale else None)
                             for q in questions}, "source")


def none(questions) -> TraceSet:
    return TraceSet("none", {q.id: ThinkTrace(q.id, None) for q in questions}, "source")


def derangement(ids: Sequence[str], seed: int) -> dict[str, str]:
    """{id: donor id}: a seeded permutation of `ids` without fixed points (one cycle through a shuffled
    order), so every question reads another question's trace."""
    ids = list(ids)
    if len(ids) < 2:
        raise ValueError(f"shuffling traces needs at least 2 questions with a trace; got {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[order[i]]: ids[order[(i + 1) % len(ids)]] for i in range(len(ids))}


def shuffled(source: TraceSet, questions, *, seed: int = 0, name: str | None = None) -> TraceSet:
    """Each question gets another question's trace from `source` (length and entropy travel with the text);
    questions whose source has no trace keep none."""
    with_text = [q.id for q in questions if source.traces.get(q.id) and source.traces[q.id].text is not None]
    donors = derangement(with_text, seed)
    out = {}
    for q in questions:
        if q.id not in donors:
            out[q.id] = ThinkTrace(q.id, None)
            continue
        d = source.traces[donors[q.id]]
        out[q.id] = dataclasses.replace(d, id=q.id, donor=d.id, pred=None)
    return TraceSet(name or f"shuffled:{source.thinker}", out, "source" if source.mode == "source" else "shuffled")
