"""The alpha-beta cost model of communication (Hockney, 1994), fitted to measurements.

Sending an n-byte message costs ``alpha + n * beta``: a latency (software, the network's
round trip) and an inverse bandwidth. A collective is a sequence of such steps, so its
time follows from counting them:

- ring allreduce: ``2(P-1)`` steps of ``n/P`` bytes:
  ``2(P-1) alpha + 2(P-1)/P n beta`` (bandwidth-optimal, latency grows with P);
- tree allreduce (binomial reduce then broadcast): ``2 ceil(log2 P)`` steps of ``n``
  bytes: ``2 ceil(log2 P) (alpha + n beta)`` (few steps, each moves everything);
- broadcast down a binomial tree: ``ceil(log2 P) (alpha + n beta)``;
- a pipeline step of m micro-batches over P equal stages: ``(m + P - 1)`` slots of one
  micro-batch's forward and backward plus the activation transfers.

:func:`fit_alpha_beta` finds alpha and beta from measured ring-allreduce times by least
squares on the ring formula; :func:`measure_allreduce` measures them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..perf import timeit
from .collectives import allreduce


@dataclass(frozen=True)
class CostModel:
    """``alpha`` seconds per message, ``beta`` seconds per byte."""

    alpha: float
    beta: float

    def message_time(self, nbytes: float) -> float:
        return self.alpha + nbytes * self.beta

    def allreduce_time(self, nbytes: float, P: int, algorithm: str = "ring") -> float:
        """Seconds for an allreduce of ``nbytes`` over ``P`` ranks."""
        if P < 1:
            raise ValueError(f"P must be at least 1, got {P}")
        if P == 1:
            return 0.0
        if algorithm == "ring":
            return 2 * (P - 1) * self.alpha + 2 * (P - 1) / P * nbytes * self.beta
        if algorithm == "tree":
            return 2 * math.ceil(math.log2(P)) * self.message_time(nbytes)
        raise ValueError(f"unknown algorithm {algorithm!r}; choose 'ring' or 'tree'")

    def broadcast_time(self, nbytes: float, P: int) -> float:
        return math.ceil(math.log2(P)) * self.message_time(nbytes) if P > 1 else 0.0

    def pipeline_step_time(self, t_fwd: float, t_bwd: float, P: int, m: int,
                           act_bytes: float = 0.0) -> float:
        """One training step of m micro-batches over P equal stages, ``t_fwd``/``t_bwd``
        being one stage's time on one micro-batch and ``act_bytes`` what crosses a stage
        boundary per micro-batch (sent forward, its gradient sent back)."""
        slot = t_fwd + t_bwd + (2 * self.message_time(act_bytes) if P > 1 else 0.0)
        return (m + P - 1) * slot

    def data_parallel_step_time(self, compute_time: float, grad_bytes: float, P: int,
                                overlap: float = 0.0) -> float:
        """A data-parallel step of a fixed global batch: the compute (``compute_time`` on
        one device) split P ways, plus the gradients' ring allreduce. A fraction
        ``overlap`` (0..1) of the allreduce may run during the backward pass, but no more
        than the backward pass lasts (2/3 of the compute: 4 of the 6 FLOPs per parameter
        and token)."""
        if not 0.0 <= overlap <= 1.0:
            raise ValueError(f"overlap is a fraction in [0, 1], got {overlap}")
        comm = self.allreduce_time(grad_bytes, P)
        hidden = min(overlap * comm, 2 / 3 * compute_time / P)
        return compute_time / P + comm - hidden

    def speedup(self, compute_time: float, grad_bytes: float, P: int,
                overlap: float = 0.0) -> float:
        """One device's step time over P devices' (:meth:`data_parallel_step_time`)."""
        return compute_time / self.data_parallel_step_time(compute_time, grad_bytes, P,
                                                           overlap)


def cost_model(alpha: float, beta: float) -> CostModel:
    """An alpha-beta :class:`CostModel` (``alpha`` s per message, ``beta`` s per byte)."""
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta are times and cannot be negative: {alpha}, {beta}")
    return CostModel(float(alpha), float(beta))


def fit_alpha_beta(nbytes, seconds, P: int) -> tuple[float, float]:
    """alpha, beta of the ring formula ``t = 2(P-1) alpha + 2(P-1)/P n beta`` by least
    squares on measured ``(nbytes, seconds)``. Large messages decide beta and small ones
    alpha, so the fit weights each point by 1/t (relative error), else the 64 MB points
    would swamp the microsecond ones; negative estimates are clipped to 0."""
    n = np.asarray(nbytes, np.float64)
    t = np.asarray(seconds, np.float64)
    if n.shape != t.shape or n.ndim != 1 or n.size < 2:
        raise ValueError("fit_alpha_beta needs two equal-length 1-D sequences of at least 2 "
                         f"points, got shapes {n.shape} and {t.shape}")
    if P < 2:
        raise ValueError("an allreduce over one rank moves nothing: fit with P >= 2")
    A = np.stack([np.full_like(n, 2 * (P - 1)), 2 * (P - 1) / P * n], axis=1)
    w = 1.0 / np.maximum(t, 1e-12)
    (alpha, beta), *_ = np.linalg.lstsq(A * w[:, None], t * w, rcond=None)
    return max(float(alpha), 0.0), max(float(beta), 0.0)


def measure_allreduce(comm, sizes, algorithm: str = "ring", repeat: int = 5,
                      budget: float = 2e6, max_number: int = 1000) -> list[float]:
    """Seconds per allreduce of each of ``sizes`` bytes (float32) on ``comm``, timed with
    :func:`mlc.perf.timeit` (median of ``repeat`` rounds) and averaged over the ranks.
    A collective: every rank calls it, with the same sizes, and gets the same numbers.
    The calls per round shrink with the size (about ``budget`` bytes per round, at least
    one, at most ``max_number``), the same on every rank, since each call needs all
    ranks."""
    out = []
    for nbytes in sizes:
        x = np.ones(max(1, int(nbytes) // 4), np.float32)
        number = int(min(max_number, max(1, budget // max(x.nbytes, 1))))
        comm.barrier()
        t = timeit(lambda x=x: allreduce(comm, x, algorithm), repeat=repeat, number=number)
        out.append(float(allreduce(comm, np.array([float(t)]), "mpi")[0]) / comm.size)
    return out
