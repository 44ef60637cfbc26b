"""``mlc.quant``: quantization, from the affine map to integer-only models.

::

    from mlc import quant
    obs = quant.MinMaxObserver(dtype="int8", symmetric=False)   # or MovingAverageMinMax-,
    obs(x); scale, zero_point = obs.qparams()                   # Histogram-, Percentile-; axis=
    q = quant.quantize(x, scale, zero_point, dtype="int8"); quant.dequantize(q, scale, zero_point)
    m0, shift = quant.quantize_multiplier(real_multiplier)      # M = m0 * 2**(shift - 31)
    quant.requantize(acc_int32, m0, shift, zero_point)          # integer-only, gemmlowp rounding
    qg = quant.quantize_graph(g, calibration_batches)           # PTQ as graph passes: any DAG
    quant.run(qg, x); quant.simulate(qg, x)                     # integer kernels / fake-quant
    wg = quant.quantize_weights(g, bits=4, group_size=32)       # weight-only, group-wise
    qmodel = quant.quantize_model(model, calibration_batches, per_channel=True)  # PTQ, int8
    qat = quant.prepare_qat(model, bits=4); ...train...; quant.convert(qat)
    quant.report(float_model, qmodel, (X, y))
    half = quant.to_float16(model); half(x); half.weight_bytes()   # fp16 weights, fp32 compute

One idea per module:

- ``affine.py``      qrange, qparams, quantize / dequantize / fake_quantize, SQNR;
- ``observers.py``   MinMax, MovingAverageMinMax and Percentile observers;
- ``histogram.py``   HistogramObserver (the range of least quantization error);
- ``fixedpoint.py``  quantize_multiplier and gemmlowp's requantization (numpy and Numba);
- ``reference.py``   the same arithmetic with Python ints, to test against;
- ``kernels_cpu.py`` int8 x int8 -> int32 matmul with zero-point offsets, fused epilogue;
- ``kernels_weightonly.py`` the weight-only matmul that dequantizes in its inner loop;
- ``kernels_graph.py`` the small graph ops' kernels: quantize, dequantize, qadd, qmatmul;
- ``routines.py``   the scalar integer steps, written once, compiled for cpu and cuda;
- ``kernels_cuda.py`` the same kernels in Numba-CUDA, one thread per output;
- ``weightonly.py``  group-wise 4/8-bit weights (two codes a byte), float activations;
  quantize_weights and quantize_tables (a graph's weights in few bits);
- ``qops.py``        checked entry points: qmatmul, qlinear, qconv2d, on a device;
- ``graph_ops.py``   the quantized graph ops: integer reference, simulation, extern kernel;
- ``bound.py``       those kernels bound once to a node: what a built graph calls;
- ``rules.py``       what convert rewrites, as data, and the matcher;
- ``passes.py``      prepare, calibrate, convert, fold_dequantize, quantize_graph, simulate;
- ``ptq.py``         quantize_model: the model-level facade over quantize_graph;
- ``examples.py``    a residual MLP and an attention block on digits (not chains);
- ``qat.py``         prepare_qat (fake-quant with the straight-through estimator), convert;
- ``report.py``      per-layer SQNR table, weight bytes, accuracy, error bar chart;
- ``half.py``        to_float16: fp16 weight storage (half the bytes), float32 compute;
- ``dynamic.py``     dynamic quantization: int8 weights, activations quantized per call
  with their own range (``quantize_dynamic``), and x86's ``vpmaddubsw`` saturation;
- ``kmeans.py``      non-uniform quantization: a k-means codebook (weight sharing).
"""

from .affine import (DTYPES, dequantize, fake_quantize, qparams, qrange, quantization_error,
                     quantize, sqnr)
from .observers import (MinMaxObserver, MovingAverageMinMaxObserver, Observer,
                        PercentileObserver, make_observer)
from .histogram import HistogramObserver
from .fixedpoint import (multiply_by_quantized_multiplier, quantize_multiplier,
                         requantize, rounding_divide_by_pot,
                         saturating_rounding_doubling_high_mul)
from .qops import PackedWeight, im2col_codes, qconv2d, qlinear, qmatmul
from .qat import FakeQuantize, QATModel, convert, prepare_qat
from .report import Report, report
from .half import HalfModel, half_weights, to_float16
from .weightonly import GroupWeight, pack_weight, quantize_tables, quantize_weights, wmatmul
from .dynamic import DynamicLinear, dynamic_qparams, maddubs, quantize_dynamic
from .kmeans import KMeansWeight, kmeans_quantize, uniform_levels
from .graph_ops import register_all as _register_ops
from .rules import RULES, Match, Rule, match_rules
from .passes import (Calibrator, QuantInterpreter, calibrate, prepare, quantize_graph, run,
                     simulate)   # convert: qat.convert takes graphs too

from .ptq import (CodeCheck, QuantizedModel, UnsupportedModelError, compare_codes,
                  quantize_model, quantize_weight)

_register_ops()     # the quantized ops join graph.OPS (quant uses graph, not the reverse)

__all__ = [
    "UnsupportedModelError",
    "DTYPES", "qrange", "qparams", "quantize", "dequantize", "fake_quantize",
    "quantization_error", "sqnr",
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver",
    "HistogramObserver", "make_observer",
    "quantize_multiplier", "requantize", "multiply_by_quantized_multiplier",
    "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
    "PackedWeight", "qmatmul", "qlinear", "qconv2d", "im2col_codes",
    "quantize_model", "QuantizedModel", "quantize_weight", "compare_codes", "CodeCheck",
    "prepare_qat", "convert", "FakeQuantize", "QATModel", "report", "Report",
    "to_float16", "half_weights", "HalfModel",
    "GroupWeight", "pack_weight", "wmatmul", "quantize_tables",
    "DynamicLinear", "dynamic_qparams", "quantize_dynamic", "maddubs",
    "KMeansWeight", "kmeans_quantize", "uniform_levels",
    "RULES", "Rule", "Match", "match_rules", "prepare", "calibrate", "convert",
    "quantize_graph", "simulate", "run", "quantize_weights", "QuantInterpreter", "Calibrator",
]
