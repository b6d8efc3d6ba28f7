"""Datasets that work offline: images shipped inside wheels, a user's image folder, synthetic parts."""

from entropy_jax.data.images import ImageSet, digits, image_folder, lfw_faces, load
from entropy_jax.data.synthetic import bars, swimmer

__all__ = ["ImageSet", "bars", "digits", "image_folder", "lfw_faces", "load", "swimmer"]
