"""MPI ranks: :class:`MPIComm` over mpi4py's ``COMM_WORLD``, and :func:`world`.

mpi4py is an optional dependency (``pip install -e ".[dist]"`` installs it with MPICH's
wheel, so no system MPI is needed): ``import mlc.dist`` works without it, and
:func:`world` then returns a single rank.

MPI's blocking calls would wait forever for a peer that never comes. Every wait here is
a non-blocking call polled until ``comm.timeout`` seconds, then a :class:`DistError`
that names the rank; ``mpiexec`` ends the job once that rank exits with an error.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .comm import _DTYPES, _NDT, DEFAULT_TIMEOUT, Communicator, DistError, _check_peer, \
    _into, _payload


def mpi_module():
    """mpi4py's ``MPI``, or None when mpi4py (or an MPI library) is missing."""
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI


class MPIComm(Communicator):
    """One MPI process's rank in ``comm`` (``COMM_WORLD`` by default)."""

    def __init__(self, comm=None, timeout: float = DEFAULT_TIMEOUT):
        MPI = mpi_module()
        if MPI is None:
            raise ImportError("MPI is not available: pip install -e '.[dist]' (mpi4py and "
                              "the MPICH wheel)")
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = float(timeout)
        self._counters()
        if self.size > 1:
            _abort_on_uncaught(self.comm)

    def _poll(self, ready, what: str):
        """Call ``ready()`` until it returns something truthy, or raise after ``timeout``.
        Spin first (a message between processes on one machine takes microseconds), then
        yield the core: with more ranks than cores a spinning rank would starve the
        rank it waits for."""
        got = ready()
        spins, start = 0, time.monotonic()
        while not got:
            spins += 1
            if spins % 64 == 0:
                now = time.monotonic()
                if now - start > self.timeout:
                    raise DistError(f"rank {self.rank}: {what} within {self.timeout:g} s: "
                                    "did every rank call the same collective, or did one die?")
                time.sleep(0 if now - start < 0.01 else 1e-4)
            got = ready()
        return got

    def _wait(self, req, what: str) -> None:
        self._poll(req.Test, f"{what} did not complete")

    def send(self, buf, dest: int, tag: int = 0) -> None:
        self.isend(buf, dest, tag)()

    def isend(self, buf, dest: int, tag: int = 0):
        """Start a send and return a function that waits for it (used by sendrecv)."""
        _check_peer(self, dest, "send to")
        data = _payload(buf)
        req = self.comm.Isend(data.view(np.uint8), dest, tag * _NDT + _DTYPES.index(data.dtype))
        self._count(sent=data)

        def wait(keep=data):  # `keep`: the buffer must outlive the send
            self._wait(req, f"send to rank {dest}")
        return wait

    def recv(self, source: int, tag: int = 0, out=None) -> np.ndarray:
        _check_peer(self, source, "receive from")
        status = self.MPI.Status()
        mpi_tag = self._poll(lambda: self._probe(source, tag, status),
                             f"waited for a message from rank {source} (tag {tag}) that "
                             "never came")
        raw = np.empty(status.Get_count(self.MPI.BYTE), np.uint8)
        self.comm.Recv(raw, source, mpi_tag)
        data = raw.view(_DTYPES[mpi_tag % _NDT])
        self._count(got=data)
        return _into(out, data, self.rank, source)

    def _probe(self, source: int, tag: int, status):
        """The MPI tag of the next message from ``source`` with user tag ``tag``, or None.
        The first message from ``source`` is looked at first, so messages of one tag
        arrive in the order they were sent whatever their dtypes."""
        if not self.comm.Iprobe(source, self.MPI.ANY_TAG, status):
            return None
        if status.Get_tag() // _NDT == tag:
            return status.Get_tag()
        for code in range(len(_DTYPES)):  # another tag's message came first
            if self.comm.Iprobe(source, tag * _NDT + code, status):
                return tag * _NDT + code
        return None

    def sendrecv(self, sendbuf, dest: int, source: int, tag: int = 0, out=None) -> np.ndarray:
        # A blocking send of a large buffer waits for its receiver; in a ring every rank
        # would wait for its right neighbour. Start the send, receive, then finish it.
        done = self.isend(sendbuf, dest, tag)
        got = self.recv(source, tag, out)
        done()
        return got

    def barrier(self) -> None:
        self._wait(self.comm.Ibarrier(), "barrier")

    def native_allreduce(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        shapes = self._allgather_object(x.shape)
        _check_shapes(shapes, "allreduce")
        out = np.empty_like(x)
        self._wait(self.comm.Iallreduce(x, out, op=self.MPI.SUM), "allreduce")
        return out

    def native_allgather(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x).reshape(-1)
        counts = [int(np.prod(s)) for s in self._allgather_object(x.shape)]
        out = np.empty(sum(counts), x.dtype)
        self._wait(self.comm.Iallgatherv(x, [out, counts]), "allgather")
        return out

    def native_broadcast(self, x: np.ndarray, root: int) -> np.ndarray:
        x = np.ascontiguousarray(x).copy()
        _check_shapes(self._allgather_object(x.shape), "broadcast")
        self._wait(self.comm.Ibcast(x, root=root), "broadcast")
        return x

    def _allgather_object(self, value) -> list:
        # A tiny Iallgather of shapes first, so a mismatch is an error that names the rank
        # instead of MPI reading past a buffer.
        arr = np.zeros(8, np.int64)
        arr[0] = len(value)
        arr[1:1 + len(value)] = value
        out = np.empty(8 * self.size, np.int64)
        self._wait(self.comm.Iallgather(arr, out), "shape exchange")
        return [tuple(int(v) for v in out[8 * r + 1: 8 * r + 1 + out[8 * r]])
                for r in range(self.size)]


def _abort_on_uncaught(comm) -> None:
    """An exception that ends one rank ends the job (as ``python -m mpi4py`` does):
    otherwise its peers would wait for it until their timeouts, and MPI_Finalize at exit
    can block on the dead rank's unfinished sends."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        # mpiexec forwards each rank's output through its own pipes: Abort right away
        # and the launcher can kill the job before the traceback's last line (the
        # message that names the rank) reaches the terminal.
        time.sleep(0.5)
        comm.Abort(1)

    sys.excepthook = hook


def _check_shapes(shapes: list, what: str) -> None:
    bad = [r for r, s in enumerate(shapes) if s != shapes[0]]
    if bad:
        raise ValueError(f"{what}: rank {bad[0]} passed shape {shapes[bad[0]]}, rank 0 passed "
                         f"{shapes[0]}: every rank must pass the same shape")


class SingleComm(Communicator):
    """The world of a program started without mpiexec: one rank, no peers."""

    rank, size = 0, 1
    timeout = DEFAULT_TIMEOUT

    def __init__(self):
        self._counters()

    def send(self, buf, dest: int, tag: int = 0) -> None:
        _check_peer(self, dest, "send to")

    def recv(self, source: int, tag: int = 0, out=None) -> np.ndarray:
        _check_peer(self, source, "receive from")

    def barrier(self) -> None:
        """One rank: nothing to wait for."""

    def native_allreduce(self, x):
        return np.array(x, copy=True)

    def native_allgather(self, x):
        return np.asarray(x).reshape(-1).copy()

    def native_broadcast(self, x, root: int):
        return np.array(x, copy=True)


_WORLD = None


def world(timeout: float = DEFAULT_TIMEOUT) -> Communicator:
    """This process's rank among all of the job's: MPI's ``COMM_WORLD`` when mpi4py is
    installed (one rank when the script was not started by mpiexec), else a single rank."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MPIComm(timeout=timeout) if mpi_module() is not None else SingleComm()
    return _WORLD
