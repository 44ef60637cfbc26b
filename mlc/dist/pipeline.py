"""Pipeline parallelism: the model cut into P stages, rank i running stage i.

A batch is split into m micro-batches that flow through the stages like cars through an
assembly line: while stage 1 works on micro-batch 0, stage 0 already starts
micro-batch 1. Only P stage boundaries' activations travel (point-to-point, forward
activations to the next rank, their gradients back), and each rank holds 1/P of the
weights. The price is the *bubble*: at the start and end of a step some stages have
nothing to do. With equal stages, each F and B taking one slot, a step lasts m + P - 1
slots of which each stage is busy m, so the idle fraction is (P-1)/(m+P-1): more
micro-batches, smaller bubble.

Two schedules (:func:`schedule_order`) with the same bubble:

- **GPipe** (Huang et al., 2019): all m forwards, then all m backwards. Every stage keeps
  the activations of all m micro-batches until their backward.
- **1F1B** (PipeDream-Flush, Narayanan et al., 2019/2021): stage s runs P-s-1 warm-up
  forwards, then alternates one forward and one backward, then drains the remaining
  backwards. A micro-batch's backward starts as soon as it has left the last stage, so
  stage s holds at most P-s micro-batches' activations instead of m.

:class:`Pipeline` measures every call: ``timeline`` (every rank's F and B with start and
end times, gathered at the end of the call), ``bubble`` (the idle fraction over all
stages) and ``held`` (the most micro-batches, and bytes, whose activations this stage
kept at once).
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor, find_topo_sort, no_grad
from ..perf import stopwatch
from .collectives import allgather

_TAG_ACT, _TAG_GRAD = 2001, 2002
SCHEDULES = ("gpipe", "1f1b")


def schedule_order(schedule: str, P: int, m: int) -> list[list[tuple[str, int]]]:
    """For each stage, the order of its work: ``("F", i)`` / ``("B", i)`` for micro-batch i.

    >>> schedule_order("1f1b", 2, 3)[0]
    [('F', 0), ('F', 1), ('B', 0), ('F', 2), ('B', 1), ('B', 2)]
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if P < 1 or m < 1:
        raise ValueError(f"a pipeline needs P >= 1 stages and m >= 1 micro-batches, got "
                         f"P={P}, m={m}")
    out = []
    for s in range(P):
        if schedule == "gpipe":
            out.append([("F", i) for i in range(m)] + [("B", i) for i in range(m)])
            continue
        warm = min(P - s - 1, m)
        order = [("F", i) for i in range(warm)]
        for i in range(m - warm):  # steady state: one forward, one backward
            order += [("F", warm + i), ("B", i)]
        order += [("B", i) for i in range(m - warm, m)]
        out.append(order)
    return out


def bubble_fraction(P: int, m: int) -> float:
    """The idle fraction of an ideal pipeline with equal stages: (P-1)/(m+P-1)."""
    return (P - 1) / (m + P - 1)


def _graph_bytes(y: Tensor, x_in: Tensor) -> int:
    """Bytes of every value the backward of ``y`` keeps alive: its graph's nodes."""
    return sum(n.size * np.dtype(n.dtype).itemsize for n in find_topo_sort([y])
               if isinstance(n, Tensor) and (n.op is not None or n is x_in))


class Pipeline:
    """``stages[comm.rank]`` on this rank, ``micro_batches`` per batch, run by
    ``schedule``. ``pipe(x)``: inference (the output on the last rank, None elsewhere);
    ``pipe.train_step(x, target, loss_fn, optimizer)``: one training step, gradients
    accumulated over the micro-batches (each loss weighted by its share of the batch, so
    the step equals one on the whole batch)."""

    def __init__(self, stages, comm, micro_batches: int = 4, schedule: str = "1f1b"):
        if len(stages) != comm.size:
            raise ValueError(f"pipeline: {len(stages)} stages for {comm.size} ranks; rank i "
                             "runs stages[i], so give one stage per rank")
        schedule_order(schedule, comm.size, micro_batches)  # validates both
        self.stage, self.comm = stages[comm.rank], comm
        self.m, self.schedule = micro_batches, schedule
        self.first, self.last = comm.rank == 0, comm.rank == comm.size - 1
        self.events: list[tuple[str, int, float, float]] = []
        self.timeline: list[list[tuple[str, int, float, float]]] = []
        self.bubble = float("nan")
        self.held = (0, 0)

    # ---- messages between stages ----------------------------------------------------------
    def _send(self, arr: np.ndarray, dest: int, tag: int, waits: list) -> None:
        waits.append(self.comm.isend(np.asarray(arr.shape, np.int64), dest, tag))
        waits.append(self.comm.isend(arr, dest, tag))

    def _recv(self, source: int, tag: int) -> np.ndarray:
        shape = tuple(int(v) for v in self.comm.recv(source, tag))
        return self.comm.recv(source, tag).reshape(shape)

    def _split(self, x, what: str) -> list:
        if x is None:
            raise ValueError(f"pipeline rank {self.comm.rank} needs {what}")
        arr = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
        if len(arr) < self.m:
            raise ValueError(f"pipeline: a batch of {len(arr)} cannot make {self.m} "
                             "micro-batches")
        return np.array_split(arr, self.m)

    # ---- inference --------------------------------------------------------------------------
    def __call__(self, x=None):
        r, waits, outs = self.comm.rank, [], []
        xs = self._split(x, "the input x") if self.first else [None] * self.m
        self.events, clock = [], self._start()
        with no_grad():
            for i in range(self.m):
                inp = xs[i] if self.first else self._recv(r - 1, _TAG_ACT)
                t0 = clock.seconds
                y = self.stage(Tensor(inp, requires_grad=False)).numpy()
                self.events.append(("F", i, t0, clock.seconds))
                if self.last:
                    outs.append(y)
                else:
                    self._send(y, r + 1, _TAG_ACT, waits)
        for w in waits:
            w()
        self._measure()
        return np.concatenate(outs) if self.last else None

    # ---- training ---------------------------------------------------------------------------
    def train_step(self, x, target, loss_fn, optimizer=None):
        """One step; returns the batch's loss on the last rank, None on the others."""
        r, waits = self.comm.rank, []
        xs = self._split(x, "the input x") if self.first else None
        ts = self._split(target, "the target") if self.last else None
        params = self.stage.parameters()
        acc = {id(p): None for p in params}
        saved: dict[int, tuple] = {}
        self.events, peak, peak_bytes, loss_total = [], 0, 0, 0.0
        clock = self._start()
        for kind, i in schedule_order(self.schedule, self.comm.size, self.m)[r]:
            if kind == "F":
                inp = xs[i] if self.first else self._recv(r - 1, _TAG_ACT)
                t0 = clock.seconds
                x_in = Tensor(inp, requires_grad=not self.first)
                y = self.stage(x_in)
                if self.last:
                    n = len(inp)
                    y = loss_fn(y, Tensor(ts[i], requires_grad=False)) * (n / self._n(ts))
                    loss_total += float(y.numpy())
                else:
                    self._send(y.numpy(), r + 1, _TAG_ACT, waits)
                saved[i] = (x_in, y, _graph_bytes(y, x_in))
                self.events.append(("F", i, t0, clock.seconds))
                peak = max(peak, len(saved))
                peak_bytes = max(peak_bytes, sum(v[2] for v in saved.values()))
            else:
                g = None if self.last else self._recv(r + 1, _TAG_GRAD)
                t0 = clock.seconds
                x_in, y, _ = saved.pop(i)
                for p in params:
                    p.grad = None
                y.backward(None if self.last else Tensor(g, requires_grad=False))
                for p in params:
                    if p.grad is not None:
                        g_p = p.grad.numpy()
                        acc[id(p)] = g_p if acc[id(p)] is None else acc[id(p)] + g_p
                if not self.first:
                    self._send(x_in.grad.numpy(), r - 1, _TAG_GRAD, waits)
                self.events.append(("B", i, t0, clock.seconds))
        for w in waits:
            w()
        for p in params:
            p.grad = None if acc[id(p)] is None else Tensor(acc[id(p)], dtype=p.dtype,
                                                            requires_grad=False)
        self.held = (peak, peak_bytes)
        self._measure()
        if optimizer is not None:
            optimizer.step()
        return loss_total if self.last else None

    @staticmethod
    def _n(parts) -> int:
        return sum(len(p) for p in parts)

    # ---- what was measured ------------------------------------------------------------------
    def _start(self):
        # One stopwatch per rank, started as the ranks leave a barrier together: their
        # clocks agree to within the barrier's skew, even across MPI processes.
        self.comm.barrier()
        return stopwatch()

    def _measure(self) -> None:
        """Gather every rank's events (times from the first start) and the bubble: one
        small allgather at the end of each call."""
        mine = np.array([[0.0 if k == "F" else 1.0, i, a, b] for k, i, a, b in self.events],
                        np.float64).reshape(-1)
        flat = allgather(self.comm, np.concatenate([[len(self.events)], mine]))
        out, at = [], 0
        for _ in range(self.comm.size):
            n = int(flat[at])
            rows = flat[at + 1: at + 1 + 4 * n].reshape(n, 4)
            out.append([("F" if k == 0 else "B", int(i), a, b) for k, i, a, b in rows])
            at += 1 + 4 * n
        t0 = min(e[2] for rank in out for e in rank)
        self.timeline = [[(k, i, a - t0, b - t0) for k, i, a, b in rank] for rank in out]
        self.bubble = measured_bubble(self.timeline)


def measured_bubble(timeline) -> float:
    """The idle fraction of a measured timeline: 1 - busy time / (P x the step's span)."""
    span = max(e[3] for rank in timeline for e in rank)
    busy = sum(b - a for rank in timeline for _, _, a, b in rank)
    return 1.0 - busy / (len(timeline) * span)


def pipeline(stages, comm, micro_batches: int = 4, schedule: str = "1f1b") -> Pipeline:
    """A :class:`Pipeline` of ``stages`` over the ranks of ``comm`` (rank i runs stage i)."""
    return Pipeline(stages, comm, micro_batches, schedule)
