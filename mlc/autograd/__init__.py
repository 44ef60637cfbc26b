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
"""

from .backward import compute_gradient_of_variables, find_topo_sort, sum_node_list
from .grad_mode import enable_grad, is_grad_enabled, no_grad
from .tensor import (Op, Tensor, TensorOp, TensorTuple, TensorTupleOp, Value,  # noqa: F401
                     _check_same_device, _to_ndarray)

__all__ = [
    "Value", "Tensor", "TensorTuple", "Op", "TensorOp", "TensorTupleOp",
    "find_topo_sort", "compute_gradient_of_variables", "sum_node_list",
    "no_grad", "enable_grad", "is_grad_enabled",
]
