"""Quantization: int8 kernels and int8 models against float32, in the same run.

    mlc bench quant            # full sizes
    mlc bench quant --quick    # smaller sizes, fewer rounds

1. int8 x int8 -> int32 matmul (``quant.qmatmul``, zero points folded) and the fused
   int8 linear (``quant.qlinear``: + bias, requantize, ReLU, int8 store) at n = 512 and
   1024, against the ``nd.cpu()`` float32 matmul and numpy's float32 matmul (BLAS):
   GOP/s (an int8 multiply-add counts 2 ops, as a float FMA counts 2 flops) and ratios.
2. The digits MLP and CNN, fp32 (``mlc`` on ``nd.cpu()``) vs the integer model, at batch
   1 and 256, and their weight bytes.
3. Where int8 is slower (and at batch 1 always), where its time goes, in numbers: each
   piece of the integer model's forward pass (quantize the input, each layer's kernel,
   its Python wrapper: checks and int16 packing, the data movement on codes, dequantize)
   timed alone with ``timeit`` on its real input, their sum against the whole call (the
   rest is the Python loop over the steps). The cost of the fused epilogue
   (requantization) is the qlinear - qmatmul difference of part 1.
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
        ops_ = matmul_flops(n, n, n) * 1e-9
        for name, t in [("numpy float32 (BLAS)", t_np), ("cpu() float32", t_cpu),
                        ("int8 plain Numba loop -> int32", t_plain),
                        ("int8 qmatmul -> int32", t_i8), ("int8 qlinear (fused) -> int8", t_lin)]:
            rows.append([name, f"{n}^3", t * 1e3, ops_ / t, t_cpu / t, t_np / t])
        detail[n] = (t_i8, t_lin)
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
    cases = [("numpy float32 (BLAS)", lambda: x @ w, w.nbytes),
             ("cpu() float32", lambda: nd.matmul(xd, wd), w.nbytes),
             ("int8 W8A8 qlinear (int16 panel)", lambda: quant.qlinear(qa, pw, 0, bias, m0, shift,
                                                                        0), pw.kernel_bytes),
             ("weight-only int8, group 32", lambda: quant.wmatmul(x, g8), g8.nbytes),
             ("weight-only int4, group 32", lambda: quant.wmatmul(x, g4), g4.nbytes)]
    rows, times = [], {}
    for name, fn, nbytes in cases:
        fn()                                          # compile outside the clock
        t = timeit(fn, repeat=repeat)
        times[name] = t
        rows.append([name, nbytes, f"{nbytes / w.nbytes:.3f}", t * 1e6, nbytes / t / 1e9])
    base = times["cpu() float32"]
    for r in rows:
        r.append(base / times[r[0]])
    err4 = float(np.abs(quant.wmatmul(x, g4) - x @ w).max())
    err8 = float(np.abs(quant.wmatmul(x, g8) - x @ w).max())
    return rows, (err4, err8)


def _train(model, X, y, epochs):
    opt = mlc.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.SoftmaxLoss()
    loader = mlc.data.DataLoader(mlc.data.NDArrayDataset(X, y), batch_size=64, shuffle=True,
                                 device=nd.cpu())
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.reset_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    model.eval()


def _models(epochs):
    np.random.seed(0)
    dev = nd.cpu()
    X_train, y_train, X_test, y_test = mlc.data.load_digits()
    mlp = nn.Sequential(nn.Linear(64, 64, device=dev), nn.ReLU(), nn.Linear(64, 10, device=dev))
    _train(mlp, X_train, y_train, epochs)
    Xc_train, yc_train, Xc_test, yc_test = mlc.data.load_digits(flatten=False)
    cnn = nn.Sequential(nn.Conv(1, 8, 3, device=dev), nn.ReLU(),
                        nn.Conv(8, 16, 3, stride=2, device=dev), nn.ReLU(),
                        nn.Flatten(), nn.Linear(256, 10, device=dev))
    _train(cnn, Xc_train, yc_train, max(1, epochs // 3))
    return [("MLP 64-64-10", mlp, X_train, X_test, y_test),
            ("CNN 2 conv + linear", cnn, Xc_train, Xc_test, yc_test)]


def _model_rows(models, repeat):
    rows, size_rows, why = [], [], []
    for name, model, X_train, X_test, y_test in models:
        q = quant.quantize_model(model, [X_train])
        fp32_acc = float((_float(model, X_test).argmax(1) == y_test).mean())
        int8_acc = float((q(X_test).argmax(1) == y_test).mean())
        for bs in (1, 256):
            xb = np.ascontiguousarray(np.resize(X_test, (bs,) + X_test.shape[1:]))
            q(xb)
            t_f = timeit(lambda xb=xb, model=model: _float(model, xb), repeat=repeat)
            t_q = timeit(lambda xb=xb, q=q: q(xb), repeat=repeat)
            rows.append([name, bs, t_f * 1e3, t_q * 1e3, t_f / t_q, 100 * fp32_acc,
                         100 * int8_acc])
            if t_q > t_f or bs == 1:          # batch 1: the fixed costs, always shown
                head = "why int8 is slower here" if t_q > t_f else "where the int8 time goes"
                why.append(f"{head}: " + _explain(name, q, xb, t_f, t_q, repeat))
        b = q.weight_bytes()
        size_rows.append([name, b["fp32_total"], b["int8_weights"], b["scales"],
                          b["int32_bias_and_multipliers"], b["int8_total"],
                          b["fp32_total"] / b["int8_total"]])
    return rows, size_rows, why


def _float(model, x):
    with mlc.no_grad():
        return model(mlc.Tensor(x, device=nd.cpu(), requires_grad=False)).numpy()


def _stages(q, xb):
    """The integer model's forward pass as a list of ``(piece, name, fn, macs)``, each ``fn``
    a call on that stage's real input (made once, here), so every piece can be timed
    the same way (``timeit``) and the pieces sum to the whole."""
    from mlc.quant.kernels_cpu import pick, qlinear_kernel
    from mlc.quant.qops import _pack_input

    stages = [("quantize", "quantize the input (float -> int8)",
               lambda: q.quantize_input(xb), 0)]
    codes, z = q.quantize_input(xb), q.input_qparams[1]
    for s in q.steps:
        if isinstance(s, quant.program.QLinear):
            a2 = np.ascontiguousarray(codes.reshape(-1, codes.shape[-1]))
            args = (a2, s.packed, int(s.z_in), s.bias_q, s.m0, s.shift, int(s.z_out))
            pw = s.packed
            a16, rowsum = _pack_input(a2)
            out = np.empty((a2.shape[0], pw.n), np.int8)
            kern = pick(qlinear_kernel, a2.shape[0] * pw.n * pw.k)
            kargs = (a16, pw.wt16, np.int32(s.z_in), pw.zero_point, pw.colsum, rowsum, pw.k,
                     s.bias_q, s.m0, s.shift, np.int32(s.z_out), np.int32(s.lo),
                     np.int32(quant.qrange("int8", q.act_bits)[1]), out)
            stages.append(("kernel", f"{pw.k}x{pw.n} kernel", lambda kern=kern, kargs=kargs:
                           kern(*kargs), a2.shape[0] * pw.k * pw.n))
            stages.append(("wrapper", f"{pw.k}x{pw.n} qlinear checks + int16 packing",
                           lambda args=args, relu=s.relu: quant.qlinear(
                               *args, relu=relu, num_bits=q.act_bits), 0))
            lead = codes.shape[:-1]
            codes = quant.qlinear(*args, relu=s.relu, num_bits=q.act_bits).reshape(lead + (-1,))
            if s.reshape is not None:
                codes = codes.reshape(s.reshape)
            z = s.z_out
        else:
            stages.append(("move", f"{s.op} on codes",
                           lambda s=s, codes=codes, z=z: s.run(codes, z), 0))
            codes = s.run(codes, z)
    s_out, z_out = q.output_qparams
    stages.append(("dequantize", "dequantize the output",
                   lambda codes=codes: quant.dequantize(codes, s_out, z_out), 0))
    return stages


def _explain(name, q, xb, t_f, t_q, repeat):
    """Where the integer model's time goes, in pieces timed one way that add up."""
    stages = _stages(q, xb)
    t = {}
    for _, label, fn, _ in stages:
        t[label] = timeit(fn, repeat=repeat)
    by_piece = dict.fromkeys(("quantize", "kernel", "wrapper", "move", "dequantize"), 0.0)
    for piece, label, _, _ in stages:
        by_piece[piece] += t[label]
    # a 'wrapper' stage is the whole qlinear call; the kernel inside it is its own piece
    by_piece["wrapper"] -= by_piece["kernel"]
    total = sum(by_piece.values())

    def staged():                    # the same pieces, back to back, timed as one call
        for piece, _, fn, _ in stages:
            if piece != "kernel":    # each wrapper call already runs its kernel
                fn()

    t_staged = timeit(staged, repeat=repeat)
    macs = sum(m for piece, _, _, m in stages if piece == "kernel")
    parts = ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in by_piece.items())
    return (f"{name}, batch {xb.shape[0]}: int8 {t_q * 1e6:.0f} us vs fp32 {t_f * 1e6:.0f} us. "
            f"Pieces, each timed alone: {parts}; their sum {total * 1e6:.0f} us, the same "
            f"pieces run back to back {t_staged * 1e6:.0f} us (timing noise and cache "
            f"effects: {(t_staged - total) * 1e6:+.0f} us), the model's own call "
            f"{(t_q - t_staged) * 1e6:+.0f} us more (its loop over {len(q.steps)} steps, "
            f"reshapes, Tensor checks). The kernels do {macs / 1e3:.0f}k multiply-adds in "
            f"{by_piece['kernel'] * 1e6:.0f} us ({2 * macs / by_piece['kernel'] / 1e9:.2f} "
            f"GOP/s; compare the matmul table): at this size each call is fixed costs (argument "
            f"checks, int16 packing, Numba dispatch, numpy calls on tiny arrays); "
            f"{100 * (1 - by_piece['kernel'] / t_q):.0f}% of the int8 time is not the "
            f"integer kernels.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench quant", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    parser.add_argument("--repeat", type=int, default=None, help="timed rounds per case")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    sizes = (256, 512) if args.quick else (512, 1024)

    rows, detail = _matmul_rows(sizes, repeat)
    print("int8 matmul vs float32 (same run; 'vs cpu()' and 'vs numpy' = their time / this time)")
    print_table(rows, ["kernel", "size", "ms", "GOP/s", "vs cpu() f32", "vs numpy f32"])
    for n, (t_i8, t_lin) in detail.items():
        print(f"  n={n}: the fused epilogue (offsets, bias, requantize, ReLU, int8 store) adds "
              f"{(t_lin - t_i8) * 1e3:+.2f} ms to {t_i8 * 1e3:.2f} ms "
              f"({100 * (t_lin - t_i8) / t_i8:+.1f}%): {n * n} requantizations against "
              f"{n ** 3:,} multiply-adds, and the int8 store writes 1/4 of the int32 bytes")
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
    print("\ndigits inference, fp32 (mlc on cpu()) vs integer-only int8 (quant.quantize_model)")
    print_table(mrows, ["model", "batch", "fp32 ms", "int8 ms", "int8 speed-up", "fp32 acc %",
                        "int8 acc %"])
    print("\nweight bytes")
    print_table(size_rows, ["model", "fp32", "int8 codes", "scales", "int32 bias+M", "int8 total",
                            "ratio"])
    for line in why:
        print("\n" + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
