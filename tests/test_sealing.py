"""The library code an exercise rebuilds is out of the student's reach while it is graded.

Each cheat below defines the exercise's function by calling the library's own, under one
of the spellings a notebook could use (an alias, ``getattr``, ``importlib``,
``__import__``, a package re-export). Outside the grader it passes the exercise's check
(so the test shows a real cheat); under ``mlc grade`` the same notebook scores 0 on it.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest

from mlc.grading.check import run_check
from mlc.grading.grader import grade_notebook
from mlc.grading.registry import all_exercises

# unit notebook -> (exercise, the cell that cheats)
CHEATS = {
    "01_ndarray": ("ndarray.compact_strides", """
from mlc.ndarray.shapes import compact_strides as _cs
def compact_strides(shape):
    return _cs(shape)
"""),
    "02_autodiff": ("autodiff.topo_sort", """
import mlc.autograd
def find_topo_sort(nodes):
    return getattr(mlc.autograd, "find_topo_sort")(nodes)
"""),
    "08_graphs_and_fusion": ("graphs.post_dominator", """
from mlc.graph import post_dominators
def post_dominator(g, *args):
    return post_dominators(g)
"""),
    "09_quantization": ("quantization.quantize_multiplier", """
import importlib
def quantize_multiplier(*args, **kwargs):
    return importlib.import_module("mlc.quant.fixedpoint").quantize_multiplier(*args, **kwargs)
"""),
    "10_memory_planning": ("memory_planning.liveness", """
from mlc import memory as _memory
def liveness(*args, **kwargs):
    return _memory.liveness(*args, **kwargs)
"""),
    "13_parallelism": ("parallelism.alpha_beta", """
_fit = __import__("mlc.dist", fromlist=["cost"]).fit_alpha_beta
def fit_alpha_beta(*args, **kwargs):
    return _fit(*args, **kwargs)
"""),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Each unit's cheating notebook graded once (two workers at a time)."""
    top = tmp_path_factory.mktemp("sealing")

    def grade(unit):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(CHEATS[unit][1])]
        path = top / f"{unit}.ipynb"
        nbformat.write(nb, path)
        report = grade_notebook(path, timeout=60)
        return unit, {r.id: r for r in report.results}

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(grade, CHEATS))


@pytest.mark.parametrize("unit", sorted(CHEATS))
def test_calling_the_library_scores_zero_under_the_grader(graded, unit):
    ex_id, cell = CHEATS[unit]
    ns: dict = {}
    exec(cell, ns)
    honest = run_check(ex_id, ns)  # outside the grader the cheat works
    assert honest["score"] == honest["max_score"] > 0, honest["message"]
    rec = graded[unit][ex_id]
    assert rec.score == 0, rec
    assert "out of reach" in rec.message, rec.message


def test_every_rebuilt_object_is_sealed_whatever_the_spelling():
    """Every ``rebuilds`` entry of units 00-13, reached as the notebook could reach it,
    raises; the library's own callers keep the real one."""
    rebuilt = sorted({d for ex in all_exercises().values() for d in ex.rebuilds})
    assert len(rebuilt) >= 30
    script = f"""
import importlib, sys
import numpy as np
from mlc.grading.runner import Sealed, prepare, seal
from mlc.grading.registry import all_exercises
ids = [e for e, ex in all_exercises().items() if ex.rebuilds]
worker = prepare({{"exercises": [{{"id": i}} for i in ids]}})
seal(worker)
reached = []
for dotted in {rebuilt!r}:
    module, _, rest = dotted.partition(":")
    *path, attr = rest.split(".")
    spellings = [importlib.import_module(module), __import__(module, fromlist=["x"])]
    for owner in spellings:
        for part in path:
            owner = getattr(owner, part)
        try:
            getattr(owner, attr)(*([None] * 3))
            reached.append(dotted)
        except Sealed:
            pass
        except Exception as err:
            reached.append(f"{{dotted}} ({{type(err).__name__}}: {{err}})")
# a package re-export is the same stand-in
import mlc.quant, mlc.memory, mlc.graph
for fn, args in ((mlc.quant.requantize, ()), (mlc.memory.liveness, ()),
                 (mlc.graph.post_dominators, ())):
    try:
        fn(*args)
        reached.append(fn.__name__)
    except Sealed:
        pass
# the library's own callers still reach the real code (nd.permute calls NDArray.permute)
import mlc.ndarray as nd
a = nd.array(np.arange(6, dtype=np.float32).reshape(2, 3), device=nd.cpu_numpy())
assert nd.permute(a, (1, 0)).numpy().tolist() == [[0, 3], [1, 4], [2, 5]]
try:
    a.permute((1, 0))
    reached.append("NDArray.permute")
except Sealed:
    pass
print("REACHED", reached)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "REACHED []" in done.stdout, done.stdout
