"""The backward pass: reverse-mode AD over a recorded graph.

It needs only what every node has (``op``, ``inputs``, ``requires_grad`` and, for
tensors, ``shape``), so it sits apart from the Tensor class that records the graph.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .tensor import Value


def find_topo_sort(node_list: Iterable[Value]) -> list[Value]:
    """All nodes the given ones depend on, each after its inputs (post-order DFS).

    A depth-first search appends a node once all of its inputs are placed. The natural
    version is recursive; we keep our own stack instead, so that deep graphs (a long
    unrolled loop) do not hit Python's recursion limit. The order is the same.
    """
    visited: set[int] = set()
    order: list[Value] = []
    for root in node_list:
        if id(root) in visited:
            continue
        visited.add(id(root))
        stack = [(root, iter(root.inputs))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if id(child) not in visited:
                    visited.add(id(child))
                    stack.append((child, iter(child.inputs)))
                    break
            else:  # every input is placed: the node can go
                stack.pop()
                order.append(node)
    return order


def sum_node_list(node_list: list[Value]) -> Value:
    """Add up the partial gradients a node received from its users."""
    return functools.reduce(lambda a, b: a + b, node_list)


class _Released:
    """Stands in for the op of a node whose backward graph was freed (see below)."""

    def gradient_as_tuple(self, out_grad, node):
        raise RuntimeError("backward() through a graph a second time: the first backward() "
                           "freed it (its intermediate values are gone); call the first "
                           "backward(retain_graph=True) to keep it")

    def __repr__(self) -> str:
        return "released"


RELEASED = _Released()


def compute_gradient_of_variables(output_tensor: Value, out_grad: Value, *,
                                  create_graph: bool = False,
                                  retain_graph: bool | None = None) -> None:
    """Reverse-mode AD: set ``.grad`` on every node ``output_tensor`` depends on.

    ``node_to_output_grads`` maps a node to the partial adjoints sent by its users; in
    reverse topological order each node sums them (all its users are done by then) and
    hands each input its share via ``op.gradient``. When a node's turn comes its gradient
    is complete, so that is when its hooks (:meth:`Tensor.register_hook`) run.

    Two switches, as in PyTorch:

    - ``create_graph=False`` (the default) computes the gradients with grad mode off, so
      each ``.grad`` is a plain value without history. A recorded gradient would be a
      graph reaching back through every activation of the forward pass: a parameter's
      ``.grad`` would keep the whole forward pass alive. ``create_graph=True`` records
      it, for gradients of gradients (Hessian-vector products).
    - ``retain_graph`` (default: ``create_graph``) keeps the forward graph. Without it,
      each op node visited drops its inputs once backward is done, so the activations
      are freed even while the loss tensor is still referenced (the usual training loop
      keeps ``loss`` until the next step has run its forward pass); a second backward
      through it raises an error instead of computing garbage.
    """
    from .grad_mode import enable_grad, no_grad
    from .tensor import Tensor  # tensor.py imports this module: look it up when called

    if retain_graph is None:
        retain_graph = create_graph
    node_to_output_grads: dict[int, list[Value]] = {id(output_tensor): [out_grad]}
    reverse_topo_order = list(reversed(find_topo_sort([output_tensor])))
    with enable_grad() if create_graph else no_grad():
        for node in reverse_topo_order:
            partials = node_to_output_grads.pop(id(node), None)
            if partials is None:  # no path from this node to the output carries a gradient
                continue
            grad = sum_node_list(partials)
            for hook in getattr(node, "_grad_hooks", ()):
                replaced = hook(grad)
                if replaced is not None:
                    grad = replaced
            node.grad = grad
            if node.op is None:
                continue
            in_grads = node.op.gradient_as_tuple(grad, node)
            if len(in_grads) != len(node.inputs):
                raise RuntimeError(f"{node.op!r}.gradient returned {len(in_grads)} gradients "
                                   f"for {len(node.inputs)} inputs")
            for inp, g in zip(node.inputs, in_grads, strict=True):
                if not inp.requires_grad:
                    continue
                if isinstance(inp, Tensor) and g.shape != inp.shape:
                    raise RuntimeError(f"{node.op!r}.gradient returned shape {g.shape} for "
                                       f"an input of shape {inp.shape}")
                node_to_output_grads.setdefault(id(inp), []).append(g)
    if not retain_graph:
        for node in reverse_topo_order:
            if node.op is not None:
                node.op, node.inputs = RELEASED, []
