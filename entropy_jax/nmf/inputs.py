"""The inputs of the Chapter 2 runs (`launch/nmf_rank.py`, `launch/nmf_stability.py`), checked before any work.

Shared by both launchers so each flag is validated once, the same way: data names and folders, the fit
settings, then the loaded data itself (finite, in [0, 1] for pixel-flip noise, not all zero; rank within
min(pixels, images)). Every failure is a `ConfigError` naming the flag ("--flag: what is wrong (got X)").
"""

from __future__ import annotations

from pathlib import Path

from entropy_jax import _validate as check
from entropy_jax import data as data_lib
from entropy_jax.nmf.core import check_input

DATASETS = ("lfw", "digits", "bars", "swimmer")
LOSSES = ("kl", "frobenius")


def load_data(name: str, size: tuple[int, int] = (50, 50)) -> data_lib.ImageSet:
    """A shipped image set by name, or `folder:PATH` (grey, resized to `size`)."""
    return data_lib.load(name, size=tuple(size)) if name.startswith("folder:") else data_lib.load(name)


def check_data_flag(field: str, value: str) -> None:
    """--data: a shipped set or folder:PATH with an existing folder (its files are read later)."""
    if value.startswith("folder:"):
        folder = Path(value.split(":", 1)[1]).expanduser()
        if not folder.is_dir():
            raise check.flag_error(field, f"folder:PATH needs an existing folder; {folder} is not one", value)
    elif value not in DATASETS:
        raise check.flag_error(field, f"must be one of {', '.join(DATASETS)} or folder:PATH", value)


def check_common(config, *, seeds_min: int) -> None:
    """The flags of both runs: data, seeds, noise, n_iter, loss, seed, size, out."""
    check_data_flag("data", config.data)
    check.flag_int("seeds", config.seeds, lo=seeds_min)
    check.flag_float("noise", config.noise, 0.0, 1.0)
    check.flag_int("n_iter", config.n_iter, lo=1)
    check.flag_choice("loss", config.loss, LOSSES)
    check.flag_int("seed", config.seed, 0, check.MAX_SEED)
    if len(config.size) != 2:
        raise check.flag_error("size", "must be two integers HEIGHT WIDTH", config.size)
    check.flag_ints("size", config.size, lo=1, distinct=False)
    check.flag_out_dir("out", config.out)


def load_checked(config, max_rank: int, rank_flag: str, rank_value) -> data_lib.ImageSet:
    """Loads --data and checks it (finite, in [0, 1], not all zero; rank ≤ min(P.shape)) before anything is
    written; every failure is a ConfigError naming the flag."""
    try:
        images = load_data(config.data, config.size)
        check_input(images.P)
        check.in_unit_interval("P", images.P)  # pixel-flip noise maps x to 1 - x
    except (ValueError, OSError) as e:
        raise check.ConfigError(f"--data: {e} (got {config.data!r})") from None
    limit = min(images.P.shape)
    if max_rank > limit:
        raise check.flag_error(rank_flag, f"rank {max_rank} exceeds min(pixels, images) = {limit} of "
                                          f"{images.name} ({images.P.shape[0]} × {images.P.shape[1]})", rank_value)
    return images
