"""The one trace generator: a model reasons about each question once (greedy), with the per-token entropy of
every generated token, cached by its settings. Chapter 4 teachers (`entropy_jax.train.traces`) and Chapter 5
thinkers (`entropy_jax.thinking.traces`) both call `generate`.

Two modes:
- "cot": the step-by-step prompt (`prompts.cot_prompt`, which asks for the answer as `[[X]]`); the trace is the
  generated text up to the end of turn, and its own answer is parsed from the last `[[X]]`;
- "think": models whose tokenizer has single-token `<think>`/`</think>` (Qwen3) get the Chapter 3 question in
  their chat template with thinking enabled; the trace is the `<think>…</think>` span and generation stops at
  `</think>`.

Generation runs on the continuous-batching engine (`entropy_jax.llm.engine`, `batch_size` decode slots):
every generated token's full-vocabulary entropy (temperature 1, nats) and its id come from the decode loop
itself (no extra forward pass). Each trace is appended to a JSONL store (`entropy_jax.stores`, one fsync'd
line) the moment its request finishes, tagged with `cache_key(...)` — the source, the model's files
(`model_key`: a retrained model under the same path is another key) and the generation settings — and with its
question's content key (`mcqa.content_hash`). A killed run loses only the traces still decoding; a later or
resumed call generates only the questions the store lacks for that key and content (an edited question is
generated again, never served its old trace), so no finished trace is generated twice, and it writes exactly
the rows an uninterrupted run would have written (the engine runs `reproducible`, with the cache length of the
whole question set). Rows reach the file in finishing order, which a resumed run does not share; a call that
generated puts its rows in question order within the lines they hold (`_put_in_order`: an atomic rewrite that
moves lines), so a killed and resumed run ends with the very bytes of an uninterrupted one. In a multi-process
job every process generates and process 0 writes. `_decode` is the only place that calls the model. A prompt that leaves no room for `max_new_tokens` in the model's context is
an error naming the question ids before any generation (or, with `skip_long`, the question gets no trace and
is counted in `TraceRun.skipped_long`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from entropy_jax import runtime
from entropy_jax.data.mcqa import content_hash
from entropy_jax.llm import engine, prompts
from entropy_jax.llm.api import bucket
from entropy_jax.stores import JsonlStore, RunLock, RunLockedError, digest, to_json

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


def read_cache(cache: str | Path, key: dict, questions=None, *, repair: bool = False) -> dict[str, GeneratedTrace]:
    """Cached traces with this key (a torn last line of a killed run is ignored, with a note); with `questions`,
    only traces made from their current content (`mcqa.content_hash`). `repair`: also cut that torn line away
    now (`repair_cache`), not only when the cache is next extended."""
    content = None if questions is None else {q.id: content_hash(q) for q in questions}
    store = _store(cache, writable=False)
    rows = store.keyed(key, content=content)
    if repair and store.ignored_tail is not None:
        repair_cache(cache)
    return {i: GeneratedTrace.from_dict(row) for i, row in rows.items()}


def repair_cache(cache: str | Path) -> None:
    """Cut a torn last line (a writer killed mid-append) from the cache file, under its lock, with a note on the
    `entropy_jax.stores` logger. A cache that a live process is extending is left alone: the line it sees
    torn may be the one that process is writing, and its own first read has repaired the file."""
    cache = Path(cache)
    try:
        with RunLock(cache.parent, name=cache.name + ".lock"):
            _store(cache, writable=True).rows()
    except RunLockedError:
        pass


def cached(questions, *, source: str, cache: str | Path, mode: str, max_new_tokens: int, style: str = "letters",
           system: str | None = None, model: str | None = None) -> TraceRun | None:
    """The traces of every question from the cache (no model needed), or None when some are missing. `model`:
    the model's `model_key` (default: that of `source`). A torn last line a killed run left in the cache is
    cut away (`repair_cache`), so it is noted once, not by every later run."""
    model = model_key(source) if model is None else model
    have = read_cache(cache, cache_key(source, mode=mode, max_new_tokens=max_new_tokens, style=style,
                                       system=system, model=model), questions, repair=True)
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
             skip_long: bool = False, write: bool | None = None) -> TraceRun:
    """Greedy traces of model `lm` (named `source` in the cache key; `model`: its `model_key`, default that of
    `source`) for `questions`, reusing and extending the JSONL store `cache`; while it generates, the cache file
    is locked (`RunLock`) against a second writer. A question whose prompt leaves no room for `max_new_tokens`
    is a ValueError naming it before anything is generated, or, with `skip_long`, gets no trace (its id is in
    `skipped_long`; the returned traces lack it).

    The questions the store lacks run on the continuous-batching engine (`engine.generate`, `batch_size`
    decode slots); each finished trace is appended and fsync'd at once, from the engine's `on_result`, so a
    killed run loses only the traces still being decoded. `write` (default: `runtime.is_writer()`, i.e.
    process 0 of a multi-process job) says whether this process locks and appends; the others generate the
    same traces without touching the file. `progress(n)` is called as traces finish."""
    mode = model_mode(lm, mode)
    cache = Path(cache)
    model = model_key(source) if model is None else model
    key = cache_key(source, mode=mode, max_new_tokens=max_new_tokens, style=style, system=system, model=model)
    content = {q.id: content_hash(q) for q in questions}
    found = _store(cache, writable=False)
    have = {i: GeneratedTrace.from_dict(r) for i, r in found.keyed(key, content=content).items()}
    todo = [q for q in questions if q.id not in have]
    result = TraceRun({}, mode, cached_questions=len(questions) - len(todo))
    write = runtime.is_writer() if write is None else write
    # over every question (not only those left): the engine's cache length comes from the whole set
    long = too_long(lm, questions, mode=mode, max_new_tokens=max_new_tokens, style=style, system=system)
    long_todo = {i: n for i, n in long.items() if i not in have}
    if long_todo and not skip_long:
        shown = ", ".join(f"{i} ({n} tokens)" for i, n in list(long_todo.items())[:5])
        raise ValueError(f"{source}: {len(long_todo)} prompts leave no room for {max_new_tokens} new tokens in "
                         f"the context of {lm.config.max_position_embeddings}: {shown}")
    result.skipped_long = tuple(long_todo)
    todo = [q for q in todo if q.id not in long]
    t0 = time.perf_counter()
    # a run killed after its last append but before `_put_in_order` left the file out of order: finish that too
    reorder = write and not _in_order(found.rows(), key, content)
    with RunLock(cache.parent, name=cache.name + ".lock") if write and (todo or reorder) else contextlib.nullcontext():
        store = _store(cache, writable=write and bool(todo or reorder))
        if store.writable:
            store.rows()  # a writer's first read cuts a torn tail away, before appending or reordering
        if todo:
            # what another process added while we were not holding the lock
            have |= {i: GeneratedTrace.from_dict(r) for i, r in store.keyed(key, content=content).items()}
            todo = [q for q in todo if q.id not in have]
            result.cached_questions = len(questions) - len(todo) - len(result.skipped_long)
        # every process of a multi-process job must decode the same requests (a collective: called by all)
        runtime.check_same_everywhere([q.id for q in todo], f"questions left to trace in {cache}")

        def keep(t: GeneratedTrace) -> None:
            """A finished trace: append it (one fsync'd line), count it, report progress."""
            if write:
                store.append([t.to_dict() | {"key": key, "content": content[t.id]}])
            have[t.id] = t
            result.generated_tokens += t.n_tokens
            result.generated_questions += 1
            if progress is not None:
                progress(1)

        if todo:
            _decode(lm, [q for q in questions if q.id not in long], todo, mode=mode, max_new_tokens=max_new_tokens,
                    slots=batch_size, style=style, system=system, on_trace=keep)
            result.seconds = time.perf_counter() - t0
        if write and (todo or reorder):
            _put_in_order(cache, key, content)
    result.traces = {q.id: have[q.id] for q in questions if q.id in have}
    return result


def _lines(cache: Path) -> list[tuple[bytes, dict | None]]:
    """(raw line, row) of every non-blank line of the store (row None for a line that is not a JSON object)."""
    if not cache.exists():
        return []
    out = []
    for raw in cache.read_bytes().split(b"\n"):
        if raw.strip():
            try:
                row = json.loads(raw)
            except ValueError:
                row = None
            out.append((raw, row if isinstance(row, dict) else None))
    return out


def _ours(key: dict, content: dict[str, str]) -> Callable[[dict | None], bool]:
    """Whether a row is one of this call's: its key, and one of its questions' current content."""
    key = to_json(key)
    return lambda row: row is not None and row.get("key") == key and row.get("id") in content and \
        row.get("content") == content[row["id"]]


def _in_order(rows: list[dict], key: dict, content: dict[str, str]) -> bool:
    """Whether this call's rows among `rows` (file order) come in question order (`_put_in_order`)."""
    rank = {i: n for n, i in enumerate(content)}
    ours = _ours(key, content)
    ranks = [rank[r["id"]] for r in rows if ours(r)]
    return all(x <= y for x, y in zip(ranks, ranks[1:]))


def _put_in_order(cache: Path, key: dict, content: dict[str, str]) -> None:
    """Rewrite the store so that this call's rows come in question order (ties in file order), each in one of
    the lines its rows held; every other line keeps its place. Atomic: a temporary file, fsync, rename.

    Traces are appended as they finish, and a resumed run finishes its traces in another order than an
    uninterrupted one (other requests share its slots). The lines a call's rows hold are those of the traces it
    found plus those it appended, and the rows are the same in both cases, so a run killed and resumed ends
    with the same bytes as an uninterrupted one. Rows are moved, never re-encoded."""
    lines = _lines(cache)
    rank = {i: n for n, i in enumerate(content)}
    ours = _ours(key, content)
    places = [n for n, (_, row) in enumerate(lines) if ours(row)]
    moved = sorted((lines[n] for n in places), key=lambda ln: rank[ln[1]["id"]])
    if [lines[n] for n in places] == moved:
        return
    for n, ln in zip(places, moved):
        lines[n] = ln
    tmp = cache.with_name(cache.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(b"".join(raw + b"\n" for raw, _ in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, cache)
    fd = os.open(cache.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself reaches the disk
    finally:
        os.close(fd)


def _decode(lm, questions, todo, *, mode: str, max_new_tokens: int, slots: int, style: str, system: str | None,
            on_trace: Callable[[GeneratedTrace], None]) -> None:
    """The traces of `todo` (a subset of `questions`), each handed to `on_trace` as soon as it finishes: greedy,
    at most `max_new_tokens`, stopping at the end of turn (and `</think>` in thinking mode). The one
    generation call of the trace generator.

    The engine runs `reproducible`, with the cache length of the whole question set: a trace does not depend
    on which other questions are left, so a resumed run writes exactly the rows an uninterrupted run writes."""
    open_id, close_id = thinking_tokens(lm.tokenizer) if mode == "think" else (None, None)
    eos = tuple(lm.stop_token_ids())
    stops = eos + ((close_id,) if close_id is not None else ())

    def ids(q):
        return lm.tokenizer(prompt(lm.tokenizer, q, mode=mode, style=style, system=system),
                            add_special_tokens=False)["input_ids"]

    prompt_ids = {q.id: ids(q) for q in questions}
    by_id = {q.id: q for q in todo}
    cache_len = bucket(max(len(p) for p in prompt_ids.values()) + max_new_tokens, lm.config.max_position_embeddings)
    requests = [engine.Request(prompt_ids[q.id], max_new_tokens, stops, q.id) for q in todo]

    def finished(res: engine.Result) -> None:
        q = by_id[res.id]
        on_trace(_trace(lm, q, prompt_ids[q.id], res.tokens, res.entropy, mode=mode, open_id=open_id,
                        close_id=close_id, style=style, eos=set(eos)))

    engine.generate(lm, requests, slots=slots, cache_len=cache_len, on_result=finished, decode_text=False,
                    reproducible=True)


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
