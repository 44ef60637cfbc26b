"""A speed case is timed where the notebook cannot script it (:mod:`mlc.grading.fresh`).

The attacker's ``matmul_ikj`` is the naive ijk loop (correct, not faster) that, during its
own first call, replaces the clock the timer reads (``mlc.perf.timing._clock`` and
``time.perf_counter``: the reference's rounds run 10x slow, its own 10x fast),
``mlc.perf.timeit`` and ``mlc.perf.count_memory``. Timed next to the notebook's code it
passes the speed case; timed by the fresh process it gets its honest ratio and fails.
"""

from __future__ import annotations

import importlib
import sys
import time

import numpy as np
import pytest
from numba import cuda

import mlc.perf
import mlc.perf.timing
from mlc.grading import fresh
from mlc.grading.checks import cpu_operators, gpu_launch
from mlc.grading import protocol, registry
from mlc.grading.registry import CheckFailed, get
from mlc.grading.wire import from_plain

ATTACKER = '''
import time

from numba import njit, objmode

import mlc.perf
import mlc.perf.timing


def _patch():
    if getattr(mlc.perf.timing._clock, "fake", False):
        return  # patched once: every later read of the clock goes through it
    real, calls = time.perf_counter, [0]

    def fake():  # two reads time one call: the reference's 10x slow, ours 10x fast
        calls[0] += 1
        return real() * (10.0 if ((calls[0] - 1) // 2) % 2 == 0 else 0.1)

    fake.fake = True
    mlc.perf.timing._clock = time.perf_counter = fake
    mlc.perf.timeit = lambda *a, **k: 1e-3
    mlc.perf.count_memory = lambda *a, **k: None


@njit
def matmul_ikj(A, B, C):  # the naive i, j, k order
    with objmode():
        _patch()
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            acc = 0.0
            for k in range(A.shape[1]):
                acc += A[i, k] * B[k, j]
            C[i, j] = acc
'''


def _verdict(ex, case, obs) -> str:
    try:
        ex.check.judge(case, obs, registry.Tester())
        return "passed"
    except CheckFailed as err:
        return str(err)


@pytest.fixture
def attacker(tmp_path, monkeypatch):
    (tmp_path / "attacker_ikj.py").write_text(ATTACKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    for owner, name in ((mlc.perf.timing, "_clock"), (time, "perf_counter"),
                        (mlc.perf, "timeit"), (mlc.perf, "count_memory")):
        monkeypatch.setattr(owner, name, getattr(owner, name))  # put back after the test
    yield importlib.import_module("attacker_ikj")
    sys.modules.pop("attacker_ikj", None)


def test_a_function_that_patches_the_timer_during_its_call_gains_nothing(attacker):
    ex = get("cpu_operators.matmul_ikj")
    case = next(c for c in ex.check.cases() if c.get("speed"))
    timed_here = {"numba": True, **cpu_operators._timed_rounds(
        case["what"], attacker.matmul_ikj, case["A"], case["B"], ())}
    assert _verdict(ex, case, timed_here) == "passed"  # next to its own code, it works
    assert mlc.perf.timing._clock.fake  # and this process's clock is the attacker's
    reply = protocol.observe_case(ex, vars(attacker), case)  # the worker: a fresh process
    obs = from_plain(reply["ok"])
    verdict = _verdict(ex, case, obs)
    assert "at least 2x faster than the naive ijk loop" in verdict, verdict
    ratio = min(obs["t_ref"]) / min(obs["t_fn"])
    assert 0.2 < ratio < 5, obs  # the same loop twice: about 1x, not the forged 100x


def test_the_fresh_process_gets_the_definitions_and_what_they_use():
    """A helper, a constant, `import numba as nb` for a decorator, a name imported."""
    ns = {"__name__": "nb"}
    exec("import numba as nb\nfrom math import sqrt\nTILE = 16\n", ns)
    code = "def helper(x):\n    return sqrt(x) + TILE\n\n@nb.njit\ndef f(x):\n" \
           "    return helper(x)\n"
    import linecache

    linecache.cache["<cell>"] = (len(code), None, code.splitlines(True), "<cell>")
    exec(compile(code, "<cell>", "exec"), ns)
    src = fresh.definitions(ns, ("f",), ("TILE",))
    assert "TILE = 16" in src and "import numba as nb" in src
    assert "from math import sqrt as sqrt" in src and "def helper(x)" in src
    fresh_ns: dict = {"__name__": "definitions"}
    exec(src, fresh_ns)
    assert fresh_ns["f"].py_func(9.0) == 19.0


@cuda.jit
def _copy(a, out):  # in the simulator a kernel is Python: it can reach mlc.perf
    i = cuda.grid(1)
    if i == 0:
        mlc.perf.count_memory = lambda *args, **kwargs: None
    if i < a.size:
        out[i] = a[i]


def test_a_kernel_that_patches_count_memory_during_its_launch_gains_nothing(monkeypatch):
    monkeypatch.setattr(mlc.perf, "count_memory", mlc.perf.count_memory)  # put back after
    copy = _copy
    a, out = np.arange(4, dtype=np.float32), np.zeros(4, np.float32)
    mlc.perf.count_memory(copy, 1, 4, a, out)  # launched, the kernel patches mlc.perf
    assert mlc.perf.count_memory(copy, 1, 4, a, out) is None  # the patch took effect
    monkeypatch.setattr(gpu_launch, "python_in_kernel", lambda kernel: None)
    first = gpu_launch.launch(copy, 1, 4, a, out)  # the counter was bound at import
    second = gpu_launch.launch(copy, 1, 4, a, out)
    assert first["raised"] is None and first["counts"] == second["counts"], (first, second)
    assert first["counts"] is not None and out.tolist() == a.tolist()
    monkeypatch.undo()  # and the check refuses such a kernel before it runs
    refused = gpu_launch.launch(copy, 1, 4, a, out)
    assert "`_copy` uses `mlc` (a module)" in refused["python"], refused
