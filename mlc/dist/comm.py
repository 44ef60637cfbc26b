"""Communicators: P ranks that send each other numpy buffers.

Everything in :mod:`mlc.dist` is written against one small interface, the one MPI has
had since 1994: a communicator knows its ``rank`` (0..size-1) and ``size``, and can
``send`` a buffer to another rank and ``recv`` one from it. Two kinds implement it:

- :class:`MPIComm` (:func:`world`): MPI's ``COMM_WORLD`` through mpi4py, one process per
  rank, started by ``mpiexec -n P`` (``mlc dist run -n P script.py``). Outside mpiexec it
  is a single rank.
- :class:`LocalComm` (:func:`local`): P ranks as threads of *this* process, each with its
  own mailboxes. Tests, notebooks and the grader use it: it needs no launcher and a
  failure in one rank shows up as a Python exception that names the rank.

How long does ``send`` wait? MPI sends a small message *eagerly* (copied into a buffer,
the send returns) and a large one by *rendezvous* (the send waits until the receiver has
posted the matching receive; MPICH switches at about 64 KiB). A program that is correct
only because sends are buffered deadlocks on real hardware at some size: if every rank of
a ring first sends and then receives, no rank ever receives. ``dist.local(P,
eager_limit=nbytes)`` behaves the same way (a larger message's send waits for its
receiver), so such a program fails here, with a message, instead of on a cluster (at
once when every running rank waits in such a send: nobody is left to receive);
``sendrecv``, or ``isend`` then ``recv`` then the wait, is the fix. The default
(``eager_limit=None``) buffers every message.

Both count what they move (``bytes_sent``, ``bytes_recv``, ``messages_sent`` per rank),
so a lecture can show that a ring allreduce sends 2(P-1)/P of the data per rank.

A message is a flat array: ``recv`` returns the sender's elements as a 1-D array of the
sender's dtype (or writes them into ``out``). Nothing here waits forever: every wait has
``comm.timeout`` seconds, and a rank that raised makes its peers raise
:class:`DistError` naming it, instead of leaving them blocked.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np

# The dtypes a message may carry; the index travels in the MPI tag so that a receiver
# knows how to read the bytes without a second message.
_DTYPES = [np.dtype(t) for t in ("float32", "float64", "float16", "int8", "uint8", "int32",
                                 "int64", "bool")]
_NDT = 16
DEFAULT_TIMEOUT = float(os.environ.get("MLC_DIST_TIMEOUT", "60"))


class DistError(RuntimeError):
    """A rank waited too long, or a peer died: the message names the ranks involved."""


def _payload(buf) -> np.ndarray:
    arr = np.ascontiguousarray(buf)
    if arr.dtype not in _DTYPES:
        raise TypeError(f"cannot send an array of dtype {arr.dtype}; messages carry "
                        + ", ".join(str(d) for d in _DTYPES))
    return arr.reshape(-1)


def _check_peer(comm, peer: int, what: str) -> None:
    if not isinstance(peer, (int, np.integer)) or not 0 <= peer < comm.size:
        raise ValueError(f"rank {comm.rank}: {what} rank {peer!r} is not in 0..{comm.size - 1}")
    if peer == comm.rank:
        raise ValueError(f"rank {comm.rank}: cannot {what.split()[0]} to/from itself")


def _into(out, data: np.ndarray, rank: int, source: int) -> np.ndarray:
    if out is None:
        return data
    if out.size != data.size:
        raise ValueError(f"rank {rank}: received {data.size} elements from rank {source} into "
                         f"a buffer of {out.size}: the ranks disagree on the message's shape")
    out.reshape(-1)[...] = data
    return out


class Communicator:
    """What every communicator has: ``rank``, ``size``, point-to-point messages, a
    barrier, counters of what moved, and the engine's own collectives (``native_*``) that
    ``algorithm="mpi"`` uses."""

    rank: int
    size: int
    timeout: float

    def _counters(self) -> None:
        self.bytes_sent = self.bytes_recv = self.messages_sent = 0
        self.calls: dict[str, int] = {}

    def reset_counters(self) -> None:
        """Start counting bytes and messages (and collective calls) from zero."""
        self._counters()

    def _count(self, sent: np.ndarray | None = None, got: np.ndarray | None = None) -> None:
        if sent is not None:
            self.bytes_sent += sent.nbytes
            self.messages_sent += 1
        if got is not None:
            self.bytes_recv += got.nbytes

    def isend(self, buf, dest: int, tag: int = 0):
        """Start sending ``buf``; returns a function that waits until it is sent. (Only
        MPI's large messages wait for their receiver; here the send is done at once.)"""
        self.send(buf, dest, tag)
        return lambda: None

    def sendrecv(self, sendbuf, dest: int, source: int, tag: int = 0, out=None) -> np.ndarray:
        """Send to ``dest`` and receive from ``source`` at once (a ring step): the send is
        started, the receive done, then the send finished, so P ranks each sending right
        and receiving left never deadlock, whatever the message's size."""
        done = self.isend(sendbuf, dest, tag)
        got = self.recv(source, tag, out)
        done()
        return got

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


# ---- in-process ranks --------------------------------------------------------------------------

class LocalGroup:
    """P :class:`LocalComm` ranks of one process. ``with dist.local(P) as comms:`` gives
    the list of them; :meth:`run` runs a function on every rank, each on its own thread."""

    def __init__(self, size: int, timeout: float = DEFAULT_TIMEOUT,
                 eager_limit: int | None = None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"dist.local needs a positive number of ranks, got {size!r}")
        if eager_limit is not None and (not isinstance(eager_limit, int) or eager_limit < 0):
            raise ValueError(f"eager_limit is a number of bytes >= 0 or None, got "
                             f"{eager_limit!r}")
        self.size = size
        self.timeout = float(timeout)
        self.eager_limit = eager_limit
        self._boxes: dict[tuple[int, int, int], queue.Queue] = {}
        self._lock = threading.Lock()
        self.failed: dict[int, str] = {}
        self.finished: set[int] = set()
        self._slots: list = [None] * size
        self._waiting: dict[int, threading.Event] = {}   # rank -> its untaken rendezvous send
        self._barrier = threading.Barrier(size)
        self.comms = [LocalComm(self, r) for r in range(size)]

    def box(self, src: int, dst: int, tag: int) -> queue.Queue:
        with self._lock:
            return self._boxes.setdefault((src, dst, tag), queue.Queue())

    def run(self, fn, *args, timeout: float | None = None, **kwargs) -> list:
        """``[fn(comm, *args, **kwargs) for each rank]``, the ranks running concurrently.

        An exception in a rank is re-raised here with the rank named (its peers stop
        waiting for it at once); a rank still running after ``timeout`` seconds (default:
        the group's, plus a margin) raises :class:`DistError` naming it."""
        self.reset()  # a failed or closed earlier run leaves nothing behind
        results: list = [None] * self.size
        errors: dict[int, BaseException] = {}

        def body(comm):
            try:
                results[comm.rank] = fn(comm, *args, **kwargs)
                self.finished.add(comm.rank)
            except BaseException as err:  # noqa: BLE001 - reported below, by rank
                errors[comm.rank] = err
                self.failed[comm.rank] = f"{type(err).__name__}: {err}"
                self._barrier.abort()

        threads = [threading.Thread(target=body, args=(c,), daemon=True,
                                    name=f"mlc-rank-{c.rank}") for c in self.comms]
        for t in threads:
            t.start()
        limit = time.monotonic() + (timeout if timeout is not None else self.timeout + 5)
        for t in threads:
            t.join(max(0.0, limit - time.monotonic()))
        stuck = [r for r, t in enumerate(threads) if t.is_alive()]
        if stuck:
            self.failed.update({r: "timed out" for r in stuck})
            raise DistError(f"rank(s) {stuck} still running after the time limit: a "
                            "collective that only some ranks called, or a message never sent")
        if errors:
            # The first rank to fail is the cause; the others failed because of it.
            first = min(errors, key=lambda r: isinstance(errors[r], DistError))
            err = errors[first]
            if str(err).startswith(f"rank {first}"):
                raise err
            try:
                named = type(err)(f"rank {first}: {err}")
            except Exception:  # noqa: BLE001 - an exception type with another signature
                raise err from None
            raise named from err
        return results

    def reset(self) -> None:
        """Forget failures, finished ranks and undelivered messages (a new run starts)."""
        self.failed.clear()
        self.finished.clear()
        self._boxes.clear()
        self._waiting.clear()
        self._barrier = threading.Barrier(self.size)

    def __enter__(self) -> list:
        return self.comms

    def __exit__(self, *exc) -> None:
        self.failed.setdefault(-1, "the group was closed")

    def __iter__(self):
        return iter(self.comms)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> "LocalComm":
        return self.comms[i]


def _all_stuck(group: LocalGroup) -> bool:
    """Whether every rank still running waits in a send nobody has taken: none of them can
    receive, so none ever will (a deadlock, reported at once instead of at the timeout)."""
    waiting = dict(group._waiting)
    live = [r for r in range(group.size) if r not in group.finished and r not in group.failed]
    return bool(live) and all(r in waiting and not waiting[r].is_set() for r in live)


class LocalComm(Communicator):
    """One rank of a :class:`LocalGroup`: a thread's view of its peers' mailboxes."""

    def __init__(self, group: LocalGroup, rank: int):
        self.group, self.rank, self.size = group, rank, group.size
        self._counters()

    @property
    def timeout(self) -> float:
        return self.group.timeout

    def send(self, buf, dest: int, tag: int = 0) -> None:
        """Post a copy of ``buf`` to ``dest``. Returns at once (a buffered, eager send),
        unless the group has an ``eager_limit`` below the message's size: then it waits
        until ``dest`` has received it, as MPI's rendezvous protocol does."""
        self.isend(buf, dest, tag)()

    def isend(self, buf, dest: int, tag: int = 0):
        """Post a copy of ``buf`` to ``dest``; returns a function that waits until the
        send is complete (at once for an eager message, else when ``dest`` took it)."""
        _check_peer(self, dest, "send to")
        data = _payload(buf).copy()
        taken = threading.Event()
        self.group.box(self.rank, dest, tag).put((data, taken))
        self._count(sent=data)
        limit = self.group.eager_limit
        if limit is None or data.nbytes <= limit:
            return lambda: None

        def wait():
            group = self.group
            deadline = time.monotonic() + self.timeout
            group._waiting[self.rank] = taken
            try:
                while not taken.wait(0.05):
                    dead = {r: why for r, why in group.failed.items() if r != self.rank}
                    if dest in dead or -1 in dead:
                        raise DistError(f"rank {self.rank}: the send to rank {dest} never "
                                        f"completed: rank {dest} failed "
                                        f"({dead.get(dest, dead.get(-1))})")
                    if (dest in group.finished or _all_stuck(group)
                            or time.monotonic() > deadline) and not taken.is_set():
                        raise DistError(
                            f"rank {self.rank}: a send of {data.nbytes} bytes to rank {dest} "
                            f"(tag {tag}) did not complete: a message above the eager limit "
                            f"({limit} bytes) waits until its receiver takes it, as MPI's "
                            f"large messages do, and rank {dest} never received it. If every "
                            f"rank sends before it receives, none receives: use "
                            f"comm.sendrecv (or isend, then recv, then wait)")
            finally:
                group._waiting.pop(self.rank, None)
        return wait

    def recv(self, source: int, tag: int = 0, out=None) -> np.ndarray:
        """The next message from ``source`` with ``tag``: a 1-D array, or written to ``out``."""
        _check_peer(self, source, "receive from")
        box = self.group.box(source, self.rank, tag)
        deadline = time.monotonic() + self.timeout
        while True:
            dead = {r: why for r, why in self.group.failed.items() if r != self.rank}
            try:
                data, taken = box.get(timeout=0.05 if dead else 0.2)
                taken.set()
                break
            except queue.Empty:
                if source in self.group.finished and box.empty():
                    raise DistError(f"rank {self.rank} waited for a message from rank "
                                    f"{source} (tag {tag}), which returned without sending "
                                    "it: a collective that only some ranks called") from None
                if source in dead or -1 in dead:
                    raise DistError(f"rank {self.rank} waited for rank {source}, which "
                                    f"failed ({dead.get(source, dead.get(-1))})") from None
                if dead:
                    r = min(dead)
                    raise DistError(f"rank {self.rank} stopped waiting for rank {source}: "
                                    f"rank {r} failed ({dead[r]})") from None
                if time.monotonic() > deadline:
                    raise DistError(f"rank {self.rank} waited {self.timeout:g} s for a "
                                    f"message from rank {source} (tag {tag}) that never came: "
                                    "did every rank call the same collective?") from None
        self._count(got=data)
        return _into(out, data, self.rank, source)

    def barrier(self) -> None:
        try:
            self.group._barrier.wait(self.timeout)
        except threading.BrokenBarrierError:
            why = ", ".join(f"rank {r}: {w}" for r, w in sorted(self.group.failed.items()))
            raise DistError(f"rank {self.rank}: barrier broken ("
                            f"{why or 'not every rank reached it in time'})") from None

    def exchange(self, value) -> list:
        """Every rank's ``value``, in rank order (through shared memory, like MPI's
        on-node path): what the ``native_*`` collectives are built on."""
        self.group._slots[self.rank] = value
        self.barrier()
        values = list(self.group._slots)
        self.barrier()  # nobody overwrites a slot before everyone has read it
        return values

    def native_allreduce(self, x: np.ndarray) -> np.ndarray:
        vals = self.exchange(np.ascontiguousarray(x))
        _same_shapes(vals, "allreduce")
        return np.sum(np.stack(vals), axis=0).astype(x.dtype)

    def native_allgather(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([v.reshape(-1) for v in self.exchange(np.asarray(x))])

    def native_broadcast(self, x: np.ndarray, root: int) -> np.ndarray:
        vals = self.exchange(np.asarray(x))
        _same_shapes(vals, "broadcast")
        return vals[root].copy()


def _same_shapes(vals: list, what: str) -> None:
    shapes = [tuple(np.shape(v)) for v in vals]
    if len(set(shapes)) > 1:
        bad = next(r for r, s in enumerate(shapes) if s != shapes[0])
        raise ValueError(f"{what}: rank {bad} passed shape {shapes[bad]}, rank 0 passed "
                         f"{shapes[0]}: every rank must pass the same shape")


def local(size: int, timeout: float = DEFAULT_TIMEOUT,
          eager_limit: int | None = None) -> LocalGroup:
    """``size`` in-process ranks: ``with dist.local(4) as comms: ...``, and
    ``group.run(fn)`` to run ``fn(comm)`` on all of them at once. With ``eager_limit``
    (bytes), a larger message's send waits for its receiver, as on MPI (module docstring)."""
    return LocalGroup(size, timeout, eager_limit)
