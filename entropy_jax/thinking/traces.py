"""Thinker traces (Chapter 5): reasoning written once per thinker and question, cached, with its entropy.

A thinker is one of
- `"none"`: no trace (the answerer sees the bare Chapter 3 prompt);
- `"gold"`: the data set's `rationale` (a worked solution: the strongest thinker we can get offline);
- `"shuffled"` / `"shuffled:<thinker>"`: another question's trace — gold rationales, or the traces of the
  named thinker — assigned by a seeded derangement (no question keeps its own trace): a controlled weak
  thinker that is fluent and confident but about the wrong problem;
- any model source `entropy_jax.llm.load` accepts: deterministic greedy decoding with the LLM core's
  batched KV-cache generation. Models whose tokenizer has `<think>`/`</think>` tokens (Qwen3) think in their
  own thinking mode (chat template with `enable_thinking=True`; the trace is the `<think>…</think>` span and
  generation stops at `</think>`); any other model gets the step-by-step prompt of Chapter 4
  (`train.examples.COT_INSTRUCTION`, which ends in `[[X]]`, so the thinker's own answer is parsed too).

Every generated token's full-vocabulary entropy (temperature 1, nats) and the token ids come from the
generation itself (no extra forward pass) and are stored with the trace. Model traces are appended batch by
batch to `traces/<thinker>.jsonl`, keyed by the thinker and its generation settings: a later or resumed run
generates only the questions the cache lacks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from entropy_jax.llm import scoring
from entropy_jax.train.examples import COT_INSTRUCTION, cot_prompt, parse_bracketed
from entropy_jax.train.traces import append_keyed, read_keyed

SOURCES = ("none", "gold", "shuffled")  # thinkers that need no model
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


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
def thinking_tokens(tokenizer) -> tuple[int, int] | None:
    """Ids of `<think>` and `</think>` when both are single tokens of `tokenizer` (Qwen3 and other thinking
    models), else None."""
    ids = []
    for s in (THINK_OPEN, THINK_CLOSE):
        enc = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            return None
        ids.append(int(enc[0]))
    return ids[0], ids[1]


def chat(tokenizer, user: str, *, system: str | None = None, enable_thinking: bool | None = None) -> str:
    """The chat template with the generation prompt; `enable_thinking` is passed to templates that read it
    (Qwen3's; others ignore it)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)


def thinker_prompt(tokenizer, q, *, mode: str, style: str = "letters", system: str | None = None) -> str:
    """The exact text a model thinker continues. "think": the Chapter 3 question in the chat template with
    thinking enabled (the model opens `<think>` itself); "cot": the step-by-step prompt of Chapter 4."""
    if mode == "cot":
        return cot_prompt(tokenizer, q, style=style, system=system)
    if mode != "think":
        raise ValueError(f"thinker prompt mode {mode!r}; use 'think' or 'cot'")
    labels = scoring.option_labels(len(q.options), style)
    return chat(tokenizer, scoring.question_text(q.question, q.options, labels, style), system=system,
                enable_thinking=True)


def think_span(tokens: Sequence[int], open_id: int | None, close_id: int | None) -> tuple[list[int], bool]:
    """The ids inside the thinking span of generated `tokens` (a leading `<think>` dropped, cut at the first
    `</think>`), and whether the span was closed."""
    toks = list(tokens)
    if open_id is not None and toks and toks[0] == open_id:
        toks = toks[1:]
    if close_id is not None and close_id in toks:
        return toks[: toks.index(close_id)], True
    return toks, False


def cache_key(thinker: str, *, mode: str, max_think_tokens: int, style: str, system: str | None) -> dict:
    """What a cached trace must have been generated with to be reused."""
    return {"thinker": thinker, "mode": mode, "max_think_tokens": int(max_think_tokens), "style": style,
            "system": system, "decoding": "greedy",
            "prompt": COT_INSTRUCTION if mode == "cot" else scoring.INSTRUCTION}


def read_cache(path: Path, key: dict) -> dict[str, ThinkTrace]:
    """Cached traces with this key (a half-written last line of a killed run is ignored)."""
    return {i: ThinkTrace.from_dict(row) for i, row in read_keyed(path, key).items()}


def model_mode(lm, mode: str = "auto") -> str:
    """'think' for models with a thinking span (when `mode` is auto), else 'cot'."""
    if mode == "auto":
        return "think" if thinking_tokens(lm.tokenizer) is not None else "cot"
    if mode == "think" and thinking_tokens(lm.tokenizer) is None:
        raise ValueError(f"{lm.source}: thinking mode needs single-token {THINK_OPEN} and {THINK_CLOSE} in "
                         "its tokenizer; use mode 'cot' (the step-by-step prompt)")
    if mode not in ("think", "cot"):
        raise ValueError(f"thinker mode {mode!r}; use auto, think or cot")
    return mode


def generate(lm, questions, *, thinker: str, cache: str | Path, max_think_tokens: int = 512,
             batch_size: int = 8, style: str = "letters", system: str | None = None, mode: str = "auto",
             progress: Callable[[int], None] | None = None) -> TraceSet:
    """Greedy traces of model `lm` for `questions`, reusing and extending the JSONL `cache`.

    Every row of a batch is generated for exactly `max_think_tokens` positions at most; the batch is padded
    to `batch_size` rows so every batch reuses the compiled decode loop.
    """
    mode = model_mode(lm, mode)
    cache = Path(cache)
    key = cache_key(thinker, mode=mode, max_think_tokens=max_think_tokens, style=style, system=system)
    have = read_cache(cache, key)
    todo = [q for q in questions if q.id not in have]
    result = TraceSet(thinker, {}, mode, cached_questions=len(questions) - len(todo))
    if not todo:
        result.traces = {q.id: have[q.id] for q in questions}
        return result
    open_id, close_id = thinking_tokens(lm.tokenizer) if mode == "think" else (None, None)
    stops = tuple(lm.stop_token_ids()) + ((close_id,) if close_id is not None else ())
    eos = set(lm.stop_token_ids())
    cache.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with cache.open("a") as f:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start: start + batch_size]
            prompts = [thinker_prompt(lm.tokenizer, q, mode=mode, style=style, system=system) for q in chunk]
            ids = [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
            out = lm.generate(ids + [ids[-1]] * (batch_size - len(ids)), max_new_tokens=max_think_tokens,
                              stop_token_ids=stops, decode_text=False)
            made = [_model_trace(lm, q, ids[i], out.tokens[i][out.valid[i]], out.entropy[i][out.valid[i]],
                                 mode=mode, open_id=open_id, close_id=close_id, style=style, eos=eos)
                    for i, q in enumerate(chunk)]
            for t in made:
                have[t.id] = t
                result.generated_tokens += t.n_tokens
            result.generated_questions += len(made)
            append_keyed(f, [t.to_dict() for t in made], key)
            if progress is not None:
                progress(len(chunk))
    result.seconds = time.perf_counter() - t0
    result.traces = {q.id: have[q.id] for q in questions}
    return result


def _model_trace(lm, q, prompt_ids, toks, ents, *, mode, open_id, close_id, style, eos: set) -> ThinkTrace:
    toks = [int(x) for x in toks]
    if mode == "think":
        inner, closed = think_span(toks, open_id, close_id)
        stop = "end_think" if closed else ("eos" if toks and toks[-1] in eos else "length")
    else:
        inner = [t for t in toks if t not in eos]
        stop = "eos" if toks and toks[-1] in eos else "length"
    text = lm.tokenizer.decode(inner, skip_special_tokens=True).strip()
    ents = [float(e) for e in ents]
    return ThinkTrace(q.id, text, len(toks), float(np.mean(ents)) if ents else 0.0, tuple(ents), tuple(toks),
                      len(prompt_ids), stop, parse_bracketed(text, scoring.option_labels(len(q.options), style)))


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


def file_name(thinker: str) -> str:
    """A thinker or answerer name as a file name (model paths keep their last components)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in thinker.strip("/"))[-80:]
