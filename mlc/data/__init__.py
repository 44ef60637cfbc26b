"""Datasets, batching and augmentation: ``Dataset``, ``NDArrayDataset``, ``DataLoader``,
``load_digits``, and needle's transforms ``RandomFlipHorizontal``, ``RandomCrop``."""

from .dataset import DataLoader, Dataset, NDArrayDataset  # noqa: F401
from .digits import load_digits  # noqa: F401
from .transforms import RandomCrop, RandomFlipHorizontal, Transform  # noqa: F401
