"""End to end: models trained on the shipped digits reach a good test accuracy."""

import numpy as np

import mlc
import mlc.ndarray as nd
from mlc import nn, optim
from mlc.data import DataLoader, NDArrayDataset, load_digits


def train(model, X_train, y_train, epochs, device, lr=0.01, batch_size=64):
    opt = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.SoftmaxLoss()
    loader = DataLoader(NDArrayDataset(X_train, y_train), batch_size=batch_size, shuffle=True,
                        device=device)
    losses = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for xb, yb in loader:
            opt.reset_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * xb.shape[0]
        losses.append(total / len(X_train))
    return losses


def accuracy(model, X, y, device):
    model.eval()
    with mlc.no_grad():
        logits = model(mlc.Tensor(X, device=device, requires_grad=False))
    return float((logits.numpy().argmax(1) == y).mean())


def test_mlp_reaches_95_percent_on_digits():
    np.random.seed(0)
    dev = nd.cpu()
    X_train, y_train, X_test, y_test = load_digits()
    model = nn.Sequential(nn.Linear(64, 64, device=dev), nn.ReLU(), nn.Linear(64, 10, device=dev))
    losses = train(model, X_train, y_train, epochs=10, device=dev)
    assert losses[-1] < losses[0] / 4
    assert accuracy(model, X_test, y_test, dev) >= 0.95


def test_small_cnn_trains_on_digits():
    np.random.seed(0)
    dev = nd.cpu()
    X_train, y_train, X_test, y_test = load_digits(flatten=False)
    model = nn.Sequential(
        nn.Conv(1, 8, 3, device=dev), nn.ReLU(),                  # 8x8x8
        nn.Conv(8, 16, 3, stride=2, device=dev), nn.ReLU(),       # 4x4x16
        nn.Flatten(), nn.Linear(256, 10, device=dev))
    losses = train(model, X_train, y_train, epochs=3, device=dev)
    assert losses[-1] < losses[0]
    assert accuracy(model, X_test, y_test, dev) >= 0.85
