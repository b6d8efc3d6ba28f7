"""Chapter 2 studies: the rank scan and the stability study, returning JSON-ready dicts.

Every rank is one jitted program (rank static) that fits all seeds at once (vmap over PRNG keys
and over noise draws) and reduces each fit to its diagnostics on device; only the consensus
clustering statistics (SciPy) run on the host.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from entropy_jax import _validate
from entropy_jax.nmf import core, diagnostics, match, perturb, rank

__all__ = ["NOISE_LEVELS", "parse_ranks", "rank_scan", "stability_study"]

NOISE_LEVELS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)


_RANKS_FORMAT = "expected lo:hi (inclusive), lo:hi:step or a comma list of ranks >= 1"


def parse_ranks(spec: str | Sequence[int]) -> list[int]:
    """"2:40" (inclusive), "2:40:2" or "4,8,16" → a sorted list of distinct ranks ≥ 1.

    Raises ValueError saying what is wrong, e.g. "expected lo:hi ...: hi = 2 < lo = 5 (got '5:2')".
    """
    def fail(what: str):
        raise ValueError(f"{_RANKS_FORMAT}: {what} (got {spec!r})")

    def as_int(text):
        if isinstance(text, str):
            text = text.strip()
            if not text.lstrip("+-").isdigit():
                fail(f"{text!r} is not an integer")
            return int(text)
        if isinstance(text, bool) or not isinstance(text, int | np.integer):
            fail(f"{text!r} is not an integer")
        return int(text)

    if not isinstance(spec, str):
        ranks = sorted({as_int(r) for r in spec})
    elif ":" in spec:
        parts = [as_int(t) for t in spec.split(":")]
        if len(parts) not in (2, 3):
            fail(f"{len(parts)} fields separated by ':'")
        lo, hi, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
        if hi < lo:
            fail(f"hi = {hi} < lo = {lo}")
        if step < 1:
            fail(f"step = {step} must be >= 1")
        ranks = list(range(lo, hi + 1, step))
    else:
        ranks = sorted({as_int(t) for t in spec.split(",") if t.strip()})
    if not ranks:
        fail("no ranks")
    if ranks[0] < 1:
        fail(f"rank {ranks[0]} < 1")
    return ranks


def _check_loss(loss) -> None:
    if loss not in ("kl", "frobenius"):
        raise ValueError(f"`loss` must be 'kl' or 'frobenius'; got {loss!r}.")


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1]; got {value!r}.")
    return float(value)


def _seed_mesh_keys(keys: jax.Array, mesh: jax.sharding.Mesh | None) -> jax.Array:
    """Shards a leading axis of keys over the mesh when it divides evenly (else unsharded)."""
    if mesh is None or keys.shape[0] % mesh.size != 0:
        return keys
    spec = jax.sharding.PartitionSpec(mesh.axis_names[0])
    return jax.device_put(keys, jax.sharding.NamedSharding(mesh, spec))


@functools.partial(jax.jit, static_argnames=("rank_", "n_iter", "kind"))
def _scan_one_rank(P, fit_keys, noise_keys, xi, *, rank_: int, n_iter: int, kind: str):
    def one(fit_key, noise_key):
        data = perturb.flip_noise(noise_key, P, xi)  # ξ = 0 flips nothing
        res = core.fit_seeded(data, fit_key, rank=rank_, n_iter=n_iter, kind=kind, init="random",
                               trace_every=n_iter)
        v = rank.predictability_violations(data, res.B, res.W)
        return {
            "B": res.B,
            "loss": res.loss[-1],
            "v_weighted": v["weighted"],
            "v_unweighted": v["unweighted"],
            "explained_variance": rank.explained_variance(data, res.B, res.W),
            "smoothing": diagnostics.smoothing(data, res.B, res.W)["fraction_smoothed"],
            "basis_entropy": jnp.mean(diagnostics.basis_entropies(res.B)),
            "hoyer": jnp.mean(diagnostics.hoyer_sparseness(res.B, axis=0)),
            "connectivity": rank.connectivity(res.W),
        }

    out = jax.vmap(one)(fit_keys, noise_keys)
    # Seed-to-seed stability: every other seed's bases matched to seed 0's.
    ref = jnp.broadcast_to(out["B"][0], out["B"][1:].shape)
    matched = match.match_pairs(ref, out["B"][1:])
    out["stability"] = jnp.mean(matched.distances, axis=-1)
    out["consensus"] = jnp.mean(out.pop("connectivity"), axis=0)
    del out["B"]
    return out


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def rank_scan(
    P,
    ranks: Sequence[int],
    *,
    key: jax.Array,
    seeds: int = 10,
    n_iter: int = 500,
    loss: str = "kl",
    noise: float = 0.0,
    tau: float = 0.01,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = False,
    done: dict | None = None,
    on_rank=None,
) -> dict:
    """Fits every rank with several seeds and collects the rank-selection criteria.

    Args:
      P: (pixels, images) data in [0, 1] (noise flips x ↦ 1 − x).
      ranks: ranks to scan (each ≥ 1 and ≤ min(P.shape)), or a `parse_ranks` string.
      key: PRNG key; seed s of every rank uses the same fit and noise keys, so ranks are
        compared on the same noise draws.
      seeds: fits per rank (≥ 2: stability and consensus compare seeds).
      n_iter: multiplicative-update iterations per fit.
      loss: "kl" or "frobenius".
      noise: pixel-flip probability ξ (0 = clean data; > 0 gives R(ξ, τ)).
      tau: tolerance of the effective rank.
      mesh: shard the seeds over this device mesh (when it divides the number of seeds).
      progress: a tqdm bar over ranks.
      done / on_rank: results of already-finished ranks (keyed by rank) and a callback per
        finished rank, for resumable runs.

    Returns:
      {"ranks", "per_rank": [...], "effective_rank": {"weighted", "unweighted"}, settings}.

    Every argument and the data (`nmf.check_input`) are checked before the first fit.
    """
    try:
        ranks = parse_ranks(ranks)
    except ValueError as e:
        raise ValueError(f"`ranks`: {e}") from None
    if np.ndim(P) != 2:
        raise ValueError(f"`P` must be one (pixels × images) matrix; got shape {np.shape(P)}.")
    core.check_input(P, max(ranks))
    P = jnp.asarray(P)
    seeds = _validate.positive_int("seeds", seeds, minimum=2)  # stability and consensus compare seeds
    n_iter = _validate.positive_int("n_iter", n_iter)
    _check_loss(loss)
    noise = _check_fraction("noise", noise)
    tau = _check_fraction("tau", tau)
    if noise > 0:
        _validate.in_unit_interval("P", P)  # pixel-flip noise maps x to 1 - x
    fit_key, noise_key = jax.random.split(key)
    fit_keys = _seed_mesh_keys(jax.random.split(fit_key, seeds), mesh)
    noise_keys = _seed_mesh_keys(jax.random.split(noise_key, seeds), mesh)
    xi = jnp.asarray(noise, P.dtype)
    done = dict(done or {})
    per_rank = []
    for r in tqdm(ranks, desc="ranks", disable=not progress, leave=False):
        if r in done:
            per_rank.append(done[r])
            continue
        out = jax.device_get(
            _scan_one_rank(P, fit_keys, noise_keys, xi, rank_=int(r), n_iter=int(n_iter), kind=loss)
        )
        consensus = np.asarray(out.pop("consensus"), np.float64)
        row = {"rank": int(r)} | {name: _summary(v) for name, v in out.items()}
        row["cophenetic"] = rank.cophenetic_correlation(consensus)
        row["dispersion"] = rank.dispersion(consensus)
        if on_rank is not None:
            on_rank(r, row)
        per_rank.append(row)
    effective = {
        kind: rank.effective_rank(ranks, [row[f"v_{kind}"]["mean"] for row in per_rank], tau)
        for kind in ("weighted", "unweighted")
    }
    return {
        "ranks": ranks,
        "per_rank": per_rank,
        "effective_rank": effective,
        "settings": {"seeds": seeds, "n_iter": n_iter, "loss": loss, "noise": noise, "tau": tau},
    }


@functools.partial(jax.jit, static_argnames=("rank_", "n_iter", "kind"))
def _fit_pair(PA, PB, key_a, key_b, *, rank_: int, n_iter: int, kind: str):
    a = core.fit_seeded(PA, key_a, rank=rank_, n_iter=n_iter, kind=kind, init="random", trace_every=n_iter)
    b = core.fit_seeded(PB, key_b, rank=rank_, n_iter=n_iter, kind=kind, init="random", trace_every=n_iter)
    return a, b, match.match(a.B, b.B)


@functools.partial(jax.jit, static_argnames=("rank_", "n_iter", "kind"))
def _noise_curve(P, keys, noise_keys, levels, *, rank_: int, n_iter: int, kind: str):
    """Matched distance between a clean fit and fits on noisy copies, per level and seed."""

    def per_seed(key, noise_key):
        clean = core.fit_seeded(P, key, rank=rank_, n_iter=n_iter, kind=kind, init="random",
                                 trace_every=n_iter)

        def per_level(xi):
            noisy = perturb.flip_noise(noise_key, P, xi)
            other = core.fit_seeded(noisy, jax.random.fold_in(key, 1), rank=rank_, n_iter=n_iter,
                                     kind=kind, init="random", trace_every=n_iter)
            return jnp.mean(match.match(clean.B, other.B).distances)

        return jax.vmap(per_level)(levels)

    return jax.vmap(per_seed)(keys, noise_keys)  # (seeds, levels)


def stability_study(
    P,
    rank_: int,
    *,
    key: jax.Array,
    noise: float = 0.25,
    seeds: int = 4,
    n_iter: int = 500,
    loss: str = "kl",
    levels: Sequence[float] = NOISE_LEVELS,
) -> dict:
    """Stability of the rank-R basis images under a new seed, pixel-flip noise and a new half.

    The Figure-1 experiment: fit the first random half of the images (clean) with one seed and
    the second half with noise ξ and another seed, then match the two basis sets by cosine
    distance (Hungarian). Also: matched distance against the noise level (clean vs noisy fits
    of the whole set, several seeds), and the entropy smoothing S_i vs Ŝ_i of the clean fit.

    P must lie in [0, 1] (flip noise); every argument and the data are checked before the
    first fit.

    Returns:
      A dict with JSON-ready statistics and, under "arrays", NumPy arrays for figures
      (basis images of both halves in matched order, S_i, Ŝ_i).
    """
    if np.ndim(P) != 2:
        raise ValueError(f"`P` must be one (pixels × images) matrix; got shape {np.shape(P)}.")
    core.check_input(P, rank_)
    _validate.in_unit_interval("P", P)  # pixel-flip noise maps x to 1 - x
    P = jnp.asarray(P)
    noise = _check_fraction("noise", noise)
    levels = [_check_fraction("levels entry", x) for x in levels]
    if not levels:
        raise ValueError("`levels` is empty: give at least one noise level in [0, 1].")
    seeds = _validate.positive_int("seeds", seeds)
    n_iter = _validate.positive_int("n_iter", n_iter)
    _check_loss(loss)
    k_split, k_noise, k_a, k_b, k_curve, k_curve_noise = jax.random.split(key, 6)
    half_a, half_b = perturb.random_halves(k_split, P.shape[1])
    half_rank = min(P.shape[0], len(half_b))
    if rank_ > half_rank:
        raise ValueError(f"`rank_` = {rank_} exceeds min(pixels, images in a half) = {half_rank}: each half "
                         "is fitted on its own.")
    PA = P[:, half_a]
    PB = perturb.flip_noise(k_noise, P[:, half_b], noise)
    a, b, m = jax.device_get(_fit_pair(PA, PB, k_a, k_b, rank_=int(rank_), n_iter=int(n_iter), kind=loss))
    order = np.argsort(np.asarray(m.distances))
    curve = np.asarray(
        _noise_curve(P, jax.random.split(k_curve, seeds), jax.random.split(k_curve_noise, seeds),
                     jnp.asarray(levels, P.dtype), rank_=int(rank_), n_iter=int(n_iter), kind=loss)
    )
    clean = core.fit_seeded(P, k_a, rank=int(rank_), n_iter=int(n_iter), kind=loss, init="random",
                             trace_every=int(n_iter))
    smooth = jax.device_get(diagnostics.smoothing(P, clean.B, clean.W))
    distances = np.asarray(m.distances)
    return {
        "rank": int(rank_),
        "noise": float(noise),
        "halves": {
            "sizes": [len(half_a), len(half_b)],
            "matched_distance": {
                "mean": float(distances.mean()),
                "median": float(np.median(distances)),
                "max": float(distances.max()),
                "min": float(distances.min()),
                "sorted": [float(d) for d in distances[order]],
            },
            "loss": [float(a.loss[-1]), float(b.loss[-1])],
        },
        "noise_curve": {
            "levels": [float(x) for x in levels],
            "mean": [float(v) for v in curve.mean(0)],
            "sd": [float(v) for v in curve.std(0, ddof=1)] if seeds > 1 else [0.0] * len(levels),
        },
        "smoothing": {
            "fraction_S_le_S_hat": float(smooth["fraction_smoothed"]),
            "mean_S": float(np.mean(smooth["S"])),
            "mean_S_hat": float(np.mean(smooth["S_hat"])),
        },
        "settings": {"seeds": seeds, "n_iter": n_iter, "loss": loss},
        "arrays": {
            "basis_a": np.asarray(a.B)[:, order],
            "basis_b": np.asarray(b.B)[:, np.asarray(m.perm)[order]],
            "distances": distances[order],
            "S": np.asarray(smooth["S"]),
            "S_hat": np.asarray(smooth["S_hat"]),
        },
    }
