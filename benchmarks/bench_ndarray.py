"""NDArray kernels on each device, against numpy in the same run.

    mlc bench ndarray            # full sizes
    mlc bench ndarray --quick    # smaller sizes, for a quick look

For every enabled device: elementwise add and exp on 4M float32, sum over each axis of a
2048 x 2048 matrix, compact() of its transpose, and float32 matmul at 256/512/1024 (the
fast kernel and the teaching ``matmul_tiled``). Each row gives the median time, the rate
(GB/s of memory traffic, or GFLOP/s) and ``vs numpy`` = numpy's time / this time
(above 1 means faster than numpy). CUDA is skipped in Numba's simulator (it would measure
Python, not a GPU); on a real GPU the tiled matmul is also compared with torch.matmul
(cuBLAS) when torch is installed.
"""

from __future__ import annotations

import argparse

import numpy as np

import mlc.ndarray as nd
from mlc.perf import gflops, matmul_flops, print_table, timeit


def _sync(device):
    """CUDA launches are asynchronous: wait for the GPU before stopping the clock."""
    if device == nd.cuda():
        from numba import cuda

        return cuda.synchronize
    return lambda: None


def _cases(n_elem: int, n_red: int, mm_sizes):
    """(name, size label, make(device) -> fn, numpy fn, amount, unit) for each measurement."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n_elem).astype(np.float32)
    y = rng.standard_normal(n_elem).astype(np.float32)
    m = rng.standard_normal((n_red, n_red)).astype(np.float32)
    gb = 1e-9
    cases = [
        ("add", f"{n_elem:,}", lambda d: _binop(d, x, y), lambda: x + y,
         3 * 4 * n_elem * gb, "GB/s"),
        ("exp", f"{n_elem:,}", lambda d: _unop(d, x), lambda: np.exp(x),
         2 * 4 * n_elem * gb, "GB/s"),
        ("sum axis=0", f"{n_red}x{n_red}", lambda d: _sum(d, m, 0), lambda: m.sum(axis=0),
         4 * m.size * gb, "GB/s"),
        ("sum axis=1", f"{n_red}x{n_red}", lambda d: _sum(d, m, 1), lambda: m.sum(axis=1),
         4 * m.size * gb, "GB/s"),
        ("compact(transpose)", f"{n_red}x{n_red}", lambda d: _transpose(d, m),
         lambda: np.ascontiguousarray(m.T), 2 * 4 * m.size * gb, "GB/s"),
    ]
    for n in mm_sizes:
        A = rng.standard_normal((n, n)).astype(np.float32)
        B = rng.standard_normal((n, n)).astype(np.float32)
        flops = matmul_flops(n, n, n) * 1e-9
        cases.append(("matmul", f"{n}^3", lambda d, A=A, B=B: _mm(d, A, B, False),
                      lambda A=A, B=B: A @ B, flops, "GFLOP/s"))
        cases.append(("matmul_tiled", f"{n}^3", lambda d, A=A, B=B: _mm(d, A, B, True),
                      lambda A=A, B=B: A @ B, flops, "GFLOP/s"))
    return cases


def _binop(d, x, y):
    a, b = nd.array(x, device=d), nd.array(y, device=d)
    return lambda: a + b


def _unop(d, x):
    a = nd.array(x, device=d)
    return lambda: a.exp()


def _sum(d, m, axis):
    a = nd.array(m, device=d)
    return lambda: a.sum(axis=axis)


def _transpose(d, m):
    t = nd.array(m, device=d).permute((1, 0))
    return lambda: t.compact()


def _mm(d, A, B, tiled):
    a, b = nd.array(A, device=d), nd.array(B, device=d)
    return lambda: nd.matmul(a, b, tiled=tiled)


def _torch_rows(mm_sizes, repeat):
    """cuBLAS through torch, for the GPU's own yardstick (only when torch is importable)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    rows = []
    for n in mm_sizes:
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")

        def run(a=a, b=b):
            torch.matmul(a, b)
            torch.cuda.synchronize()

        t = timeit(run, repeat=repeat)
        rows.append(["cuda (torch)", "torch.matmul", f"{n}^3", t * 1e3,
                     gflops(matmul_flops(n, n, n), t), "GFLOP/s", "", ""])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench ndarray", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per case")
    args = parser.parse_args(argv)

    n_elem, n_red, mm_sizes = ((1 << 18, 512, (128, 256)) if args.quick
                               else (1 << 22, 2048, (256, 512, 1024)))
    cases = _cases(n_elem, n_red, mm_sizes)
    numpy_time = {}
    rows = []
    for device in nd.all_devices():
        if not device.enabled():
            print(f"{device!r}: not available here, skipped")
            continue
        if device == nd.cuda() and nd.cuda_simulated():
            print("cuda(): Numba's CUDA simulator, not a GPU: skipped (timings would "
                  "measure Python)")
            continue
        sync = _sync(device)
        for name, size, make, np_fn, amount, unit in cases:
            fn = make(device)

            def run(fn=fn, sync=sync):
                fn()
                sync()

            t = timeit(run, repeat=args.repeat)
            key = (name, size)
            if key not in numpy_time:
                numpy_time[key] = timeit(np_fn, repeat=args.repeat)
            rows.append([repr(device), name, size, t * 1e3, amount / t, unit,
                         numpy_time[key] * 1e3, numpy_time[key] / t])
    if nd.cuda().enabled() and not nd.cuda_simulated():
        rows += _torch_rows(mm_sizes, args.repeat)
    print_table(rows, ["device", "op", "size", "ms", "rate", "unit", "numpy ms", "vs numpy"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
