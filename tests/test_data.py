"""mlc.data: the shipped digits, Dataset and DataLoader."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc.data import DataLoader, Dataset, NDArrayDataset, load_digits


def test_load_digits_shapes_dtypes_and_range():
    X_train, y_train, X_test, y_test = load_digits()
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert X_train.dtype == np.float32 and np.issubdtype(y_train.dtype, np.integer)
    for X in (X_train, X_test):
        assert X.min() == 0.0 and X.max() == 1.0
        # pixel counts 0..16 divided by 16: multiples of 1/16
        assert np.allclose(X * 16, np.round(X * 16))
    assert set(np.unique(y_train)) == set(range(10))
    assert np.all(np.bincount(y_test, minlength=10) == 36)  # stratified split


def test_load_digits_is_fixed_and_nhwc():
    a = load_digits()
    b = load_digits(flatten=False)
    for u, v in zip(a, b, strict=True):
        assert np.array_equal(u.reshape(len(u), -1), v.reshape(len(v), -1))
    assert b[0].shape == (1437, 8, 8, 1)
    # the train and test images are different examples
    train = {r.tobytes() for r in a[0]}
    assert sum(r.tobytes() in train for r in a[2]) < 10  # a few digits are drawn identically


def test_ndarray_dataset_and_transforms():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    ds = NDArrayDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    assert np.array_equal(xi, x[4]) and yi == 4
    ds2 = NDArrayDataset(x, y, transforms=[lambda v: v * 10])
    assert np.array_equal(ds2[1][0], x[1] * 10)
    with pytest.raises(ValueError, match="different lengths"):
        NDArrayDataset(x, y[:3])


def test_dataloader_batches_in_order():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    loader = DataLoader(NDArrayDataset(x, y), batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    xb, yb = batches[1]
    assert isinstance(xb, mlc.Tensor) and xb.dtype == "float32" and yb.dtype == "int32"
    assert not xb.requires_grad
    assert np.array_equal(xb.numpy(), x[4:8]) and np.array_equal(yb.numpy(), y[4:8])
    assert len(DataLoader(NDArrayDataset(x, y), batch_size=4, drop_last=True)) == 2
    assert len(list(DataLoader(NDArrayDataset(x, y), batch_size=4, drop_last=True))) == 2


def test_dataloader_shuffles_each_epoch_and_covers_everything():
    x = np.arange(30, dtype=np.float32).reshape(30, 1)
    loader = DataLoader(NDArrayDataset(x, np.arange(30)), batch_size=7, shuffle=True)
    epochs = [np.concatenate([b[1].numpy() for b in loader]) for _ in range(2)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(30))
    assert not np.array_equal(epochs[0], epochs[1])
    for xb, yb in loader:  # inputs and labels stay paired
        assert np.array_equal(xb.numpy()[:, 0], yb.numpy())


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.array([i, i * i], dtype=np.float32), i


def test_dataloader_over_a_custom_dataset_on_a_device():
    dev = nd.cpu_numpy()
    (xb, yb), = list(DataLoader(Squares(), batch_size=5, device=dev))
    assert xb.device == dev and xb.shape == (5, 2)
    assert np.array_equal(xb.numpy()[:, 1], np.arange(5) ** 2)
    assert np.array_equal(yb.numpy(), np.arange(5))


def test_dataloader_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(Squares(), batch_size=0)
