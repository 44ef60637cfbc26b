"""Post-training quantization: a float model -> an integer-only model (W8A8 by default).

``quantize_model(model, calibration_batches)``:

1. **Trace and fold** (:mod:`.program`): the graph of one forward pass, batch norm folded
   into the layer before it, read as a chain of ``QLinear`` and data-movement steps.
2. **Calibrate**: run the folded float model on the calibration batches; an activation
   observer (per-tensor, asymmetric int8) watches the model input and every layer's
   output (after its ReLU: that is the tensor the next layer reads).
3. **Quantize weights**: symmetric int8, one scale per output channel (``per_channel``)
   or one per tensor; zero point 0, so the kernel needs no weight offset term.
4. **Integer parameters** per layer: the bias in int32 at scale ``s_in * s_w[j]``,
   and the multiplier ``M[j] = s_in * s_w[j] / s_out`` as ``(m0[j], shift[j])``.

The result, a :class:`QuantizedModel`, runs three ways on the same parameters:

* ``qmodel(x)``: **integer-only** (int8 codes between layers, int32 accumulators,
  requantization; only the model's input is quantized and its output dequantized);
* ``qmodel.simulate(x)``: the **fake-quant simulator**: float arithmetic on dequantized
  values; each layer's real output ``y = x_hat @ W_hat + b_hat`` is put on the output
  grid with the fixed-point rounding rule (``rounding="fixedpoint"``: it divides ``y`` by
  ``s_in * s_w`` to get the accumulator, then :func:`~mlc.quant.requantize`) or with a
  plain float ``round(y / s_out)`` (``rounding="float"``, what fake-quant training does);
* ``qmodel.float_forward(x)``: the folded float model.

:func:`compare_codes` checks that the integer model reproduces the simulator's int8
output codes exactly (with float rounding a few codes sit on the other side of a
half-way point: gemmlowp rounds twice, see :mod:`.fixedpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .affine import as_numpy, dequantize, qparams, qrange, quantize
from .fixedpoint import quantize_multiplier, requantize
from .observers import Observer, make_observer
from .program import QLinear, build_chain, float_forward
from .qops import PackedWeight, qlinear


def _batches(calibration_batches):
    for b in calibration_batches:
        if isinstance(b, (tuple, list)):
            b = b[0]
        yield np.asarray(as_numpy(b), np.float32)


def quantize_weight(w: np.ndarray, per_channel: bool = True, num_bits: int | None = None):
    """Symmetric int8 codes of a ``(K, N)`` weight, a scale per column (or one): ``(q, s)``."""
    if per_channel:
        amax = np.abs(w).max(axis=0)
        scale, _ = qparams(-amax, amax, "int8", symmetric=True, num_bits=num_bits)
        q = quantize(w, scale, np.zeros_like(scale, np.int32), "int8", axis=1,
                     num_bits=num_bits)
    else:
        amax = float(np.abs(w).max())
        s, _ = qparams(-amax, amax, "int8", symmetric=True, num_bits=num_bits)
        scale = np.full(w.shape[1], s, np.float32)
        q = quantize(w, s, 0, "int8", num_bits=num_bits)
    return q, scale


class QuantizedModel:
    """An integer-only model made by :func:`quantize_model` (see the module docstring)."""

    def __init__(self, steps, graph, act_qparams, per_channel, weight_bits, act_bits,
                 device=None):
        self.steps = steps
        self.graph = graph
        self.per_channel = per_channel
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.device = device
        self.layers = [s for s in steps if isinstance(s, QLinear)]
        if len(act_qparams) != len(self.layers) + 1:
            raise ValueError(f"need {len(self.layers) + 1} activation qparams (input and one "
                             f"per layer), got {len(act_qparams)}")
        self.input_qparams = act_qparams[0]
        q_min, q_max = qrange("int8", act_bits)
        for layer, (s_in, z_in), (s_out, z_out) in zip(self.layers, act_qparams[:-1],
                                                      act_qparams[1:], strict=True):
            layer.s_in, layer.z_in, layer.s_out, layer.z_out = s_in, z_in, s_out, z_out
            layer.w_q, layer.s_w = quantize_weight(layer.weight, per_channel, weight_bits)
            acc_scale = np.float64(s_in) * layer.s_w.astype(np.float64)
            layer.bias_q = np.clip(np.rint(layer.bias / acc_scale), -2**31, 2**31 - 1
                                   ).astype(np.int32)
            layer.m0, layer.shift = quantize_multiplier(acc_scale / np.float64(s_out))
            layer.packed = PackedWeight(layer.w_q, 0)
            layer.lo = max(q_min, z_out) if layer.relu else q_min
        self.output_qparams = act_qparams[-1]

    # -- running -------------------------------------------------------------------------
    def quantize_input(self, x) -> np.ndarray:
        s, z = self.input_qparams
        return quantize(np.asarray(as_numpy(x), np.float32), s, z, "int8", num_bits=self.act_bits)

    def codes(self, x, collect: bool = False, device=None):
        """The int8 output codes (and, with ``collect``, each layer's output codes)."""
        q = self.quantize_input(x)
        z = self.input_qparams[1]
        outs = []
        for s in self.steps:
            if isinstance(s, QLinear):
                lead = q.shape[:-1]
                q2 = qlinear(q.reshape(-1, q.shape[-1]), s.packed, int(s.z_in), s.bias_q, s.m0,
                             s.shift, int(s.z_out), relu=s.relu, num_bits=self.act_bits,
                             device=device or self.device)
                q = q2.reshape(lead + (q2.shape[-1],))
                if s.reshape is not None:
                    q = q.reshape(s.reshape)
                z = s.z_out
                outs.append(q)
            else:
                q = s.run(q, z)
        return (q, outs) if collect else q

    def __call__(self, x):
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
        q_min, q_max = qrange("int8", self.act_bits)
        s0, z0 = self.input_qparams
        xh = dequantize(self.quantize_input(x), s0, z0).astype(np.float64)
        outs = []
        for s in self.steps:
            if not isinstance(s, QLinear):
                xh = s.run(xh, 0.0)
                continue
            w_hat = s.s_w.astype(np.float64) * s.w_q.astype(np.float64)
            acc_scale = np.float64(s.s_in) * s.s_w.astype(np.float64)
            y = xh @ w_hat + acc_scale * s.bias_q          # the real output, float64
            if rounding == "fixedpoint":
                acc = np.rint(y / acc_scale).astype(np.int32)
                q = requantize(acc, s.m0, s.shift, int(s.z_out), "int8", s.relu, self.act_bits)
            else:
                q = np.rint(y / np.float64(s.s_out)) + s.z_out
                q = np.clip(q, s.lo, q_max).astype(np.int8)
            if s.reshape is not None:
                q = q.reshape(s.reshape)
            outs.append(q)
            xh = dequantize(q, s.s_out, s.z_out).astype(np.float64)
        return (q, outs) if collect else q

    def float_forward(self, x, collect: bool = False):
        """The folded float model (and, with ``collect``, each layer's float output)."""
        x = np.asarray(as_numpy(x), np.float32)
        outs = []
        for s in self.steps:
            if isinstance(s, QLinear):
                x = s.float_forward(x)
                outs.append(x)
            else:
                x = s.run(x, 0.0)
        return (x, outs) if collect else x

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
    """Post-training quantization (see the module docstring).

    ``calibration_batches``: an iterable of arrays/Tensors (or ``(x, y)`` pairs, as a
    DataLoader gives). ``observer``: a name (``"minmax"``, ``"moving_average"``,
    ``"percentile"``, ``"histogram"``), an :class:`~mlc.quant.Observer` class or a
    factory; one is made per quantized activation. ``act_observers`` (a list of already
    filled observers, input first: what QAT learned) replaces calibration.
    ``device``: where the integer kernels run (``nd.cpu()`` by default).
    """
    if act_observers is None:
        batches = list(_batches(calibration_batches))
        if not batches:
            raise ValueError("quantize_model: calibration_batches is empty")
    else:
        batches = list(_batches(calibration_batches)) if calibration_batches is not None else []
    # one row is enough to trace: graph.fold_batch_norm also folds the batch-1 form
    # add(matmul, bias) (no broadcast_to), and the chain's reshapes are made
    # batch-independent
    example = batches[0][:1] if batches else None
    if example is None:
        raise ValueError("quantize_model needs at least one batch (for tracing)")
    steps, g = build_chain(model, example)
    n_layers = sum(isinstance(s, QLinear) for s in steps)
    if act_observers is None:
        obs = [make_observer(observer, dtype="int8", symmetric=False, num_bits=act_bits)
               for _ in range(n_layers + 1)]
        for xb in batches:
            obs[0](xb)
            _, outs = _float_collect(steps, xb)
            for o, y in zip(obs[1:], outs, strict=True):
                o(y)
    else:
        obs = list(act_observers)
        if len(obs) != n_layers + 1 or not all(isinstance(o, Observer) for o in obs):
            raise ValueError(f"act_observers must be {n_layers + 1} observers (input first)")
    return QuantizedModel(steps, g, [o.qparams() for o in obs], per_channel, weight_bits,
                          act_bits, device)


def _float_collect(steps, x):
    outs = []
    x = np.asarray(x, np.float32)
    for s in steps:
        if isinstance(s, QLinear):
            x = s.float_forward(x)
            outs.append(x)
        else:
            x = s.run(x, 0.0)
    return x, outs


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


def float_forward_steps(qmodel: QuantizedModel, x):
    return float_forward(qmodel.steps, x)
