"""mlc.models.digits_mlp / digits_cnn: one definition, seeded, ``(model, example)``, widths
as arguments (the graph units' small models by default, compression's wider ones on
request), and the training helpers the units share."""

import numpy as np

import mlc
from mlc import compress
from mlc.models import accuracy, clone, digits_cnn, digits_mlp, fit, predict


def _shapes(model):
    return [p.shape for p in model.parameters()]


def test_defaults_are_the_graph_units_models_and_seeded():
    mlp, x = digits_mlp(batch=3)
    assert _shapes(mlp) == [(64, 64), (1, 64), (64, 10), (1, 10)]
    assert x.shape == (3, 64) and x.dtype == np.float32
    cnn, xi = digits_cnn(batch=2)
    assert _shapes(cnn)[0] == (3, 3, 1, 8) and _shapes(cnn)[2] == (3, 3, 8, 16)
    assert _shapes(cnn)[-2] == (256, 10) and xi.shape == (2, 8, 8, 1)
    again, x2 = digits_mlp(batch=3)
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(mlp.parameters(), again.parameters(), strict=True))
    assert np.array_equal(x, x2)
    other, _ = digits_mlp(batch=3, seed=1)
    assert not np.array_equal(other.parameters()[0].numpy(), mlp.parameters()[0].numpy())


def test_widths_conv_and_an_unseeded_call():
    wide, _ = digits_mlp(hidden=(256, 128))
    assert _shapes(wide)[::2] == [(64, 256), (256, 128), (128, 10)]
    sep, _ = digits_cnn(channels=(16, 32), conv=compress.DepthwiseSeparableConv)
    assert isinstance(sep[2], compress.DepthwiseSeparableConv) and _shapes(sep)[-2] == (512, 10)
    np.random.seed(5)
    a, _ = digits_mlp(seed=None)                  # the caller's generator, not reseeded
    np.random.seed(5)
    b, _ = digits_mlp(seed=None)
    c, _ = digits_mlp(seed=0)
    assert np.array_equal(a.parameters()[0].numpy(), b.parameters()[0].numpy())
    assert not np.array_equal(a.parameters()[0].numpy(), c.parameters()[0].numpy())


def test_training_helpers_are_one_set():
    assert compress.fit is fit and compress.accuracy is accuracy and compress.clone is clone
    Xtr, ytr, Xte, yte = mlc.data.load_digits()
    model, _ = digits_mlp()
    copy = clone(model)
    fit(model, Xtr[:256], ytr[:256], epochs=2, seed=0)
    assert accuracy(model, Xte, yte) > accuracy(copy, Xte, yte)
    assert predict(model, Xte[:5]).shape == (5, 10)
