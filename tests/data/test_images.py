"""The image-folder loader names the file that cannot be used, and checks its arguments."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage import io

from entropy_jax import data


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    io.imsave(tmp_path / "a.png", (rng.random((12, 10)) * 255).astype(np.uint8), check_contrast=False)
    return tmp_path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("b.jpg", b"this is a text file with an image suffix", "cannot read it as an image"),
        ("c.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "cannot read it as an image"),  # truncated
    ],
)
def test_undecodable_files_are_named(tmp_path, name, content, message):
    folder = _folder(tmp_path)
    (folder / name).write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{folder / name}: {message}")):
        data.image_folder(folder, size=(8, 8))


def test_nan_pixels_and_odd_layouts_are_named(tmp_path):
    folder = _folder(tmp_path)
    img = np.full((6, 6), 0.5, np.float32)
    img[2, 3] = np.nan
    io.imsave(folder / "d.tif", img, check_contrast=False)
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'd.tif'}: has NaN or infinite pixel values")):
        data.image_folder(folder, size=(8, 8))
    (folder / "d.tif").unlink()
    io.imsave(folder / "e.tif", np.zeros((5, 6, 2), np.uint8), check_contrast=False)  # grey + alpha
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'e.tif'}: expected a grey, RGB or RGBA image")):
        data.image_folder(folder, size=(8, 8))


def test_folder_arguments_are_checked(tmp_path):
    folder = _folder(tmp_path)
    assert data.image_folder(folder, size=(8, 8)).P.shape == (64, 1)
    with pytest.raises(ValueError, match="`size` must be"):
        data.image_folder(folder, size=(0, 8))
    with pytest.raises(ValueError, match="`limit` must be"):
        data.image_folder(folder, limit=0)
    (folder / "a.png").unlink()
    (folder / "sub.png").mkdir()  # a directory with an image suffix is not an image
    with pytest.raises(ValueError, match="no image files"):
        data.image_folder(folder)
