"""Reverse-mode automatic differentiation over NDArrays: ``mlc.autograd``.

::

    x = mlc.Tensor([1.0, 2.0, 3.0])
    y = (x * x).sum()          # eager: the value now, the graph recorded on the side
    y.backward()               # x.grad == 2 * x

Three modules, read in this order:

- ``tensor.py``     the graph: :class:`Value`, :class:`Tensor`, :class:`TensorTuple` and the
  :class:`Op` that made each node (``TensorOp``, ``TensorTupleOp``);
- ``backward.py``   the backward pass: :func:`find_topo_sort`,
  :func:`compute_gradient_of_variables`;
- ``grad_mode.py``  whether ops record the graph: :class:`no_grad`, :class:`enable_grad`,
  :func:`is_grad_enabled`.

Every name is re-exported here (``mlc.autograd.Tensor``), and ``Tensor`` and the grad-mode
switches also at the top (``mlc.Tensor``, ``mlc.no_grad``).

Coming from needle (CMU's dlsyscourse): the names are needle's (``Tensor``, ``ops.*``,
``op.gradient_as_tuple``, ``find_topo_sort``, ``compute_gradient_of_variables``,
``nn``, ``optim``, ``data`` with ``RandomFlipHorizontal``/``RandomCrop``, ``ops.logsoftmax``),
and ``tests/test_needle_compat.py`` holds what carries over. Where mlc is deliberately
stricter, it raises a clear error instead of guessing:

- tensors of two dtypes are not promoted (``float32 ** float64`` is a TypeError, where
  numpy and needle give float64): a silent float64 operand would double a float32
  model's bytes and make a gradient's dtype differ from its parameter's; scalars are weak
  and never promote (``x ** 2.0`` stays float32). See ``ops.ops_shape._same_dtype``;
- ``t.data = v`` must keep ``t``'s shape and dtype (needle lets a parameter change shape
  under its optimizer's state); build a new tensor instead;
- ``mlc.Tensor(array)`` is float32 unless ``dtype=`` says otherwise (needle keeps a numpy
  array's dtype); ``dtype="uint8"``, ``"int8"``, ``"int32"``, ``"float64"`` are there;
- integer sums are int32 (there is no int64); the DataLoader hands integer labels over
  as int32.

And where mlc deliberately differs:

- ``backward()`` leaves gradients without history and frees the forward graph, as
  PyTorch does (needle's gradients are graphs that keep every activation alive); pass
  ``create_graph=True`` to differentiate a gradient again;
- ``nn.Linear``'s bias is uniform on ``±1/sqrt(in_features)`` (PyTorch's scale), where
  needle draws it Kaiming-uniform with ``fan_in = out_features`` (``±sqrt(6/out)``). The
  weight is drawn first, as in needle, so after ``np.random.seed`` the weights are
  needle's and only the biases differ. Measured on needle's hw2 tests (dlsyscourse/hw2 at
  e2c293a through an ``import needle`` shim over mlc), this changes 14 of its 88 tests
  (``nn_linear_bias_init``, ``nn_sequential_forward``, ``nn_residual_forward`` and the
  eleven SGD/Adam training-loss tests), which pass with needle's bias and fail with
  mlc's; none goes the other way.
"""

from .backward import compute_gradient_of_variables, find_topo_sort, sum_node_list
from .grad_mode import enable_grad, is_grad_enabled, no_grad
from .tensor import (Op, RemovableHandle, Tensor, TensorOp, TensorTuple,  # noqa: F401
                     TensorTupleOp, Value, _check_same_device, _to_ndarray)

__all__ = [
    "Value", "Tensor", "TensorTuple", "Op", "TensorOp", "TensorTupleOp", "RemovableHandle",
    "find_topo_sort", "compute_gradient_of_variables", "sum_node_list",
    "no_grad", "enable_grad", "is_grad_enabled",
]
