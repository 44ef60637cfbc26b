"""Scheduled tensor programs against numpy: naive vs hand-scheduled vs auto-tuned matmul.

For each size, a float32 matmul ``C = A @ B`` written once with ``mlc.te`` is compiled for
the "cpu" target (Numba) three ways:

* **naive** — te's default loop nest ``i, j, k`` (k innermost, a column of B per
  element of C);
* **hand** — ``mlc.schedule.examples.matmul_hand_schedule``: tiles, a local accumulator
  tile, vectorized columns, parallel row tiles;
* **tuned** — ``mlc.tune.tune`` with the evolutionary search over the multi-level tiling
  template (``--trials`` measured candidates, 64 by default).

Times are medians of a few runs; speed is reported in GFLOP/s and as a ratio to numpy's
``A @ B`` (a tuned BLAS, multithreaded) measured in the same run, plus the tuning time.

    mlc bench tir [--sizes 512 1024] [--trials 64] [--quick] [--log FILE]
    mlc bench tir --table FILE [--sizes 512]

``--table FILE`` instead measures *every* candidate of ``mlc.tune.parallel_tiles`` (180
parallel two-level tilings) on an n^3 matmul (n = 512 unless ``--sizes`` names one size)
once, and writes them as a table that searches can be replayed over (unit 07 loads the
one shipped as ``mlc/tune/matmul512_parallel_tiles.jsonl``; pass it
``load_table(FILE)`` to use yours). About five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from mlc import perf, te, tir
from mlc.schedule.examples import matmul_hand_schedule


def matmul_func(n: int):
    A = te.placeholder((n, n), "float32", name="A")
    B = te.placeholder((n, n), "float32", name="B")
    r = te.reduce_axis((0, n), name="k")
    C = te.compute((n, n), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")
    return te.create_prim_func([A, B, C])


def time_module(mod, a, b, want, repeat: int) -> float:
    c = np.full(want.shape, np.nan, dtype=np.float32)
    mod(a, b, c)  # compiles
    err = float(np.max(np.abs(c - want)))
    if not err <= 1e-3 * float(np.max(np.abs(want))) + 1e-3:
        raise AssertionError(f"{mod} computes a wrong matmul: max |error| {err:.3g}")
    return mod.time_evaluator(repeat=repeat)(a, b, c)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mlc bench tir", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="matrix sizes n (n x n x n); default 512 1024 (256 512 with --quick)")
    p.add_argument("--trials", type=int, default=None,
                   help="tuning trials per size (default 64, 12 with --quick)")
    p.add_argument("--quick", action="store_true", help="small sizes and few trials")
    p.add_argument("--repeat", type=int, default=3, help="timing rounds per program")
    p.add_argument("--log", default=None, help="tuning log file (JSON lines) to resume from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", default=None, metavar="FILE",
                   help="measure every candidate of tune.parallel_tiles once into FILE")
    args = p.parse_args(argv)
    if args.table is not None:
        return measure_table_main(args, p)
    sizes = args.sizes or ([256, 512] if args.quick else [512, 1024])
    trials = args.trials or (12 if args.quick else 64)
    if trials < 1 or any(n < 1 for n in sizes):
        p.error("sizes and trials must be positive")

    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile

    from mlc.tune import tune

    rows = []
    # one tick per size on stderr, the tuner's bar of trials below it; stdout goes through
    # tqdm so that what is printed lands above the bars
    with contextlib.redirect_stdout(DummyTqdmFile(sys.stdout)):
        for n in tqdm(sizes, desc="mlc bench tir", unit="size", file=sys.stderr):
            rng = np.random.default_rng(args.seed)
            a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
            b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
            want = a @ b
            flops = perf.matmul_flops(n, n, n)
            t_np = perf.timeit(lambda: a @ b, repeat=args.repeat)  # noqa: B023
            rows.append((n, "numpy", t_np * 1e3, perf.gflops(flops, t_np), 1.0, ""))
            func = matmul_func(n)
            t = time_module(tir.build(func, "cpu"), a, b, want, max(1, args.repeat // 2))
            rows.append((n, "naive", t * 1e3, perf.gflops(flops, t), t_np / t, ""))
            sch = matmul_hand_schedule(tir.Schedule(func))
            t = time_module(tir.build(sch, "cpu"), a, b, want, args.repeat)
            rows.append((n, "hand", t * 1e3, perf.gflops(flops, t), t_np / t, ""))
            with perf.stopwatch() as tuning:
                res = tune(func, target="cpu", trials=trials, strategy="evolutionary",
                           seed=args.seed, log_file=args.log, progress=True)
            t = time_module(res.build(), a, b, want, args.repeat)
            failed = res.n_failures - res.n_rejected
            rows.append((n, f"tuned ({trials} trials)", t * 1e3, perf.gflops(flops, t), t_np / t,
                         f"{tuning.seconds:.0f} s, {failed} failed, {res.n_rejected} rejected"))
            print(f"n={n}: best tuned decisions {res.decisions}")
    perf.print_table(rows, ["n", "program", "ms", "GFLOP/s", "x numpy", "tuning"])
    return 0


def measure_table_main(args, p) -> int:
    from mlc.tune import load_table, measure_table, parallel_tiles

    sizes = args.sizes or [512]
    if len(sizes) != 1 or sizes[0] % 512:
        p.error("--table measures one size, a multiple of 512 (the template's tile menus)")
    func = matmul_func(sizes[0])
    with perf.stopwatch() as sw:
        measure_table(func, parallel_tiles, args.table, repeat=args.repeat)
    table = load_table(args.table)
    t, d = table.best()
    print(f"{len(table)} candidates measured in {sw.seconds:.0f} s into {args.table}; "
          f"best {t * 1e3:.2f} ms {d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
