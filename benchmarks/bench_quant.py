"""Quantization: int8 kernels and int8 models against float32, in the same run.

    mlc bench quant            # full sizes
    mlc bench quant --quick    # smaller sizes, fewer rounds

1. int8 x int8 -> int32 matmul (``quant.qmatmul``, zero points folded) and the fused
   int8 linear (``quant.qlinear``: + bias, requantize, ReLU, int8 store) at n = 512 and
   1024, against the ``nd.cpu()`` float32 matmul and numpy's float32 matmul (BLAS):
   GOP/s (an int8 multiply-add counts 2 ops, as a float FMA counts 2 flops) and ratios;
   the requantization epilogue is timed on its own (every printed time is a measurement,
   never a difference of two).
2. Four digits models, each traced and quantized as a graph (``quant.quantize_graph``):
   the MLP and CNN of unit 09, a residual MLP and an attention block
   (``quant.examples``). The fp32 graph and the int8 graph are each built
   (``graph.build``, fused, compiled for the cpu) with a greedy memory plan, and timed at
   batch 1 and 256: time, accuracy, arena bytes. Where int8 is slower (and at batch 1
   always), ``exe.profile`` says where its time goes, kernel by kernel.
3. Weight bytes of the int8 models.
4. Weight-only group-wise matmul (``quant.wmatmul``: float32 activations, 4- or 8-bit
   weights with a scale per 32 input channels, dequantized in the kernel's inner loop) at
   1 x 1024 x 1024, the memory-bound case of a language model generating one token,
   against the int8 W8A8 ``qlinear`` and the float32 kernels on the same input: time,
   weight bytes read and the bandwidth it implies.
"""

from __future__ import annotations

import argparse

import numpy as np

import mlc
import mlc.ndarray as nd
from mlc import nn, quant
from mlc.perf import matmul_flops, print_table, timeit
from mlc.perf.threads import limit_threads
from mlc.quant.fixedpoint import requantize_array_nb


def _matmul_rows(sizes, repeat):
    rng = np.random.default_rng(0)
    rows, detail = [], {}
    for n in sizes:
        A = rng.standard_normal((n, n)).astype(np.float32)
        B = rng.standard_normal((n, n)).astype(np.float32)
        a, b = nd.array(A, device=nd.cpu()), nd.array(B, device=nd.cpu())
        qa = rng.integers(-128, 128, (n, n)).astype(np.int8)
        pw = quant.PackedWeight(rng.integers(-127, 128, (n, n)).astype(np.int8))
        bias = rng.integers(-1000, 1000, n).astype(np.int32)
        m0, shift = quant.quantize_multiplier(np.full(n, 1e-4))
        from mlc.quant.kernels_cpu import qmatmul_kernel

        out = np.empty((n, n), np.int32)
        qmatmul_kernel(qa, pw.wt, out)                   # compile outside the clock
        quant.qmatmul(qa, pw)
        quant.qlinear(qa, pw, 3, bias, m0, shift, 0, relu=True)
        t_np = timeit(lambda A=A, B=B: A @ B, repeat=repeat)
        t_cpu = timeit(lambda a=a, b=b: nd.matmul(a, b), repeat=repeat)
        t_i8 = timeit(lambda qa=qa, pw=pw: quant.qmatmul(qa, pw), repeat=repeat)
        t_plain = timeit(lambda qa=qa, pw=pw, out=out: qmatmul_kernel(qa, pw.wt, out),
                         repeat=repeat)
        t_lin = timeit(lambda qa=qa, pw=pw, bias=bias, m0=m0, shift=shift: quant.qlinear(
            qa, pw, 3, bias, m0, shift, 0, relu=True), repeat=repeat)
        # the epilogue timed on its own, not as fused minus unfused: a difference of two
        # noisy timings goes negative under load
        acc, codes = quant.qmatmul(qa, pw), np.empty((n, n), np.int8)
        t_epi = timeit(lambda acc=acc, m0=m0, shift=shift, codes=codes: requantize_array_nb(
            acc, m0, shift, 0, 0, 127, codes), repeat=repeat)
        ops_ = matmul_flops(n, n, n) * 1e-9
        for name, t in [("numpy float32 (BLAS)", t_np), ("cpu() float32", t_cpu),
                        ("int8 plain Numba loop -> int32", t_plain),
                        ("int8 qmatmul -> int32", t_i8), ("int8 qlinear (fused) -> int8", t_lin)]:
            rows.append([name, f"{n}^3", t * 1e3, ops_ / t, t_cpu / t, t_np / t])
        detail[n] = (t_i8, t_lin, t_epi)
    return rows, detail


def _weight_only_rows(k, n, repeat):
    """One activation row through a K x N weight, every way the course stores it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, k)).astype(np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    xd, wd = nd.array(x, device=nd.cpu()), nd.array(w, device=nd.cpu())
    g4, g8 = quant.pack_weight(w, 4, 32), quant.pack_weight(w, 8, 32)
    qa = rng.integers(-128, 128, (1, k)).astype(np.int8)
    pw = quant.PackedWeight(np.clip(np.rint(w / np.abs(w).max(0) * 127), -127, 127)
                            .astype(np.int8))
    bias = np.zeros(n, np.int32)
    m0, shift = quant.quantize_multiplier(np.full(n, 1e-3))
    cases = [("numpy float32 (BLAS)", lambda: x @ w, lambda: w.nbytes),
             ("cpu() float32", lambda: nd.matmul(xd, wd), lambda: w.nbytes),
             ("int8 W8A8 qlinear (one row: reads the int8 codes)",
              lambda: quant.qlinear(qa, pw, 0, bias, m0, shift, 0), lambda: pw.panel(1).nbytes),
             ("weight-only int8, group 32", lambda: quant.wmatmul(x, g8), lambda: g8.nbytes),
             ("weight-only int4, group 32", lambda: quant.wmatmul(x, g4), lambda: g4.nbytes)]
    rows, times = [], {}
    for name, fn, size in cases:
        fn()                                          # compile outside the clock
        t = timeit(fn, repeat=repeat)
        nbytes = size()
        times[name] = t
        rows.append([name, nbytes, f"{nbytes / w.nbytes:.3f}", t * 1e6, nbytes / t / 1e9])
    base = times["cpu() float32"]
    for r in rows:
        r.append(base / times[r[0]])
    err4 = float(np.abs(quant.wmatmul(x, g4) - x @ w).max())
    err8 = float(np.abs(quant.wmatmul(x, g8) - x @ w).max())
    return rows, (err4, err8)


def _models(epochs):
    from mlc.quant import examples

    np.random.seed(0)
    dev = nd.cpu()
    X_train, y_train, X_test, y_test = mlc.data.load_digits()
    mlp = nn.Sequential(nn.Linear(64, 64, device=dev), nn.ReLU(), nn.Linear(64, 10, device=dev))
    examples.train(mlp, X_train, y_train, epochs, device=dev)
    Xc_train, yc_train, Xc_test, yc_test = mlc.data.load_digits(flatten=False)
    cnn = nn.Sequential(nn.Conv(1, 8, 3, device=dev), nn.ReLU(),
                        nn.Conv(8, 16, 3, stride=2, device=dev), nn.ReLU(),
                        nn.Flatten(), nn.Linear(256, 10, device=dev))
    examples.train(cnn, Xc_train, yc_train, max(1, epochs // 3), device=dev)
    res = examples.train(examples.ResidualMLP(), X_train, y_train, epochs)
    att = examples.train(examples.AttentionBlock(), X_train, y_train, epochs)
    return [("MLP 64-64-10", mlp, X_train, X_test, y_test),
            ("CNN 2 conv + linear", cnn, Xc_train, Xc_test, yc_test),
            ("residual MLP", res, X_train, X_test, y_test),
            ("attention block", att, X_train, X_test, y_test)]


def _model_rows(models, repeat):
    from mlc import graph

    rows, size_rows, why = [], [], []
    for name, model, X_train, X_test, y_test in models:
        g = graph.trace(model, mlc.Tensor(X_train[:2], requires_grad=False))
        calib = [X_train[i:i + 256] for i in range(0, len(X_train), 256)]
        qg = quant.quantize_graph(g, calib)
        fg = quant.passes.fold(g)
        exes = {kind: graph.build(gg, target="cpu", memory_plan="greedy_by_size")
                for kind, gg in (("fp32", fg), ("int8", qg))}
        acc = {kind: 100 * float((e(X_test).argmax(1) == y_test).mean())
               for kind, e in exes.items()}
        arena = {kind: e.plan.arena_bytes for kind, e in exes.items()}
        for bs in (1, 256):
            xb = np.ascontiguousarray(np.resize(X_test, (bs,) + X_test.shape[1:]))
            t = {kind: timeit(lambda e=e, xb=xb: e(xb), repeat=repeat)
                 for kind, e in exes.items()}
            rows.append([name, bs, t["fp32"] * 1e3, t["int8"] * 1e3, t["fp32"] / t["int8"],
                         acc["fp32"], acc["int8"], arena["int8"] / arena["fp32"]])
            if t["int8"] > t["fp32"] or bs == 1:
                head = "why int8 is slower here" if t["int8"] > t["fp32"] else \
                    "where the int8 time goes"
                why.append(f"{head}: {name}, batch {bs}, int8 {t['int8'] * 1e6:.0f} us vs fp32 "
                           f"{t['fp32'] * 1e6:.0f} us; arena {arena['int8']} B int8 vs "
                           f"{arena['fp32']} B fp32 as planned "
                           f"({arena['int8'] / arena['fp32']:.2f}x). Per kernel (exe.profile):\n"
                           f"{exes['int8'].profile(xb, repeat=repeat)}")
        q = quant.QuantizedModel(qg, fg, True, None, None)
        b = q.weight_bytes()
        size_rows.append([name, b["fp32_total"], b["int8_weights"], b["scales"],
                          b["int32_bias_and_multipliers"], b["int8_total"],
                          b["fp32_total"] / b["int8_total"]])
    return rows, size_rows, why


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench quant", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--repeat", type=int, default=None, help="timed rounds per case")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for numpy's BLAS, Numba and the int kernels alike")
    args = parser.parse_args(argv)
    print(f"every comparison on {args.threads} thread(s): numpy/BLAS, Numba and the int8 "
          "kernels pinned alike (mlc.perf.threads.limit_threads)")
    with limit_threads(args.threads):
        return _run(args)


def _run(args) -> int:
    repeat = args.repeat or (3 if args.quick else 5)
    sizes = (256, 512) if args.quick else (512, 1024)

    rows, detail = _matmul_rows(sizes, repeat)
    print("int8 matmul vs float32 (same run; 'vs cpu()' and 'vs numpy' = their time / this time)")
    print_table(rows, ["kernel", "size", "ms", "GOP/s", "vs cpu() f32", "vs numpy f32"])
    for n, (t_i8, t_lin, t_epi) in detail.items():
        print(f"  n={n}: int32 kernel {t_i8 * 1e3:.2f} ms, fused int8 kernel {t_lin * 1e3:.2f} ms; "
              f"the epilogue alone (requantize, ReLU clamp, int8 store of {n * n:,} outputs, one "
              f"serial pass over the int32 result: fixedpoint.requantize_array_nb) "
              f"{t_epi * 1e3:.2f} ms = {100 * t_epi / t_i8:.0f}% of the int32 kernel. Each is "
              "timed on its own; the fused kernel runs the epilogue per tile while it is in L1, "
              "so its time is not the sum of the other two")
    from mlc.quant.kernels_cpu import core_instructions, qmatmul_kernel

    print(f"  instructions in the machine code, qmatmul's blocked int16 kernel: "
          f"{core_instructions()}")
    print(f"  the plain loop (8 int32 lanes: xmm vpmaddwd, a vpmovsxbw per 8 bytes): "
          f"{core_instructions(qmatmul_kernel)}")

    k = 512 if args.quick else 1024
    wrows, (err4, err8) = _weight_only_rows(k, k, repeat)
    print(f"\nweight-only matmul at 1 x {k} x {k} (same run; 'vs cpu()' = cpu() float32 time / "
          "this time; GB/s = weight bytes / time)")
    print_table(wrows, ["kernel", "weight bytes", "of fp32", "us", "GB/s", "vs cpu() f32"])
    print(f"  max |error| of the output against float32: int4 {err4:.2e}, int8 {err8:.2e}")

    models = _models(epochs=4 if args.quick else 10)
    mrows, size_rows, why = _model_rows(models, repeat)
    print("\ndigits inference, fp32 graph vs int8 graph (quant.quantize_graph), each built "
          f"for the cpu with a greedy memory plan (same run, {args.threads} thread(s))")
    print_table(mrows, ["model", "batch", "fp32 ms", "int8 ms", "int8 speed-up", "fp32 acc %",
                        "int8 acc %", "arena int8/fp32"])
    print("\nweight bytes")
    print_table(size_rows, ["model", "fp32", "int8 codes", "scales", "int32 bias+M", "int8 total",
                            "ratio"])
    for line in why:
        print("\n" + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
