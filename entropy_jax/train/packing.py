"""Rows and step batches: sequence packing (several examples per row) or length bucketing (one per row).

Each tokenized example of n tokens becomes n − 1 next-token positions: inputs ids[:-1], targets ids[1:],
loss weight completion[1:] (the model predicts completion tokens only). Packed rows carry per-example
`segments` (1, 2, … within the row; 0 = padding) and `positions` that restart at 0 for every example, so
attention is block-diagonal and causal (`segment_mask`): examples in one row never see each other (the
cross-contamination TRL's early packing had).

Only loss-bearing positions need logits, so each row also lists them: `loss_pos` [K] (indices into the row),
`loss_targets` [K] and `loss_weights` [K] (0 for padding), K = `Layout.loss_slots` (the row maximum of the
whole epoch, bucketed: one shape per run). Answer-only SFT supervises ~3 of ~100 positions, so the
vocabulary projection (and its [B, T, V] float32 logits, 2.5 GB for 4k tokens of Qwen's 152k vocabulary)
shrinks to [B, K, V].

A step batch is [A, B, T]: A accumulation micro-batches of B rows. Packed rows all have T = `seq_len`
(one compiled shape); bucketed rows have T = `api.bucket` of the step's longest row (one compilation per
bucket). The last step of an epoch is filled with empty rows (weight 0), so every step has one shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from entropy_jax.llm.api import bucket
from entropy_jax.train.examples import Tokenized

# first-fit looks back over at most this many open rows (keeps packing O(n) for large data sets)
_OPEN_ROWS = 64


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which examples (indices into the tokenized list, in order) fill each row, after truncation.

    `lengths[i]` is example i's number of positions (n − 1, cut at `seq_len`); `dropped` lists examples whose
    prompt alone fills `seq_len` (no loss-bearing token would remain); `truncated` those cut short."""

    rows: tuple[tuple[int, ...], ...]
    lengths: tuple[int, ...]
    seq_len: int
    packed: bool
    dropped: tuple[int, ...]
    truncated: tuple[int, ...]
    loss_slots: int  # K: loss positions per row (the epoch's row maximum, see `slot_bucket`)


def layout(seqs: Sequence[Tokenized], seq_len: int, *, packed: bool = True) -> Layout:
    """Assign examples to rows of at most `seq_len` positions (first fit over recent rows when `packed`,
    one example per row otherwise), keeping the given order as far as packing allows."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be ≥ 2, got {seq_len}")
    lengths, dropped, truncated = [], [], []
    for i, s in enumerate(seqs):
        n = len(s.ids) - 1
        if n > seq_len:
            truncated.append(i)
            n = seq_len
        if n < 1 or not s.completion[1: n + 1].any():
            dropped.append(i)
            n = 0
        lengths.append(n)
    rows: list[list[int]] = []
    space: list[int] = []
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        if packed:
            start = max(0, len(rows) - _OPEN_ROWS)
            for r in range(start, len(rows)):
                if space[r] >= n:
                    rows[r].append(i)
                    space[r] -= n
                    break
            else:
                rows.append([i])
                space.append(seq_len - n)
        else:
            rows.append([i])
            space.append(seq_len - n)
    n_loss = [int(seqs[i].completion[1: lengths[i] + 1].sum()) for i in range(len(seqs))]
    most = max((sum(n_loss[i] for i in r) for r in rows), default=1)
    return Layout(tuple(map(tuple, rows)), tuple(lengths), seq_len, packed, tuple(dropped), tuple(truncated),
                  slot_bucket(most, seq_len))


def slot_bucket(n: int, seq_len: int) -> int:
    """K for a row maximum of n loss positions: a power of two (at least 16), at most `seq_len`. Coarser than
    the row buckets on purpose: K is the only shape that differs between the policies of a sweep, and the
    vocabulary projection of a few unused slots costs less than another compilation of the train step."""
    return min(max(16, 1 << max(0, int(n) - 1).bit_length()), seq_len)


def _fill(seqs: Sequence[Tokenized], lay: Layout, row: Sequence[int], t: int) -> dict[str, np.ndarray]:
    out = {"tokens": np.zeros(t, np.int32), "positions": np.zeros(t, np.int32), "segments": np.zeros(t, np.int32)}
    targets = np.zeros(t, np.int32)
    weights = np.zeros(t, np.float32)
    at = 0
    for seg, i in enumerate(row, 1):
        n, s = lay.lengths[i], seqs[i]
        out["tokens"][at: at + n] = s.ids[:n]
        targets[at: at + n] = s.ids[1: n + 1]
        weights[at: at + n] = s.completion[1: n + 1]
        out["positions"][at: at + n] = np.arange(n)
        out["segments"][at: at + n] = seg
        at += n
    where = np.flatnonzero(weights)
    k = lay.loss_slots
    out["loss_pos"] = np.zeros(k, np.int32)
    out["loss_targets"] = np.zeros(k, np.int32)
    out["loss_weights"] = np.zeros(k, np.float32)
    out["loss_pos"][: len(where)] = where
    out["loss_targets"][: len(where)] = targets[where]
    out["loss_weights"][: len(where)] = 1.0
    return out


FIELDS = ("tokens", "positions", "segments", "loss_pos", "loss_targets", "loss_weights")


def batches(seqs: Sequence[Tokenized], lay: Layout, *, micro_batch: int, accumulation: int = 1,
            start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Step batches {field: [A, B, T] (tokens, positions, segments) or [A, B, K] (loss_*)} in row order, from
    step `start_step` on (resuming mid-epoch). Each also holds "n_rows" (real rows) and "n_tokens"
    (non-padding positions)."""
    per_step = micro_batch * accumulation
    n_steps = steps_per_epoch(lay, micro_batch=micro_batch, accumulation=accumulation)
    for step in range(start_step, n_steps):
        rows = lay.rows[step * per_step: (step + 1) * per_step]
        if lay.packed:
            t = lay.seq_len
        else:
            t = bucket(max(sum(lay.lengths[i] for i in r) for r in rows), lay.seq_len)
        width = {f: lay.loss_slots if f.startswith("loss_") else t for f in FIELDS}
        arrays = {f: np.zeros((per_step, width[f]), np.float32 if f == "loss_weights" else np.int32) for f in FIELDS}
        for j, r in enumerate(rows):
            for f, a in _fill(seqs, lay, r, t).items():
                arrays[f][j] = a
        out = {f: a.reshape(accumulation, micro_batch, width[f]) for f, a in arrays.items()}
        out["n_rows"] = len(rows)
        out["n_tokens"] = int(sum(lay.lengths[i] for r in rows for i in r))
        yield out


def steps_per_epoch(lay: Layout, *, micro_batch: int, accumulation: int = 1) -> int:
    return -(-len(lay.rows) // (micro_batch * accumulation))


def segment_mask(segments_bt: np.ndarray):
    """[B, T] segment ids → [B, T, T] attention mask: causal within each example, nothing across examples
    or onto padding (segment 0). jnp or np arrays."""
    import jax.numpy as jnp

    seg = jnp.asarray(segments_bt)
    t = seg.shape[1]
    causal = jnp.arange(t)[None, :] <= jnp.arange(t)[:, None]
    same = seg[:, :, None] == seg[:, None, :]
    return causal[None] & same & (seg[:, None, :] > 0)
