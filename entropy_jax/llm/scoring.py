"""Answer-step scoring of multiple-choice questions (Chapter 3).

The model sees the question and its labelled options inside its chat template, with an instruction to
answer with the label only; we read the next-token distribution at the answer step (one forward pass, no
generation) and record:

- `entropy`: Shannon entropy of softmax(raw logits) over the FULL vocabulary, temperature 1 (nats) —
  the synopsis' uncertainty signal (`ENTROPY_SETTINGS` is stored with every result);
- `option_probs`: the probability of each option's label, renormalised over the labels; a label's
  probability sums its token variants ("A" and " A" are different tokens in most BPE vocabularies; each
  variant's id is read off the encoding of prompt + label, never from a bare `tokenizer("A")`);
- `pred`: the label with the largest probability; `label_mass`: the probability on all labels together
  (how much the model follows the format);
- the signals users compare with entropy: `max_prob`, `margin` (top-1 − top-2 option probability) and
  `label_entropy` (entropy of the renormalised option distribution, nats).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from entropy_jax.info import entropy_from_logits
from entropy_jax.llm.generate import ENTROPY_SETTINGS

INSTRUCTION = ("Answer the following multiple-choice question. Reply with the {kind} of the correct option "
               "only ({labels}), nothing else.")


def option_labels(n: int, style: str = "letters") -> tuple[str, ...]:
    """Labels of n options: "A", "B", … (letters, ≤ 26) or "1", "2", … (numbers, ≤ 9 so each is one token)."""
    if style == "letters":
        if n > 26:
            raise ValueError(f"{n} options but only 26 letter labels")
        return tuple(chr(ord("A") + i) for i in range(n))
    if style == "numbers":
        if n > 9:
            raise ValueError(f"{n} options but only 9 single-digit number labels")
        return tuple(str(i + 1) for i in range(n))
    raise ValueError(f"label style {style!r}; use 'letters' or 'numbers'")


def question_text(question: str, options: Sequence[str], labels: Sequence[str], style: str = "letters",
                  instruction: str = INSTRUCTION) -> str:
    """The user turn: instruction, question, one labelled option per line. `instruction` may use the
    fields {kind} ("letter"/"number"), {labels} ("A, B, C or D") and {example} (the first label)."""
    kind = "letter" if style == "letters" else "number"
    listing = ", ".join(labels[:-1]) + f" or {labels[-1]}"
    lines = [instruction.format(kind=kind, labels=listing, example=labels[0]), "", question.strip(), ""]
    lines += [f"{label}. {option.strip()}" for label, option in zip(labels, options)]
    return "\n".join(lines)


def render(tokenizer, question: str, options: Sequence[str], *, style: str = "letters",
           system: str | None = None, chat: bool = True, instruction: str = INSTRUCTION) -> str:
    """The exact text fed to the model (chat template with the generation prompt when `chat`)."""
    labels = option_labels(len(options), style)
    text = question_text(question, options, labels, style, instruction)
    if not chat:
        return text + "\nAnswer:"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def label_token_ids(tokenizer, prompt: str, labels: Sequence[str], *, first_token: bool = False) -> list[list[int]]:
    """For each label, the distinct single-token continuations of `prompt` that spell it ("A", " A").

    Found by encoding prompt + variant and keeping the tokens after the prompt's own encoding (lm-eval's
    approach), so tokenizers that merge a leading space into the label are handled. A label with no
    single-token variant is an error naming it — unless `first_token`, where a multi-token label ("Yes"
    in a character vocabulary) is represented by its first token, provided the labels' first tokens differ.
    """
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for label in labels:
        ids = []
        for variant in (label, " " + label):
            full = tokenizer(prompt + variant, add_special_tokens=False)["input_ids"]
            extra = len(full) - len(base)
            if full[: len(base)] == base and (extra == 1 or (first_token and extra > 1)):
                if full[len(base)] not in ids:
                    ids.append(full[len(base)])
        if not ids:
            raise ValueError(f"label {label!r} is not a single token after the prompt for this tokenizer")
        out.append(ids)
    seen = [t for ids in out for t in ids]
    shared = {t for t in seen if seen.count(t) > 1}  # e.g. the leading space of " Yes" and " No"
    out = [[t for t in ids if t not in shared] for ids in out]
    if shared and not all(out):
        raise ValueError(f"labels {list(labels)} share their tokens after the prompt; they cannot be told apart")
    return out


@dataclasses.dataclass(frozen=True)
class Scored:
    """One question's answer-step statistics (probabilities renormalised over option labels; nats)."""

    prompt: str
    pred: int
    option_probs: tuple[float, ...]
    entropy: float
    label_mass: float
    max_prob: float
    margin: float
    label_entropy: float
    n_prompt_tokens: int


@jax.jit
def _answer_step(logits_bv, label_ids_bk, label_valid_bk):
    """Entropy [B], per-variant log-probs [B, K] (−inf where padded) from next-token logits [B, V]."""
    log_p = jax.nn.log_softmax(logits_bv, axis=-1)
    picked = jnp.take_along_axis(log_p, label_ids_bk, axis=-1)
    return entropy_from_logits(logits_bv), jnp.where(label_valid_bk, picked, -jnp.inf)


def option_stats(p_variant, label_ids: Sequence[Sequence[int]]) -> dict:
    """Answer-step statistics from the probabilities of every label variant (flattened in `label_ids` order):
    pred, option_probs (per label, variants summed, renormalised over the labels), label_mass, max_prob,
    margin, label_entropy (nats)."""
    p_variant = np.asarray(p_variant, np.float64)
    per_label, j = [], 0
    for variants in label_ids:
        per_label.append(p_variant[j: j + len(variants)].sum())
        j += len(variants)
    per_label = np.asarray(per_label)
    mass = float(per_label.sum())
    probs = per_label / mass if mass > 0 else np.full(len(per_label), 1 / len(per_label))
    order = np.sort(probs)[::-1]
    nz = probs[probs > 0]
    return {"pred": int(np.argmax(probs)), "option_probs": tuple(float(x) for x in probs), "label_mass": mass,
            "max_prob": float(order[0]), "margin": float(order[0] - (order[1] if len(order) > 1 else 0.0)),
            "label_entropy": float(-(nz * np.log(nz)).sum())}


def score_batch(lm, prompts: Sequence[str], label_ids: Sequence[Sequence[Sequence[int]]], *,
                pad_to: int | None = None) -> list[Scored]:
    """Score rendered prompts; `label_ids[i][j]` are the token variants of option j of prompt i. `pad_to`
    pads the batch to that many rows (one compiled shape for every batch of a run)."""
    token_lists = [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    logits = lm.next_token_logits(token_lists, batch=pad_to)
    flat = [[t for variants in q for t in variants] for q in label_ids]
    k = max(map(len, flat))
    ids = np.zeros((len(prompts), k), np.int32)
    valid = np.zeros((len(prompts), k), bool)
    for i, f in enumerate(flat):
        ids[i, : len(f)], valid[i, : len(f)] = f, True
    entropy, log_p = jax.device_get(_answer_step(logits, jnp.asarray(ids), jnp.asarray(valid)))
    out = []
    for i, q in enumerate(label_ids):
        st = option_stats(np.exp(log_p[i].astype(np.float64)), q)
        out.append(Scored(prompt=prompts[i], entropy=float(entropy[i]), n_prompt_tokens=len(token_lists[i]), **st))
    return out


def score_questions(lm, questions, *, batch_size: int = 8, style: str = "letters", system: str | None = None,
                    chat: bool = True) -> Iterator[tuple[int, list[Scored]]]:
    """Yield (batch index, scores) for consecutive batches of `questions` (objects with `.question` and
    `.options`). Batches are fixed by position, so a resumed run re-creates the same padded shapes and
    the same numbers."""
    if lm.tokenizer is None:
        raise ValueError(f"{lm.source} has no tokenizer; answer-step scoring renders text prompts")
    for start in range(0, len(questions), batch_size):
        chunk = questions[start: start + batch_size]
        prompts = [render(lm.tokenizer, q.question, q.options, style=style, system=system, chat=chat) for q in chunk]
        labels = [label_token_ids(lm.tokenizer, p, option_labels(len(q.options), style))
                  for p, q in zip(prompts, chunk)]
        yield start // batch_size, score_batch(lm, prompts, labels, pad_to=batch_size)


def entropy_settings(lm) -> dict:
    """The entropy object recorded with Chapter 3 results."""
    return dict(ENTROPY_SETTINGS, vocab_size=lm.config.vocab_size, step="answer step (first generated token)")
