"""Nonnegative matrix factorization P ≈ B W by multiplicative updates, as pure JAX functions.

Notation follows the synopsis: P (pixels × images) ≥ 0, B (pixels × R) basis images, W (R ×
images) weights. scikit-learn's X is Pᵀ, its W is our Wᵀ and its H our Bᵀ; like sklearn's
`NMF(solver="mu")` each iteration updates W first, then B, with the same guards (ε = float32
machine epsilon), so the same initial factors give the same iterates.

Losses:
  "frobenius": ½‖P − BW‖²_F;
  "kl": the generalized KL divergence D(P‖BW) = Σ P log(P / BW) − P + BW in nats, with
    0·log 0 = 0 and BW floored at ε where P > ε (sklearn's convention).

`fit` runs a fixed number of iterations in `lax.scan`, recording the loss after each one; the
rank is static (one compilation per rank), and the function vmaps over PRNG keys (seeds) and
over data matrices (noise draws).

Invalid data. Called on a concrete matrix, `fit` raises for NaN, infinite, negative or all-zero
data. Under `vmap`/`jit` the values are abstract and cannot be checked: check the stacked batch
first with `check_input(P_stack, rank)` (it accepts any leading batch axes); inside the traced
fit a matrix with a NaN, infinite or negative entry (or negative initial factors) yields NaN
factors and a NaN loss trace, never plausible numbers. `loss` propagates NaN in P.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropy_jax import _validate

__all__ = ["EPS", "NMFResult", "check_input", "fit", "init_nndsvda", "init_random", "loss", "step"]

EPS = float(np.finfo(np.float32).eps)  # sklearn's guard, whatever the dtype
Loss = Literal["kl", "frobenius"]


class NMFResult(NamedTuple):
    """A fitted factorization.

    Attributes:
      B: (pixels, R) basis images.
      W: (R, images) weights.
      loss: (n_iter,) the loss after each iteration (nats for "kl").
    """

    B: jax.Array
    W: jax.Array
    loss: jax.Array


def _kl_from_product(P: jax.Array, BW: jax.Array, B: jax.Array, W: jax.Array) -> jax.Array:
    # "Absent" only for 0 <= P <= ε: NaN and negative entries reach the log and make the loss NaN.
    present = ~((P >= 0) & (P <= EPS))
    safe_p = jnp.where(present, P, 1.0)
    safe_bw = jnp.maximum(jnp.where(present, BW, 1.0), EPS)
    log_term = jnp.sum(jnp.where(present, safe_p * jnp.log(safe_p / safe_bw), 0.0))
    # Entries with 0 < P ≤ ε are left out of Σ P like in sklearn; they weigh < 1.2e-7 each.
    return log_term + jnp.sum(B.sum(0) * W.sum(1)) - jnp.sum(jnp.where(present, P, 0.0))


def loss(P: jax.Array, B: jax.Array, W: jax.Array, kind: Loss = "kl") -> jax.Array:
    """The NMF loss of P ≈ B W: generalized KL (nats) or ½ squared Frobenius norm.

    A NaN in P, B or W makes the loss NaN (and so does a negative entry of P for "kl").
    """
    if kind == "frobenius":
        return 0.5 * jnp.sum((P - B @ W) ** 2)
    if kind != "kl":
        raise ValueError(f"`loss` must be 'kl' or 'frobenius'; got {kind!r}.")
    return _kl_from_product(P, B @ W, B, W)


def _guard(den: jax.Array) -> jax.Array:
    return jnp.where(den == 0, EPS, den)


def _kl_w_update(P, B, W, BW):
    return W * (B.T @ (P / jnp.maximum(BW, EPS))) / _guard(B.sum(0))[:, None]


def _kl_b_update(P, B, W):
    ratio = P / jnp.maximum(B @ W, EPS)
    w_sum = W.sum(1)
    B = B * (ratio @ W.T) / _guard(jnp.where(w_sum == 0, 1.0, w_sum))[None, :]
    # sklearn zeroes sub-ε64 entries of its H (our B) for β ≤ 1: keeps denormals out.
    return jnp.where(B < np.finfo(np.float64).eps, 0.0, B)


def _kl_step(P, B, W, BW):
    # BW = B @ W on entry and on exit: the product after the B update serves the loss and the
    # next W update, so an iteration costs four matrix products, not five.
    W = _kl_w_update(P, B, W, BW)
    B = _kl_b_update(P, B, W)
    BW = B @ W
    return B, W, BW, _kl_from_product(P, BW, B, W)


def _frobenius_step(P, B, W, p_norm2):
    W = W * (B.T @ P) / _guard((B.T @ B) @ W)
    PWt, WWt = P @ W.T, W @ W.T
    B = B * PWt / _guard(B @ WWt)
    # ½‖P − BW‖² = ½‖P‖² − ⟨B, PWᵀ⟩ + ½⟨BᵀB, WWᵀ⟩ from products the update already made.
    value = 0.5 * p_norm2 - jnp.sum(B * PWt) + 0.5 * jnp.sum((B.T @ B) * WWt)
    return B, W, value


def step(P: jax.Array, B: jax.Array, W: jax.Array, kind: Loss = "kl") -> tuple[jax.Array, jax.Array]:
    """One multiplicative update: W first, then B (Lee & Seung; sklearn's order and guards)."""
    if kind == "frobenius":
        B, W, _ = _frobenius_step(P, B, W, jnp.sum(P * P))
        return B, W
    if kind != "kl":
        raise ValueError(f"`loss` must be 'kl' or 'frobenius'; got {kind!r}.")
    B, W, _, _ = _kl_step(P, B, W, B @ W)
    return B, W


def init_random(key: jax.Array, P: jax.Array, rank: int) -> tuple[jax.Array, jax.Array]:
    """|N(0, 1)|·sqrt(mean(P)/R) for both factors (sklearn's init="random" scale)."""
    _check_rank(P, rank)
    k_b, k_w = jax.random.split(key)
    scale = jnp.sqrt(jnp.mean(P) / rank)
    B = scale * jnp.abs(jax.random.normal(k_b, (P.shape[0], rank), P.dtype))
    W = scale * jnp.abs(jax.random.normal(k_w, (rank, P.shape[1]), P.dtype))
    return B, W


def init_nndsvda(P: jax.Array, rank: int) -> tuple[jax.Array, jax.Array]:
    """NNDSVD (Boutsidis & Gallopoulos 2008) with zeros filled by mean(P) ("nndsvda").

    Deterministic: built from the exact SVD of P. Each component keeps the positive or the
    negative part of its singular-vector pair, whichever has the larger norm product.
    """
    _check_rank(P, rank)
    U, S, Vt = jnp.linalg.svd(P, full_matrices=False)
    U, S, Vt = U[:, :rank], S[:rank], Vt[:rank]
    # The leading singular pair of a nonnegative matrix can be taken nonnegative.
    b0 = jnp.sqrt(S[0]) * jnp.abs(U[:, 0])
    w0 = jnp.sqrt(S[0]) * jnp.abs(Vt[0])
    x, y = U[:, 1:], Vt[1:].T
    xp, xn = jnp.maximum(x, 0), jnp.maximum(-x, 0)
    yp, yn = jnp.maximum(y, 0), jnp.maximum(-y, 0)
    nxp, nxn = jnp.linalg.norm(xp, axis=0), jnp.linalg.norm(xn, axis=0)
    nyp, nyn = jnp.linalg.norm(yp, axis=0), jnp.linalg.norm(yn, axis=0)
    pos = nxp * nyp > nxn * nyn
    sigma = jnp.where(pos, nxp * nyp, nxn * nyn)
    u = jnp.where(pos, xp / jnp.where(nxp > 0, nxp, 1.0), xn / jnp.where(nxn > 0, nxn, 1.0))
    v = jnp.where(pos, yp / jnp.where(nyp > 0, nyp, 1.0), yn / jnp.where(nyn > 0, nyn, 1.0))
    lam = jnp.sqrt(S[1:] * sigma)
    B = jnp.concatenate([b0[:, None], lam * u], axis=1)
    W = jnp.concatenate([w0[None, :], (lam * v).T], axis=0)
    fill = jnp.mean(P)
    B = jnp.where(B < 1e-6, fill, B)  # sklearn's nndsvda: entries below 1e-6 → mean(P)
    W = jnp.where(W < 1e-6, fill, W)
    return B, W


def _poison_invalid(run):
    """Wraps `_run`: NaN factors and trace when P or the initial factors are not nonnegative and
    finite. Costs one pass over P per fit; it is what makes a vmapped fit over a bad noise draw
    visible, since values cannot be checked under tracing."""

    def wrapped(P, B, W, n_iter, kind, trace_every=1):
        ok = jnp.all((P >= 0) & (P < jnp.inf)) & jnp.all(B >= 0) & jnp.all(W >= 0)
        res = run(P, B, W, n_iter, kind, trace_every)
        return NMFResult(*(_validate.poison(x, ~ok) for x in res))

    return wrapped


@_poison_invalid
def _run(P, B, W, n_iter: int, kind: Loss, trace_every: int = 1) -> NMFResult:
    """`n_iter` updates; the loss after every `trace_every`-th one (n_iter // trace_every values)."""
    if kind not in ("kl", "frobenius"):
        raise ValueError(f"`loss` must be 'kl' or 'frobenius'; got {kind!r}.")
    if kind == "kl":
        def update(carry):
            B, W, BW = carry
            W = _kl_w_update(P, B, W, BW)
            B = _kl_b_update(P, B, W)
            return B, W, B @ W

        def value(carry):
            B, W, BW = carry
            return _kl_from_product(P, BW, B, W)

        init = (B, W, B @ W)
    else:
        p_norm2 = jnp.sum(P * P)

        def update(carry):
            B, W = carry
            B, W, _ = _frobenius_step(P, B, W, p_norm2)
            return B, W

        def value(carry):
            B, W = carry
            return 0.5 * jnp.sum((P - B @ W) ** 2)

        init = (B, W)
        if trace_every == 1:  # the update's own products give the loss almost for free
            def body(c, _):
                B, W, v = _frobenius_step(P, *c, p_norm2)
                return (B, W), v

            (B, W), trace = lax.scan(body, init, None, length=n_iter)
            return NMFResult(B, W, trace)

    def block(carry, _):
        # The loss costs about one more update (a log per entry): evaluate it once per block.
        carry = lax.fori_loop(0, trace_every, lambda _, c: update(c), carry)
        return carry, value(carry)

    carry, trace = lax.scan(block, init, None, length=n_iter // trace_every)
    return NMFResult(carry[0], carry[1], trace)


def _fit_impl(P, B0, W0, *, n_iter: int, kind: str, trace_every: int = 1) -> NMFResult:
    return _run(P, B0, W0, n_iter, kind, trace_every)


_fit_from = jax.jit(_fit_impl, static_argnames=("n_iter", "kind", "trace_every"))


def fit_seeded(P, key, *, rank: int, n_iter: int, kind: str, init: str, trace_every: int = 1) -> NMFResult:
    """One fit from `init` ("random": `init_random(key, ...)`, else `init_nndsvda`), traceable (no argument
    checks): the body that `fit` jits and that studies vmap over keys."""
    if init == "random":
        B0, W0 = init_random(key, P, rank)
    else:
        B0, W0 = init_nndsvda(P, rank)
    return _run(P, B0, W0, n_iter, kind, trace_every)


_fit_init = jax.jit(fit_seeded, static_argnames=("rank", "n_iter", "kind", "init", "trace_every"))


def _check_rank(P, rank) -> int:
    shape = np.shape(P)
    if len(shape) < 2:
        raise ValueError(f"`P` must be a (pixels × images) matrix; got shape {shape}.")
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer):
        raise TypeError(f"`rank` must be an integer; got {rank!r}.")
    if not 1 <= int(rank) <= min(shape[-2:]):
        raise ValueError(f"`rank` must be in [1, min(P.shape) = {min(shape[-2:])}]; got {rank}.")
    return int(rank)


def check_input(P, rank: int | None = None) -> None:
    """Checks NMF data before fitting: one matrix or a stack of them, e.g. noise draws to vmap.

    Use it on the concrete batch before `jax.vmap(lambda P: fit(P, R, ...))(P_stack)`: inside
    the vmap `fit` cannot look at the values (it returns NaN for a bad matrix instead).

    Args:
      P: (..., pixels, images) data; every matrix must be finite, nonnegative and not all zero.
      rank: if given, must be an integer in [1, min(pixels, images)].

    Raises:
      ValueError naming the matrix (its batch index for a stack), the problem and the first bad
      entry, e.g. "`P`[3] has 2 NaN entries (first at pixel 5, image 0)". Traced inputs get the
      shape checks only.
    """
    shape = np.shape(P)
    if len(shape) < 2:
        raise ValueError(f"`P` must be a (pixels × images) matrix or a stack of them; got shape {shape}.")
    if rank is not None:
        _check_rank(P, rank)
    if not _validate.is_concrete(P):
        return
    v = np.asarray(P)
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer) or v.dtype == bool):
        raise ValueError(f"`P` must hold numbers; got dtype {v.dtype}.")
    batch = shape[:-2]

    def name(index) -> str:  # "`P`" or, in a stack, "`P`[3]"
        return "`P`" + (str([int(i) for i in index]) if batch else "")

    for test, what in ((np.isnan, "NaN"), (np.isinf, "infinite"), (lambda x: x < 0, "negative")):
        bad = test(v) if v.dtype != bool else np.zeros(v.shape, bool)
        if bad.any():
            first = np.argwhere(bad)[0]
            count = int(bad[tuple(first[:-2])].sum())
            extra = f" (min {v[tuple(first[:-2])].min()})" if what == "negative" else ""
            raise ValueError(f"{name(first[:-2])} has {count} {what} entries{extra} (first at pixel "
                             f"{int(first[-2])}, image {int(first[-1])}); NMF needs finite P >= 0.")
    empty = ~(v > 0).any(axis=(-2, -1))
    if empty.any():
        raise ValueError(f"{name(np.argwhere(empty)[0] if batch else ())} is all zeros.")


def fit(
    P: jax.Array,
    rank: int,
    *,
    key: jax.Array | None = None,
    n_iter: int = 500,
    loss: Loss = "kl",
    init: None | Literal["random", "nndsvda"] | tuple[jax.Array, jax.Array] = None,
    trace_every: int = 1,
) -> NMFResult:
    """Fits P ≈ B W with `n_iter` multiplicative updates.

    Args:
      P: (pixels, images) nonnegative data. All-zero rows or columns are allowed (their factor
        rows/columns go to zero); `entropy_jax.nmf.normalize` reports them.
      rank: R, static (one compilation per rank, n_iter, loss and init kind).
      key: PRNG key for init="random" (required then); vmap over keys for several seeds.
      n_iter: fixed number of iterations (no early stopping: compare runs at equal cost).
      loss: "kl" (generalized KL, nats) or "frobenius".
      init: None or "random" (needs `key`), "nndsvda" (deterministic), or (B0, W0) arrays of
        shapes (pixels, R) and (R, images).
      trace_every: record the loss after every k-th iteration only (n_iter must be a multiple).
        The KL loss costs a logarithm per entry, about as much as an update; a rank scan that
        needs only the final loss passes trace_every=n_iter. The iterates do not change.

    Returns:
      `NMFResult(B, W, loss)` with the loss trace of shape (n_iter // trace_every,).

    Raises:
      ValueError for concrete data that is not finite and nonnegative, or all zero (naming the
      first bad entry), and for bad rank, loss, init, n_iter or trace_every. Under `vmap`/`jit`
      the data values are not checked: call `check_input` on the batch first; a bad matrix
      inside the trace gives NaN factors and a NaN loss.

    Example:
      >>> keys = jax.random.split(jax.random.key(0), 10)
      >>> runs = jax.vmap(lambda k: nmf.fit(P, 16, key=k))(keys)   # 10 seeds in one program
      >>> nmf.check_input(noisy, 16)                                 # (draws, pixels, images)
      >>> fits = jax.vmap(lambda p: nmf.fit(p, 16, key=key))(noisy)
    """
    if np.ndim(P) != 2:
        raise ValueError(
            f"`P` must be one 2-D (pixels × images) matrix; got shape {np.shape(P)}. For a stack of "
            "matrices, check it with `nmf.check_input(P_stack, rank)` and vmap `fit` over it."
        )
    check_input(P, rank)
    if loss not in ("kl", "frobenius"):
        raise ValueError(f"`loss` must be 'kl' or 'frobenius'; got {loss!r}.")
    n_iter = _validate.positive_int("n_iter", n_iter)
    trace_every = _validate.positive_int("trace_every", trace_every)
    if n_iter % trace_every:
        raise ValueError(
            f"`n_iter` ({n_iter}) must be a positive multiple of `trace_every` ({trace_every})."
        )
    P = jnp.asarray(P)
    if not jnp.issubdtype(P.dtype, jnp.floating):
        P = P.astype(jnp.result_type(float))
    if isinstance(init, tuple):
        B0, W0 = (jnp.asarray(x, P.dtype) for x in init)
        if B0.shape != (P.shape[0], rank) or W0.shape != (rank, P.shape[1]):
            raise ValueError(
                f"`init` factors must have shapes {(P.shape[0], rank)} and {(rank, P.shape[1])}; "
                f"got {B0.shape} and {W0.shape}."
            )
        if _validate.is_concrete((B0, W0)) and (np.any(np.asarray(B0) < 0) or np.any(np.asarray(W0) < 0)):
            raise ValueError("`init` factors must be nonnegative.")
        return _fit_from(P, B0, W0, n_iter=n_iter, kind=loss, trace_every=trace_every)
    mode = "random" if init is None else init
    if mode not in ("random", "nndsvda"):
        raise ValueError(f"`init` must be None, 'random', 'nndsvda' or (B0, W0); got {init!r}.")
    if mode == "random" and key is None:
        raise ValueError("`key` is required for init='random' (pass jax.random.key(seed)).")
    key = jax.random.key(0) if key is None else key
    return _fit_init(
        P, key, rank=int(rank), n_iter=n_iter, kind=loss, init=mode, trace_every=trace_every
    )
