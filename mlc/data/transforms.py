"""Data augmentation, needle's transforms: ``RandomFlipHorizontal`` and ``RandomCrop``.

A transform is a callable on one example's input, an ``H x W x C`` numpy array (the image
layout of needle's datasets, channels last), returning an array of the same shape. Pass
them to a dataset: ``NDArrayDataset(images, labels, transforms=[RandomCrop(3)])``.

Both draw from numpy's *global* generator with exactly needle's calls
(``np.random.rand()`` for the flip, ``np.random.randint(-p, p + 1, size=2)`` for the
crop), so code seeded with ``np.random.seed`` sees the same images under needle and mlc.
"""

from __future__ import annotations

import numpy as np


class Transform:
    """Base class: ``transform(img) -> img``."""

    def __call__(self, img):
        raise NotImplementedError


def _image(img) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W, C), got shape {img.shape}")
    return img


class RandomFlipHorizontal(Transform):
    """Mirror the image left to right (along W) with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomFlipHorizontal: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, img):
        img = _image(img)
        flip = np.random.rand() < self.p
        return img[:, ::-1, :] if flip else img


class RandomCrop(Transform):
    """Zero-pad by ``padding`` on each side of H and W, then cut an ``H x W`` window at a
    random shift: ``out[i, j] = img[i + shift_x, j + shift_y]`` (0 outside the image),
    with ``shift_x`` (along H) and ``shift_y`` (along W) drawn uniformly from
    ``[-padding, padding]``."""

    def __init__(self, padding: int = 3):
        if int(padding) != padding or padding < 0:
            raise ValueError(f"RandomCrop: padding must be an int >= 0, got {padding!r}")
        self.padding = int(padding)

    def __call__(self, img):
        img = _image(img)
        p = self.padding
        shift_x, shift_y = np.random.randint(low=-p, high=p + 1, size=2)
        h, w, _ = img.shape
        padded = np.pad(img, ((p, p), (p, p), (0, 0)))
        return padded[p + shift_x:p + shift_x + h, p + shift_y:p + shift_y + w, :]
