"""Code generation: PrimFunc -> Python source -> a callable for "python", "cpu" or "cuda".

``build(func_or_schedule, target)`` lowers the PrimFunc (``lower.py``: place and shrink
intermediate buffers), writes source (``pysrc.py`` for "python"/"cpu", ``cudasrc.py`` for
"cuda") and compiles it (``module.py``). The result is a :class:`Module`: call it on
arrays, read ``.source``, time it with ``.time_evaluator()``.
"""

from .lower import compact_buffers, lower
from .module import TARGETS, Module, build

__all__ = ["build", "lower", "compact_buffers", "Module", "TARGETS"]
