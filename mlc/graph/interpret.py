"""The reference interpreter: run a graph node by node with ``mlc.ops``.

This is the meaning of a graph. Every other way of running it (compiled kernels, fused
or not, on any target) must give the same numbers, and the tests check that they do::

    out = graph.interpret(g, x)          # numpy in, numpy out

Each op node calls the ``compute`` of its ``mlc.ops`` operator on NDArrays
(:func:`~mlc.graph.opdefs.reference`); inputs and constants are turned into NDArrays on
``device`` (numpy's device by default: the reference should be simple, not fast).
"""

from __future__ import annotations

import numpy as np

from .. import ndarray as nd
from .opdefs import reference


def check_inputs(g, inputs, what: str = "graph") -> list[np.ndarray]:
    """``inputs`` as numpy arrays, checked against the graph's inputs (count, shape,
    dtype); a clear ``TypeError``/``ValueError`` otherwise."""
    if len(inputs) != len(g.inputs):
        names = ", ".join(f"%{n.name}: {n.signature()}" for n in g.inputs)
        raise TypeError(f"{what} takes {len(g.inputs)} input(s) ({names}), got {len(inputs)}")
    out = []
    for n, a in zip(g.inputs, inputs, strict=True):
        if hasattr(a, "realize_cached_data"):  # an mlc.Tensor
            a = a.realize_cached_data()
        if isinstance(a, nd.NDArray):
            a = a.numpy()
        if not isinstance(a, np.ndarray):
            raise TypeError(f"input %{n.name}: expected a numpy array or NDArray, got "
                            f"{type(a).__name__}")
        if tuple(a.shape) != n.shape:
            raise ValueError(f"input %{n.name}: expected shape {n.shape}, got {tuple(a.shape)}")
        if str(a.dtype) != n.dtype:
            raise TypeError(f"input %{n.name}: expected dtype {n.dtype}, got {a.dtype}")
        out.append(a)
    return out


def interpret(g, *inputs, device=None):
    """The outputs of ``g`` on ``inputs``: one numpy array, or a tuple for several."""
    arrays = check_inputs(g, inputs, "interpret")
    device = device or nd.cpu_numpy()
    env: dict = {}
    for n, a in zip(g.inputs, arrays, strict=True):
        env[n] = nd.array(a, dtype=n.dtype, device=device)
    for n in g.nodes:
        if n in env:
            continue
        if n.op == "constant":
            env[n] = nd.array(n.value, dtype=n.dtype, device=device)
        elif n.op == "input":
            raise ValueError(f"%{n.name} is an input node but not one of the graph's inputs")
        else:
            env[n] = reference(n.op, n.attrs, *[env[x] for x in n.inputs])
    outs = tuple(np.array(env[n].numpy(), dtype=n.dtype) for n in g.outputs)
    return outs[0] if len(outs) == 1 else outs
