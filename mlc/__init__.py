"""mlc: a course in machine-learning compilation.

The layers, bottom up: ``mlc.ndarray`` (strided arrays on numpy, Numba CPU and
Numba-CUDA devices), ``mlc.autograd``/``mlc.ops``/``mlc.nn`` (reverse-mode autodiff and
modules), ``mlc.tir``/``mlc.te`` (tensor IR and its frontend), schedules, code generation
and tuning; ``mlc.perf`` measures them all. Submodules load lazily so ``import mlc`` stays
quick.
"""

from . import _env

_env.choose_cuda_mode()

__version__ = "0.1.0"

# Only modules that exist: a name here that does not import would turn a typo's clear
# AttributeError into a confusing ModuleNotFoundError.
_SUBMODULES = {
    "ndarray", "autograd", "ops", "nn", "init", "optim", "data", "tir", "te",
    "schedule", "codegen", "tune", "grading", "perf", "graph", "quant", "memory", "compress",
    "dist", "models", "deploy",
}


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    # Names re-exported from the autodiff layer (Tensor, no_grad, ...), loaded on first use.
    if name in {"Tensor", "no_grad", "enable_grad", "is_grad_enabled"}:
        from . import autograd

        return getattr(autograd, name)
    raise AttributeError(f"module 'mlc' has no attribute {name!r}")
