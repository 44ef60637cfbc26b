"""The 8x8 handwritten digits, shipped with the package (no download).

Source: UCI Machine Learning Repository, "Optical Recognition of Handwritten Digits",
E. Alpaydin and C. Kaynak (1998),
https://archive.ics.uci.edu/ml/datasets/Optical+Recognition+of+Handwritten+Digits,
licensed CC BY 4.0.
This is the copy of its test set that scikit-learn bundles as ``load_digits``: 1797
images of 8x8 pixels with integer values 0..16 (the count of "on" pixels in 4x4 blocks
of a 32x32 bitmap), 10 classes, about 180 images each.

``digits.npz`` holds ``images`` (1797, 8, 8) uint8, ``labels`` (1797,) uint8 and a fixed
stratified split ``is_test`` (36 images of each class, 360 in all, drawn once with seed
1998), so every run and every student sees the same 1437 / 360 split.
"""

from __future__ import annotations

import os

import numpy as np

_PATH = os.path.join(os.path.dirname(__file__), "digits.npz")


def load_digits(flatten: bool = True):
    """``(X_train, y_train, X_test, y_test)`` as numpy arrays.

    ``X`` is float32 in [0, 1], of shape ``(n, 64)`` when ``flatten`` else
    ``(n, 8, 8, 1)`` (NHWC, for convolutions); ``y`` is int64 in 0..9.
    """
    with np.load(_PATH) as f:
        images, labels, is_test = f["images"], f["labels"], f["is_test"]
    x = images.astype(np.float32) / 16.0
    x = x.reshape(len(x), 64) if flatten else x.reshape(len(x), 8, 8, 1)
    y = labels.astype(np.int64)
    return x[~is_test], y[~is_test], x[is_test], y[is_test]
