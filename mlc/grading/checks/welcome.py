"""Unit 00, welcome: a first Numba kernel and the arithmetic of the roofline."""

import numpy as np

from ..registry import exercise


@exercise("welcome.saxpy", points=2, notebook="00_welcome",
          hint="Decorate with @numba.njit, allocate out = np.empty_like(x), then loop "
               "`for i in range(x.shape[0]): out[i] = a * x[i] + y[i]` and return out.")
def _saxpy(ns, t):
    saxpy = t.need(ns, "saxpy")
    t.true(hasattr(saxpy, "py_func") and hasattr(saxpy, "signatures"),
           "saxpy is compiled by Numba", "decorate it with @numba.njit")
    rng = np.random.default_rng(7)
    for n in (1, 7, 1000):
        x = rng.standard_normal(n).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float32)
        x0, y0 = x.copy(), y.copy()
        out = saxpy(np.float32(1.5), x, y)
        t.close(out, 1.5 * x0 + y0, f"saxpy(1.5, x, y) with {n} elements", rtol=1e-5)
        t.true(np.array_equal(x, x0) and np.array_equal(y, y0),
               f"x and y are left unchanged ({n} elements)", "write into a new array")
    empty = saxpy(np.float32(2.0), np.zeros(0, np.float32), np.zeros(0, np.float32))
    t.equal(np.shape(empty), (0,), "saxpy of empty vectors is empty")


@exercise("welcome.matmul_intensity", points=1, notebook="00_welcome",
          hint="FLOPs = 2*n*k*m (a multiply and an add per product); bytes = "
               "(n*k + k*m + n*m) * bytes_per_element: read A and B once, write C once.")
def _intensity(ns, t):
    f = t.need(ns, "matmul_intensity")
    for n, k, m, b in [(1024, 1024, 1024, 4), (64, 4096, 1, 4), (128, 256, 512, 2), (1, 1, 1, 8)]:
        expected = 2 * n * k * m / ((n * k + k * m + n * m) * b)
        t.close(f(n, k, m, b), expected, f"matmul_intensity({n}, {k}, {m}, {b})", rtol=1e-9)
    t.close(f(32, 32, 32), 2 * 32**3 / (3 * 32 * 32 * 4), "the default is 4 bytes (float32)",
            rtol=1e-9)


@exercise("welcome.roofline_time", points=2, notebook="00_welcome",
          hint="An op needs at least flops/peak_flops seconds to compute and bytes/bandwidth "
               "seconds to move its data; it can overlap the two, so it takes the larger.")
def _roofline(ns, t):
    f = t.need(ns, "roofline_time")
    bound = t.need(ns, "bound_by")
    cases = [(2e9, 1e6, 1e11, 2e10), (1e6, 4e9, 1e11, 2e10), (5e10, 1e9, 1e11, 2e10),
             (1.0, 1.0, 1.0, 1.0)]
    for flops, nbytes, peak, bw in cases:
        expected = max(flops / peak, nbytes / bw)
        t.close(f(flops, nbytes, peak, bw), expected,
                f"roofline_time({flops:g}, {nbytes:g}, {peak:g}, {bw:g})", rtol=1e-9)
    t.equal(bound(2e9, 1e6, 1e11, 2e10), "compute", "a matmul-like op is compute bound")
    t.equal(bound(1e6, 4e9, 1e11, 2e10), "memory", "an elementwise-like op is memory bound")
