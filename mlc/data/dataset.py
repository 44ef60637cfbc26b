"""``Dataset`` and ``DataLoader``: examples one at a time, batches as Tensors.

A ``Dataset`` answers ``len(ds)`` and ``ds[i]`` (a tuple of numpy arrays: the input and
its label). A ``DataLoader`` walks a dataset in batches, in order or in a fresh random
order each epoch, and hands each batch over as Tensors on the chosen device: floats as
float32, integer labels as int32.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from ..autograd import Tensor


class Dataset:
    """Subclass and define ``__getitem__`` and ``__len__``.

    ``transforms`` are functions applied, in order, to the input of each example.
    """

    def __init__(self, transforms: Sequence[Callable] | None = None):
        self.transforms = list(transforms or [])

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def apply_transforms(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class NDArrayDataset(Dataset):
    """A dataset over arrays of equal length: ``ds[i] = (arrays[0][i], arrays[1][i], ...)``."""

    def __init__(self, *arrays, transforms: Sequence[Callable] | None = None):
        super().__init__(transforms)
        if not arrays:
            raise ValueError("NDArrayDataset needs at least one array")
        self.arrays = [np.asarray(a) for a in arrays]
        n = len(self.arrays[0])
        for a in self.arrays:
            if len(a) != n:
                raise ValueError(f"NDArrayDataset: arrays of different lengths "
                                 f"{[len(b) for b in self.arrays]}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        x = self.apply_transforms(self.arrays[0][index])
        return (x,) + tuple(a[index] for a in self.arrays[1:])


def _dtype_of(arr: np.ndarray) -> str:
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return "int32"
    return "float32"


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` (the last may be smaller
    unless ``drop_last``); ``shuffle`` draws a new order every epoch from numpy's
    global generator."""

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = False,
                 device=None, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.device = device
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self) -> list[np.ndarray]:
        n = len(self.dataset)
        order = np.random.permutation(n) if self.shuffle else np.arange(n)
        return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)
                if not (self.drop_last and i + self.batch_size > n)]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for idx in self._batches():
            if isinstance(self.dataset, NDArrayDataset) and not self.dataset.transforms:
                fields = [a[idx] for a in self.dataset.arrays]  # one gather per field
            else:
                examples = [self.dataset[int(i)] for i in idx]
                fields = [np.stack([ex[j] for ex in examples]) for j in range(len(examples[0]))]
            yield tuple(Tensor(f, device=self.device, dtype=_dtype_of(f), requires_grad=False)
                        for f in fields)
