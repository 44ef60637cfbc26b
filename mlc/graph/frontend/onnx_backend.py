"""mlc as an ONNX backend: what ``onnx.backend.test`` runs its node test cases on.

::

    from mlc.graph.frontend.onnx_backend import MlcBackend
    rep = MlcBackend.prepare(model, target="cpu")     # import + build once
    outputs = rep.run([x])                            # a list of numpy arrays

``target="interpret"`` (the default) runs the imported graph with ``graph.interpret``,
the reference meaning of every mlc op: the backend test suite then measures the
*importer* (does the mlc graph mean what the ONNX node means?). ``"python"``, ``"cpu"``
and ``"cuda"`` build it with ``graph.build`` as well (the compiler's own tests check that
a build equals the interpreter).

This module imports ``onnx`` at its top: import it only where ONNX is installed.
"""

from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

from ..executor import build
from ..interpret import interpret
from .onnx import StaticInputRequired, from_onnx
from .onnx_load import _onnx


def _np_dtype(elem_type):
    return _onnx().helper.tensor_dtype_to_np_dtype(elem_type)


def _array(v):
    """A feed as numpy (the suite stores some as ``TensorProto``)."""
    onnx = _onnx()
    return onnx.numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v


class MlcBackendRep(BackendRep):
    """A prepared model: ``run(inputs)`` -> outputs as ONNX declares them (bool included).

    A graph input that a converter needs as a known value (``Reshape``'s shape, a
    reduction's axes: the backend suite feeds them as inputs) is bound to the value of
    the call, and the graph is imported again, specialised to it, once per distinct value.
    """

    def __init__(self, model, target: str):
        self.model, self.target = model, target
        self.names = [i.name for i in model.graph.input
                      if i.name not in {t.name for t in model.graph.initializer}]
        self._out_types = [_np_dtype(o.type.tensor_type.elem_type) for o in model.graph.output]
        self._bound: list[str] = []
        self._cache: dict = {}
        self.graph = self._compile({})[0] if self._try_plain() else None

    def _try_plain(self) -> bool:
        try:
            self._compile({})
        except StaticInputRequired as e:
            self._bound.append(e.name)
            return False
        return True

    def _compile(self, bind):
        key = tuple((k, np.asarray(v).tobytes()) for k, v in sorted(bind.items()))
        if key not in self._cache:
            g = from_onnx(self.model, bind=bind)
            run = (lambda *a: interpret(g, *a)) if self.target == "interpret" else \
                build(g, target=self.target)
            self._cache[key] = (g, run)
        return self._cache[key]

    def run(self, inputs, **kwargs):
        if not isinstance(inputs, dict):
            inputs = dict(zip(self.names, inputs if isinstance(inputs, (list, tuple))
                              else [inputs], strict=True))
        while True:
            bind = {k: _array(inputs[k]) for k in self._bound}
            try:
                g, run = self._compile(bind)
                break
            except StaticInputRequired as e:
                if e.name in self._bound:
                    raise
                self._bound.append(e.name)
        arrays = [np.asarray(_array(inputs[n.name]), dtype=n.dtype) for n in g.inputs]
        outs = run(*arrays)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return [np.asarray(o).astype(t, copy=False) for o, t in zip(outs, self._out_types,
                                                                    strict=True)]


class MlcBackend(Backend):
    """``onnx.backend.base.Backend`` for mlc (CPU; ``target`` picks how graphs run)."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", target: str = "interpret", **kwargs):
        super().prepare(model, device, **kwargs)
        return MlcBackendRep(model, target)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")
