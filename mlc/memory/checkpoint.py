"""Gradient checkpointing: keep a few activations, recompute the others in backward.

Training keeps every activation of the forward pass until backward has used it, so a
deep network's memory grows with its depth. Chen et al. (2016, "Training deep nets with
sublinear memory cost") cut the chain of ``n`` layers into segments and keep only the
tensors *between* segments; backward recomputes one segment at a time::

    plain:          x ─ a1 ─ a2 ─ a3 ─ a4 ─ a5 ─ a6 ─ a7 ─ a8      all 8 kept
    4 segments:     x ─ ·  ─ a2 ─ ·  ─ a4 ─ ·  ─ a6 ─ ·  ─ a8      4 kept
    backward of segment 3:  rerun a4 -> a5 -> a6 with grad, backprop, drop them

Memory: ``n / k`` boundaries plus one segment's ``k`` activations, smallest near
``k = sqrt(n)`` (:func:`sqrt_segments`); time: one extra forward pass.

How it works here: each segment is one autodiff op, :class:`Recompute`. Its ``compute``
runs the segment under ``no_grad`` (nothing recorded, intermediates freed at once) and
keeps its input; its ``gradient`` reruns the segment's forward under ``enable_grad`` from
that input, backpropagates the incoming gradient through the small tape, and returns the
gradients for the input and for every parameter of the segment. NumPy's random state
is saved and restored so ``Dropout`` draws the same mask twice. The gradients are
returned as constants: a second derivative through a checkpoint is not supported.
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn
from ..autograd import Tensor, TensorOp, compute_gradient_of_variables, enable_grad, no_grad


class Recompute(TensorOp):
    """``fn(x)`` as one op whose backward recomputes ``fn`` (inputs: x, then params)."""

    def __init__(self, fn, params):
        self.fn, self.params = fn, list(params)
        self._rng = None

    def compute(self, x, *params):
        self._rng = np.random.get_state()
        with no_grad():
            return self.fn(Tensor.make_const(x)).realize_cached_data()

    def gradient(self, out_grad, node):
        x_data = node.inputs[0].realize_cached_data()
        saved = [p.grad for p in self.params]
        state = np.random.get_state()
        np.random.set_state(self._rng)
        try:
            with enable_grad():
                x = Tensor.make_const(x_data, requires_grad=True)
                y = self.fn(x)
            with no_grad():
                compute_gradient_of_variables(y, Tensor.make_const(out_grad.realize_cached_data()))
            grads = [x.grad] + [p.grad for p in self.params]
        finally:
            np.random.set_state(state)
            for p, g in zip(self.params, saved, strict=True):
                p.grad = g
        out = []
        for g, inp in zip(grads, node.inputs, strict=True):
            if g is None:
                from .. import init

                g = init.zeros(*inp.shape, device=inp.device, dtype=inp.dtype)
            out.append(Tensor.make_const(g.realize_cached_data()))
        return tuple(out)


def split_segments(n: int, segments: int) -> list[tuple[int, int]]:
    """``segments`` contiguous ``(start, stop)`` ranges covering ``range(n)``, as equal
    as possible (the first ones longer)."""
    if not 1 <= segments <= max(n, 1):
        raise ValueError(f"segments must be between 1 and {n} (the number of modules), "
                         f"got {segments}")
    base, extra = divmod(n, segments)
    out, start = [], 0
    for i in range(segments):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def sqrt_segments(n: int) -> int:
    """Chen et al.'s choice: about ``sqrt(n)`` segments of ``sqrt(n)`` modules."""
    return max(1, min(n, round(math.sqrt(n))))


class CheckpointedSequential(nn.Module):
    """``modules`` run in ``segments`` checkpointed pieces (see the module docstring).

    ``segments`` is a count (equal pieces) or a list of piece lengths. The modules (and so
    the parameters) are the same objects as those given: an optimiser built on the
    original model updates this one.
    """

    def __init__(self, modules, segments):
        super().__init__()
        mods = list(modules.modules if isinstance(modules, nn.Sequential) else modules)
        if isinstance(segments, int):
            ranges = split_segments(len(mods), segments)
        else:
            lengths = [int(s) for s in segments]
            if sum(lengths) != len(mods) or min(lengths, default=1) < 1:
                raise ValueError(f"segment lengths {lengths} must be positive and add up to "
                                 f"{len(mods)} modules")
            starts = np.cumsum([0] + lengths)
            ranges = list(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True))
        self.segments = [nn.Sequential(*mods[a:b]) for a, b in ranges]

    def forward(self, x):
        for seg in self.segments:
            params = seg.parameters()
            x = Recompute(seg, params)(x, *params)
        return x

    def extra_repr(self) -> str:
        return f"{len(self.segments)} segments of {[len(s) for s in self.segments]} modules"


def checkpoint_sequential(modules, segments) -> CheckpointedSequential:
    """``modules`` (an ``nn.Sequential`` or a list) as a module that keeps only the
    tensors between its ``segments`` in the forward pass and recomputes each segment
    in backward. Gradients equal those of the plain model."""
    return CheckpointedSequential(modules, segments)


def deep_mlp(depth: int = 16, width: int = 256, in_features: int = 64, classes: int = 10,
             seed: int = 0) -> nn.Sequential:
    """``depth`` Linear layers (ReLU between) as an ``nn.Sequential`` of ``depth`` blocks,
    so that segments cut between layers."""
    np.random.seed(seed)
    blocks = [nn.Sequential(nn.Linear(in_features if i == 0 else width, width), nn.ReLU())
              for i in range(depth - 1)]
    blocks.append(nn.Sequential(nn.Linear(width if depth > 1 else in_features, classes)))
    return nn.Sequential(*blocks)


def train_step(model, x, y, loss_fn=None) -> float:
    """One forward and backward pass (no optimiser update); returns the loss."""
    loss = (loss_fn or nn.SoftmaxLoss())(model(x), y)
    loss.backward()
    return float(loss.numpy())


def frontier(model, x, y, segment_counts=None, repeat: int = 3, time_it: bool = True):
    """Memory against recompute for checkpointing ``model`` (an ``nn.Sequential``).

    One row per choice: ``segments`` (0: no checkpointing), the measured ``peak_bytes``
    of a training step started without gradients (:func:`mlc.memory.peak_bytes`),
    ``seconds`` per step (``mlc.perf.timeit``), and both relative to the plain step
    (``memory_ratio`` = plain peak / this peak, ``extra_time`` = this time / plain time - 1).
    ``segment_counts`` defaults to 1, 2, 4, ... up to the number of modules, plus
    ``sqrt(n)``; the row of the sqrt choice has ``is_sqrt`` True.
    """
    from ..perf import timeit
    from .accounting import peak_bytes

    n = len(model)
    sq = sqrt_segments(n)
    if segment_counts is None:
        segment_counts = sorted({2 ** i for i in range(int(math.log2(n)) + 1)} | {sq, n})
    xt, yt = Tensor(x, requires_grad=False), y
    rows = []
    for k in [0, *segment_counts]:
        m = model if k == 0 else checkpoint_sequential(model, k)
        for p in model.parameters():        # every row starts without gradients
            p.grad = None
        peak = peak_bytes(train_step, m, xt, yt)
        t = float(timeit(lambda m=m: train_step(m, xt, yt), repeat=repeat, number=1)) \
            if time_it else float("nan")
        rows.append({"segments": k, "peak_bytes": peak, "seconds": t, "is_sqrt": k == sq})
    base = rows[0]
    for r in rows:
        r["memory_ratio"] = base["peak_bytes"] / r["peak_bytes"]
        r["extra_time"] = r["seconds"] / base["seconds"] - 1 if time_it else float("nan")
    return rows
