"""Chapter 2, stability: the Figure-1 experiment and its companions at one rank.

Command:

    python -m launch.nmf_stability --data lfw --rank 16 --noise 0.25 --out results/nmf

Runtime on 2 CPU cores: about 30 s. The first random half of the images is fitted clean, the
second half with pixel-flip noise ξ and another seed; the two basis sets are matched by cosine
distance (Hungarian algorithm) and shown pair by pair, sorted by distance (matched_pairs.png).
Also: matched distance between clean and noisy fits of the whole set against ξ
(noise_curve.png), and the per-image entropies S_i of the data against Ŝ_i of the clean
reconstruction (entropy_scatter.png). Expected on LFW at R = 16: most pairs show the same facial
region; every face is smoothed (S_i ≤ Ŝ_i).

Writes DIR/stability.json, DIR/stability_arrays.npz and the three figures. Every flag and the
data are checked before DIR is created ("--flag: what is wrong (got X)").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import jax
import numpy as np

from entropy_jax import _validate as check
from entropy_jax import plots
from entropy_jax.nmf import study
from entropy_jax.nmf.inputs import check_common, load_checked
from entropy_jax.nmf.report import stability_markdown as markdown
from entropy_jax.stores import RunLock, write_json

from . import command


@dataclasses.dataclass(frozen=True)
class Config:
    data: str = "lfw"
    """lfw, digits, bars, swimmer or folder:PATH."""
    rank: int = 16
    noise: float = 0.25
    """Pixel-flip probability ξ for the second half."""
    seeds: int = 4
    """Seeds for the noise-level curve."""
    n_iter: int = 500
    loss: Literal["kl", "frobenius"] = "kl"
    seed: int = 0
    size: tuple[int, int] = (50, 50)
    out: Path = Path("results/nmf")


def check_config(config: Config) -> None:
    """Every flag, before any work. Raises `ConfigError` naming the flag."""
    check_common(config, seeds_min=1)
    check.flag_int("rank", config.rank, lo=1)


def main(config: Config) -> dict:
    """Runs the stability study; writes JSON, arrays and figures; returns the JSON dict.

    Flags and data are checked first (`ConfigError` naming the flag); DIR is created only after.
    """
    check_config(config)
    images = load_checked(config, config.rank, "rank", config.rank)
    half = min(images.P.shape[0], images.n_images // 2)  # each half is fitted on its own
    if config.rank > half:
        raise check.flag_error("rank", f"exceeds min(pixels, images in a half) = {half} of {images.name}",
                               config.rank)
    out = Path(config.out).expanduser()
    with RunLock(out):  # one process at a time in DIR (DIR/.lock); creates DIR
        result = study.stability_study(
            images.P.astype(np.float32),
            config.rank,
            key=jax.random.key(config.seed),
            noise=config.noise,
            seeds=config.seeds,
            n_iter=config.n_iter,
            loss=config.loss,
        )
        arrays = result.pop("arrays")
        result |= {"data": images.name, "shape": list(images.shape)}
        write_json(out / "stability.json", result)
        np.savez_compressed(out / "stability_arrays.npz", **arrays)
        plt = plots.pyplot()
        title = (f"{images.name}, R = {config.rank}: left clean half, right half with noise ξ = "
                 f"{config.noise:g} (another seed); sorted by cosine distance d")
        plt.close(plots.basis_pairs(arrays["basis_a"], arrays["basis_b"], arrays["distances"], images.shape,
                                    title=title, path=out / "matched_pairs.png"))
        plt.close(plots.entropy_scatter(arrays["S"], arrays["S_hat"], title=f"{images.name}, R = {config.rank}",
                                        path=out / "entropy_scatter.png"))
        plt.close(plots.noise_curve(result["noise_curve"], title=f"{images.name}, R = {config.rank}",
                                    path=out / "noise_curve.png"))
        return result


def cli(args: list[str] | None = None) -> None:
    """The command line (`python -m launch.nmf_stability` in a checkout; installed: `entropy-jax-nmf-stability`)."""
    command(Config, main, __doc__, args, report=lambda cfg, res: print(
        f"{markdown(res)}\nwrote {cfg.out}/stability.json, stability_arrays.npz and figures"))


if __name__ == "__main__":
    cli()
