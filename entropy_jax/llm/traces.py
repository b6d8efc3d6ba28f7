"""The one trace generator: a model reasons about each question once (greedy), with the per-token entropy of
every generated token, cached by its settings. Chapter 4 teachers (`entropy_jax.train.traces`) and Chapter 5
thinkers (`entropy_jax.thinking.traces`) both call `generate`.

Two modes:
- "cot": the step-by-step prompt (`prompts.cot_prompt`, which asks for the answer as `[[X]]`); the trace is the
  generated text up to the end of turn, and its own answer is parsed from the last `[[X]]`;
- "think": models whose tokenizer has single-token `<think>`/`</think>` (Qwen3) get the Chapter 3 question in
  their chat template with thinking enabled; the trace is the `<think>…</think>` span and generation stops at
  `</think>`.

Every generated token's full-vocabulary entropy (temperature 1, nats) and its id come from the decode loop
itself (no extra forward pass). Traces are appended batch by batch to a JSONL store (`entropy_jax.stores`),
each row tagged with `cache_key(...)` — the source, the model's files (`model_key`: a retrained model under
the same path is another key) and the generation settings — and with its question's content key
(`mcqa.content_hash`); a later or resumed call generates only the questions the store lacks for that key and
content (an edited question is generated again, never served its old trace), so no token is generated twice.
Batches are padded to `batch_size` rows, so every batch reuses one compiled decode loop; `_decode` is the only
place that calls the model. A prompt that leaves no room for `max_new_tokens` in the model's context is an
error naming the question ids before any generation (or, with `skip_long`, the question gets no trace and is
counted in `TraceRun.skipped_long`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from entropy_jax.data.mcqa import content_hash
from entropy_jax.llm import prompts
from entropy_jax.stores import JsonlStore, RunLock, digest

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
MODES = ("cot", "think")


@dataclasses.dataclass(frozen=True)
class GeneratedTrace:
    """One question's generated trace. `text` is the decoded trace (stripped); `tokens` the generated ids (the
    model's vocabulary; an opening `<think>`, a closing `</think>` or the end of turn included), `entropies`
    their full-vocabulary entropies (nats), `mean_entropy` their mean; `n_tokens` their count,
    `n_prompt_tokens` the prompt's length; `stop` why generation ended: "end_think" (closed its thinking span),
    "eos" or "length" (hit the token budget); `pred` the option the trace concludes (`[[X]]`; None: none)."""

    id: str
    text: str
    n_tokens: int
    mean_entropy: float
    entropies: tuple[float, ...]
    tokens: tuple[int, ...]
    n_prompt_tokens: int
    stop: str
    pred: int | None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["entropies"], d["tokens"] = list(self.entropies), list(self.tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratedTrace:
        kw = {f.name: d.get(f.name) for f in dataclasses.fields(cls)}
        kw["entropies"], kw["tokens"] = tuple(kw["entropies"] or ()), tuple(kw["tokens"] or ())
        return cls(**kw)


@dataclasses.dataclass
class TraceRun:
    """Traces by question id, the mode they were made in, and what producing them cost in this call."""

    traces: dict[str, GeneratedTrace]
    mode: str
    generated_tokens: int = 0
    generated_questions: int = 0
    cached_questions: int = 0
    seconds: float = 0.0
    skipped_long: tuple[str, ...] = ()  # ids whose prompt left no room for the budget (`skip_long`)


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


def model_mode(lm, mode: str = "auto") -> str:
    """'think' for models with a thinking span (when `mode` is auto), else 'cot'."""
    if mode == "auto":
        return "think" if thinking_tokens(lm.tokenizer) is not None else "cot"
    if mode == "think" and thinking_tokens(lm.tokenizer) is None:
        raise ValueError(f"{lm.source}: thinking mode needs single-token {THINK_OPEN} and {THINK_CLOSE} in "
                         "its tokenizer; use mode 'cot' (the step-by-step prompt)")
    if mode not in MODES:
        raise ValueError(f"trace mode {mode!r}; use auto, think or cot")
    return mode


def prompt(tokenizer, q, *, mode: str, style: str = "letters", system: str | None = None) -> str:
    """The exact text the model continues. "think": the Chapter 3 question in the chat template with thinking
    enabled (the model opens `<think>` itself); "cot": the step-by-step prompt."""
    if mode == "cot":
        return prompts.cot_prompt(tokenizer, q, style=style, system=system)
    if mode != "think":
        raise ValueError(f"trace prompt mode {mode!r}; use 'think' or 'cot'")
    labels = prompts.option_labels(len(q.options), style)
    return prompts.chat(tokenizer, prompts.question_text(q.question, q.options, labels, style), system=system,
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


def model_key(source: str) -> str | None:
    """A short key of the files a model source names (`llm.fingerprint`): None for a hub id or a plain label,
    which are known by their name alone."""
    from entropy_jax.llm.api import fingerprint

    fp = fingerprint(source)
    return digest(fp) if "files" in fp else None


def cache_key(source: str, *, mode: str, max_new_tokens: int, style: str, system: str | None,
              model: str | None = None) -> dict:
    """What a cached trace must have been generated with to be reused (`model`: `model_key(source)`)."""
    return {"source": source, "model": model, "mode": mode, "max_new_tokens": int(max_new_tokens), "style": style,
            "system": system, "decoding": "greedy",
            "prompt": prompts.COT_INSTRUCTION if mode == "cot" else prompts.INSTRUCTION}


def _store(cache: str | Path, *, writable: bool) -> JsonlStore:
    return JsonlStore(cache, required=("id", "key"), writable=writable)


def read_cache(cache: str | Path, key: dict, questions=None) -> dict[str, GeneratedTrace]:
    """Cached traces with this key (a torn last line of a killed run is ignored, with a note); with `questions`,
    only traces made from their current content (`mcqa.content_hash`)."""
    content = None if questions is None else {q.id: content_hash(q) for q in questions}
    rows = _store(cache, writable=False).keyed(key, content=content)
    return {i: GeneratedTrace.from_dict(row) for i, row in rows.items()}


def cached(questions, *, source: str, cache: str | Path, mode: str, max_new_tokens: int, style: str = "letters",
           system: str | None = None, model: str | None = None) -> TraceRun | None:
    """The traces of every question from the cache (no model needed), or None when some are missing. `model`:
    the model's `model_key` (default: that of `source`)."""
    model = model_key(source) if model is None else model
    have = read_cache(cache, cache_key(source, mode=mode, max_new_tokens=max_new_tokens, style=style,
                                       system=system, model=model), questions)
    if not all(q.id in have for q in questions):
        return None
    return TraceRun({q.id: have[q.id] for q in questions}, mode, cached_questions=len(questions))


def too_long(lm, questions, *, mode: str, max_new_tokens: int, style: str = "letters",
             system: str | None = None) -> dict[str, int]:
    """{id: prompt tokens} of the questions whose prompt leaves no room for `max_new_tokens` in `lm`'s context."""
    limit = lm.config.max_position_embeddings - max_new_tokens
    out = {}
    for q in questions:
        n = len(lm.tokenizer(prompt(lm.tokenizer, q, mode=mode, style=style, system=system),
                             add_special_tokens=False)["input_ids"])
        if n > limit:
            out[q.id] = n
    return out


def generate(lm, questions, *, source: str, cache: str | Path, mode: str = "auto", max_new_tokens: int = 512,
             batch_size: int = 8, style: str = "letters", system: str | None = None,
             progress: Callable[[int], None] | None = None, model: str | None = None,
             skip_long: bool = False) -> TraceRun:
    """Greedy traces of model `lm` (named `source` in the cache key; `model`: its `model_key`, default that of
    `source`) for `questions`, reusing and extending the JSONL store `cache`; while it generates, the cache file
    is locked (`RunLock`) against a second writer. A question whose prompt leaves no room for `max_new_tokens`
    is a ValueError naming it before anything is generated, or, with `skip_long`, gets no trace (its id is in
    `skipped_long`; the returned traces lack it)."""
    mode = model_mode(lm, mode)
    cache = Path(cache)
    model = model_key(source) if model is None else model
    key = cache_key(source, mode=mode, max_new_tokens=max_new_tokens, style=style, system=system, model=model)
    have = read_cache(cache, key, questions)
    todo = [q for q in questions if q.id not in have]
    result = TraceRun({}, mode, cached_questions=len(questions) - len(todo))
    long = too_long(lm, todo, mode=mode, max_new_tokens=max_new_tokens, style=style, system=system)
    if long and not skip_long:
        shown = ", ".join(f"{i} ({n} tokens)" for i, n in list(long.items())[:5])
        raise ValueError(f"{source}: {len(long)} prompts leave no room for {max_new_tokens} new tokens in the "
                         f"context of {lm.config.max_position_embeddings}: {shown}")
    result.skipped_long = tuple(long)
    todo = [q for q in todo if q.id not in long]
    if todo:
        open_id, close_id = thinking_tokens(lm.tokenizer) if mode == "think" else (None, None)
        eos = tuple(lm.stop_token_ids())
        stops = eos + ((close_id,) if close_id is not None else ())
        t0 = time.perf_counter()
        with RunLock(cache.parent, name=cache.name + ".lock"):
            store = _store(cache, writable=True)  # its first read repairs a torn tail before appending
            content = {q.id: content_hash(q) for q in questions}
            # what another process added while we were not holding the lock
            have |= {i: GeneratedTrace.from_dict(r) for i, r in store.keyed(key, content=content).items()}
            todo = [q for q in todo if q.id not in have]
            result.cached_questions = len(questions) - len(todo) - len(long)
            for start in range(0, len(todo), batch_size):
                chunk = todo[start: start + batch_size]
                ids = [lm.tokenizer(prompt(lm.tokenizer, q, mode=mode, style=style, system=system),
                                    add_special_tokens=False)["input_ids"] for q in chunk]
                made = [_trace(lm, q, ids[i], toks, ents, mode=mode, open_id=open_id, close_id=close_id,
                               style=style, eos=set(eos))
                        for i, (q, (toks, ents)) in enumerate(zip(chunk, _decode(lm, ids, batch_size=batch_size,
                                                                                  max_new_tokens=max_new_tokens,
                                                                                  stop_token_ids=stops)))]
                for t in made:
                    have[t.id] = t
                    result.generated_tokens += t.n_tokens
                result.generated_questions += len(made)
                store.append([t.to_dict() | {"key": key, "content": content_hash(q)} for q, t in zip(chunk, made)])
                if progress is not None:
                    progress(len(chunk))
        result.seconds = time.perf_counter() - t0
    result.traces = {q.id: have[q.id] for q in questions if q.id in have}
    return result


def _decode(lm, prompt_ids: list[list[int]], *, batch_size: int, max_new_tokens: int,
            stop_token_ids: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(generated ids, their entropies) of each prompt: greedy, at most `max_new_tokens`, stopping at any of
    `stop_token_ids`. The rows are padded to `batch_size` (repeating the last prompt) so every batch runs the
    same compiled decode loop. The one generation call of the trace generator."""
    out = lm.generate(prompt_ids + [prompt_ids[-1]] * (batch_size - len(prompt_ids)), max_new_tokens=max_new_tokens,
                      stop_token_ids=stop_token_ids, decode_text=False)
    return [(out.tokens[i][out.valid[i]], out.entropy[i][out.valid[i]]) for i in range(len(prompt_ids))]


def _trace(lm, q, prompt_ids, toks, ents, *, mode, open_id, close_id, style, eos: set) -> GeneratedTrace:
    toks = [int(x) for x in toks]
    if mode == "think":
        inner, closed = think_span(toks, open_id, close_id)
        stop = "end_think" if closed else ("eos" if toks and toks[-1] in eos else "length")
    else:
        inner = [t for t in toks if t not in eos]
        stop = "eos" if toks and toks[-1] in eos else "length"
    text = lm.tokenizer.decode(inner, skip_special_tokens=True).strip()
    ents = [float(e) for e in ents]
    return GeneratedTrace(q.id, text, len(toks), float(np.mean(ents)) if ents else 0.0, tuple(ents), tuple(toks),
                          len(prompt_ids), stop,
                          prompts.parse_bracketed(text, prompts.option_labels(len(q.options), style)))
