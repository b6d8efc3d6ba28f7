"""Image sets as P (pixels × images) in [0, 1], the layout of Chapter 2.

`lfw_faces` (the 100 aligned 25 × 25 face crops of `skimage.data.lfw_subset()`, shipped inside
scikit-image) is the offline stand-in for UTKFace; `image_folder` reads UTKFace (or any folder of
images) as users have it on disk.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ImageSet", "digits", "image_folder", "lfw_faces", "load"]

_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm"}


@dataclass(frozen=True)
class ImageSet:
    """Images as the columns of P.

    Attributes:
      P: (pixels, images) float64 in [0, 1].
      shape: (height, width) of one image; column i reshapes to it (row-major).
      name: a label for reports.
      labels: optional per-image labels (e.g. digit classes or file names).
    """

    P: np.ndarray
    shape: tuple[int, int]
    name: str
    labels: tuple | None = None

    @property
    def n_images(self) -> int:
        return self.P.shape[1]

    def image(self, i: int) -> np.ndarray:
        return self.P[:, i].reshape(self.shape)


def lfw_faces(n: int = 100) -> ImageSet:
    """The first n (≤ 100) aligned 25 × 25 grey face crops of `skimage.data.lfw_subset()`.

    Images 100–199 of that subset are non-faces and are never returned.
    """
    from skimage.data import lfw_subset

    if not 1 <= n <= 100:
        raise ValueError(f"`n` must be in [1, 100] (the subset holds 100 faces); got {n}.")
    faces = np.asarray(lfw_subset()[:n], np.float64)
    return ImageSet(faces.reshape(n, -1).T.copy(), faces.shape[1:], "lfw")


def digits() -> ImageSet:
    """The 1797 8 × 8 digits of `sklearn.datasets.load_digits()`, scaled from 0..16 to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return ImageSet(d.data.T / 16.0, (8, 8), "digits", tuple(int(t) for t in d.target))


def image_folder(path: str | Path, *, size: tuple[int, int] = (50, 50), limit: int | None = None) -> ImageSet:
    """Every image file under `path` (sorted), converted to grey, resized, as columns of P.

    Args:
      path: a folder, e.g. UTKFace's `UTKFace/` (23,708 JPEGs) or `crop_part1/`.
      size: (height, width) after resizing (the authors used 50 × 50 for UTKFace).
      limit: read at most this many files (sorted by name), for quick runs.

    Raises:
      ValueError naming the file for one that cannot be read or decoded as an image (a text
      file named .jpg, a truncated download, an unreadable file), has an unsupported layout,
      or holds NaN or infinite pixel values.
    """
    from skimage import transform
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.util import img_as_float

    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"`path` is not a folder: {root}")
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in size):
        raise ValueError(f"`size` must be (height, width), two integers >= 1; got {size!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be an integer >= 1 or None; got {limit!r}.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file())
    if limit is not None:
        files = files[:limit]
    if not files:
        raise ValueError(f"no image files ({', '.join(sorted(_SUFFIXES))}) under {root}")
    columns = []
    for f in files:
        raw = _read_image(f)
        if raw.ndim not in (2, 3) or (raw.ndim == 3 and raw.shape[-1] not in (3, 4)):
            raise ValueError(f"{f}: expected a grey, RGB or RGBA image; got an array of shape {raw.shape}.")
        img = img_as_float(raw)  # integer images are scaled by their dtype's range
        if not np.all(np.isfinite(img)):
            raise ValueError(f"{f}: has NaN or infinite pixel values.")
        if img.ndim == 3 and img.shape[-1] == 4:
            img = rgba2rgb(img)
        if img.ndim == 3:
            img = rgb2gray(img)
        columns.append(np.clip(transform.resize(img, size, anti_aliasing=True), 0.0, 1.0))
    P = np.stack([c.ravel() for c in columns], axis=1)
    return ImageSet(P, tuple(size), root.name, tuple(f.name for f in files))


def _read_image(path: Path) -> np.ndarray:
    """One image file as an array (imageio, the reader behind `skimage.io.imread`); any failure
    is a ValueError naming the file."""
    import imageio.v3 as iio

    data = path.read_bytes()  # an unreadable file: OSError with its name
    try:
        # From memory, with the suffix as the format hint: a reader that fails on a file it
        # opened itself leaks the handle.
        with warnings.catch_warnings():
            # imageio warns about deprecated plugins while it probes for one that fits.
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.asarray(iio.imread(data, extension=path.suffix.lower()))
    except Exception as e:  # noqa: BLE001 (PIL, imageio, tifffile each raise their own types; re-raised)
        reason = f"{type(e).__name__}: {e}"
        if "Could not find a backend" in str(e):
            reason = "no image reader recognises its content"
        raise ValueError(f"{path}: cannot read it as an image ({reason}).") from None


def load(name: str, **kwargs) -> ImageSet:
    """By name: "lfw", "digits", "bars", "swimmer", or "folder:<path>"."""
    from entropy_jax.data import synthetic

    if name == "lfw":
        return lfw_faces(**kwargs)
    if name == "digits":
        return digits()
    if name == "bars":
        return synthetic.bars(**kwargs)
    if name == "swimmer":
        return synthetic.swimmer()
    if name.startswith("folder:"):
        return image_folder(name.split(":", 1)[1], **kwargs)
    raise ValueError(f"`name` must be lfw, digits, bars, swimmer or folder:<path>; got {name!r}.")
