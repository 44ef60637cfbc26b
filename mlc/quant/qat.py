"""Quantization-aware training: train with the rounding in the forward pass.

``prepare_qat(model, bits=4)`` returns a copy of a model (any tree of modules: a
``Sequential``, a residual block, ...) in which every ``Linear`` and ``Conv`` fake-quantizes
its *input* (the activation the integer model will hold as codes; range from a
:class:`~mlc.quant.MovingAverageMinMaxObserver`) and its *weight* (symmetric, per output
channel, range from the current weights), and the model fake-quantizes its output.
Training then sees the quantization error and learns around it. ``convert(qat_model)``
makes the integer model from the trained weights and the activation ranges the
observers learned. Observers are keyed by the layer's *module path* (``named_modules``:
``"block.fn.modules.0"``), which is also the name its weight has in the traced graph, so
each observer finds the tensor it watched; a tensor no layer reads (the sum of a
residual add) is calibrated on ``calibration_batches``.

Rounding has zero gradient almost everywhere, so backpropagation needs a stand-in: the
**straight-through estimator** (Bengio et al. 2013; Jacob et al. 2018) treats
``fake_quantize`` as the identity inside the grid's range and as a constant outside it
(where it clamps)::

    forward:   y = s * (clamp(round(x / s) + z, q_min, q_max) - z)
    backward:  dL/dx = dL/dy * [q_min <= round(x / s) + z <= q_max]

:class:`FakeQuantize` is that pair, an autodiff op like those in ``mlc.ops``.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import nn, ops
from ..autograd import Tensor, TensorOp
from .. import ndarray as nd
from .affine import qparams, qrange
from .observers import MovingAverageMinMaxObserver


class FakeQuantize(TensorOp):
    """Quantize-dequantize in the forward pass, straight-through gradient in the backward."""

    def __init__(self, scale, zero_point, q_min: int, q_max: int, axis: int | None = None):
        self.scale, self.zero_point = scale, zero_point
        self.q_min, self.q_max, self.axis = q_min, q_max, axis

    def _codes(self, a: np.ndarray) -> np.ndarray:
        s, z = np.asarray(self.scale, np.float64), np.asarray(self.zero_point, np.float64)
        if self.axis is not None:
            shape = [1] * a.ndim
            shape[self.axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return np.rint(a.astype(np.float64) / s) + z, s, z

    def compute(self, a):
        x = a.numpy()
        q, s, z = self._codes(x)
        y = (s * (np.clip(q, self.q_min, self.q_max) - z)).astype(x.dtype)
        return nd.array(y, dtype=a.dtype, device=a.device)

    def gradient(self, out_grad, node):
        x = node.inputs[0].realize_cached_data().numpy()
        q, _, _ = self._codes(x)
        mask = ((q >= self.q_min) & (q <= self.q_max)).astype(x.dtype)
        return out_grad * Tensor(mask, device=out_grad.device, dtype=out_grad.dtype,
                                 requires_grad=False)


class ActivationFakeQuant(nn.Module):
    """Observe (in training) and fake-quantize an activation, per-tensor asymmetric."""

    def __init__(self, num_bits: int | None, averaging_constant: float = 0.05):
        super().__init__()
        self.num_bits = num_bits
        self.observer = MovingAverageMinMaxObserver("int8", False, None, num_bits,
                                                    averaging_constant)

    def forward(self, x):
        if self.training:
            self.observer(x.numpy())
        if self.observer.batches == 0:      # eval before any training step: observe once
            self.observer(x.numpy())
        s, z = self.observer.qparams()
        q_min, q_max = qrange("int8", self.num_bits)
        return FakeQuantize(s, z, q_min, q_max)(x)


def fake_quant_weight(w: Tensor, num_bits: int | None, axis: int = -1) -> Tensor:
    """Symmetric per-output-channel fake-quant of a weight (output channels on ``axis``)."""
    a = w.numpy()
    ax = axis % a.ndim
    amax = np.abs(a).max(axis=tuple(i for i in range(a.ndim) if i != ax))
    scale, zp = qparams(-amax, amax, "int8", symmetric=True, num_bits=num_bits)
    q_min, q_max = qrange("int8", num_bits)
    return FakeQuantize(scale, zp, q_min, q_max, axis=ax)(w)


class QATLayer(nn.Module):
    """A Linear or Conv with fake-quant on its input and weight; ``inner`` is the layer,
    ``path`` its module path in the float model."""

    def __init__(self, inner, bits, act_bits, path: str = ""):
        super().__init__()
        if not isinstance(inner, (nn.Linear, nn.Conv)):
            raise TypeError(f"QATLayer wraps Linear or Conv, got {type(inner).__name__}")
        self.inner = inner
        self.bits = bits
        self.path = path
        self.input_fq = ActivationFakeQuant(act_bits)

    def forward(self, x):
        x = self.input_fq(x)
        m = self.inner
        w = fake_quant_weight(m.weight, self.bits, axis=-1)
        if isinstance(m, nn.Linear):
            y = x @ w
        else:
            y = ops.conv(x, w, stride=m.stride, padding=m.padding)
        if m.bias is not None:
            y = y + m.bias
        return y


def _map_tree(value, fn, path: str = ""):
    """A copy of the module tree under ``value`` in which ``fn(module, path)`` may replace a
    module (None keeps it, recursing into it); lists, tuples and dicts are rebuilt."""
    if isinstance(value, nn.Module):
        new = fn(value, path)
        if new is not None:
            return new
        new = copy.copy(value)
        new.__dict__ = {k: (v if k.startswith("_") else
                            _map_tree(v, fn, f"{path}.{k}" if path else k))
                        for k, v in value.__dict__.items()}
        return new
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tree(v, fn, f"{path}.{i}" if path else str(i))
                           for i, v in enumerate(value))
    if isinstance(value, dict):
        return {k: _map_tree(v, fn, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


class QATModel(nn.Module):
    """What :func:`prepare_qat` returns: the model with its layers wrapped, and an output
    fake-quant."""

    def __init__(self, body: nn.Module, bits, act_bits):
        super().__init__()
        self.body = body
        self.bits, self.act_bits = bits, act_bits
        self.output_fq = ActivationFakeQuant(act_bits)
        self.example = None

    def forward(self, x):
        if self.example is None:
            self.example = np.array(x.numpy()[:2])
        return self.output_fq(self.body(x))

    def float_model(self) -> nn.Module:
        """The float model with the trained weights (the wrappers removed)."""
        return _map_tree(self.body, lambda m, p: m.inner if isinstance(m, QATLayer) else None)

    def layers(self) -> dict:
        """``{module path in the float model: QATLayer}``."""
        return {m.path: m for _, m in self.body.named_modules() if isinstance(m, QATLayer)}


def _copy_layer(m):
    """A Linear/Conv with its own copy of the parameters (NDArrays do not deepcopy)."""
    new = copy.copy(m)
    new.__dict__ = dict(m.__dict__)
    for name in ("weight", "bias"):
        p = getattr(m, name)
        if p is not None:
            setattr(new, name, nn.Parameter(p.numpy().copy(), device=p.device, dtype=p.dtype))
    return new


def prepare_qat(model, bits: int = 8, act_bits: int | None = None, inplace: bool = False):
    """A QAT version of ``model`` (any ``nn.Module``): weights at ``bits`` bits,
    activations at ``act_bits`` (default: ``bits``).

    The Linear and Conv layers are copied (``inplace=False``), so the float model stays
    as it was; other modules are shallow copies sharing their parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_qat expects an nn.Module, got {type(model).__name__}")
    qrange("int8", bits)
    act_bits = bits if act_bits is None else act_bits
    qrange("int8", act_bits)

    def wrap(m, path):
        if isinstance(m, (nn.Linear, nn.Conv)):
            return QATLayer(m if inplace else _copy_layer(m), bits, act_bits, path)
        return None

    qat = QATModel(_map_tree(model, wrap), bits, act_bits)
    if not qat.layers():
        raise ValueError("prepare_qat: the model has no Linear or Conv layer")
    return qat


def _learned_observers(qat_model: QATModel, fg) -> dict:
    """``{tensor name in the folded graph fg: observer}`` for the tensors QAT watched: each
    layer's input (found through its weight's name, the layer's module path) and the
    model's output."""
    from .rules import match_rules

    layers = qat_model.layers()
    out = {fg.outputs[0].name: qat_model.output_fq.observer}
    for m in match_rules(fg).values():
        if m.rule.makes != "qlinear":
            continue
        path = m.nodes[0].inputs[1].name.split(".weight")[0]
        if path in layers:
            out[m.operands[0].name] = layers[path].input_fq.observer
    return out


def convert(qat_model, calibration_batches=None, device=None, **graph_kwargs):
    """The integer model of a trained QAT model (see :func:`mlc.quant.quantize_model`).

    The activation ranges are the QAT observers'; ``calibration_batches`` calibrates the
    tensors no layer reads (residual sums) and supplies the tracing example when the QAT
    model has not run yet. Given a prepared *graph* instead, this is the graph pass
    :func:`mlc.quant.passes.convert` (``convert(pg, observers)``).
    """
    from .. import graph as G
    from .passes import calibrate, convert as convert_graph, fold, prepare
    from .ptq import quantize_model

    if isinstance(qat_model, G.Graph):
        return convert_graph(qat_model, calibration_batches, **graph_kwargs)
    if not isinstance(qat_model, QATModel):
        raise TypeError(f"convert expects what prepare_qat returned, got "
                        f"{type(qat_model).__name__}")
    if any(layer.input_fq.observer.batches == 0 for layer in qat_model.layers().values()):
        raise RuntimeError("convert: the QAT model has not seen any data; train it first")
    if calibration_batches is None and qat_model.example is None:
        raise RuntimeError("convert: no example input recorded; pass calibration_batches")
    example = [qat_model.example] if calibration_batches is None else calibration_batches
    float_model = qat_model.float_model()
    from ..autograd import Tensor

    g = G.trace(float_model, Tensor(np.asarray(qat_model.example if qat_model.example
                                               is not None else example[0]),
                                    requires_grad=False))
    observers = _learned_observers(qat_model, fold(g))
    pg = prepare(g)
    missing = [n.attrs["key"] for n in pg.nodes if n.op == "observe"
               and n.attrs["key"] not in observers]
    if missing:
        if calibration_batches is None:
            raise RuntimeError(f"convert: QAT observed no range for %{', %'.join(missing)} "
                               "(no layer reads them); pass calibration_batches")
        found = calibrate(pg, calibration_batches, act_bits=qat_model.act_bits)
        observers.update({k: found[k] for k in missing})
    return quantize_model(float_model, example, per_channel=True, weight_bits=qat_model.bits,
                          act_bits=qat_model.act_bits, device=device, act_observers=observers)
