"""Data parallelism: every rank holds the whole model and a shard of each batch.

Each rank computes the gradient of *its* examples; averaging the gradients over ranks
gives the gradient of the whole batch (the loss is a mean), so after the same optimizer
step every rank holds the same weights as one process that saw the whole batch.

- :class:`DistributedSampler`: which examples are this rank's (a seed per epoch, the
  same permutation on every rank, rank r taking every P-th index from r);
- :class:`DistributedDataParallel`: wraps a model; during ``backward`` it averages the
  gradients in *buckets* of about ``bucket_bytes``, each launched as soon as all its
  gradients are ready (a gradient hook per parameter tells it), on a communication thread,
  so the allreduce of the last layers' gradients runs while autograd is still computing
  the first layers'. This is PyTorch DDP's design (Li et al., VLDB 2020): one allreduce
  per bucket instead of one per parameter pays the per-message latency alpha less often,
  and buckets in reverse order follow the order in which backward produces gradients.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from .. import ndarray as nd
from ..autograd import Tensor
from ..nn import Module
from ..perf import stopwatch
from .collectives import allreduce, broadcast


class DistributedSampler:
    """The indices of rank ``comm.rank``'s shard of a dataset of ``len(dataset)`` examples.

    Every rank draws the same permutation (``default_rng(seed + epoch)``; call
    :meth:`set_epoch` each epoch for a new order), pads it by wrapping around to a multiple
    of P, and takes every P-th index starting at its rank: the shards are disjoint but for
    the padding and all the same length, so every rank runs the same number of steps
    (a rank with one batch fewer would leave its peers waiting in an allreduce).
    """

    def __init__(self, dataset, comm, shuffle: bool = True, seed: int = 0):
        self.n = dataset if isinstance(dataset, int) else len(dataset)
        if self.n < 1:
            raise ValueError("DistributedSampler: the dataset is empty")
        self.comm, self.shuffle, self.seed, self.epoch = comm, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.n // self.comm.size)

    def indices(self) -> np.ndarray:
        order = (np.random.default_rng(self.seed + self.epoch).permutation(self.n)
                 if self.shuffle else np.arange(self.n))
        total = len(self) * self.comm.size
        order = np.resize(order, total)  # wraps around: the first few repeat as padding
        return order[self.comm.rank::self.comm.size]

    def __iter__(self):
        return iter(self.indices().tolist())


class DistributedDataParallel(Module):
    """``model`` replicated on every rank of ``comm``, its gradients averaged during
    backward in buckets of about ``bucket_bytes`` (``algorithm``: the allreduce's).

    The constructor broadcasts rank 0's weights so every replica starts equal. After
    ``loss.backward()`` every parameter's ``grad`` is the average over ranks (the
    backward pass waits for the last bucket). ``overlap=False`` runs each bucket's
    allreduce in the hook itself instead of on the communication thread, to measure what
    overlap buys. ``self.timeline`` holds, for the last backward, each bucket's
    ``(bucket, ready, started, finished)`` in seconds from the start of the forward pass,
    and ``backward_end`` the moment the last gradient was ready.
    """

    def __init__(self, model: Module, comm, bucket_bytes: int = 1 << 20,
                 algorithm: str = "ring", overlap: bool = True):
        super().__init__()
        if bucket_bytes <= 0:
            raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
        self.module, self.comm, self.algorithm, self.overlap = model, comm, algorithm, overlap
        params = model.parameters()
        if not params:
            raise ValueError("DistributedDataParallel: the model has no parameters")
        for p in params:
            p.cached_data = nd.array(broadcast(comm, p.numpy(), root=0), dtype=p.dtype,
                                     device=p.device)
        self.buckets = _buckets(params, bucket_bytes)
        self._where = {id(p): b for b, bucket in enumerate(self.buckets) for p in bucket}
        for p in params:
            p.register_hook(self._hook_for(p))
        self._reset()

    def forward(self, *args, **kwargs):
        started = any(self._ready) and self.backward_end is None
        if started:  # the last backward left some bucket waiting: its grads were never averaged
            names = {id(p): n for n, p in self.module.named_parameters()}
            missing = [names.get(id(p), "?") for b, bucket in enumerate(self.buckets)
                       for p in bucket if id(p) not in self._ready[b]]
            raise RuntimeError(f"rank {self.comm.rank}: the last backward gave no gradient to "
                               f"{', '.join(missing)}, so DDP could not average the "
                               "gradients; every parameter must take part in the loss")
        self._reset()
        return self.module(*args, **kwargs)

    def _reset(self) -> None:
        self._ready: list[dict] = [{} for _ in self.buckets]
        self._jobs: queue.Queue = queue.Queue()
        self._pending = 0
        self.timeline: list[tuple] = []
        self.backward_end = None
        self._clock = stopwatch()
        self._error: BaseException | None = None

    def _hook_for(self, p):
        def hook(grad):
            return self._on_ready(p, grad)
        return hook

    def _on_ready(self, p, grad):
        b = self._where[id(p)]
        self._ready[b][id(p)] = grad.numpy()
        if len(self._ready[b]) < len(self.buckets[b]):
            return None
        job = (b, self._clock.seconds)
        if self.overlap:
            if self._pending == 0:
                threading.Thread(target=self._worker, daemon=True).start()
            self._pending += 1
            self._jobs.put(job)
        else:
            self._reduce(*job)
        if all(len(r) == len(bk) for r, bk in zip(self._ready, self.buckets, strict=True)):
            self.backward_end = self._clock.seconds
            self._finish()
            # Backward sets this parameter's .grad from the hook's return, after the hook.
            return p.grad
        return None

    def _worker(self) -> None:
        # One thread, buckets in the order they became ready: every rank then issues the
        # same allreduces in the same order, as collectives require.
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._reduce(*job)
            except BaseException as err:  # noqa: BLE001 - re-raised in backward
                self._error = err

    def _reduce(self, b: int, ready: float) -> None:
        started = self._clock.seconds
        bucket = self.buckets[b]
        flat = np.concatenate([self._ready[b][id(p)].reshape(-1) for p in bucket])
        avg = allreduce(self.comm, flat, self.algorithm, op="mean")
        at = 0
        for p in bucket:
            self._ready[b][id(p)] = avg[at:at + p.size].reshape(p.shape)
            at += p.size
        self.timeline.append((b, ready, started, self._clock.seconds))

    def _finish(self) -> None:
        if self.overlap:
            self._jobs.put(None)
            deadline = time.monotonic() + self.comm.timeout
            while len(self.timeline) < len(self.buckets) and self._error is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rank {self.comm.rank}: gradient buckets did not "
                                       "finish their allreduce in time")
                time.sleep(1e-4)
            if self._error is not None:
                raise self._error
        for b, bucket in enumerate(self.buckets):
            for p in bucket:
                p.grad = Tensor(self._ready[b][id(p)], device=p.device, dtype=p.dtype,
                                requires_grad=False)

    def bucket_sizes(self) -> list[int]:
        """Bytes of each bucket, in the order they are reduced."""
        return [sum(p.size * np.dtype(p.dtype).itemsize for p in bucket)
                for bucket in self.buckets]


def _buckets(params: list, bucket_bytes: int) -> list[list]:
    """Parameters in reverse order (the order backward finishes them), cut into buckets
    of at least ``bucket_bytes`` (a parameter is never split)."""
    out, cur, size = [], [], 0
    for p in reversed(params):
        cur.append(p)
        size += p.size * np.dtype(p.dtype).itemsize
        if size >= bucket_bytes:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out
