"""``Module``: a model is a tree of modules whose leaves hold ``Parameter`` tensors.

A module finds its parameters by walking its own attributes: a ``Parameter`` is a
parameter, a ``Module`` is a child to recurse into, lists/tuples/dicts are searched
too. So writing ``self.linear = Linear(4, 2)`` in ``__init__`` is all it takes to
register ``linear.weight`` and ``linear.bias``. Buffers (state that is saved but not
trained, like BatchNorm's running mean) are registered with ``register_buffer``.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from .. import ndarray as nd
from ..autograd import RemovableHandle, Tensor


class Parameter(Tensor):
    """A tensor that a module trains (``requires_grad`` is True)."""


def _walk(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(name, object) for every Parameter and Module reachable from ``value``."""
    if isinstance(value, (Parameter, Module)):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{prefix}.{i}" if prefix else str(i))


class Module:
    training = True  # a class default, so subclasses that skip __init__ still work

    def __init__(self):
        self.training = True

    # -- the tree ------------------------------------------------------------------------
    def _members(self) -> Iterator[tuple[str, Any]]:
        for name, value in vars(self).items():
            if not name.startswith("_"):
                yield from _walk(value, name)

    def named_children(self) -> list[tuple[str, "Module"]]:
        return [(n, m) for n, m in self._members() if isinstance(m, Module)]

    def children(self) -> list["Module"]:
        """The direct submodules."""
        return [m for _, m in self.named_children()]

    def _children(self) -> list["Module"]:
        """All submodules, depth first (needle's name)."""
        return [m for _, m in self.named_modules()[1:]]

    def named_modules(self, prefix: str = "") -> list[tuple[str, "Module"]]:
        """``(dotted name, module)`` for this module (name ``prefix``, "" at the top) and
        every submodule, depth first, each module once (as PyTorch's). There is no
        ``modules()``: ``Sequential.modules`` is needle's list of layers."""
        out, seen, stack = [], set(), [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            out.append((name, m))
            stack.extend(reversed([(f"{name}.{n}" if name else n, c)
                                   for n, c in m.named_children()]))
        return out

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs, each parameter once, in attribute order."""
        out, seen = [], set()
        for name, obj in self._members():
            full = f"{prefix}{name}"
            pairs = obj.named_parameters(full + ".") if isinstance(obj, Module) else [(full, obj)]
            for n, p in pairs:
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append((n, p))
        return out

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, tensor: Tensor) -> None:
        """Keep ``tensor`` as ``self.<name>``: saved in ``state_dict``, never trained."""
        if "_buffers" not in vars(self):
            self._buffers = []
        if name not in self._buffers:
            self._buffers.append(name)
        setattr(self, name, tensor)

    def named_buffers(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        out = [(f"{prefix}{n}", getattr(self, n)) for n in vars(self).get("_buffers", [])]
        for name, child in self.named_children():
            out.extend(child.named_buffers(f"{prefix}{name}."))
        return out

    # -- modes ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout drops, batch norm uses batch statistics)."""
        self.training = mode
        for m in self._children():
            m.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- saving and moving ---------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer by dotted name, as a numpy copy."""
        return {n: t.numpy().copy() for n, t in self.named_parameters() + self.named_buffers()}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Set parameters and buffers from ``state`` (numpy arrays, NDArrays or Tensors)."""
        own = dict(self.named_parameters() + self.named_buffers())
        if strict:
            missing = sorted(set(own) - set(state))
            unexpected = sorted(set(state) - set(own))
            if missing or unexpected:
                raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                               f"{unexpected}")
        for name, value in state.items():
            if name not in own:
                continue
            t = own[name]
            if isinstance(value, Tensor):
                value = value.realize_cached_data()
            arr = value.numpy() if isinstance(value, nd.NDArray) else np.asarray(value)
            if tuple(arr.shape) != t.shape:
                raise ValueError(f"load_state_dict: {name} has shape {t.shape}, the state "
                                 f"has shape {tuple(arr.shape)}")
            t.cached_data = nd.array(arr, dtype=t.dtype, device=t.device)

    def to(self, device) -> "Module":
        """Move every parameter and buffer to ``device`` in place (identities kept)."""
        for _, t in self.named_parameters() + self.named_buffers():
            t.cached_data = t.realize_cached_data().to(device)
            t.grad = None
        return self

    # -- calling -------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        """``forward``, with the hooks around it (see :meth:`register_forward_hook`)."""
        for hook in list(vars(self).get("_forward_pre_hooks", ())):
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        out = self.forward(*args, **kwargs)
        for hook in list(vars(self).get("_forward_hooks", ())):
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args)`` before each ``forward``; a non-None result (a tuple,
        or one value) replaces the positional arguments. Returns a handle to ``remove()``.

        Hooks let a tool watch or adjust a module from outside (count FLOPs, apply a
        pruning mask, trace a layer as one op) without replacing its ``forward``: a
        patched ``forward`` is invisible in the class, is lost when two tools patch the
        same module, and stays behind when the tool fails half-way.
        """
        return self._add_hook("_forward_pre_hooks", hook)

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after each ``forward``; a non-None result
        replaces the output. Returns a handle to ``remove()`` (or use it in ``with``)."""
        return self._add_hook("_forward_hooks", hook)

    def _add_hook(self, kind: str, hook) -> RemovableHandle:
        if not callable(hook):
            raise TypeError(f"{type(self).__name__}: a hook must be callable, got "
                            f"{type(hook).__name__}")
        if kind not in vars(self):
            setattr(self, kind, [])
        getattr(self, kind).append(hook)
        return RemovableHandle(getattr(self, kind), hook)

    def __repr__(self) -> str:
        kids = self.named_children()
        if not kids:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in kids)
        return f"{type(self).__name__}(\n{body}\n)"

    def extra_repr(self) -> str:
        return ""


class Identity(Module):
    def forward(self, x):
        return x


class Sequential(Module):
    """Apply modules one after another."""

    def __init__(self, *modules: Module):
        super().__init__()
        self.modules = list(modules)

    def forward(self, x):
        for m in self.modules:
            x = m(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.modules[i]

    def __len__(self) -> int:
        return len(self.modules)


class Residual(Module):
    """``fn(x) + x``: the gradient has a path around ``fn``."""

    def __init__(self, fn: Module):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


class Flatten(Module):
    """``(N, d1, d2, ...)`` -> ``(N, d1 * d2 * ...)``."""

    def forward(self, x):
        return x.reshape((x.shape[0], -1))
