"""Prompts, the one place for them (Chapters 3–5): chat messages, the answer-only and step-by-step
instructions, option labels and their wording, and the `[[X]]` answer format of chain-of-thought traces.

    user = question_text(q.question, q.options, q.labels())        # instruction, question, "A. …" lines
    text = render(tokenizer, q.question, q.options)                   # chat template + generation prompt
    text = cot_prompt(tokenizer, q)                                   # the step-by-step prompt (ends in [[X]])
    parse_bracketed("… so [[C]].", ("A", "B", "C", "D"))              # → 2

Option labels are `entropy_jax.data.mcqa.option_labels`: "A".."Z" (letters) or "1".."26" (numbers). With
numbers, labels from "10" on are two tokens in vocabularies that split digits (SmolLM2, Qwen); answer-step
scoring reads them as token sequences (`entropy_jax.llm.scoring.label_token_ids`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from entropy_jax.data.mcqa import option_labels

__all__ = [
    "COT_INSTRUCTION",
    "INSTRUCTION",
    "chat",
    "cot_prompt",
    "label_kind",
    "label_listing",
    "messages",
    "option_labels",
    "parse_bracketed",
    "question_text",
    "render",
]

INSTRUCTION = ("Answer the following multiple-choice question. Reply with the {kind} of the correct option "
               "only ({labels}), nothing else.")
COT_INSTRUCTION = ("Answer the following multiple-choice question. Think step by step, then give the {kind} of "
                   "the correct option ({labels}) in double square brackets, for example [[{example}]].")
BRACKETED = re.compile(r"\[\[\s*([A-Za-z]|\d{1,2})\s*\]\]")


def label_kind(style: str) -> str:
    """"letter" or "number": how instructions name a label of `style`."""
    return "letter" if style == "letters" else "number"


def label_listing(labels: Sequence[str]) -> str:
    """"A, B, C or D"."""
    return ", ".join(labels[:-1]) + f" or {labels[-1]}"


def messages(user: str, system: str | None = None) -> list[dict]:
    """Chat messages of one user turn, after an optional system turn."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def chat(tokenizer, user: str, *, system: str | None = None, enable_thinking: bool | None = None) -> str:
    """The tokenizer's chat template with the generation prompt; `enable_thinking` is passed to templates that
    read it (Qwen3's; others ignore it)."""
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(messages(user, system), tokenize=False, add_generation_prompt=True, **extra)


def question_text(question: str, options: Sequence[str], labels: Sequence[str], style: str = "letters",
                  instruction: str = INSTRUCTION) -> str:
    """The user turn: instruction, question, one labelled option per line. `instruction` may use the fields
    {kind} ("letter"/"number"), {labels} ("A, B, C or D") and {example} (the first label)."""
    lines = [instruction.format(kind=label_kind(style), labels=label_listing(labels), example=labels[0]), "",
             question.strip(), ""]
    lines += [f"{label}. {option.strip()}" for label, option in zip(labels, options)]
    return "\n".join(lines)


def render(tokenizer, question: str, options: Sequence[str], *, style: str = "letters", system: str | None = None,
           chat: bool = True, instruction: str = INSTRUCTION) -> str:
    """The exact text fed to the model (chat template with the generation prompt when `chat`)."""
    text = question_text(question, options, option_labels(len(options), style), style, instruction)
    if not chat:
        return text + "\nAnswer:"
    return tokenizer.apply_chat_template(messages(text, system), tokenize=False, add_generation_prompt=True)


def cot_prompt(tokenizer, q, *, style: str = "letters", system: str | None = None) -> str:
    """The step-by-step prompt (chat template, generation prompt) that teachers and thinkers continue and CoT
    training examples are conditioned on."""
    return render(tokenizer, q.question, q.options, style=style, system=system, instruction=COT_INSTRUCTION)


def parse_bracketed(text: str, labels: Sequence[str]) -> int | None:
    """Index of the label in the LAST `[[X]]` of a generated trace, or None when there is none (or it names no
    option)."""
    found = BRACKETED.findall(text)
    if not found:
        return None
    upper = [x.upper() for x in labels]
    last = found[-1].upper()
    return upper.index(last) if last in upper else None
