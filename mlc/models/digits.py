"""The two digits baselines every unit measures on: an MLP and a small CNN.

Both read the shipped 8x8 digits (``mlc.data.load_digits``): the MLP flattened, ``(N,
64)``; the CNN as NHWC images, ``(N, 8, 8, 1)``. Each builder seeds numpy's global
generator (which ``mlc.init`` draws from), builds the model, then draws a random example
input of ``batch`` rows from the same generator, and returns ``(model, example)``: the same
call gives the same weights and example in a lecture, a test and a benchmark. ``seed=None``
leaves the generator as it is (the caller seeded it).

The defaults are the graph units' small models (a 64-64-10 MLP, a CNN of 8 and 16
channels); the compression unit asks for wider ones (``hidden=(256,)``, ``channels=(16,
32)``) to have weights to spare.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import nn
from .train import set_seed


def digits_mlp(batch: int = 1, seed: int | None = 0, hidden=(64,), device=None):
    """``64 -> hidden[0] -> ReLU -> ... -> 10`` on flattened digits, and a ``(batch, 64)``
    example. ``device``: where the parameters live (``nn.Linear``'s default when None)."""
    set_seed(seed)
    sizes = (64, *hidden)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b, device=device), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], 10, device=device))
    return nn.Sequential(*layers), np.random.rand(batch, 64).astype("float32")


def digits_cnn(batch: int = 1, seed: int | None = 0, channels=(8, 16), device=None,
               conv: Callable | None = None):
    """Two 3x3 convolutions (the second with stride 2) and a classifier, on NHWC digits,
    and a ``(batch, 8, 8, 1)`` example.

    ``(N, 8, 8, 1) -> conv 3x3 -> ReLU -> (N, 8, 8, c0) -> conv 3x3 / 2 -> ReLU ->
    (N, 4, 4, c1) -> Flatten -> Linear(16 c1, 10)``. ``conv(c_in, c_out, k, stride=,
    device=)`` builds the second convolution (default ``nn.Conv``): pass
    ``compress.DepthwiseSeparableConv`` to compare the MobileNet block with the standard one.
    """
    set_seed(seed)
    conv = conv or nn.Conv
    c0, c1 = channels
    model = nn.Sequential(
        nn.Conv(1, c0, 3, device=device), nn.ReLU(),
        conv(c0, c1, 3, stride=2, device=device), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * c1, 10, device=device))
    return model, np.random.rand(batch, 8, 8, 1).astype("float32")
