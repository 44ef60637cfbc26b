"""Memory planning and reuse: planners against the lower bound, the arena, checkpointing.

    mlc bench memory            # full sizes
    mlc bench memory --quick    # smaller models, for a quick look

Four tables:

1. **planners** for the course's digits MLP, digits CNN and a 16-layer MLP, each as the
   unfused graph (one step per op, after constant folding) and as the fused graph that
   ``graph.build`` runs: the lower bound (widest step), the arena of naive,
   shared_objects, greedy_by_size, greedy_by_breadth and optimal (``-`` where the exact
   search is too big), greedy / bound and naive / greedy. Targets: greedy within 1.05x
   of the bound, at least 3x below naive on the 16-layer MLP.
2. **arena executor**: the measured peak of live NDArray bytes of making the arena
   executable and calling it twice, against the plan's arena + weights + inputs
   (target: equal), and what in-place reuse saves on the unfused graph.
3. **checkpointing** a 16-layer MLP training step: segments, measured peak, peak ratio to
   the plain step, time per step and extra time (``mlc.perf.timeit``); target: 4 segments
   cut the peak by at least 1.8x.
4. **chunked attention** and cross-entropy: measured peak against the sequence length.
5. **one build, any batch**: the digits CNN traced at batch 3 and built once, run at
   several batches: the arena of a plan sized per batch against one sized for the largest
   (``max_batch``), the first call at a new batch (it lowers and compiles the kernels for
   it) against a steady call (``mlc.perf.timeit``), the largest difference from eager.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from mlc import graph, memory
from mlc.perf import print_table
from mlc.models import digits_cnn, digits_mlp

STRATEGIES = ("naive", "shared_objects", "greedy_by_size", "greedy_by_breadth", "optimal")


def _models(quick: bool):
    b = 8 if quick else 32
    width = 64 if quick else 256
    np.random.seed(0)
    return [("digits MLP", *digits_mlp(batch=b)),
            ("digits CNN", *digits_cnn(batch=b // 2)),
            ("16-layer MLP", memory.deep_mlp(16, width=width),
             np.random.rand(b, 64).astype("float32"))]


def planner_rows(models):
    rows = []
    for name, model, x in models:
        g = graph.eliminate_dead_code(graph.fold_constants(graph.trace(model, x)))
        for view_name, view in (("graph", g), ("fused", graph.fuse(g))):
            res = {r["strategy"]: r["arena_bytes"] for r in memory.compare(view, STRATEGIES)}
            lb = memory.lower_bound(view)
            greedy = min(res["greedy_by_size"], res["greedy_by_breadth"])
            rows.append([name, view_name, len(memory.liveness(view)), lb,
                         *[res[s] if res[s] is not None else "-" for s in STRATEGIES],
                         f"{greedy / lb:.3f}", f"{res['naive'] / greedy:.2f}"])
    return rows


def arena_rows(models, target):
    rows = []
    for name, model, x in models:
        g = graph.trace(model, x)
        for fuse in (True, False):
            base = graph.build(g, target=target, fuse=fuse)
            plan = memory.plan(base.program, "greedy_by_size")
            with memory.track() as t:
                exe = graph.Executable(memory.assign(base.program, plan))
                exe(x)
                exe(x)
            fp = exe.footprint
            err = float(np.abs(exe(x) - graph.interpret(g, x)).max())
            saved = memory.inplace_savings(base.program)["saved"]
            rows.append([name, "fused" if fuse else "unfused", plan.arena_bytes,
                         fp["weights"], fp["inputs"], fp["total"], t.peak,
                         t.peak - fp["total"], saved, f"{err:.1e}"])
    return rows


def checkpoint_rows(quick: bool):
    width, batch = (128, 128) if quick else (256, 256)
    model = memory.deep_mlp(16, width=width)
    x = np.random.rand(batch, 64).astype("float32")
    y = np.random.randint(0, 10, batch)
    rows = []
    for r in memory.frontier(model, x, y, repeat=3 if not quick else 1):
        rows.append([r["segments"] or "none", r["peak_bytes"], f"{r['memory_ratio']:.2f}",
                     r["seconds"] * 1e3, f"{100 * r['extra_time']:.0f}%",
                     "sqrt(n)" if r["is_sqrt"] else ""])
    return rows, f"16 x Linear({width}) + ReLU, batch {batch}"


def chunk_rows(quick: bool):
    lens = (128, 256, 512) if quick else (128, 256, 512, 1024)
    rows = [["attention", r["seq"], r["full"], r["chunked"], r["out_bytes"]]
            for r in memory.attention_memory(seq_lens=lens, chunk=64, dim=32)]
    rows += [["cross-entropy", r["rows"], r["full"], r["chunked"], 0]
             for r in memory.cross_entropy_memory(rows_list=tuple(4 * n for n in lens),
                                                  chunk=128, vocab=512)]
    return rows


def batch_rows(target: str, batches=(1, 8, 64)):
    import mlc
    from mlc.perf import stopwatch, timeit

    model, x = digits_cnn(batch=3)
    g = graph.trace(model, x)
    per = graph.build(g, target=target, memory_plan="greedy_by_size")
    top = graph.build(g, target=target, memory_plan="greedy_by_size", max_batch=max(batches))
    rows = []
    for b in batches:
        xb = np.random.default_rng(b).standard_normal((b, *x.shape[1:])).astype("float32")
        with stopwatch() as first:         # the first call at this batch compiles it
            y = per(xb)
        steady = timeit(lambda xb=xb: per(xb), repeat=3, min_time=0.02)
        err = float(np.abs(y - model(mlc.Tensor(xb, requires_grad=False)).numpy()).max())
        err = max(err, float(np.abs(top(xb) - y).max()))
        rows.append([b, per.at_batch(b).plan.arena_bytes, top.at_batch(b).plan.arena_bytes,
                     f"{first.seconds * 1e3:.0f}", f"{steady * 1e3:.2f}", f"{err:.1e}"])
    return rows


def _tables(args, bar) -> None:
    """Print the five tables, ticking ``bar`` after each."""
    models = _models(args.quick)
    print("1. planners: arena bytes (64-byte aligned) against the lower bound")
    print_table(planner_rows(models), ["model", "view", "tensors", "bound", *STRATEGIES,
                                       "greedy/bound", "naive/greedy"])
    bar.update()
    print("\n2. arena executor: measured peak (build + 2 calls) vs plan + weights + inputs")
    print_table(arena_rows(models, args.target or ("python" if args.quick else "cpu")),
                ["model", "kernels", "arena", "weights", "inputs", "plan total",
                 "measured peak", "difference", "in-place saves", "max error"])
    bar.update()
    rows, what = checkpoint_rows(args.quick)
    print(f"\n3. checkpointing a training step: {what}")
    print_table(rows, ["segments", "peak bytes", "plain/this", "ms/step", "extra time", ""])
    bar.update()
    print("\n4. chunked computation (chunk 64 keys / 128 rows): measured peak bytes")
    print_table(chunk_rows(args.quick), ["what", "length", "full", "chunked", "output bytes"])
    bar.update()
    target = args.target or ("python" if args.quick else "cpu")
    print(f"\n5. one build, any batch: digits CNN traced at batch 3, target {target}")
    print_table(batch_rows(target), ["batch", "arena per batch", "arena for max", "first call ms",
                                     "call ms", "max error"])
    bar.update()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench memory", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller models")
    parser.add_argument("--target", default=None,
                        help="executor target for table 2 (default: python with --quick, "
                             "else cpu)")
    args = parser.parse_args(argv)
    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile

    # one tick per table on stderr; stdout goes through tqdm so the tables print above the bar
    with contextlib.redirect_stdout(DummyTqdmFile(sys.stdout)), \
            tqdm(total=5, desc="mlc bench memory", unit="table", file=sys.stderr) as bar:
        _tables(args, bar)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
