"""``report(float_model, qmodel, data)``: where the quantization error comes from.

Per layer: the SQNR of its weights (float vs dequantized int8) and of its output (the
float model's layer output vs the integer model's, dequantized, on the same input), the
largest absolute error; then the bytes of the weights and the accuracy of both models.
``Report.plot()`` draws the per-layer output SQNR as a bar chart: the layer whose bar is
shortest is the one to keep in higher precision or to calibrate better.

SQNR (signal-to-quantization-noise ratio, dB) = ``10 log10(sum x^2 / sum (x - x_hat)^2)``;
each bit is worth about 6 dB, so W8A8 layers typically show 30-45 dB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..perf import format_table
from .affine import as_numpy, dequantize, sqnr


@dataclass
class Report:
    rows: list = field(default_factory=list)     # one dict per layer
    sizes: dict = field(default_factory=dict)
    float_accuracy: float | None = None
    quant_accuracy: float | None = None

    COLUMNS = ("layer", "kind", "shape", "weight SQNR dB", "output SQNR dB", "max |err|")

    def table(self) -> str:
        rows = [[r["layer"], r["kind"], r["shape"], r["weight_sqnr"], r["output_sqnr"],
                 r["max_abs_error"]] for r in self.rows]
        return format_table(rows, list(self.COLUMNS))

    def __str__(self) -> str:
        s = self.sizes
        lines = [self.table(), "",
                 f"weights: fp32 {s['fp32_total']:,} B -> int8 {s['int8_total']:,} B "
                 f"({s['int8_weights']:,} B codes + {s['scales']:,} B scales + "
                 f"{s['int32_bias_and_multipliers']:,} B int32 bias/multipliers); "
                 f"ratio {s['fp32_total'] / s['int8_total']:.2f}x"]
        if self.float_accuracy is not None:
            lines.append(f"accuracy: fp32 {100 * self.float_accuracy:.2f}%  int8 "
                         f"{100 * self.quant_accuracy:.2f}%  "
                         f"(change {100 * (self.quant_accuracy - self.float_accuracy):+.2f}"
                         " points)")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def plot(self, ax=None):
        """Per-layer output SQNR (bars) with the weight SQNR (markers), matplotlib."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4, 1.2 * len(self.rows)), 3))
        names = [r["layer"] for r in self.rows]
        x = np.arange(len(names))
        ax.bar(x, [r["output_sqnr"] for r in self.rows], label="output SQNR")
        ax.plot(x, [r["weight_sqnr"] for r in self.rows], "o", color="C1", label="weight SQNR")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel("dB (higher is better)")
        ax.set_title("per-layer quantization error")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)   # beside the bars
        return ax


def report(float_model, qmodel, data, batch_size: int = 512) -> Report:
    """The :class:`Report` of ``qmodel`` (from :func:`quantize_model`) against
    ``float_model`` on ``data``: an array of inputs, or ``(X, y)`` for accuracy too."""
    X, y = (data if isinstance(data, (tuple, list)) else (data, None))
    X = np.asarray(as_numpy(X), np.float32)
    ref, fouts = qmodel.float_forward(X, collect=True)
    codes, qouts = qmodel.codes(X, collect=True)
    rep = Report(sizes=qmodel.weight_bytes())
    for layer, f, q in zip(qmodel.layers, fouts, qouts, strict=True):
        deq = dequantize(q, layer.s_out, layer.z_out)
        w_hat = dequantize(layer.w_q, layer.s_w, np.zeros_like(layer.s_w, np.int32), axis=1)
        rep.rows.append({
            "layer": layer.name.replace(".weight", "").replace(".reshape", ""),
            "kind": layer.kind + ("+relu" if layer.relu else ""),
            "shape": "x".join(map(str, layer.shape)),
            "weight_sqnr": sqnr(layer.weight, w_hat), "output_sqnr": sqnr(f, deq),
            "max_abs_error": float(np.abs(f - deq).max())})
    if y is not None:
        y = np.asarray(as_numpy(y)).reshape(-1)
        out = _run_float(float_model, X) if float_model is not None else ref
        fl = as_numpy(out).reshape(len(X), -1)
        rep.float_accuracy = float((fl.argmax(1) == y).mean())
        rep.quant_accuracy = float((codes.reshape(len(X), -1).argmax(1) == y).mean())
    return rep


def _run_float(model, X):
    """``model(X)`` in eval mode without recording gradients, as numpy."""
    from ..autograd import Tensor, no_grad

    params = model.parameters() if hasattr(model, "parameters") else []
    device = params[0].device if params else None
    if hasattr(model, "eval"):
        model.eval()
    with no_grad():
        return model(Tensor(X, device=device, requires_grad=False)).numpy()
