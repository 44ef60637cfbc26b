"""Sharded optimizer state, ZeRO stage 1 (Rajbhandari et al., 2020).

In data-parallel training every rank keeps a full copy of the optimizer's state: Adam's
two running moments are 2 floats per parameter, twice the weights themselves. ZeRO-1
splits that state: rank r updates only the parameters it owns (and keeps their moments
only), then the updated parameters are allgathered so every replica holds all weights
again. Optimizer memory per rank drops to ~1/P; what moves per step is one allgather of
the weights (after the usual allreduce of the gradients).

Here a parameter is owned whole by one rank (largest first, each to the least-loaded
rank), so the split is only as even as the parameter sizes allow; ZeRO proper flattens
all parameters and cuts the flat buffer evenly.
"""

from __future__ import annotations

import numpy as np

from .. import ndarray as nd
from .collectives import allgather


def partition(sizes: list[int], P: int) -> list[int]:
    """The owning rank of each of ``sizes`` (largest first, each to the least-loaded rank)."""
    load = [0] * P
    owner = [0] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        r = min(range(P), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += sizes[i]
    return owner


def state_bytes(opt) -> int:
    """Bytes of an optimizer's per-parameter state (Adam's ``m`` and ``v``, SGD's momentum
    ``u``): every dict attribute that maps parameters to arrays."""
    total = 0
    for value in vars(opt).values():
        if isinstance(value, dict):
            for arr in value.values():
                if hasattr(arr, "shape") and hasattr(arr, "dtype"):
                    total += int(np.prod(arr.shape)) * np.dtype(arr.dtype).itemsize
    return total


class ShardedOptimizer:
    """``opt`` (an ``mlc.optim`` optimizer over the whole model, identical on every rank)
    made to update only this rank's share of the parameters; :meth:`step` then allgathers
    the updated weights. Call it where you would call ``opt.step()``, after the gradients
    are averaged (e.g. by :class:`~mlc.dist.DistributedDataParallel`)."""

    def __init__(self, opt, comm, algorithm: str = "ring"):
        self.opt, self.comm, self.algorithm = opt, comm, algorithm
        self.params = list(opt.params)
        self.owner = partition([p.size for p in self.params], comm.size)
        opt.params = [p for p, o in zip(self.params, self.owner, strict=True)
                      if o == comm.rank]

    def step(self) -> None:
        self.opt.step()
        mine = [p.numpy().reshape(-1) for p in self.opt.params]
        flat = allgather(self.comm, np.concatenate(mine) if mine else np.zeros(0, np.float32),
                         self.algorithm)
        # allgather concatenates in rank order: walk the ranks' parameters in that order.
        at = 0
        for r in range(self.comm.size):
            for p, o in zip(self.params, self.owner, strict=True):
                if o == r:
                    p.cached_data = nd.array(flat[at:at + p.size].reshape(p.shape),
                                             dtype=p.dtype, device=p.device)
                    at += p.size

    def reset_grad(self) -> None:
        for p in self.params:
            p.grad = None

    zero_grad = reset_grad

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds."""
        return state_bytes(self.opt)
