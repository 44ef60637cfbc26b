"""When does a sparse kernel pay? Time against sparsity, and the break-even point.

For an ``n x n`` weight ``A`` with a fraction ``s`` of zeros (random positions) and a
batch of ``N`` activations ``X (n x N)``, :func:`time_vs_sparsity` times

- the dense kernel of ``mlc.ndarray`` on ``cpu()`` (``nd.matmul``, which multiplies the
  zeros too, so its time does not depend on ``s``) and numpy's ``A @ X`` (BLAS);
- :func:`~mlc.compress.sparse.csr_matmul` at every sparsity of the sweep;
- :func:`~mlc.compress.sparse.sparse24_matmul` at its one sparsity, 50%;

all with the one timer, ``mlc.perf.timeit``, in interleaved rounds (every kernel
once per round) so that the drifting load of a shared machine favours none of them.
:func:`break_even_sparsity` reads off the lowest sparsity from which CSR is at least as
fast as a dense reference, interpolating the time ratio linearly between sweep points.
Expect it to be high against a good dense kernel: dense does ``n * n * N`` multiply-adds
in perfect order, every vector lane busy; CSR does ``(1 - s) * n * n * N`` with an index
load and a gather each, and reads 8 bytes per nonzero against dense's 4 per weight.
Compare single-threaded first (``threads=1``): on a busy shared machine a thread pool's
wake-ups cost milliseconds and the comparison would measure the machine, not the kernels.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import ndarray as nd
from ..perf import Timing, format_table, limit_threads, timeit
from .masks import nm_mask
from .sparse import csr_matmul, sparse24_matmul, to_2_4, to_csr

__all__ = ["time_vs_sparsity", "break_even_sparsity", "break_even_table",
           "plot_time_vs_sparsity", "limit_threads", "SPARSITIES"]

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def _random_sparse(n: int, s: float, rng) -> np.ndarray:
    a = rng.standard_normal((n, n)).astype(np.float32)
    a[rng.random((n, n)) < s] = 0.0
    return a


def time_vs_sparsity(n: int = 1024, batches=(1, 64), sparsities=SPARSITIES, repeat: int = 5,
                     min_time: float = 0.2, seed: int = 0,
                     threads: int | None = None) -> list[dict]:
    """Rows ``{n, threads, kernel, batch, sparsity, seconds}``: kernel in
    ``"dense (mlc cpu)"``, ``"numpy"``, ``"csr"``, ``"2:4"``; the dense rows have
    ``sparsity=None`` (their time does not depend on it). ``threads`` limits Numba's
    and numpy's threads (see :func:`limit_threads`). Every result is checked against
    numpy before it is timed."""
    with limit_threads(threads):
        rows = _sweep(n, batches, sparsities, repeat, min_time, seed)
    label = numba.get_num_threads() if threads is None else threads
    for r in rows:
        r["threads"] = label
    return rows


def _interleaved(cases, repeat, min_time):
    """Time every ``(row, fn)`` of ``cases`` in ``repeat`` rounds, each round visiting every
    case once (one ``perf.timeit`` round each), so a drift in the machine's load hits all
    kernels alike instead of the ones measured last. The calls per round come from a
    first autoranged ``timeit`` of each case; ``row["seconds"]`` gets a ``perf.Timing``
    of all its rounds."""
    numbers = [timeit(fn, repeat=1, min_time=min_time).number for _, fn in cases]
    times = [[] for _ in cases]
    for _ in range(repeat):
        for i, (_, fn) in enumerate(cases):
            times[i].append(float(timeit(fn, repeat=1, number=numbers[i], warmup=0)))
    for (row, _), ts, number in zip(cases, times, numbers, strict=True):
        row["seconds"] = Timing(ts, number)
    return [row for row, _ in cases]


def _sweep(n, batches, sparsities, repeat, min_time, seed):
    rng = np.random.default_rng(seed)
    cpu = nd.cpu()
    base = rng.standard_normal((n, n)).astype(np.float32)
    cases = []
    for batch in batches:
        x = rng.standard_normal((n, batch)).astype(np.float32)
        a_nd, x_nd = nd.array(base, device=cpu), nd.array(x, device=cpu)
        np.testing.assert_allclose(nd.matmul(a_nd, x_nd).numpy(), base @ x, rtol=1e-3,
                                   atol=1e-2)
        row = dict(n=n, batch=batch)
        cases.append((dict(row, kernel="dense (mlc cpu)", sparsity=None),
                      lambda a=a_nd, x=x_nd: nd.matmul(a, x)))
        cases.append((dict(row, kernel="numpy", sparsity=None), lambda x=x: base @ x))
        out = np.empty((n, batch), np.float32)
        for s in sparsities:
            a = _random_sparse(n, s, rng)
            csr = to_csr(a)
            np.testing.assert_allclose(csr_matmul(csr, x), a @ x, rtol=1e-3, atol=1e-2)
            cases.append((dict(row, kernel="csr", sparsity=s),
                          lambda c=csr, x=x, o=out: csr_matmul(c, x, out=o)))
        a24 = base * nm_mask(base.T).T  # two of every four along each row
        s24 = to_2_4(a24)
        np.testing.assert_allclose(sparse24_matmul(s24, x), a24 @ x, rtol=1e-3, atol=1e-2)
        cases.append((dict(row, kernel="2:4", sparsity=0.5),
                      lambda c=s24, x=x, o=out: sparse24_matmul(c, x, out=o)))
    return _interleaved(cases, repeat, min_time)


def _seconds(rows, kernel, batch, threads=None):
    return [r for r in rows if r["kernel"] == kernel and r["batch"] == batch
            and (threads is None or r.get("threads") == threads)]


def _t(r, stat):
    t = r["seconds"]
    return float(getattr(t, "min", t)) if stat == "min" else float(t)


def break_even_sparsity(rows: list[dict], batch: int, reference: str = "dense (mlc cpu)",
                        kernel: str = "csr", threads: int | None = None,
                        stat: str = "min") -> float | None:
    """Lowest sparsity at which ``kernel`` is as fast as ``reference`` at ``batch``.

    Interpolates ``t_kernel / t_reference`` linearly between neighbouring sweep points;
    0.0 when the kernel wins even dense, None when it loses at every measured sparsity.
    ``stat="min"`` compares best rounds (``Timing.min``: on a shared machine other
    programs only ever slow a round down), ``"median"`` the typical ones.
    """
    ref = _seconds(rows, reference, batch, threads)
    pts = sorted((r["sparsity"], _t(r, stat)) for r in _seconds(rows, kernel, batch, threads))
    if not ref or not pts:
        raise ValueError(f"break_even_sparsity: no rows for {reference!r} / {kernel!r} at "
                         f"batch {batch}")
    t_ref = _t(ref[0], stat)
    ratios = [(s, float(t) / t_ref) for s, t in pts]
    if ratios[0][1] <= 1.0:
        return float(ratios[0][0])
    for (s0, r0), (s1, r1) in zip(ratios[:-1], ratios[1:], strict=True):
        if r1 <= 1.0 < r0:
            return float(s0 + (r0 - 1.0) / (r0 - r1) * (s1 - s0))
    return None


def break_even_table(rows: list[dict]) -> str:
    """The measured times as a table (median and best round in ms, and the speed-up of
    the best round over each dense reference's), then the break-even sparsity of CSR
    against each reference (best rounds), per thread count and batch."""
    groups = sorted({(r.get("threads"), r["batch"]) for r in rows}, key=str)
    table, be = [], []
    for threads, batch in groups:
        t_mlc = _t(_seconds(rows, "dense (mlc cpu)", batch, threads)[0], "min")
        t_np = _t(_seconds(rows, "numpy", batch, threads)[0], "min")
        for r in (x for x in rows if x["batch"] == batch and x.get("threads") == threads):
            s = "-" if r["sparsity"] is None else f"{r['sparsity']:.2f}"
            t = _t(r, "min")
            table.append([threads, r["kernel"], batch, s, float(r["seconds"]) * 1e3, t * 1e3,
                          t_mlc / t, t_np / t])
        for ref in ("dense (mlc cpu)", "numpy"):
            s = break_even_sparsity(rows, batch, ref, threads=threads)
            be.append([threads, "csr", batch, ref,
                       "never (<= 0.99)" if s is None else f"{s:.3f}"])
    return "\n\n".join([
        format_table(table, ["threads", "kernel", "batch", "sparsity", "ms median", "ms best",
                             "vs mlc dense", "vs numpy"]),
        format_table(be, ["threads", "kernel", "batch", "against", "break-even sparsity"])])


def plot_time_vs_sparsity(rows: list[dict], ax=None, threads: int | None = None):
    """Time against sparsity per batch: CSR as a curve, 2:4 as a point, the dense
    references as horizontal lines, for one thread count (default: the first measured).
    Returns the matplotlib axes (one per batch)."""
    import matplotlib.pyplot as plt

    threads = rows[0].get("threads") if threads is None else threads
    rows = [r for r in rows if r.get("threads") == threads]
    batches = sorted({r["batch"] for r in rows})
    if ax is None:
        _, ax = plt.subplots(1, len(batches), figsize=(5 * len(batches), 3.5), squeeze=False)
        ax = ax[0]
    for a, batch in zip(ax, batches, strict=True):
        csr = sorted((r["sparsity"], r["seconds"] * 1e3) for r in _seconds(rows, "csr", batch))
        a.plot([p[0] for p in csr], [p[1] for p in csr], "o-", label="csr")
        for r in _seconds(rows, "2:4", batch):
            a.plot([r["sparsity"]], [r["seconds"] * 1e3], "s", label="2:4")
        for ref, style in (("dense (mlc cpu)", "--"), ("numpy", ":")):
            for r in _seconds(rows, ref, batch):
                a.axhline(r["seconds"] * 1e3, linestyle=style, color="gray", label=ref)
        a.set_yscale("log")
        a.set_xlabel("sparsity")
        a.set_ylabel("ms per product")
        n = _seconds(rows, "csr", batch)[0]["n"]
        a.set_title(f"{n} x {n} weight, batch {batch}, {threads} thread(s)")
        a.legend(fontsize=8)
    return ax
