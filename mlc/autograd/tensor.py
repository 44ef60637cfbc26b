"""Reverse-mode automatic differentiation over NDArrays.

A :class:`Tensor` is a node of a computational graph: it remembers the :class:`Op` that
made it (``op``), the tensors it was made from (``inputs``) and its value
(``cached_data``, an NDArray). Calling an op on tensors computes the value at once
(eager mode) and records the edge, so that after the forward pass the graph is there to
walk backwards::

    x = mlc.Tensor([1.0, 2.0, 3.0])
    y = (x * x).sum()          # y.op is Summation, y.inputs[0].op is EWiseMul
    y.backward()               # fills x.grad with 2 * x

Reverse mode walks the graph once, from the output to the inputs, in reverse
topological order (:func:`find_topo_sort`): each node adds up the gradients its users
sent it, then asks its op for the vector-Jacobian product with respect to each input
(:meth:`Op.gradient`). One walk gives the gradient of a scalar loss with respect to
*every* parameter, which is why deep learning uses reverse mode.

Gradients are computed with the same tensor ops as the forward pass, so they can be
graphs themselves: after ``y.backward(create_graph=True)``, ``x.grad`` can be
differentiated again (gradients of gradients, Hessian-vector products). A plain
``backward()`` records nothing and frees the forward graph, as PyTorch does. Inside
``with mlc.no_grad():`` ops compute values but record nothing, which is what inference
and optimiser updates want.

This module holds the graph (Value, Tensor, Op); the backward pass lives in
``backward.py`` and grad mode in ``grad_mode.py``. The package ``mlc.autograd``
re-exports all three, so ``mlc.autograd.Tensor`` and ``mlc.autograd.find_topo_sort`` are
the names to use.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import ndarray as nd
from .backward import compute_gradient_of_variables
from .grad_mode import is_grad_enabled


class Op:
    """An operator: ``compute`` works on NDArrays, ``gradient`` on Tensors.

    ``gradient(out_grad, node)`` receives the gradient of the final output with respect
    to ``node`` (the tensor this op produced) and returns the gradient with respect to
    each of ``node.inputs``: the vector-Jacobian product, one Tensor per input. Writing
    it with tensor ops (not NDArrays) is what makes higher-order gradients work.
    """

    def __call__(self, *args):
        """Apply the op to tensors: the subclasses (:class:`TensorOp`, :class:`TensorTupleOp`)
        define it, by the kind of node they make. ``Op`` itself is abstract."""
        raise NotImplementedError

    def compute(self, *args):
        """The value from the inputs' NDArrays; every concrete op defines it."""
        raise NotImplementedError

    def gradient(self, out_grad: "Value", node: "Value"):
        raise NotImplementedError(f"{type(self).__name__} has no gradient")

    def gradient_as_tuple(self, out_grad: "Value", node: "Value") -> tuple:
        grads = self.gradient(out_grad, node)
        if isinstance(grads, tuple):
            return grads
        if isinstance(grads, list):
            return tuple(grads)
        return (grads,)

    def __repr__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({attrs})"


class TensorOp(Op):
    """An op whose output is a single Tensor."""

    def __call__(self, *args):
        return Tensor.make_from_op(self, args)


class TensorTupleOp(Op):
    """An op whose output is a tuple of Tensors (e.g. ``split``)."""

    def __call__(self, *args):
        return TensorTuple.make_from_op(self, args)


# --- values ---------------------------------------------------------------------------------


class Value:
    """A node of the graph: the op that made it, its inputs and its cached value."""

    op: Op | None
    inputs: list["Value"]
    cached_data: object
    requires_grad: bool

    def realize_cached_data(self):
        """The node's value. Ops run eagerly, so it is always there already."""
        return self.cached_data

    def is_leaf(self) -> bool:
        return self.op is None

    def _init(self, op: Op | None, inputs: Sequence["Value"], *, cached_data=None,
              requires_grad: bool | None = None) -> None:
        if requires_grad is None:
            requires_grad = any(x.requires_grad for x in inputs)
        self.op = op
        self.inputs = list(inputs)
        self.cached_data = cached_data
        self.requires_grad = bool(requires_grad)

    @classmethod
    def make_const(cls, data, requires_grad: bool = False):
        value = cls.__new__(cls)
        value._init(None, [], cached_data=data, requires_grad=requires_grad)
        return value

    @classmethod
    def make_from_op(cls, op: Op, inputs: Sequence["Value"]):
        for x in inputs:
            if not isinstance(x, Value):
                raise TypeError(f"{type(op).__name__} expects Tensors, got {type(x).__name__}")
        _check_same_device(op, inputs)
        data = op.compute(*[x.realize_cached_data() for x in inputs])
        # Record the edge only when someone may ask for a gradient through it.
        record = is_grad_enabled() and any(x.requires_grad for x in inputs)
        value = cls.__new__(cls)
        value._init(op if record else None, inputs if record else [], cached_data=data,
                    requires_grad=record)
        return value


def _check_same_device(op: Op, inputs: Sequence[Value]) -> None:
    if len(inputs) < 2:
        return
    devices = [x.device for x in inputs]
    names = [getattr(d, "name", str(d)) for d in devices]
    if len(set(names)) > 1:
        shown = ", ".join(f"{n} {tuple(x.shape) if isinstance(x, Tensor) else 'tuple'}"
                          for n, x in zip(names, inputs, strict=True))
        raise ValueError(f"{type(op).__name__}: inputs live on different devices ({shown}); "
                         "move them with .to(device) first")


def _to_ndarray(data, device=None, dtype=None):
    """Turn lists, scalars, numpy arrays, NDArrays and Tensors into an NDArray."""
    if isinstance(data, Tensor):
        data = data.realize_cached_data()
    if isinstance(data, nd.NDArray):
        if device is not None and data.device.name != device.name:
            data = data.to(device)
        if dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        return data
    arr = np.asarray(data)
    if arr.dtype == object:
        raise TypeError(f"cannot make a Tensor from {type(data).__name__} of objects")
    return nd.array(arr, dtype=dtype or "float32", device=device)


class Tensor(Value):
    """A node of the graph holding an NDArray.

    ``Tensor(data, device=None, dtype=None, requires_grad=True)``: ``data`` may be a list,
    a scalar, a numpy array, an NDArray (on any device) or another Tensor. ``dtype``
    defaults to ``"float32"`` for Python and numpy data and keeps the dtype of an
    NDArray or Tensor; ``device`` defaults to the data's device, else
    ``nd.default_device()``. A Tensor made this way is a leaf: it has no op.
    """

    grad: "Tensor | None" = None  # until backward() sets it, however the tensor was made

    def __init__(self, data, device=None, dtype=None, requires_grad: bool = True):
        array = _to_ndarray(data, device=device, dtype=dtype)
        self._init(None, [], cached_data=array, requires_grad=requires_grad)

    # -- what a tensor holds -------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.realize_cached_data().shape  # NDArray shapes are tuples already

    @property
    def dtype(self) -> str:
        return self.realize_cached_data().dtype

    @property
    def device(self):
        return self.realize_cached_data().device

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def numpy(self) -> np.ndarray:
        return self.realize_cached_data().numpy()

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(-1)[0].item()

    def to(self, device) -> "Tensor":
        """A leaf copy of this tensor on ``device`` (itself when already there)."""
        if self.device.name == device.name:
            return self
        return Tensor(self.realize_cached_data().to(device), requires_grad=self.requires_grad)

    @property
    def data(self) -> "Tensor":
        """The same values as a tensor outside the graph (shares storage, no grad)."""
        return self.detach()

    @data.setter
    def data(self, value) -> None:
        new = value.realize_cached_data() if isinstance(value, Tensor) else value
        if not isinstance(new, nd.NDArray):
            raise TypeError(f"Tensor.data must be set to a Tensor or NDArray, "
                            f"got {type(value).__name__}")
        if tuple(new.shape) != self.shape or new.dtype != self.dtype:
            raise ValueError(f"cannot set data of a {self.dtype} tensor of shape {self.shape} "
                             f"to a {new.dtype} array of shape {tuple(new.shape)}")
        self.cached_data = new

    def detach(self) -> "Tensor":
        """A new leaf with the same value and no history."""
        return Tensor.make_const(self.realize_cached_data())

    # -- backward ------------------------------------------------------------------------
    def backward(self, out_grad: "Tensor | None" = None, *, create_graph: bool = False,
                 retain_graph: bool | None = None) -> None:
        """Fill ``.grad`` of every tensor this one depends on.

        ``out_grad`` is the gradient of some scalar with respect to this tensor; it may be
        left out when the tensor has a single element (a loss), and then is 1.

        As in PyTorch, the gradients are plain values and the forward graph is freed once
        backward is done; ``create_graph=True`` records the gradients as graphs (to
        differentiate them again) and keeps the forward graph; ``retain_graph=True`` only
        keeps the graph (to call backward through it again). See
        :func:`~mlc.autograd.compute_gradient_of_variables`.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: nothing "
                               "it was computed from is trainable (a gradient taken without "
                               "create_graph=True is a constant)")
        if out_grad is None:
            if self.size != 1:
                raise ValueError(f"backward() without out_grad needs a tensor with one "
                                 f"element (a scalar loss), got shape {self.shape}; pass "
                                 "out_grad of the same shape")
            out_grad = Tensor(nd.full(self.shape, 1.0, dtype=self.dtype, device=self.device),
                              requires_grad=False)
        elif not isinstance(out_grad, Tensor):
            out_grad = Tensor(out_grad, device=self.device, dtype=self.dtype,
                              requires_grad=False)
        if out_grad.shape != self.shape:
            raise ValueError(f"backward(): out_grad has shape {out_grad.shape}, but the "
                             f"tensor has shape {self.shape}")
        compute_gradient_of_variables(self, out_grad, create_graph=create_graph,
                                      retain_graph=retain_graph)

    def register_hook(self, fn) -> "RemovableHandle":
        """Call ``fn(grad)`` during ``backward()`` once this tensor's gradient is complete.

        Backward visits tensors in reverse topological order, so when ``fn`` runs every
        use of this tensor has sent its share: ``grad`` is final. For a parameter (a leaf)
        that moment comes as soon as the last layer using it is done, while backward
        goes on with the earlier layers; data-parallel training starts averaging the
        gradients of the last layers across workers then, overlapping communication with
        the rest of backward. If ``fn`` returns a tensor, it replaces the gradient (it
        becomes ``.grad`` and, for an op's output, what flows on to its inputs).
        Returns a handle whose ``remove()`` unregisters ``fn``.
        """
        if not callable(fn):
            raise TypeError(f"register_hook needs a callable, got {type(fn).__name__}")
        if not self.requires_grad:
            raise RuntimeError("register_hook on a tensor that does not require grad: "
                               "backward never reaches it")
        if "_grad_hooks" not in vars(self):
            self._grad_hooks = []
        self._grad_hooks.append(fn)
        return RemovableHandle(self._grad_hooks, fn)

    # -- printing --------------------------------------------------------------------------
    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.numpy()!r}, device={self.device.name}{grad})"

    def __str__(self) -> str:
        return str(self.numpy())

    # -- operators (each builds one or two graph nodes) ------------------------------------
    def __add__(self, other):
        return ops.add(self, other) if isinstance(other, Tensor) else ops.add_scalar(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, Tensor):
            return ops.add(self, ops.negate(other))
        return ops.add_scalar(self, -other)

    def __rsub__(self, other):
        return ops.add_scalar(ops.negate(self), other)

    def __mul__(self, other):
        return (ops.multiply(self, other) if isinstance(other, Tensor)
                else ops.mul_scalar(self, other))

    __rmul__ = __mul__

    def __truediv__(self, other):
        return (ops.divide(self, other) if isinstance(other, Tensor)
                else ops.divide_scalar(self, other))

    def __rtruediv__(self, other):
        return ops.mul_scalar(ops.power_scalar(self, -1), other)

    def __pow__(self, other):
        return (ops.power(self, other) if isinstance(other, Tensor)
                else ops.power_scalar(self, other))

    def __neg__(self):
        return ops.negate(self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    matmul = __matmul__

    def sum(self, axes=None, keepdims: bool = False):
        return ops.summation(self, axes, keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def transpose(self, axes=None):
        return ops.transpose(self, axes)

    def permute(self, axes):
        return ops.permute(self, axes)

    def broadcast_to(self, shape):
        return ops.broadcast_to(self, shape)

    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def relu(self):
        return ops.relu(self)

    def tanh(self):
        return ops.tanh(self)

    def sigmoid(self):
        return ops.sigmoid(self)

    # Tensors are dict keys (optimiser state): identity, not value, equality.
    __hash__ = object.__hash__


class RemovableHandle:
    """What ``register_hook`` (and a module's forward hooks) return: ``remove()`` undoes it."""

    def __init__(self, hooks: list, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self) -> None:
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False


class TensorTuple(Value):
    """A node whose value is a tuple of NDArrays (the output of ``split``)."""

    def __len__(self) -> int:
        return len(self.realize_cached_data())

    def __getitem__(self, index: int) -> Tensor:
        return ops.tuple_get_item(self, index)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def tuple(self) -> tuple:
        return tuple(self)

    @property
    def device(self):
        return self.realize_cached_data()[0].device

    def __add__(self, other: "TensorTuple") -> "TensorTuple":
        if not isinstance(other, TensorTuple) or len(other) != len(self):
            raise TypeError("a TensorTuple adds only to a TensorTuple of the same length")
        return ops.make_tuple(*[a + b for a, b in zip(self, other, strict=True)])

    def detach(self) -> "TensorTuple":
        return TensorTuple.make_const(self.realize_cached_data())

    def __repr__(self) -> str:
        return f"TensorTuple({[a.numpy() for a in self.realize_cached_data()]!r})"


# Imported last: ops builds on the classes above (and the Tensor operators call ops).
# ops imports them from this module, mlc.autograd.tensor, because the package's
# __init__ is still running at this point and has not bound them yet.
from .. import ops  # noqa: E402
