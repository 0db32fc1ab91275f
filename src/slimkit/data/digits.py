"""The scikit-learn digits set: 1,797 images of 8x8 handwritten digits, bundled with sklearn.

It is small enough to train on in seconds and needs no download, so it is the default data set
of quick runs and tests (Alpaydin and Kaynak, "Optical Recognition of Handwritten Digits", UCI
Machine Learning Repository, 1998).
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

DIGITS_MAX_PIXEL = 16.0


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Load the digits set as float images in [0, 1] and int64 labels.

    Returns:
        ``(images, labels)``: float32 ``(1797, 1, 8, 8)`` and int64 ``(1797,)``.

    Example:
        >>> images, labels = load_digits_arrays()
        >>> images.shape, int(labels.max()) + 1
        ((1797, 1, 8, 8), 10)
    """
    from sklearn.datasets import load_digits  # sklearn is slow to import; only digits needs it

    bunch = load_digits()
    # (N, 64) float64 pixels in 0..16 -> (N, 1, 8, 8) float32 in [0, 1]
    images = (np.asarray(bunch.data, dtype=np.float32) / DIGITS_MAX_PIXEL).reshape(-1, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    logger.debug("read sklearn digits: %d images of 8x8", len(images))
    return images, labels
