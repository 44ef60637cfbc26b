"""Collectives written on point-to-point messages, with the engine's own beside them.

A collective is a pattern of sends and receives that every rank calls together. The
ones deep learning lives on, written here in a few lines each over ``comm.send`` /
``comm.recv`` (``algorithm="ring"`` / ``"tree"``), and, for comparison, the engine's
own (``algorithm="mpi"``: MPI's tuned implementation, or shared memory for
:func:`~mlc.dist.local` ranks):

- :func:`reduce_scatter`: the sum of every rank's array, rank r keeping chunk r;
- :func:`allgather`: every rank's piece, concatenated, on every rank;
- :func:`allreduce`: the sum on every rank, as a reduce-scatter followed by an allgather
  (the ring algorithm of Patarasuk and Yuan, 2009, which Baidu brought to deep learning
  in 2017 and NCCL and Horovod use);
- :func:`broadcast`: the root's array on every rank, down a binomial tree.

Why the ring: each of the P-1 steps of each phase moves one chunk of n/P elements per
rank, so a rank sends ``2 (P-1)/P * n`` elements in all, almost independent of P, where
"everyone sends everything to everyone" sends ``(P-1) * n``. The price is ``2 (P-1)``
message latencies, which is why small messages use trees (:mod:`mlc.dist.cost`).

Any length works, not only multiples of P: the chunks are ``np.array_split``'s, whose
sizes differ by at most one (some may be empty).
"""

from __future__ import annotations

import numpy as np

from .comm import Communicator

_TAG_RS, _TAG_AG, _TAG_BC = 1001, 1002, 1003


def _check(comm, x, what: str) -> np.ndarray:
    if not isinstance(comm, Communicator):
        raise TypeError(f"{what} takes a dist communicator (dist.world() or a dist.local rank),"
                        f" got {type(comm).__name__}")
    comm.calls[what] = comm.calls.get(what, 0) + 1
    return np.ascontiguousarray(x)


def _algorithm(algorithm: str, allowed: tuple[str, ...], what: str) -> None:
    if algorithm not in allowed:
        raise ValueError(f"{what}: unknown algorithm {algorithm!r}; choose one of "
                         + ", ".join(repr(a) for a in allowed))


def chunk_bounds(n: int, p: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the P chunks of a length-n array (``np.array_split``'s)."""
    q, r = divmod(n, p)
    starts = [i * q + min(i, r) for i in range(p + 1)]
    return [(starts[i], starts[i + 1]) for i in range(p)]


def _ring_reduce_scatter(comm, flat: np.ndarray) -> np.ndarray:
    """Ring reduce-scatter of a 1-D array in place; rank r ends owning chunk r's sum."""
    p, r = comm.size, comm.rank
    b = chunk_bounds(flat.size, p)
    right, left = (r + 1) % p, (r - 1) % p
    for s in range(p - 1):
        send_c, recv_c = (r - s - 1) % p, (r - s - 2) % p
        lo, hi = b[recv_c]
        got = comm.sendrecv(flat[slice(*b[send_c])], right, left, _TAG_RS)
        if got.size != hi - lo:
            raise ValueError(f"reduce_scatter: rank {r} received {got.size} elements of chunk "
                             f"{recv_c} from rank {left}, expected {hi - lo}: the ranks' "
                             "arrays differ in shape (every rank must pass the same shape)")
        flat[lo:hi] += got
    return flat[slice(*b[r])]


def _ring_allgather(comm, piece: np.ndarray) -> list[np.ndarray]:
    p, r = comm.size, comm.rank
    pieces: list = [None] * p
    pieces[r] = piece
    right, left = (r + 1) % p, (r - 1) % p
    for s in range(p - 1):
        got = comm.sendrecv(pieces[(r - s) % p], right, left, _TAG_AG)
        pieces[(r - s - 1) % p] = got.astype(piece.dtype, copy=False)
    return pieces


def reduce_scatter(comm, x, algorithm: str = "ring") -> np.ndarray:
    """Rank r's chunk (``np.array_split(sum, P)[r]``) of the sum of every rank's ``x``,
    flattened. ``"ring"`` sends (P-1)/P of the data per rank; ``"mpi"`` is the engine's
    allreduce, sliced (the reference to compare with, not a cheaper route)."""
    x = _check(comm, x, "reduce_scatter")
    _algorithm(algorithm, ("ring", "mpi"), "reduce_scatter")
    flat = x.reshape(-1)
    if algorithm == "mpi":
        lo, hi = chunk_bounds(flat.size, comm.size)[comm.rank]
        return comm.native_allreduce(flat)[lo:hi]
    return _ring_reduce_scatter(comm, flat.copy()).copy()


def allgather(comm, x, algorithm: str = "ring") -> np.ndarray:
    """Every rank's ``x`` (flattened; sizes may differ), concatenated in rank order."""
    x = _check(comm, x, "allgather")
    _algorithm(algorithm, ("ring", "mpi"), "allgather")
    if algorithm == "mpi":
        return comm.native_allgather(x)
    return np.concatenate(_ring_allgather(comm, x.reshape(-1)))


def allreduce(comm, x, algorithm: str = "ring", op: str = "sum") -> np.ndarray:
    """The sum (``op="mean"``: the average) of every rank's ``x``, on every rank, in
    ``x``'s shape. ``"ring"``: reduce-scatter then allgather over send/recv; ``"mpi"``:
    the engine's own. Every rank gets bit-identical values (each chunk is added up once,
    then copied)."""
    x = _check(comm, x, "allreduce")
    _algorithm(algorithm, ("ring", "mpi"), "allreduce")
    if op not in ("sum", "mean"):
        raise ValueError(f"allreduce: op must be 'sum' or 'mean', got {op!r}")
    if algorithm == "mpi" or comm.size == 1:
        out = comm.native_allreduce(x)
    else:
        flat = x.reshape(-1).copy()
        mine = _ring_reduce_scatter(comm, flat)
        out = np.concatenate(_ring_allgather(comm, mine))
        if out.size != x.size:
            raise ValueError(f"allreduce: rank {comm.rank} gathered {out.size} elements for "
                             f"its {x.size}: the ranks' arrays differ in shape")
        out = out.reshape(x.shape)
    return out / comm.size if op == "mean" else out


def broadcast(comm, x, root: int = 0, algorithm: str = "tree") -> np.ndarray:
    """The root's ``x`` on every rank (every rank passes an array of the shape; only the
    root's values matter). ``"tree"``: a binomial tree, ceil(log2 P) rounds in which every
    rank that has the data sends it on; ``"mpi"``: the engine's own."""
    x = _check(comm, x, "broadcast")
    _algorithm(algorithm, ("tree", "mpi"), "broadcast")
    if not 0 <= root < comm.size:
        raise ValueError(f"broadcast: root {root} is not a rank of 0..{comm.size - 1}")
    if algorithm == "mpi":
        return comm.native_broadcast(x, root)
    p, vr = comm.size, (comm.rank - root) % comm.size  # ranks renumbered so the root is 0
    data = x.copy()
    mask = 1
    while mask < p:
        if vr < mask and vr + mask < p:
            comm.send(data, (vr + mask + root) % p, _TAG_BC)
        elif mask <= vr < 2 * mask:
            comm.recv((vr - mask + root) % p, _TAG_BC, out=data)
        mask *= 2
    return data
