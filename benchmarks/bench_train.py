"""Training speed of the autodiff stack: one MLP step per device, and a full training run.

A step is forward + backward + Adam update of a 64-64-10 MLP on a batch of digits.
Every op of the step is one NDArray kernel, so at this size the time is mostly per-op
overhead (Python, dispatch, allocation), not arithmetic: the ratio between devices shows
what the Numba kernels cost or save over numpy's for small tensors.

    mlc bench train [--batch 64] [--epochs 10] [--repeat 5]
"""

from __future__ import annotations

import argparse

import numpy as np

import mlc
import mlc.ndarray as nd
from mlc import nn, optim, perf
from mlc.data import DataLoader, NDArrayDataset, load_digits


def make_mlp(device):
    return nn.Sequential(nn.Linear(64, 64, device=device), nn.ReLU(),
                         nn.Linear(64, 10, device=device))


def step_time(device, batch: int, repeat: int) -> float:
    """Median seconds of one training step on ``device``."""
    np.random.seed(0)
    X, y, _, _ = load_digits()
    model = make_mlp(device)
    opt = optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.SoftmaxLoss()
    xb = mlc.Tensor(X[:batch], device=device, requires_grad=False)
    yb = mlc.Tensor(y[:batch], device=device, dtype="int32", requires_grad=False)

    def step():
        opt.reset_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()

    return perf.timeit(step, repeat=repeat, warmup=3)


def train_to_accuracy(device, epochs: int, batch: int) -> tuple[float, float]:
    """(seconds, test accuracy) of training the MLP on the digits for ``epochs``."""
    np.random.seed(0)
    X_train, y_train, X_test, y_test = load_digits()
    model = make_mlp(device)
    opt = optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.SoftmaxLoss()
    loader = DataLoader(NDArrayDataset(X_train, y_train), batch_size=batch, shuffle=True,
                        device=device)
    with perf.stopwatch() as sw:  # one run: the wall time a student would wait
        for _ in range(epochs):
            for xb, yb in loader:
                opt.reset_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
    seconds = sw.seconds
    with mlc.no_grad():
        pred = model(mlc.Tensor(X_test, device=device, requires_grad=False)).numpy().argmax(1)
    return seconds, float((pred == y_test).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench train", description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    devices = [nd.cpu_numpy(), nd.cpu()]
    if nd.cuda().enabled() and not nd.cuda_simulated():  # the simulator is far too slow
        devices.append(nd.cuda())
    times = {d.name: step_time(d, args.batch, args.repeat) for d in devices}
    base = times["cpu_numpy"]
    rows = [(name, t * 1e3, base / t) for name, t in times.items()]
    print(f"MLP 64-64-10, batch {args.batch}: forward + backward + Adam step")
    perf.print_table(rows, ["device", "ms/step", "speedup vs cpu_numpy"])

    seconds, acc = train_to_accuracy(nd.cpu(), args.epochs, args.batch)
    print()
    perf.print_table([("cpu", args.epochs, seconds, f"{acc:.1%}")],
                      ["device", "epochs", "train seconds", "test accuracy"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
