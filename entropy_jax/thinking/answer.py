"""Answerers (Chapter 5): read question + a thinker's trace, give the option label only.

The answerer is scored as in Chapter 3 (`llm.scoring`: one forward pass, the next-token distribution at the
answer step, full-vocabulary entropy in nats, prediction = argmax over the label tokens); only the prompt
changes. The trace is a prefix the answerer is conditioned on — the chapter's point is that the answerer is
not a free solver — so by default it is placed where the answerer's own reasoning would be:

- "think" (answerers with a thinking span, e.g. Qwen3): the assistant turn opens `<think>`, holds the trace,
  closes `</think>`, and the next token is the answer. No trace: the template's thinking-disabled prompt
  (an empty span).
- "assistant" (every other model): the assistant turn starts with the trace, then the answer cue
  `ANSWER_CUE` ("The correct option is"); the next token is the answer. No trace: the cue right after the
  generation prompt, so every thinker of a matrix is read through the same scaffold.
- "user" (an option): the Chapter 3 user turn, then the trace under a header and a reminder to reply with
  the label only; the answer is read at the generation prompt. No trace: the Chapter 3 prompt exactly.

Prompt format (`prompts.PromptFormat`): the Chapter 3 user turn above is the format's — its instruction (none:
no instruction and no reminder after the trace) and its few-shot examples as earlier turns. In a plain or mmlu
format there is no chat template, so the only place is "user": the format's text up to the options, the trace
under `TRACE_HEADER` (and the reminder, with an instruction), then "\\nAnswer:".

Truncation policy: when the prompt would not fit the answerer's context (`max_position_embeddings`, or a
smaller `context` the caller sets), the trace keeps its END — the conclusions — and loses its beginning; a
marker line saying how many answerer tokens were cut replaces the lost part. Every scored row records
`truncated` and `dropped_tokens`; a trace is never silently dropped.
"""

from __future__ import annotations

import dataclasses

from entropy_jax.llm import prompts, scoring
from entropy_jax.llm.prompts import chat_messages
from entropy_jax.llm.traces import THINK_CLOSE, THINK_OPEN, thinking_tokens

TRACE_HEADER = "Here is a step-by-step analysis of the question:"
TRACE_REMINDER = "Now reply with the {kind} of the correct option only ({labels}), nothing else."
ANSWER_CUE = "The correct option is"
PLACES = ("think", "assistant", "user")
CUT_MARKER = "[… the first {n} tokens of this analysis were cut to fit the context …]"


@dataclasses.dataclass(frozen=True)
class AnswerPrompt:
    """The exact text an answerer is scored on, and what happened to the trace to fit it in."""

    text: str
    place: str  # "think" | "assistant" | "user"
    trace_tokens: int  # the trace's length in the answerer's tokens (before any cut)
    truncated: bool = False
    dropped_tokens: int = 0


def trace_place(tokenizer, place: str = "auto", fmt: prompts.PromptFormat = prompts.DEFAULT_FORMAT) -> str:
    """The placement for this answerer: `auto` = think when its tokenizer has the thinking tokens, else
    assistant; a plain or mmlu format (no chat template) has the user place only."""
    if not fmt.chat:
        if place not in ("auto", "user"):
            raise ValueError(f"trace place {place!r} needs the chat template; prompt format {fmt.kind!r} puts the "
                             "trace in the prompt text (place 'user' or 'auto')")
        return "user"
    if place == "auto":
        return "think" if thinking_tokens(tokenizer) is not None else "assistant"
    if place not in PLACES:
        raise ValueError(f"trace place {place!r}; use auto or one of {list(PLACES)}")
    if place == "think" and thinking_tokens(tokenizer) is None:
        raise ValueError(f"trace place 'think' needs single-token {THINK_OPEN} and {THINK_CLOSE} in the "
                         "answerer's tokenizer; use 'assistant' or 'user'")
    return place


def _render(tokenizer, q, trace: str | None, *, place: str, style: str, system: str | None,
            fmt: prompts.PromptFormat = prompts.DEFAULT_FORMAT) -> str:
    labels = prompts.option_labels(len(q.options), style)
    if trace is None and (place == "user" or not fmt.chat):
        return prompts.render_prompt(tokenizer, q, fmt, style=style, system=system)
    block = "" if trace is None else f"\n\n{TRACE_HEADER}\n{trace.strip()}" + (
        "" if fmt.instruction is None else "\n\n" + TRACE_REMINDER.format(kind=prompts.label_kind(style),
                                                                          labels=prompts.label_listing(labels)))
    if not fmt.chat:
        if system:
            raise ValueError(f"--system needs the chat template; prompt format {fmt.kind!r} has none")
        return prompts.prompt_text(q, fmt, style=style, cue=False) + block + prompts.TEXT_CUE
    turns = prompts.prompt_messages(q, fmt, style=style, system=system)
    if place == "think":
        if trace is None:
            return chat_messages(tokenizer, turns, enable_thinking=False)
        head = chat_messages(tokenizer, turns, enable_thinking=True)
        # templates of reasoning distils already open the span in the generation prompt
        opened = head.rstrip().endswith(THINK_OPEN)
        return head + ("" if opened else THINK_OPEN + "\n") + trace.strip() + f"\n{THINK_CLOSE}\n\n"
    if place == "assistant":
        head = chat_messages(tokenizer, turns)
        return head + ("" if trace is None else trace.strip() + "\n") + ANSWER_CUE
    turns[-1]["content"] += block
    return chat_messages(tokenizer, turns)


def answer_prompt_text(tokenizer, q, trace: str | None, *, place: str, style: str = "letters",
                       system: str | None = None, fmt: prompts.PromptFormat = prompts.DEFAULT_FORMAT) -> str:
    """The answerer's prompt for `q` after `trace` at a resolved `place` (`trace_place`) in format `fmt`,
    uncut."""
    return _render(tokenizer, q, trace, place=place, style=style, system=system, fmt=fmt)


def _n(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _token_starts(tokenizer, text: str) -> tuple[list[int], list[int] | None]:
    """Token ids of `text` and each token's first character (None for tokenizers without offsets), so a cut
    keeps the original characters instead of a decode that may respace them."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [a for a, _ in enc["offset_mapping"]]
    except NotImplementedError:  # Python (slow) tokenizers have no offsets
        return tokenizer(text, add_special_tokens=False)["input_ids"], None


def answer_prompt(tokenizer, q, trace: str | None, *, context: int, place: str = "auto", style: str = "letters",
                  system: str | None = None, fmt: prompts.PromptFormat = prompts.DEFAULT_FORMAT) -> AnswerPrompt:
    """The answerer's prompt for question `q` after `trace` (None: no trace) in format `fmt`, cut to leave room
    for the answer token within `context` positions (the truncation policy above)."""
    place = trace_place(tokenizer, place, fmt)
    text = _render(tokenizer, q, trace, place=place, style=style, system=system, fmt=fmt)
    if trace is None:
        if _n(tokenizer, text) >= context:
            raise ValueError(f"question {q.id!r}: the prompt alone is longer than the answerer's context of "
                             f"{context} tokens")
        return AnswerPrompt(text, place, 0)
    trace = trace.strip()
    ids, starts = _token_starts(tokenizer, trace)
    excess = _n(tokenizer, text) - (context - 1)
    if excess <= 0:
        return AnswerPrompt(text, place, len(ids))
    # Retokenizing a cut text can merge or split tokens at the seams: cut, measure, cut a little more.
    keep = len(ids) - excess - _n(tokenizer, CUT_MARKER.format(n=len(ids))) - 2
    for _ in range(8):
        if keep <= 0:
            raise ValueError(f"question {q.id!r}: the answerer's context of {context} tokens has no room for "
                             "any of the trace after the prompt")
        kept = trace[starts[len(ids) - keep]:] if starts is not None else tokenizer.decode(ids[len(ids) - keep:])
        cut = CUT_MARKER.format(n=len(ids) - keep) + "\n" + kept.lstrip()
        text = _render(tokenizer, q, cut, place=place, style=style, system=system, fmt=fmt)
        over = _n(tokenizer, text) - (context - 1)
        if over <= 0:
            return AnswerPrompt(text, place, len(ids), True, len(ids) - keep)
        keep -= over + 1
    raise RuntimeError(f"question {q.id!r}: could not cut the trace to fit {context} tokens")


def score(lm, questions, traces: dict, *, context: int | None = None, place: str = "auto", style: str = "letters",
          system: str | None = None, pad_to: int | None = None,
          fmt: prompts.PromptFormat = prompts.DEFAULT_FORMAT) -> list[tuple[AnswerPrompt, scoring.Scored]]:
    """Answer-step scores of `lm` for `questions` with `traces[q.id]` (a `ThinkTrace`, or None: no trace), prompts
    in format `fmt`. `context` defaults to the answerer's `max_position_embeddings`."""
    if lm.tokenizer is None:
        raise ValueError(f"{lm.source} has no tokenizer; answerers read text prompts")
    ctx = min(context or lm.config.max_position_embeddings, lm.config.max_position_embeddings)
    made = []
    for q in questions:
        t = traces.get(q.id)
        made.append(answer_prompt(lm.tokenizer, q, None if t is None else t.text, context=ctx, place=place,
                                  style=style, system=system, fmt=fmt))
    labels = [scoring.label_token_ids(lm.tokenizer, p.text, prompts.option_labels(len(q.options), style))
              for p, q in zip(made, questions)]
    scored = scoring.score_batch(lm, [p.text for p in made], labels, pad_to=pad_to)
    return list(zip(made, scored))
