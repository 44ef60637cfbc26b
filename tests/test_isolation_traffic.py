"""Unit 04's traffic is counted where the notebook cannot script it (:mod:`mlc.grading.fresh`).

Each attacker is one notebook cell: an *untiled* ``matmul_tiled`` (every thread reads its
row of A and column of B from global memory: right values, no race, 2 n k m reads instead
of about 2 n k m / TILE) next to a patch that makes the count look tiled:

- ``count_memory``: the code of ``mlc.perf.count_memory`` itself is replaced (the function
  object that the check bound at import stays, its code does not) by one that divides the
  honest reads by 16;
- ``recorder``: the counting internals it uses, ``_Recorder.count``, drop every read of
  global memory;
- ``simulator``: Numba's simulator hands the kernel's threads plain arrays for its inputs
  (``BlockManager.run``), so their reads never reach a counting array.

Observed next to the cell (as the worker observed unit 04 before), each passes every case
of the check; observed afresh (what the worker does now), each reads global memory like
the naive kernel and fails. The honest tiled kernel keeps full marks. The same patch made
by the definitions themselves (a decorator, as they load) is put back before the count,
and a kernel that runs Python (which, in the simulator, could patch its own count) is
refused before it launches.
"""

from __future__ import annotations

import importlib
import math
import signal
import sys
import time

import numpy as np
import pytest
from numba import cuda
from numba.cuda.simulator import kernel as simulator

from check_util import grade_cell

from mlc.grading import fresh, protocol, registry
from mlc.grading.checks import gpu_launch
from mlc.grading.checks.gpu_operators import NB
from mlc.grading.registry import CheckFailed, get
from mlc.grading.wire import from_plain
from mlc.perf import memcount

UNTILED = '''
from numba import cuda

TILE = 4


@cuda.jit
def matmul_tiled(A, B, C):  # not tiled: each thread reads a row of A, a column of B
    j, i = cuda.grid(2)
    if i < C.shape[0] and j < C.shape[1]:
        acc = 0.0
        for k in range(A.shape[1]):
            acc += A[i, k] * B[k, j]
        C[i, j] = acc
'''

TILED = '''
import numpy as np
from numba import cuda

TILE = 4


@cuda.jit
def matmul_tiled(A, B, C):
    sA = cuda.shared.array((TILE, TILE), dtype=np.float32)
    sB = cuda.shared.array((TILE, TILE), dtype=np.float32)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    i, j = cuda.blockIdx.y * TILE + ty, cuda.blockIdx.x * TILE + tx
    acc = 0.0
    for t in range((A.shape[1] + TILE - 1) // TILE):
        k = t * TILE + tx
        sA[ty, tx] = A[i, k] if i < A.shape[0] and k < A.shape[1] else 0.0
        k = t * TILE + ty
        sB[ty, tx] = B[k, j] if k < B.shape[0] and j < B.shape[1] else 0.0
        cuda.syncthreads()
        for kk in range(TILE):
            acc += sA[ty, kk] * sB[kk, tx]
        cuda.syncthreads()
    if i < C.shape[0] and j < C.shape[1]:
        C[i, j] = acc
'''

ATTACKS = {
    "count_memory": '''
import types

import mlc.perf
from mlc.perf import memcount

real = mlc.perf.count_memory
memcount._honest = types.FunctionType(real.__code__, vars(memcount), "honest")
memcount._honest.__kwdefaults__ = real.__kwdefaults__


def _forged(kernel, griddim, blockdim, *args, trace=False):
    counts = _honest(kernel, griddim, blockdim, *args, trace=trace)
    for a in counts.arrays.values():
        a.reads //= 16
    return counts


real.__code__ = _forged.__code__  # the very function the grader bound at import
''',
    "recorder": '''
from mlc.perf import memcount

_count = memcount._Recorder.count


def _count_no_global_reads(self, slot, kind, n, offset=0):
    _count(self, slot, kind, 0 if kind == "r" and slot.space == "global" else n, offset)


memcount._Recorder.count = _count_no_global_reads
''',
    "simulator": '''
from numba.cuda.simulator import kernel as simulator

_run = simulator.BlockManager.run


def _plain_inputs(self, grid_point, *args):  # the output stays counted, the inputs do not
    *ins, out = args
    ins = [a._ary if type(a).__name__ == "CountingArray" else a for a in ins]
    return _run(self, grid_point, *ins, out)


simulator.BlockManager.run = _plain_inputs
''',
}

# The same patch (global reads go uncounted) run by the definitions themselves, where a
# cell's patches never reach: by a decorator, as the cell is loaded, or by the kernel.
QUIET = '''
def _quiet(kernel=None):
    from mlc.perf import memcount

    count = memcount._Recorder.count

    def quiet(self, slot, kind, n, offset=0):
        count(self, slot, kind, 0 if kind == "r" and slot.space == "global" else n, offset)

    memcount._Recorder.count = quiet
    return kernel
'''
BY_DECORATOR = QUIET + UNTILED.replace("@cuda.jit\n", "@_quiet\n@cuda.jit\n")
BY_KERNEL = QUIET + UNTILED.replace("    j, i = cuda.grid(2)\n",
                                    "    _quiet()\n    j, i = cuda.grid(2)\n")

TRAFFIC = "reads global memory like a tiled kernel"
EX = get("gpu_operators.matmul_tiled")


@pytest.fixture
def notebook(tmp_path, monkeypatch):
    """``load(source)``: the cell as a module (its source readable, as IPython keeps a
    cell's), run in this process; whatever the attacks patch is put back after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for owner, name in ((memcount.count_memory, "__code__"), (memcount._Recorder, "count"),
                        (simulator.BlockManager, "run")):
        monkeypatch.setattr(owner, name, getattr(owner, name))
    names = []

    def load(source):
        names.append(f"cell_{len(names)}_{time.monotonic_ns()}")
        (tmp_path / f"{names[-1]}.py").write_text(source)
        return vars(importlib.import_module(names[-1]))

    yield load
    vars(memcount).pop("_honest", None)
    for name in names:
        sys.modules.pop(name, None)


def _judge_all(observe) -> str:
    """"passed", or the first verdict that failed, over every case of the check."""
    t = registry.Tester()
    try:
        for case in EX.check.cases():
            EX.check.judge(case, observe(case), t)
    except CheckFailed as err:
        return str(err)
    return "passed"


def _next_to_the_cell(ns):
    return lambda case: EX.check.observe(ns, case)


def _afresh(ns):
    def observe(case):
        reply = protocol.observe_case(EX, ns, case)
        assert "ok" in reply, reply
        return from_plain(reply["ok"])

    return observe


def test_the_untiled_kernel_fails_on_its_traffic_alone(notebook):
    verdict = _judge_all(_next_to_the_cell(notebook(UNTILED)))
    assert TRAFFIC in verdict and "read global memory 1024 times" in verdict, verdict


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_patched_count_gains_nothing(notebook, attack):
    ns = notebook(ATTACKS[attack] + UNTILED)
    assert _judge_all(_next_to_the_cell(ns)) == "passed"  # counted next to it: forged
    verdict = _judge_all(_afresh(ns))  # counted afresh: the naive kernel's reads
    assert TRAFFIC in verdict and "read global memory 1024 times" in verdict, verdict


def test_definitions_that_patch_the_count_gain_nothing(notebook):
    """Loading the definitions (a decorator) patches the counting: it is put back before
    the count. The kernel itself patching it (in the simulator a kernel is Python) is
    refused: a kernel may call only what a GPU runs."""
    ns = notebook(BY_DECORATOR)
    assert _judge_all(_next_to_the_cell(ns)) == "passed"
    verdict = _judge_all(_afresh(ns))
    assert TRAFFIC in verdict and "read global memory 1024 times" in verdict, verdict
    ns = notebook(BY_KERNEL)
    A = B = np.ones((8, 8), np.float32)
    counts = memcount.count_memory(ns["matmul_tiled"], (2, 2), (4, 4), A, B, np.empty_like(A))
    assert counts.global_reads == 0  # counted as it runs, the kernel forges its own count
    verdict = _judge_all(_afresh(ns))
    assert "runs only what a GPU runs: failed" in verdict and "`_quiet`" in verdict, verdict


def test_the_tiled_kernel_keeps_full_marks_afresh(notebook):
    assert _judge_all(_afresh(notebook(TILED))) == "passed"


def test_the_grader_gives_the_attacker_its_honest_score(tmp_path):
    """The whole path: the attacks and the tiled kernel as notebooks, graded by the worker."""
    for source, points in [(ATTACKS["count_memory"] + ATTACKS["recorder"]
                            + ATTACKS["simulator"] + UNTILED, 0), (TILED, 4)]:
        result = grade_cell(tmp_path, NB, source, timeout=60)["gpu_operators.matmul_tiled"]
        assert result.score == points, result.message
        assert points or TRAFFIC in result.message, result.message


def _group_ends(pgid: int, within: float = 10.0) -> bool:
    """Whether every process of group ``pgid`` is gone (reaped) within ``within`` s."""
    import os

    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_server_is_replaced_and_a_hung_case_is_stopped(notebook):
    """At its own deadline, and at the exercise's time limit in the worker."""
    ns = notebook(UNTILED)
    case = EX.check.cases()[2]  # the smallest shape
    fresh._server().proc.kill()  # what a cell of the worker may do
    assert "ok" in protocol.observe_case(EX, ns, case)
    hang = notebook("from numba import cuda\nTILE = 4\n\n\n@cuda.jit\n"
                    "def matmul_tiled(A, B, C):\n    while True:\n        pass\n")
    start = time.monotonic()
    with pytest.raises(CheckFailed, match="no result within 2 s"):
        fresh.measure(EX, hang, case, timeout=2.0)
    assert time.monotonic() - start < 20
    assert "ok" in protocol.observe_case(EX, ns, case)  # the same server goes on

    class TimeLimit(BaseException):  # what the worker raises at an exercise's time limit
        pass

    def ring(signum, frame):
        raise TimeLimit

    group = fresh._server().proc.pid  # the server leads a process group of its own
    assert __import__("os").getpgid(group) == group
    old = signal.signal(signal.SIGALRM, ring)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(TimeLimit):
            fresh.measure(EX, hang, case, timeout=60.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert _group_ends(group), "the hung case's child outlived its server"
    start = time.monotonic()  # the hung job was stopped with its server: no 60 s wait
    assert "ok" in protocol.observe_case(EX, ns, case)
    assert time.monotonic() - start < 20



@cuda.jit(device=True)
def _twice(v):
    return 2.0 * v


@cuda.jit
def _scaled(x, out):  # a device function, math, numpy's dtype, a raise: all a GPU runs
    i = cuda.grid(1)
    if i >= out.size:
        raise NotImplementedError("never")
    out[i] = _twice(math.sqrt(x[i])) + np.float32(0)


def _python(v):
    return v


@cuda.jit
def _calls_python(x, out):
    out[0] = _python(x[0])


@cuda.jit
def _reaches_a_private_name(x, out):
    out[0] = x._ary[0]


def test_a_kernel_runs_only_what_a_gpu_runs():
    assert gpu_launch.python_in_kernel(_scaled) is None
    assert "`_calls_python` uses `_python` (a function)" in \
        gpu_launch.python_in_kernel(_calls_python)
    assert "loads `_ary`" in gpu_launch.python_in_kernel(_reaches_a_private_name)
