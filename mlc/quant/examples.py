"""Two digits models that are not chains, to quantize as graphs (unit 09, tests, bench).

* :class:`ResidualMLP`: ``Linear(64, h)``, a residual block ``x + Linear(ReLU(Linear(x)))``,
  ReLU, ``Linear(h, 10)``: one ``qadd`` between ``qlinear`` ops;
* :class:`AttentionBlock`: the 8 x 8 image as 8 tokens (its rows), a Linear embedding of
  each row, layer norm, multi-head self-attention, a residual add, a Linear head on the
  flattened tokens. Layer norm, the two activation x activation products and softmax
  have no integer form here: they stay float islands.

:func:`train` fits either with Adam (seeded by the caller) in a few seconds.
"""

from __future__ import annotations

import numpy as np

from .. import nn, ops


class ResidualMLP(nn.Module):
    def __init__(self, hidden: int = 64, device=None):
        super().__init__()
        self.inp = nn.Linear(64, hidden, device=device)
        self.block = nn.Residual(nn.Sequential(nn.Linear(hidden, hidden, device=device),
                                               nn.ReLU(),
                                               nn.Linear(hidden, hidden, device=device)))
        self.act = nn.ReLU()
        self.head = nn.Linear(hidden, 10, device=device)

    def forward(self, x):
        return self.head(self.act(self.block(self.inp(x))))


class AttentionBlock(nn.Module):
    """Rows of the image as tokens; ``dim`` features, ``heads`` attention heads."""

    def __init__(self, dim: int = 16, heads: int = 2, device=None):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.embed = nn.Linear(8, dim, device=device)
        self.norm = nn.LayerNorm1d(dim, device=device)
        self.q = nn.Linear(dim, dim, device=device)
        self.k = nn.Linear(dim, dim, device=device)
        self.v = nn.Linear(dim, dim, device=device)
        self.out = nn.Linear(dim, dim, device=device)
        self.head = nn.Linear(8 * dim, 10, device=device)

    def _split(self, t, n):             # (n, 8, dim) -> (n, heads, 8, dim / heads)
        return ops.transpose(ops.reshape(t, (n, 8, self.heads, self.dim // self.heads)),
                             (1, 2))

    def forward(self, x):
        n = x.shape[0]
        h = self.embed(ops.reshape(x, (n, 8, 8)))
        a = self.norm(h)
        q, k, v = (self._split(f(a), n) for f in (self.q, self.k, self.v))
        s = (q @ ops.transpose(k)) / float(np.sqrt(self.dim // self.heads))
        m = ops.logsumexp(s, axes=(3,))
        p = ops.exp(s - ops.broadcast_to(ops.reshape(m, m.shape + (1,)), s.shape))
        o = ops.reshape(ops.transpose(p @ v, (1, 2)), (n, 8, self.dim))
        h = h + self.out(o)
        return self.head(ops.reshape(h, (n, 8 * self.dim)))


def train(model, X, y, epochs: int, lr: float = 0.01, batch_size: int = 64, device=None):
    """Adam on the softmax loss; leaves the model in eval mode."""
    from .. import data, optim

    opt = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.SoftmaxLoss()
    loader = data.DataLoader(data.NDArrayDataset(X, y), batch_size=batch_size, shuffle=True,
                             device=device)
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.reset_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    model.eval()
    return model
