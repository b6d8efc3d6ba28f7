"""Prompts, the one place for them (Chapters 3–5): chat messages, the answer-only and step-by-step
instructions, prompt formats (chat, plain, lm-eval's MMLU text; few-shot examples), option labels and their
wording, and the `[[X]]` answer format of chain-of-thought traces.

    user = question_text(q.question, q.options, q.labels())        # instruction, question, "A. …" lines
    text = render(tokenizer, q.question, q.options)                   # chat template + generation prompt
    fmt = PromptFormat.load("mmlu", "none", "dev.jsonl")              # --prompt mmlu --instruction none --fewshot …
    text = render_prompt(tokenizer, q, fmt)                           # lm-eval's MMLU prompt, 5-shot
    text = cot_prompt(tokenizer, q)                                   # the step-by-step prompt (ends in [[X]])
    parse_bracketed("… so [[C]].", ("A", "B", "C", "D"))              # → 2

Prompt formats (`PromptFormat`, the `--prompt`, `--instruction`, `--fewshot` flags of the Chapter 3–5 runs):

- `chat` (the default): the tokenizer's chat template, one user turn holding the instruction, the question,
  a blank line and one "A. option" line per option, then the generation prompt. Few-shot examples come first
  as earlier turns (lm-eval's `--fewshot_as_multiturn`): user turn = the example's question and options,
  assistant turn = its label; the instruction opens the first user turn only.
- `plain`: the same text without a template, ending in "\nAnswer:"; examples are
  "<question>\n\nA. …\nAnswer: B" blocks separated by blank lines.
- `mmlu`: lm-eval 0.4.13's MMLU text exactly (`lm_eval/tasks/mmlu/default/_default_template_yaml`): the task
  description "The following are multiple choice questions (with answers) about <subject>." and a blank line
  (when the question has a subject; underscores read as spaces, as lm-eval's generated MMLU tasks have it),
  the examples as "<question>\nA. <option>\n…\nAnswer: B" blocks each followed by a blank line, then
  "<question>\nA. <option>\n…\nAnswer:". Question text is stripped, options are not (lm-eval's template);
  an instruction goes where lm-eval's `--system_instruction` goes (before the description, a blank line
  between them).

Few-shot examples (`--fewshot FILE`, answered questions in the MCQA schema, file order): one with a `subject`
is shown only before questions of that subject (so one file of MMLU's dev questions gives each subject its own
examples, as lm-eval's per-subject MMLU tasks do), one without a subject before every question.

The instruction (`INSTRUCTION` unless given; `none` = no instruction) may use the fields {kind}, {labels} and
{example} (other braces are kept as written). The entropy read at the answer step and the label variants
(" A" and "A", read off the rendered prompt: `llm.scoring.label_token_ids`) are the same in every format.

Option labels are `entropy_jax.data.mcqa.option_labels`: "A".."Z" (letters) or "1".."26" (numbers). With
numbers, labels from "10" on are two tokens in vocabularies that split digits (SmolLM2, Qwen); answer-step
scoring reads them as token sequences (`entropy_jax.llm.scoring.label_token_ids`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from entropy_jax.data.mcqa import Question, option_labels

__all__ = [
    "COT_INSTRUCTION",
    "DEFAULT_FORMAT",
    "INSTRUCTION",
    "KINDS",
    "MMLU_DESCRIPTION",
    "PromptFormat",
    "TEXT_CUE",
    "chat",
    "chat_messages",
    "check_fewshot",
    "cot_prompt",
    "examples_for",
    "label_kind",
    "label_listing",
    "messages",
    "option_labels",
    "parse_bracketed",
    "prompt_messages",
    "prompt_text",
    "question_block",
    "question_text",
    "render",
    "render_prompt",
]

INSTRUCTION = ("Answer the following multiple-choice question. Reply with the {kind} of the correct option "
               "only ({labels}), nothing else.")
COT_INSTRUCTION = ("Answer the following multiple-choice question. Think step by step, then give the {kind} of "
                   "the correct option ({labels}) in double square brackets, for example [[{example}]].")
BRACKETED = re.compile(r"\[\[\s*([A-Za-z]|\d{1,2})\s*\]\]")
KINDS = ("chat", "plain", "mmlu")
NO_INSTRUCTION = "none"
TEXT_CUE = "\nAnswer:"
"""What plain and mmlu prompts end with; the label follows it (" B" in few-shot examples, as lm-eval writes)."""
MMLU_DESCRIPTION = "The following are multiple choice questions (with answers) about {subject}."


def label_kind(style: str) -> str:
    """"letter" or "number": how instructions name a label of `style`."""
    return "letter" if style == "letters" else "number"


def label_listing(labels: Sequence[str]) -> str:
    """"A, B, C or D"."""
    return ", ".join(labels[:-1]) + f" or {labels[-1]}"


def messages(user: str, system: str | None = None) -> list[dict]:
    """Chat messages of one user turn, after an optional system turn."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def chat_messages(tokenizer, turns: list[dict], *, enable_thinking: bool | None = None) -> str:
    """The tokenizer's chat template over `turns` with the generation prompt; `enable_thinking` is passed to
    templates that read it (Qwen3's; others ignore it)."""
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True, **extra)


def chat(tokenizer, user: str, *, system: str | None = None, enable_thinking: bool | None = None) -> str:
    """The tokenizer's chat template of one user turn (after an optional system turn) with the generation
    prompt (`chat_messages`)."""
    return chat_messages(tokenizer, messages(user, system), enable_thinking=enable_thinking)


def fill_instruction(instruction: str, labels: Sequence[str], style: str = "letters") -> str:
    """`instruction` with its fields filled: {kind} ("letter"/"number"), {labels} ("A, B, C or D") and {example}
    (the first label). Other braces stay as written (a user's instruction is text, not a format string)."""
    fields = {"{kind}": label_kind(style), "{labels}": label_listing(labels), "{example}": labels[0]}
    return re.sub(r"\{kind\}|\{labels\}|\{example\}", lambda m: fields[m.group(0)], instruction)


def question_block(question: str, options: Sequence[str], labels: Sequence[str], kind: str = "chat") -> str:
    """A question and its labelled options, no instruction, no answer cue. chat/plain: the question, a blank
    line, one "A. option" line per option (both stripped); mmlu: lm-eval's `doc_to_text` up to "Answer:" —
    the stripped question, then "\\nA. option" per option, options as given."""
    if kind == "mmlu":
        return question.strip() + "".join(f"\n{label}. {option}" for label, option in zip(labels, options))
    return "\n".join([question.strip(), ""] + [f"{label}. {option.strip()}" for label, option in zip(labels, options)])


def question_text(question: str, options: Sequence[str], labels: Sequence[str], style: str = "letters",
                  instruction: str | None = INSTRUCTION) -> str:
    """The user turn: instruction (none when None), a blank line, question, one labelled option per line.
    `instruction` may use the fields {kind} ("letter"/"number"), {labels} ("A, B, C or D") and {example} (the
    first label)."""
    block = question_block(question, options, labels)
    if instruction is None:
        return block
    return fill_instruction(instruction, labels, style) + "\n\n" + block


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How a multiple-choice question is shown to a model (module docstring): `kind` (chat, plain or mmlu),
    `instruction` (a template with {kind}/{labels}/{example}; None = no instruction) and `fewshot` (answered
    questions rendered before it, in the same format). Frozen and hashable: run configs carry its flags
    (`prompt`, `instruction`, `fewshot`) and build it once with `PromptFormat.load`."""

    kind: str = "chat"
    instruction: str | None = INSTRUCTION
    fewshot: tuple[Question, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"--prompt {self.kind!r}: use one of {', '.join(KINDS)}")
        object.__setattr__(self, "fewshot", tuple(self.fewshot))

    @property
    def chat(self) -> bool:
        """Whether the prompt goes through the tokenizer's chat template."""
        return self.kind == "chat"

    @classmethod
    def load(cls, kind: str = "chat", instruction: str | None = INSTRUCTION,
             fewshot: str | Path | None = None) -> PromptFormat:
        """The format of the command-line flags: `--prompt KIND`, `--instruction TEXT` ("none" or "" = no
        instruction), `--fewshot FILE` (a .jsonl/.json/.csv of questions in the MCQA schema, `answer`
        required; every question of it is an example, in file order)."""
        if instruction is not None and instruction.strip() in ("", NO_INSTRUCTION):
            instruction = None
        examples: tuple[Question, ...] = ()
        if fewshot is not None:
            from entropy_jax.data import mcqa

            path = Path(fewshot)
            if not path.is_file():
                raise FileNotFoundError(f"--fewshot {fewshot}: no such file (a .jsonl/.json/.csv of answered "
                                        "questions in the MCQA schema)")
            examples = tuple(mcqa.load(path))
            if not examples:
                raise ValueError(f"--fewshot {fewshot}: the file holds no questions")
        return cls(kind, instruction, examples)

    @classmethod
    def of(cls, config) -> PromptFormat:
        """The format of a run config's `prompt`, `instruction` and `fewshot` fields (`load`)."""
        return cls.load(config.prompt, config.instruction, config.fewshot)

    def record(self) -> dict:
        """What a run adds to its settings beyond the flags: the few-shot examples' ids and a SHA-256 of their
        content (question, options, answer), so a resume notices an edited examples file. Empty without
        examples."""
        if not self.fewshot:
            return {}
        content = [[q.id, q.question, list(q.options), q.answer] for q in self.fewshot]
        digest = hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()
        return {"fewshot_examples": {"ids": [q.id for q in self.fewshot], "sha256": digest}}


DEFAULT_FORMAT = PromptFormat()


def check_fewshot(fmt: PromptFormat, questions: Sequence, what: str = "the questions") -> None:
    """Refuse few-shot examples that are also questions to answer (same id or same question text): the
    answer would be in the prompt."""
    ids = {q.id for q in fmt.fewshot}
    texts = {q.question.strip() for q in fmt.fewshot}
    both = [q.id for q in questions if q.id in ids or q.question.strip() in texts]
    if both:
        raise ValueError(f"--fewshot: {len(both)} of {what} are also few-shot examples (e.g. {both[:3]}); use "
                         "examples from another split")


def _delimit(head: str, tail: str, delimiter: str = "\n\n") -> str:
    """head + delimiter + tail, without the delimiter when either side already has whitespace at the seam
    (lm-eval's `maybe_delimit`, which joins its system instruction and task description)."""
    if not head or not tail:
        return head or tail
    return head + tail if head[-1].isspace() or tail[0].isspace() else head + delimiter + tail


def _labels(q, style: str) -> tuple[str, ...]:
    return option_labels(len(q.options), style)


def examples_for(fmt: PromptFormat, q) -> tuple[Question, ...]:
    """The few-shot examples shown before question `q`: an example with a subject only before questions of
    that subject (lm-eval's MMLU takes each subject's examples from that subject's dev split), one without a
    subject before every question; file order."""
    subject = getattr(q, "subject", None)
    return tuple(ex for ex in fmt.fewshot if ex.subject is None or ex.subject == subject)


def prompt_messages(q, fmt: PromptFormat = DEFAULT_FORMAT, *, style: str = "letters",
                    system: str | None = None) -> list[dict]:
    """The chat turns of a chat-format prompt for question `q` (`.question`, `.options`): an optional system
    turn, a user and an assistant turn per few-shot example (`examples_for`), then the question's user turn;
    the instruction (filled with `q`'s labels) opens the first user turn."""
    if not fmt.chat:
        raise ValueError(f"prompt format {fmt.kind!r} has no chat turns; use prompt_text")
    turns = [{"role": "system", "content": system}] if system else []
    for ex in examples_for(fmt, q):
        labels = _labels(ex, style)
        turns += [{"role": "user", "content": question_block(ex.question, ex.options, labels)},
                  {"role": "assistant", "content": labels[ex.answer]}]
    turns.append({"role": "user", "content": question_block(q.question, q.options, _labels(q, style))})
    if fmt.instruction is not None:
        first = next(t for t in turns if t["role"] == "user")
        first["content"] = fill_instruction(fmt.instruction, _labels(q, style), style) + "\n\n" + first["content"]
    return turns


def prompt_text(q, fmt: PromptFormat, *, style: str = "letters", cue: bool = True) -> str:
    """The whole prompt of a plain or mmlu format for question `q` (`.question`, `.options`, and `.subject` for
    the mmlu description): instruction, few-shot examples (`examples_for`), the question, and `TEXT_CUE`
    ("\\nAnswer:") unless `cue` is False (callers that put text between the options and the cue)."""
    if fmt.chat:
        raise ValueError("a chat prompt is rendered by the chat template; use render_prompt or prompt_messages")
    labels = _labels(q, style)
    head = "" if fmt.instruction is None else fill_instruction(fmt.instruction, labels, style)
    if fmt.kind == "mmlu":
        subject = getattr(q, "subject", None)
        description = MMLU_DESCRIPTION.format(subject=" ".join(subject.split("_"))) + "\n\n" if subject else ""
        head = _delimit(head, description)
    if head and not head[-1].isspace():
        head += "\n\n"
    shots = []
    for ex in examples_for(fmt, q):
        ex_labels = _labels(ex, style)
        shots.append(question_block(ex.question, ex.options, ex_labels, fmt.kind) + TEXT_CUE + " "
                     + ex_labels[ex.answer] + "\n\n")
    return head + "".join(shots) + question_block(q.question, q.options, labels, fmt.kind) + (TEXT_CUE if cue else "")


def render_prompt(tokenizer, q, fmt: PromptFormat = DEFAULT_FORMAT, *, style: str = "letters",
                  system: str | None = None, enable_thinking: bool | None = None) -> str:
    """The exact text fed to the model for question `q` in format `fmt`: the chat template with the
    generation prompt (chat), or `prompt_text` (plain, mmlu; a system message needs a chat template)."""
    if fmt.chat:
        return chat_messages(tokenizer, prompt_messages(q, fmt, style=style, system=system),
                             enable_thinking=enable_thinking)
    if system:
        raise ValueError(f"--system needs the chat template; prompt format {fmt.kind!r} has none (put it in "
                         "--instruction)")
    return prompt_text(q, fmt, style=style)


@dataclasses.dataclass(frozen=True)
class _Q:
    question: str
    options: tuple[str, ...]
    subject: str | None = None


def render(tokenizer, question: str, options: Sequence[str], *, style: str = "letters", system: str | None = None,
           chat: bool = True, instruction: str | None = INSTRUCTION) -> str:
    """The exact text fed to the model (chat template with the generation prompt when `chat`; else the plain
    format): `render_prompt` of a zero-shot format."""
    fmt = PromptFormat("chat" if chat else "plain", instruction)
    return render_prompt(tokenizer, _Q(question, tuple(options)), fmt, style=style, system=None if not chat else system)


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
