"""Training examples of Chapter 4 as text segments, and their token ids with completion-only loss masks.

An `Example` is a prompt (the exact text the model is conditioned on, chat template included) and a
completion (the supervised target, end-of-turn included). Two kinds:

- `answer`: the Chapter 3 answer-only prompt → the option label ("C"), as plain SFT trains it; in a plain or
  mmlu prompt format (`prompts.PromptFormat`) the prompt ends in "Answer:" and the completion is " C" and EOS
  (lm-eval's target delimiter, then the end of the text);
- `cot`: the step-by-step prompt → a teacher's chain of thought ending in the label in double square brackets
  ("… so the answer is [[C]]"), the format the Chapter 4 paper parses (prompts and the format:
  `entropy_jax.llm.prompts`).

Loss masks are built from the segments, never by searching for a template inside token ids (which silently
dropped examples in TRL): ids = encode(prompt) + encode(completion), loss on the completion's tokens only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from entropy_jax.llm import prompts


@dataclasses.dataclass(frozen=True)
class Example:
    """One supervised example: `prompt` (rendered, conditioning only) and `completion` (loss-bearing text)."""

    id: str
    prompt: str
    completion: str
    kind: str  # "answer" | "cot"


@dataclasses.dataclass(frozen=True)
class Tokenized:
    """Token ids [n] int32 of prompt + completion and the completion mask [n] bool."""

    id: str
    kind: str
    ids: np.ndarray
    completion: np.ndarray

    @property
    def n_loss_tokens(self) -> int:
        return int(self.completion.sum())


def completion_suffix(tokenizer, prompt_messages: list[dict], prompt: str, completion: str) -> str:
    """The text the chat template puts after `prompt` for an assistant turn holding `completion` (its
    end-of-turn tokens included). Falls back to completion + eos when the template does not render the
    generation prompt as a prefix of the finished conversation (some templates rewrite earlier turns)."""
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(prompt_messages + [{"role": "assistant", "content": completion}],
                                             tokenize=False)
        if full.startswith(prompt) and completion in full[len(prompt):]:
            return full[len(prompt):]
    return completion + (tokenizer.eos_token or "")


def answer_example(tokenizer, q, *, style: str = "letters", system: str | None = None,
                   fmt: prompts.PromptFormat = prompts.DEFAULT_FORMAT) -> Example:
    """The Chapter 3 answer-only prompt in format `fmt` (`prompts.render_prompt`) → the correct label."""
    labels = prompts.option_labels(len(q.options), style)
    prompt = prompts.render_prompt(tokenizer, q, fmt, style=style, system=system)
    if not fmt.chat:
        return Example(q.id, prompt, " " + labels[q.answer] + (tokenizer.eos_token or ""), "answer")
    turns = prompts.prompt_messages(q, fmt, style=style, system=system)
    return Example(q.id, prompt, completion_suffix(tokenizer, turns, prompt, labels[q.answer]), "answer")


def cot_target(trace: str, label: str) -> str:
    """A trace as a training target: the reasoning, then the label in double square brackets (added unless
    the trace already ends with it)."""
    text = trace.strip()
    found = prompts.BRACKETED.findall(text)
    if found and found[-1].upper() == label.upper() and text.endswith("]]"):
        return text
    return f"{text}\nThe answer is [[{label}]]."


def cot_example(tokenizer, q, trace: str, *, style: str = "letters", system: str | None = None) -> Example:
    """The step-by-step prompt (`prompts.cot_prompt`) → trace + bracketed correct label."""
    labels = prompts.option_labels(len(q.options), style)
    prompt = prompts.cot_prompt(tokenizer, q, style=style, system=system)
    user = prompts.question_text(q.question, q.options, labels, style, prompts.COT_INSTRUCTION)
    return Example(q.id, prompt, completion_suffix(tokenizer, prompts.messages(user, system), prompt,
                                                   cot_target(trace, labels[q.answer])), "cot")


def tokenize(tokenizer, examples: Sequence[Example]) -> list[Tokenized]:
    """Encode each example's prompt and completion separately (no special tokens added: the chat template
    already holds them) and mark the completion tokens."""
    if not examples:
        return []
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    completions = tokenizer([e.completion for e in examples], add_special_tokens=False)["input_ids"]
    out = []
    for e, p, c in zip(examples, prompts, completions):
        if not c:
            raise ValueError(f"example {e.id!r} has an empty completion: nothing to learn from")
        ids = np.asarray(list(p) + list(c), np.int32)
        mask = np.zeros(len(ids), bool)
        mask[len(p):] = True
        out.append(Tokenized(e.id, e.kind, ids, mask))
    return out
