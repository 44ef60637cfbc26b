"""Tensor parallelism: one layer's weight split across ranks (Megatron-LM, Shoeybi et
al. 2019).

An MLP ``y = relu(x @ A) @ B`` splits with *one* allreduce in forward and one in
backward:

- :class:`ColumnParallelLinear` holds the columns ``A[:, shard]``: every rank has the
  whole input ``x`` and computes its slice of the hidden units; ``relu`` is elementwise,
  so it needs nothing from the other ranks;
- :class:`RowParallelLinear` holds the matching rows ``B[shard, :]``: the partial
  products ``h_shard @ B_shard`` add up to ``h @ B``, the forward pass's one allreduce
  (:class:`ReduceFromRanks`).

In backward the roles swap: the gradient of the column layer's input is the sum of every
rank's ``dh_shard @ A_shard.T``, the backward pass's one allreduce (:class:`CopyToRanks`:
identity forward, allreduce backward). Each rank stores and multiplies 1/P of the
weights. The layers equal the unsplit ``nn.Linear`` they are cut from
(:meth:`from_linear`).
"""

from __future__ import annotations

from .. import ndarray as nd
from ..autograd import TensorOp
from ..nn import Linear, Module, Parameter
from .collectives import allreduce, chunk_bounds


def _allreduce_nd(comm, a, algorithm: str):
    return nd.array(allreduce(comm, a.numpy(), algorithm), dtype=a.dtype, device=a.device)


class ReduceFromRanks(TensorOp):
    """Forward: the sum over ranks (allreduce). Backward: the gradient as it is, since
    every rank's partial sum contributed with weight one."""

    def __init__(self, comm, algorithm: str = "ring"):
        self.comm, self.algorithm = comm, algorithm

    def compute(self, a):
        return _allreduce_nd(self.comm, a, self.algorithm)

    def gradient(self, out_grad, node):
        return out_grad


class CopyToRanks(TensorOp):
    """Forward: the input as it is (every rank uses all of it). Backward: the sum of the
    ranks' gradients (allreduce)."""

    def __init__(self, comm, algorithm: str = "ring"):
        self.comm, self.algorithm = comm, algorithm

    def compute(self, a):
        return a

    def gradient(self, out_grad, node):
        return ReduceFromRanks(self.comm, self.algorithm)(out_grad)


def _shard_of(comm, n: int, what: str) -> tuple[int, int]:
    if n < comm.size:
        raise ValueError(f"{what}: {n} features cannot be split over {comm.size} ranks")
    return chunk_bounds(n, comm.size)[comm.rank]


class _ParallelLinear(Module):
    """What both splits share: rank ``comm.rank``'s shard of an ``nn.Linear`` (``linear``,
    or one with rank 0's initial weights), cut along the weight's columns or rows."""

    columns: bool  # cut W (in, out) along out (True) or along in (False)

    def __init__(self, in_features: int, out_features: int, comm, bias: bool = True,
                 algorithm: str = "ring", linear: Linear | None = None):
        super().__init__()
        full = linear if linear is not None else _shared_linear(in_features, out_features,
                                                                bias, comm)
        lo, hi = _shard_of(comm, out_features if self.columns else in_features,
                           type(self).__name__)
        self.comm, self.algorithm = comm, algorithm
        self.in_features, self.out_features = in_features, out_features
        w = full.weight.numpy()
        self.weight = Parameter((w[:, lo:hi] if self.columns else w[lo:hi, :]).copy())
        self.bias = None
        if full.bias is not None:  # a row split adds the whole bias once, after the sum
            b = full.bias.numpy()
            self.bias = Parameter((b[:, lo:hi] if self.columns else b).copy())

    @classmethod
    def from_linear(cls, linear: Linear, comm, **kw):
        """This rank's shard of ``linear`` (the same layer on every rank)."""
        return cls(linear.in_features, linear.out_features, comm,
                   bias=linear.bias is not None, linear=linear, **kw)


class ColumnParallelLinear(_ParallelLinear):
    """``x @ W[:, shard] + b[shard]`` on each rank: its slice of the output features
    (feed it to a :class:`RowParallelLinear`, after any elementwise op)."""

    columns = True

    def forward(self, x):
        y = CopyToRanks(self.comm, self.algorithm)(x) @ self.weight
        if self.bias is not None:
            y = y + self.bias.broadcast_to(y.shape)
        return y


class RowParallelLinear(_ParallelLinear):
    """``allreduce(x_shard @ W[shard, :]) + b`` on each rank: the input comes split by
    features (a :class:`ColumnParallelLinear`'s output), the output is whole."""

    columns = False

    def forward(self, x):
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"RowParallelLinear rank {self.comm.rank}: expected its "
                             f"{self.weight.shape[0]} input features, got shape {x.shape}")
        y = ReduceFromRanks(self.comm, self.algorithm)(x @ self.weight)
        if self.bias is not None:
            y = y + self.bias.broadcast_to(y.shape)
        return y


def _shared_linear(in_features: int, out_features: int, bias: bool, comm) -> Linear:
    """An ``nn.Linear`` with rank 0's initial weights on every rank."""
    from .collectives import broadcast

    layer = Linear(in_features, out_features, bias=bias)
    for p in layer.parameters():
        p.cached_data = nd.array(broadcast(comm, p.numpy(), root=0), dtype=p.dtype,
                                 device=p.device)
    return layer
