"""Datasets that work offline: images shipped inside wheels, a user's image folder, synthetic parts."""

from entropy_jax.data import mcqa
from entropy_jax.data.images import ImageSet, digits, image_folder, lfw_faces, load
from entropy_jax.data.mcqa import Question, option_labels
from entropy_jax.data.synthetic import bars, swimmer

__all__ = ["ImageSet", "Question", "bars", "digits", "image_folder", "lfw_faces", "load", "mcqa", "option_labels",
           "swimmer"]
