"""Answer-step scoring of multiple-choice questions (Chapter 3).

The model sees the question and its labelled options inside its chat template, with an instruction to
answer with the label only (or another `prompts.PromptFormat`: plain text, lm-eval's MMLU text, another
instruction or none, few-shot examples); we read the next-token distribution at the answer step (one forward
pass, no generation) and record:

- `entropy`: Shannon entropy of softmax(raw logits) over the FULL vocabulary, temperature 1 (nats) —
  the synopsis' uncertainty signal (`ENTROPY_SETTINGS` is stored with every result);
- `option_probs`: the probability of each option's label, renormalised over the labels; a label's
  probability sums its token variants ("A" and " A" are different tokens in most BPE vocabularies; each
  variant's id is read off the encoding of prompt + label, never from a bare `tokenizer("A")`). A label that
  no single token spells ("10" where digits are separate tokens, e.g. MMLU-Pro's tenth option with number
  labels) is read as its token sequence, and a label that is a prefix of another ("1" of "10") excludes the
  longer one's continuations;
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
from entropy_jax.llm.prompts import PromptFormat, option_labels, render_prompt


def label_token_ids(tokenizer, prompt: str, labels: Sequence[str], *,
                    first_token: bool = False) -> list[list[int | tuple[int, ...]]]:
    """For each label, the distinct continuations of `prompt` that spell it: single tokens ("A", " A").

    Found by encoding prompt + variant and keeping the tokens after the prompt's own encoding (lm-eval's
    approach), so tokenizers that merge a leading space into the label are handled. A label with no
    single-token spelling ("10" where digits are separate tokens) is read as the token sequence of its bare
    spelling, a tuple of ids (`score_batch` multiplies the step probabilities along it) — unless
    `first_token`, where a multi-token label ("Yes" in a character vocabulary) is represented by its first
    token, provided the labels' first tokens differ. A label with no spelling after the prompt is an error
    naming it.
    """
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out: list[list[int | tuple[int, ...]]] = []
    for label in labels:
        ids: list[int | tuple[int, ...]] = []
        sequence = None
        for variant in (label, " " + label):
            full = tokenizer(prompt + variant, add_special_tokens=False)["input_ids"]
            extra = len(full) - len(base)
            if full[: len(base)] != base or extra < 1:
                continue
            if extra == 1 or first_token:
                if full[len(base)] not in ids:
                    ids.append(full[len(base)])
            elif variant == label:
                sequence = tuple(int(t) for t in full[len(base):])
        if not ids and sequence is not None:
            ids = [sequence]
        if not ids:
            raise ValueError(f"label {label!r} is not a single token after the prompt for this tokenizer")
        out.append(ids)
    seen = [t for ids in out for t in ids if isinstance(t, int)]
    shared = {t for t in seen if seen.count(t) > 1}  # e.g. the leading space of " Yes" and " No"
    out = [[t for t in ids if not isinstance(t, int) or t not in shared] for ids in out]
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
def answer_step(logits_bv, label_ids_bk, label_valid_bk):
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


def score_batch(lm, prompts: Sequence[str], label_ids: Sequence[Sequence[Sequence[int | tuple[int, ...]]]], *,
                pad_to: int | None = None) -> list[Scored]:
    """Score rendered prompts; `label_ids[i][j]` are the variants of option j of prompt i (`label_token_ids`:
    token ids, or tuples of ids for labels spelled by several tokens). `pad_to` pads the batch to that many rows
    (one compiled shape for every batch of a run)."""
    token_lists = [lm.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    logits = lm.next_token_logits(token_lists, batch=pad_to)
    flat = [[v if isinstance(v, int) else v[0] for variants in q for v in variants] for q in label_ids]
    k = max(map(len, flat))
    ids = np.zeros((len(prompts), k), np.int32)
    valid = np.zeros((len(prompts), k), bool)
    for i, f in enumerate(flat):
        ids[i, : len(f)], valid[i, : len(f)] = f, True
    entropy, log_p = jax.device_get(answer_step(logits, jnp.asarray(ids), jnp.asarray(valid)))
    p_variant = np.exp(log_p.astype(np.float64))
    if any(not isinstance(v, int) for q in label_ids for variants in q for v in variants):
        p_variant = _sequence_probs(lm, token_lists, label_ids, p_variant, pad_to)
    out = []
    for i, q in enumerate(label_ids):
        st = option_stats(p_variant[i], q)
        out.append(Scored(prompt=prompts[i], entropy=float(entropy[i]), n_prompt_tokens=len(token_lists[i]), **st))
    return out


def _sequence_probs(lm, token_lists, label_ids, p_first, pad_to):
    """Probabilities of label variants spelled by several tokens: the answer step's probability of the first
    token times the next steps' (one more forward per distinct prefix). A label that is a prefix of another
    ("1" of "10") keeps only the continuations that do not spell the longer one, so the labels' probabilities
    are those of disjoint events."""
    variants = [[(v,) if isinstance(v, int) else tuple(v) for vs in q for v in vs] for q in label_ids]
    prefixes = sorted({(i, v[:n]) for i, q in enumerate(variants) for v in q for n in range(1, len(v))})
    index = {key: j for j, key in enumerate(prefixes)}
    step = jax.device_get(jax.nn.log_softmax(
        lm.next_token_logits([list(token_lists[i]) + list(pre) for i, pre in prefixes], batch=pad_to), axis=-1))
    step = np.asarray(step, np.float64)
    out = np.zeros_like(p_first)
    for i, q in enumerate(variants):
        joint = [p_first[i, j] * np.prod([np.exp(step[index[i, v[:n]], v[n]]) for n in range(1, len(v))])
                 for j, v in enumerate(q)]
        for j, v in enumerate(q):
            longer = [u for u in set(q) if len(u) > len(v) and u[: len(v)] == v]
            minimal = [u for u in longer if not any(len(w) < len(u) and u[: len(w)] == w for w in longer)]
            out[i, j] = max(joint[j] - sum(joint[q.index(u)] for u in minimal), 0.0)
    return out


def score_questions(lm, questions, *, batch_size: int = 8, style: str = "letters", system: str | None = None,
                    chat: bool = True, fmt: PromptFormat | None = None) -> Iterator[tuple[int, list[Scored]]]:
    """Yield (batch index, scores) for consecutive batches of `questions` (objects with `.question` and
    `.options`, and `.subject` for the mmlu format). Prompts are `prompts.render_prompt`'s in format `fmt`
    (default: chat, or plain when `chat` is False, with `prompts.INSTRUCTION`). Batches are fixed by position,
    so a resumed run re-creates the same padded shapes and the same numbers."""
    if lm.tokenizer is None:
        raise ValueError(f"{lm.source} has no tokenizer; answer-step scoring renders text prompts")
    if fmt is None:
        fmt = PromptFormat("chat" if chat else "plain")
        system = system if chat else None
    for start in range(0, len(questions), batch_size):
        chunk = questions[start: start + batch_size]
        prompts = [render_prompt(lm.tokenizer, q, fmt, style=style, system=system) for q in chunk]
        labels = [label_token_ids(lm.tokenizer, p, option_labels(len(q.options), style))
                  for p, q in zip(prompts, chunk)]
        yield start // batch_size, score_batch(lm, prompts, labels, pad_to=batch_size)


def entropy_settings(lm) -> dict:
    """The entropy object recorded with Chapter 3 results."""
    return dict(ENTROPY_SETTINGS, vocab_size=lm.config.vocab_size, step="answer step (first generated token)")
