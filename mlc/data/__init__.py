"""Datasets and batching: ``Dataset``, ``NDArrayDataset``, ``DataLoader``, ``load_digits``."""

from .dataset import DataLoader, Dataset, NDArrayDataset  # noqa: F401
from .digits import load_digits  # noqa: F401
