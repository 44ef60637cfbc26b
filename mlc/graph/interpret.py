"""The reference interpreter: run a graph node by node with ``mlc.ops``.

This is the meaning of a graph. Every other way of running it (compiled kernels, fused
or not, on any target) must give the same numbers, and the tests check that they do::

    out = graph.interpret(g, x)          # numpy in, numpy out

Each op node runs its registry entry's reference on NDArrays
(:func:`~mlc.graph.ops.reference`); inputs and constants are turned into NDArrays on
``device`` (numpy's device by default: the reference should be simple, not fast).

:class:`Interpreter` is the same walk as a class to extend (as ``torch.fx.Interpreter``):
override :meth:`~Interpreter.run_node` to watch or change what each node computes; a
quantizer's calibration records every node's output range this way::

    class Ranges(graph.Interpreter):
        def run_node(self, node, inputs):
            out = super().run_node(node, inputs)
            self.seen[node.name] = (out.numpy().min(), out.numpy().max())
            return out
"""

from __future__ import annotations

import numpy as np

from .. import ndarray as nd
from .ops import reference


def check_inputs(g, inputs, what: str = "graph") -> list[np.ndarray]:
    """``inputs`` as numpy arrays, checked against the graph's inputs (count, shape,
    dtype; the batch axis ``N`` takes any size, the same for every input); a clear
    ``TypeError``/``ValueError`` otherwise, naming the axis that is wrong."""
    from .symbolic import batch_of

    if len(inputs) != len(g.inputs):
        names = ", ".join(f"%{n.name}: {n.signature()}" for n in g.inputs)
        raise TypeError(f"{what} takes {len(g.inputs)} input(s) ({names}), got {len(inputs)}")
    out = [check_input(n, a) for n, a in zip(g.inputs, inputs, strict=True)]
    batch_of(g, out)
    return out


def check_input(n, a) -> np.ndarray:
    """Input ``a`` for input node ``n`` as a numpy array: type, shape (any batch), dtype."""
    from .symbolic import check_shape

    if hasattr(a, "realize_cached_data"):  # an mlc.Tensor
        a = a.realize_cached_data()
    if isinstance(a, nd.NDArray):
        a = a.numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"input %{n.name}: expected a numpy array or NDArray, got "
                        f"{type(a).__name__}")
    check_shape(n, a.shape)
    if a.dtype != n.dtype:              # not str(a.dtype): that costs microseconds per call
        raise TypeError(f"input %{n.name}: expected dtype {n.dtype}, got {a.dtype}")
    return a


class Interpreter:
    """Runs graph ``g`` node by node; ``Interpreter(g).run(*inputs)`` is
    :func:`interpret`. ``env`` maps each node to its NDArray value after a run."""

    def __init__(self, g, device=None):
        self.graph = g
        self.device = device or nd.cpu_numpy()
        self.env: dict = {}

    def run_node(self, node, inputs):
        """The value of op ``node`` from the values (NDArrays) of its inputs."""
        return reference(node.op, node.attrs, *inputs)

    def run(self, *inputs):
        """The outputs on ``inputs``: one numpy array, or a tuple for several."""
        from .symbolic import at_batch, batch_of, batch_size

        g = self.graph
        arrays = check_inputs(g, inputs, "interpret")
        n = batch_of(g, arrays)
        if n is not None and n != batch_size(g):
            g = at_batch(g, n)  # the graph's shapes and attrs at this batch
        env = self.env = {}
        for n, a in zip(g.inputs, arrays, strict=True):
            env[n] = nd.array(a, dtype=n.dtype, device=self.device)
        for n in g.nodes:
            if n in env:
                continue
            if n.op == "constant":
                env[n] = nd.array(n.value, dtype=n.dtype, device=self.device)
            elif n.op == "input":
                raise ValueError(f"%{n.name} is an input node but not one of the graph's "
                                 "inputs")
            else:
                env[n] = self.run_node(n, [env[x] for x in n.inputs])
        outs = tuple(np.array(env[n].numpy(), dtype=n.dtype) for n in g.outputs)
        return outs[0] if len(outs) == 1 else outs


def interpret(g, *inputs, device=None):
    """The outputs of ``g`` on ``inputs``: one numpy array, or a tuple for several."""
    return Interpreter(g, device).run(*inputs)
