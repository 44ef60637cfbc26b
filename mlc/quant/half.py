"""fp16 weights: ``quant.to_float16(model)``, the third point of fp32 / fp16 / int8.

Half precision keeps a float format (1 sign, 5 exponent, 10 mantissa bits: about 3
decimal digits, range 6e-5 .. 65504), so it needs no calibration, no scales and no
integer kernels: every weight is rounded to the nearest float16 and stored in 2 bytes.

:func:`to_float16` returns a :class:`HalfModel`: a copy of the model whose parameters
are stored as float16 NDArrays (``weight_bytes()`` counts them: half of fp32) and which
computes in float32, as ``mlc.ndarray`` does for float16 (and as fp16 hardware with
fp32 accumulation does): at each call the weights are widened to float32 (exact) and
the model runs on them, so its outputs are those of the float model with every weight
rounded to fp16. The activations stay float32; ``half_activations=True`` also rounds
the model's input to fp16.
"""

from __future__ import annotations

import copy

import numpy as np

from .affine import as_numpy


class HalfModel:
    """A float model with fp16 weight storage (see the module docstring)."""

    def __init__(self, model, half_activations: bool = False):
        self.model = _copy_model(model)
        self.half_activations = half_activations
        self.fp32_bytes = 0
        self.max_abs_error = 0.0                        # largest |w16 - w32| over weights
        self.half = {}                                  # name -> float16 NDArray
        self._params = dict(self.model.named_parameters())
        for name, p in self._params.items():
            if p.dtype != "float32":
                continue
            self.fp32_bytes += 4 * int(np.prod(p.shape))
            self.half[name] = p.realize_cached_data().astype("float16")
            w32 = p.numpy().astype(np.float64)
            err = np.abs(self.half[name].numpy().astype(np.float64) - w32)
            self.max_abs_error = max(self.max_abs_error, float(err.max(initial=0.0)))
        self._load()

    def _load(self):
        """Widen the fp16 storage into the parameters the model computes with."""
        for name, h in self.half.items():
            self._params[name].cached_data = h.astype("float32")

    def __call__(self, x):
        """A Tensor in, a Tensor out; a numpy array in, a numpy array out (as
        :class:`~mlc.quant.QuantizedModel`), without gradients."""
        if self.half_activations:
            x = _round_half(x)
        if hasattr(x, "realize_cached_data"):
            return self.model(x)
        import mlc

        params = self.model.parameters()
        device = params[0].device if params else None
        with mlc.no_grad():
            t = mlc.Tensor(np.asarray(x, np.float32), device=device, requires_grad=False)
            return self.model(t).numpy()

    def eval(self):
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    def weight_bytes(self) -> dict:
        """Bytes of the float parameters: fp16 storage against the fp32 model's."""
        fp16 = sum(int(np.prod(h.shape)) * 2 for h in self.half.values())
        return {"fp16_total": fp16, "fp32_total": self.fp32_bytes}

    def __repr__(self):
        b = self.weight_bytes()
        return f"HalfModel({len(self.half)} fp16 tensors, {b['fp16_total']} bytes)"


def _copy_model(model):
    """A deep copy that shares the device objects (they hold backend modules)."""
    from .. import ndarray as nd

    devices = [nd.cpu(), nd.cpu_numpy(), nd.cuda(), *nd.all_devices()]
    devices += [p.device for p in model.parameters()]
    memo = {id(d): d for d in devices}
    return copy.deepcopy(model, memo)


def _round_half(x):
    if hasattr(x, "realize_cached_data"):
        from ..autograd import Tensor

        data = x.realize_cached_data().astype("float16").astype("float32")
        return Tensor(data, device=x.device, requires_grad=False)
    arr = np.asarray(as_numpy(x), np.float32)
    return arr.astype(np.float16).astype(np.float32)


def to_float16(model, half_activations: bool = False) -> HalfModel:
    """fp16 weights of ``model``: a :class:`HalfModel` (the model itself is unchanged)."""
    return HalfModel(model, half_activations)


half_weights = to_float16
