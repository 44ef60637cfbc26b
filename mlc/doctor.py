"""``mlc doctor``: can this machine run the course? Versions, threads, devices, one kernel each."""

from __future__ import annotations

import importlib.metadata
import platform
import traceback

import numpy as np

from .perf import stopwatch


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _line(ok: bool | None, what: str, detail: str = "") -> None:
    mark = {True: "ok  ", False: "FAIL", None: "--  "}[ok]
    print(f"  [{mark}] {what}" + (f": {detail}" if detail else ""))


def _try(fn):
    sw = stopwatch()
    try:
        fn()
        return True, f"{sw.stop() * 1e3:.0f} ms (includes compilation)"
    except Exception as err:  # noqa: BLE001 - report every failure, never stop the doctor
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return False, last


def _njit_kernel():
    import numba

    @numba.njit(cache=False)
    def saxpy(a, x, y, out):
        for i in range(x.size):
            out[i] = a * x[i] + y[i]

    x = np.arange(8, dtype=np.float32)
    out = np.empty_like(x)
    saxpy(np.float32(2.0), x, x, out)
    assert np.allclose(out, 3 * x), "wrong result"


def _cuda_kernel():
    # The simulator swaps the kernel's *global* `cuda` for its fake module while the
    # kernel runs, so the kernel must reach `cuda` as a module global, not a closure.
    global cuda
    from numba import cuda

    @cuda.jit
    def add_one(x):
        i = cuda.grid(1)
        if i < x.size:
            x[i] += 1.0

    x = np.zeros(32, dtype=np.float32)
    d = cuda.to_device(x)
    add_one[1, 32](d)
    assert np.allclose(d.copy_to_host(), 1.0), "wrong result"


def run_doctor() -> int:
    import mlc

    from ._env import cuda_simulated

    print("mlc doctor")
    print(f"  python {platform.python_version()} on {platform.system()} {platform.machine()}")
    for dist in ("mlc", "numpy", "numba", "llvmlite", "numba-cuda", "matplotlib", "nbval",
                 "mpi4py", "mpich"):
        version = _version(dist)
        if dist == "numba-cuda" and version == "not installed":
            # numba's own numba.cuda (and its simulator) runs the course without it
            version = "not installed (not needed: numba's built-in numba.cuda is used)"
        print(f"  {dist:<11} {version}")
    import numba

    print(f"  numba threads: {numba.get_num_threads()} "
          f"(NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})")
    simulated = cuda_simulated()
    print("  CUDA: " + ("Numba's CUDA simulator (no NVIDIA GPU found; kernels run on the CPU, "
                        "one thread per CUDA thread: correct but slow)" if simulated
                        else "a real NVIDIA GPU"))
    print("kernels")
    ok_njit, detail = _try(_njit_kernel)
    _line(ok_njit, "numba.njit kernel", detail)
    ok_cuda, detail = _try(_cuda_kernel)
    _line(ok_cuda, "numba.cuda kernel" + (" (simulator)" if simulated else ""), detail)
    print("devices")
    ok_devices = True
    try:
        import mlc.ndarray as nd

        devices = nd.all_devices()
    except Exception as err:  # noqa: BLE001
        _line(False, "mlc.ndarray", f"{type(err).__name__}: {err}")
        devices, ok_devices = [], False
    for dev in devices:
        if not dev.enabled():
            _line(None, f"{dev.name}", "not enabled on this machine")
            continue

        def tiny(dev=dev):
            a = nd.array(np.arange(6, dtype=np.float32).reshape(2, 3), device=dev)
            got = (a + a).sum(axis=1).numpy()
            assert np.allclose(got, [6, 24]), f"wrong result {got}"

        ok, detail = _try(tiny)
        _line(ok, f"{dev.name}: (a + a).sum(axis=1)", detail)
        if dev.name in ("cpu", "cpu_numpy"):
            ok_devices &= ok
    print("distribution")
    from .dist import launch

    ok_mpi, detail = launch.check(2)
    _line(ok_mpi if ok_mpi else None, "MPI (unit 13)", detail)  # optional: never "not ready"
    ready = ok_njit and ok_devices
    print("ready: the course can run here" if ready else
          "NOT READY: fix the failures above (see README, 'Install')")
    del mlc
    return 0 if ready else 1
