"""Many prompts through the generation engine: a JSONL prompt file in, one result per prompt out (the pipeline of
`launch.generate --prompts FILE`).

    lines = batch.read_prompts("prompts.jsonl")          # [{"prompt": str, "max_new_tokens": int?, "id": str?}]
    out = batch.run(lm, lines, slots=8, batching="continuous", max_new_tokens=64)
    out["results"][0]["tokens"], out["results"][0]["entropy"], out["stats"]["tokens_per_s"]

A prompt file holds one JSON object per line: "prompt" (a non-empty string; rendered in the tokenizer's chat
template as one user turn with `chat=True`, as `launch.generate --prompt` does), optionally "max_new_tokens" (an
integer ≥ 1; default the caller's) and "id" (a string, unique in the file; default the line number as a string:
ids key the results and, when sampling, each request's PRNG key — `engine.request_key`). Blank lines are
skipped; an unknown field, a wrong type, a duplicate id, a prompt that does not fit the model's context with its
budget or a file without prompts is an error naming the file and line.

`run` hands the requests to `engine.generate` (continuous batching over `slots` decode slots, or static batches of
`slots` for comparison) and returns {"results": one dict per prompt in file order, "stats": `engine.Stats`}. In a
multi-process job every process reads the file and runs the same requests (checked: `runtime.check_same_everywhere`)
and holds the same results; the caller writes from process 0 (`runtime.is_writer`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from entropy_jax import _validate, runtime
from entropy_jax.llm import engine
from entropy_jax.stores import digest

FIELDS = ("prompt", "max_new_tokens", "id")


@dataclasses.dataclass(frozen=True)
class PromptLine:
    """One prompt of a prompt file: its text, its own budget (None: the run's default), its id and the 1-based
    line it came from."""

    prompt: str
    max_new_tokens: int | None
    id: str
    line: int
    path: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}, line {self.line}"


def read_prompts(path: str | os.PathLike) -> list[PromptLine]:
    """The prompts of a JSONL prompt file (format in the module docstring), in file order. Errors are ValueErrors
    naming the file and the 1-based line."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: prompt file not found" if not p.exists() else f"{p}: not a file")
    text = _validate.read_text(p)
    out: list[PromptLine] = []
    first: dict[str, int] = {}
    for line, raw in enumerate(io.StringIO(text, newline=None), 1):
        if not raw.strip():
            continue
        where = f"{p}, line {line}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object {{\"prompt\": ...}}, got {type(row).__name__}")
        unknown = sorted(set(row) - set(FIELDS))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; a prompt line has {list(FIELDS)}")
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{where}: \"prompt\" must be a non-empty string, got {prompt!r}")
        budget = row.get("max_new_tokens")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise ValueError(f"{where}: \"max_new_tokens\" must be an integer ≥ 1, got {budget!r}")
        rid = row.get("id", str(line))
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"{where}: \"id\" must be a non-empty string, got {rid!r}")
        if rid in first:
            raise ValueError(f"{where}: duplicate id {rid!r} (first on line {first[rid]})")
        first[rid] = line
        out.append(PromptLine(prompt, budget, rid, line, str(p)))
    if not out:
        raise ValueError(f"{p}: no prompts (one JSON object per line: {{\"prompt\": ..., \"max_new_tokens\": ..., "
                         "\"id\": ...}})")
    return out


def to_requests(lm, lines: Sequence[PromptLine], *, max_new_tokens: int = 64, chat: bool = True,
             system: str | None = None) -> list[engine.Request]:
    """The engine requests of prompt lines: the prompt encoded (chat template with `chat`), its own budget or
    `max_new_tokens`, the model's stop ids, its id. A prompt that leaves no room for its budget in the model's
    context is a ValueError naming its file, line and id."""
    ids = lm.encode([ln.prompt for ln in lines], chat=chat, system=system)
    limit = lm.config.max_position_embeddings
    out = []
    for ln, toks in zip(lines, ids):
        budget = max_new_tokens if ln.max_new_tokens is None else ln.max_new_tokens
        if len(toks) + budget > limit:
            raise ValueError(f"{ln.where} (id {ln.id!r}): {len(toks)} prompt tokens + {budget} new tokens exceed "
                             f"the context of {lm.source} ({limit} positions)")
        out.append(engine.Request(tuple(toks), budget, None, ln.id))
    return out


def result_row(res: engine.Result, line: PromptLine, budget: int) -> dict:
    """The JSON object of one finished prompt: id, line, tokens (ids), entropy and log_prob per generated token
    (nats), text, stop reason, prompt length, budget, mean entropy."""
    return {"id": res.id, "line": line.line, "tokens": res.tokens.tolist(), "entropy": res.entropy.tolist(),
            "log_prob": res.log_prob.tolist(), "text": res.text, "stop_reason": res.stop_reason,
            "n_tokens": len(res.tokens), "prompt_tokens": res.prompt_length, "max_new_tokens": budget,
            "mean_entropy": float(np.mean(res.entropy)) if len(res.tokens) else None}


def run(lm, lines: Sequence[PromptLine], *, max_new_tokens: int = 64, chat: bool = True, system: str | None = None,
        slots: int = 8, batching: str = "continuous", temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
        chunk_steps: int = 32, progress: bool = False, reqs: Sequence[engine.Request] | None = None) -> dict:
    """Generate every prompt line; returns {"results": [`result_row`, …] in file order, "stats":
    `engine.Stats.to_dict()` (forward_passes, generated_tokens, row_steps, wasted_row_steps, tokens_per_s, prefill
    and decode seconds — compilation included unless compiled before — and the trace counts of the call)}.

    `batching` "continuous" (the engine, `slots` decode slots) or "static" (today's `LanguageModel.generate` over
    consecutive batches of `slots`); greedy at temperature 0, else sampled per request from (`seed`, id). `reqs`:
    the lines' requests if already built (`to_requests`, e.g. to check them before other work)."""
    if reqs is None:
        reqs = to_requests(lm, lines, max_new_tokens=max_new_tokens, chat=chat, system=system)
    runtime.check_same_everywhere(digest([[r.id, r.max_new_tokens, list(r.prompt)] for r in reqs]),
                                  "prompt requests")
    results, stats = engine.generate(lm, reqs, slots=slots, batching=batching, temperature=temperature, top_p=top_p,
                                     seed=seed, chunk_steps=chunk_steps, progress=progress)
    return {"results": [result_row(res, ln, r.max_new_tokens) for res, ln, r in zip(results, lines, reqs)],
            "stats": stats.to_dict()}
