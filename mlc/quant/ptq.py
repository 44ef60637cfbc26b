"""``quantize_model``: a float model -> an integer-only model, through the graph passes.

``quantize_model(model, calibration_batches)`` traces the model and runs
:func:`~mlc.quant.quantize_graph` (fold batch norm, calibrate, convert: see
:mod:`.passes`). The :class:`QuantizedModel` it returns wraps the quantized graph with
the model-level view unit 09 uses, and runs it three ways on the same parameters:

* ``qmodel(x)``: **integer-only** (int8 codes between layers, int32 accumulators,
  requantization; only the model's input is quantized and its output dequantized), the
  quantized graph built by ``graph.build`` (the integer ops call their kernels);
  ``qmodel.codes(x)`` runs it in the interpreter and returns the int8 output codes;
* ``qmodel.simulate(x)``: the **fake-quant simulator**: float arithmetic on dequantized
  values; each layer's real output ``y = x_hat @ W_hat + b_hat`` is put on the output
  grid with the fixed-point rounding rule (``rounding="fixedpoint"``: it divides ``y`` by
  ``s_in * s_w`` to get the accumulator, then :func:`~mlc.quant.requantize`) or with a
  plain float ``round(y / s_out)`` (``rounding="float"``, what fake-quant training does);
* ``qmodel.float_forward(x)``: the folded float graph.

``qmodel.layers`` lists each ``qlinear`` with its parameters: ``w_q``/``s_w`` (symmetric
int8 weights, a scale per output channel or one), ``bias_q`` (int32 at scale
``s_in * s_w[j]``), ``m0``/``shift`` (the multiplier ``s_in * s_w[j] / s_out``).
:func:`compare_codes` checks that the integer model reproduces the simulator's codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import graph as G
from .affine import as_numpy, dequantize, qrange, quantize
from .graph_ops import packed_weight
from .passes import QuantInterpreter, batches_of, fold, quantize_graph, quantize_weight
from .qops import _device_name
from .rules import bias_input, constant_value, match_rules

__all__ = ["QuantizedModel", "quantize_model", "compare_codes", "CodeCheck", "quantize_weight",
           "UnsupportedModelError"]


class UnsupportedModelError(ValueError):
    """A model ``quantize_model`` cannot quantize at all: it has no Linear or Conv layer,
    or not one input and one output. (Any op *inside* a model is fine: one with no
    integer form stays a float island.)"""


class QLayer:
    """One ``qlinear`` of a quantized graph, with the float layer it came from."""

    def __init__(self, match, qg):
        mm = match.nodes[0]
        node = qg.node(mm.name)
        self.name = mm.inputs[1].name
        self.kind = "conv" if "reshape" in match.params else "linear"
        self.relu = "relu" in match.params
        self.weight = np.asarray(mm.inputs[1].value, np.float32)      # folded (K, N)
        self.bias = (np.asarray(constant_value(bias_input(match)), np.float32).reshape(-1)
                     if "add" in match.params else np.zeros(self.weight.shape[1], np.float32))
        self.w_q, self.s_w, self.bias_q, self.m0, self.shift = (
            x.value for x in node.inputs[1:])
        a = node.attrs
        self.s_in, self.z_in, self.s_out, self.z_out = a["s_in"], a["z_in"], a["s_out"], \
            a["z_out"]
        q_min = qrange("int8", a.get("bits"))[0]
        self.lo = max(q_min, self.z_out) if self.relu else q_min
        self.float_name = match.output.name                       # in the folded graph
        self.code_name = match.params["reshape"].name if "reshape" in match.params \
            else mm.name                                          # in the quantized graph

    @property
    def shape(self):
        return self.weight.shape

    @property
    def packed(self):
        """The weight packed for the CPU kernel (made once)."""
        return packed_weight(self.w_q)

    def __repr__(self):
        return (f"QLinear({self.name}: {self.shape[0]}->{self.shape[1]}"
                f"{', relu' if self.relu else ''})")


class QuantizedModel:
    """An integer-only model made by :func:`quantize_model` (see the module docstring)."""

    def __init__(self, qg, float_graph, per_channel, weight_bits, act_bits, device=None):
        self.graph, self.float_graph = qg, float_graph
        self.per_channel = per_channel
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.device = device
        self.layers = [QLayer(m, qg) for m in match_rules(float_graph).values()
                       if m.rule.makes == "qlinear"]
        first = [n for n in qg.nodes if n.op == "quantize" and n.inputs[0] in qg.inputs]
        self.input_qparams = ((first[0].attrs["scale"], first[0].attrs["zero_point"])
                              if first else None)
        last = qg.outputs[0]
        if last.op != "dequantize":
            raise UnsupportedModelError("quantize_model: the model's output is not computed "
                                        "by an integer op")
        self.output_qparams = (last.attrs["scale"], last.attrs["zero_point"])
        self._out_codes = last.inputs[0].name
        self._exe = None

    # -- running -------------------------------------------------------------------------
    def quantize_input(self, x) -> np.ndarray:
        s, z = self.input_qparams
        return quantize(np.asarray(as_numpy(x), np.float32), s, z, "int8", num_bits=self.act_bits)

    def _run(self, mode, x, collect, device=None):
        run = QuantInterpreter(self.graph, mode, device or self.device)
        run.run(np.asarray(as_numpy(x), np.float32))
        v = run.values()
        q = v[self._out_codes]
        return (q, [v[layer.code_name] for layer in self.layers]) if collect else q

    def codes(self, x, collect: bool = False, device=None):
        """The int8 output codes (and, with ``collect``, each layer's output codes)."""
        return self._run("kernel", x, collect, device)

    def __call__(self, x):
        if _device_name(self.device) == "cpu":      # the graph, built: extern int8 kernels
            if self._exe is None:
                self._exe = G.build(self.graph, target="cpu")
            y = self._exe(np.asarray(as_numpy(x), np.float32))
        else:
            s, z = self.output_qparams
            y = dequantize(self.codes(x), s, z)
        if hasattr(x, "realize_cached_data"):
            from ..autograd import Tensor

            return Tensor(y, device=x.device, requires_grad=False)
        return y

    def simulate(self, x, rounding: str = "fixedpoint", collect: bool = False):
        """The fake-quant simulator's int8 output codes (see the module docstring)."""
        if rounding not in ("fixedpoint", "float"):
            raise ValueError(f"rounding must be 'fixedpoint' or 'float', got {rounding!r}")
        return self._run("simulate" if rounding == "fixedpoint" else "simulate_float", x,
                         collect)

    def float_forward(self, x, collect: bool = False):
        """The folded float model (and, with ``collect``, each layer's float output)."""
        run = G.Interpreter(self.float_graph)
        y = run.run(np.asarray(as_numpy(x), np.float32))
        if not collect:
            return y
        v = {n.name: a.numpy() for n, a in run.env.items()}
        return y, [v[layer.float_name] for layer in self.layers]

    # -- sizes ---------------------------------------------------------------------------
    def weight_bytes(self) -> dict:
        """Bytes of the parameters: int8 weights, float32 scales, int32 biases and
        multipliers, against the float32 model's weights and biases."""
        w = sum(layer.w_q.size for layer in self.layers)
        scales = sum(4 * layer.s_w.size for layer in self.layers)
        ints = sum(4 * (layer.bias_q.size + layer.m0.size + layer.shift.size)
                   for layer in self.layers)
        fp32 = sum(4 * (layer.weight.size + layer.bias.size) for layer in self.layers)
        fp32_w = sum(4 * layer.weight.size for layer in self.layers)
        return {"int8_weights": w, "scales": scales, "int32_bias_and_multipliers": ints,
                "int8_total": w + scales + ints, "fp32_weights": fp32_w, "fp32_total": fp32}

    def __repr__(self):
        per = "per-channel" if self.per_channel else "per-tensor"
        return (f"QuantizedModel(W{self.weight_bits or 8}A{self.act_bits or 8} {per}, "
                f"layers={self.layers})")


def quantize_model(model, calibration_batches, per_channel: bool = True, observer="minmax",
                   weight_bits: int | None = None, act_bits: int | None = None,
                   device=None, act_observers=None) -> QuantizedModel:
    """Post-training quantization of ``model``: trace, then :func:`quantize_graph`.

    ``calibration_batches``: an iterable of arrays/Tensors (or ``(x, y)`` pairs, as a
    DataLoader gives). ``observer``: a name (``"minmax"``, ``"moving_average"``,
    ``"percentile"``, ``"histogram"``), an :class:`~mlc.quant.Observer` class or a
    factory; one is made per observed tensor. ``act_observers`` (``{tensor name:
    Observer}``, already filled: what QAT learned) replaces calibration.
    ``device``: where the integer kernels run (``nd.cpu()`` by default).
    """
    if hasattr(calibration_batches, "shape"):  # one array: its rows would pass as batches
        raise TypeError(f"quantize_model: calibration_batches is a list (or DataLoader) of "
                        f"batches, not one array; to calibrate on X of shape "
                        f"{tuple(calibration_batches.shape)}, pass [X]")
    batches = list(batches_of(calibration_batches or []))
    if not batches:
        raise ValueError("quantize_model: calibration_batches is empty (one batch is needed "
                         "to trace the model, and to calibrate it)")
    from ..autograd import Tensor

    # two rows: a batch of one would not tell the batch axis from a fixed one
    example = np.resize(batches[0], (2,) + batches[0].shape[1:])
    g = G.trace(model, Tensor(example, requires_grad=False))
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise UnsupportedModelError("quantize_model handles models with one input and one "
                                    "output (quantize_graph takes any graph)")
    fg = fold(g)
    if not any(m.rule.makes == "qlinear" for m in match_rules(fg).values()):
        raise UnsupportedModelError("quantize_model: the model has no Linear or Conv layer")
    qg = quantize_graph(g, batches, per_channel, observer, weight_bits, act_bits,
                        observers=act_observers)
    return QuantizedModel(qg, fg, per_channel, weight_bits, act_bits, device)


@dataclass
class CodeCheck:
    """What :func:`compare_codes` found: int8 output codes and argmax that differ."""
    total_codes: int
    mismatched_codes: int
    argmax_mismatches: int
    float_rounding_mismatches: int    # integer model vs a float-rounding fake-quant

    @property
    def ok(self) -> bool:
        return self.mismatched_codes == 0 and self.argmax_mismatches == 0

    def __str__(self):
        return (f"{self.mismatched_codes} of {self.total_codes} output codes differ "
                f"({self.argmax_mismatches} argmax); with float rounding instead of the "
                f"fixed-point rule: {self.float_rounding_mismatches}")


def compare_codes(qmodel: QuantizedModel, x, batch_size: int = 512, device=None) -> CodeCheck:
    """Run the integer model and the simulator on ``x``; count differing codes."""
    x = np.asarray(as_numpy(x), np.float32)
    total = mism = arg = fmism = 0
    for i in range(0, x.shape[0], batch_size):
        xb = x[i:i + batch_size]
        qi = qmodel.codes(xb, device=device)
        qs = qmodel.simulate(xb)
        qf = qmodel.simulate(xb, rounding="float")
        total += qi.size
        mism += int((qi != qs).sum())
        fmism += int((qi != qf).sum())
        arg += int((qi.reshape(len(xb), -1).argmax(1) != qs.reshape(len(xb), -1).argmax(1)).sum())
    return CodeCheck(total, mism, arg, fmism)
