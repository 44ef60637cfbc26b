"""Quantization: int8 kernels and int8 models against float32, in the same run.

    mlc bench quant            # full sizes
    mlc bench quant --quick    # smaller sizes, fewer rounds

1. int8 x int8 -> int32 matmul (``quant.qmatmul``, zero points folded) and the fused
   int8 linear (``quant.qlinear``: + bias, requantize, ReLU, int8 store) at n = 512 and
   1024, against the ``nd.cpu()`` float32 matmul and numpy's float32 matmul (BLAS):
   GOP/s (an int8 multiply-add counts 2 ops, as a float FMA counts 2 flops) and ratios.
2. The digits MLP and CNN, fp32 (``mlc`` on ``nd.cpu()``) vs the integer model, at batch
   1 and 256, and their weight bytes.
3. Where int8 is slower, why, in numbers: the cost of the epilogue (requantization) and
   the fixed per-call cost (quantizing the input, Python dispatch per layer) that a
   batch of one cannot amortise.
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
        quant.qmatmul(qa, pw)                            # compile outside the clock
        quant.qlinear(qa, pw, 3, bias, m0, shift, 0, relu=True)
        t_np = timeit(lambda A=A, B=B: A @ B, repeat=repeat)
        t_cpu = timeit(lambda a=a, b=b: nd.matmul(a, b), repeat=repeat)
        t_i8 = timeit(lambda qa=qa, pw=pw: quant.qmatmul(qa, pw), repeat=repeat)
        t_lin = timeit(lambda qa=qa, pw=pw: quant.qlinear(qa, pw, 3, bias, m0, shift, 0,
                                                          relu=True), repeat=repeat)
        ops_ = matmul_flops(n, n, n) * 1e-9
        for name, t in [("numpy float32 (BLAS)", t_np), ("cpu() float32", t_cpu),
                        ("int8 qmatmul -> int32", t_i8), ("int8 qlinear (fused) -> int8", t_lin)]:
            rows.append([name, f"{n}^3", t * 1e3, ops_ / t, t_cpu / t, t_np / t])
        detail[n] = (t_i8, t_lin)
    return rows, detail


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
            t_f = timeit(lambda xb=xb: _float(model, xb), repeat=repeat)
            t_q = timeit(lambda xb=xb: q(xb), repeat=repeat)
            rows.append([name, bs, t_f * 1e3, t_q * 1e3, t_f / t_q, 100 * fp32_acc,
                         100 * int8_acc])
            if t_q > t_f:
                why.append(_explain(name, q, xb, t_f, t_q, repeat))
        b = q.weight_bytes()
        size_rows.append([name, b["fp32_total"], b["int8_weights"], b["scales"],
                          b["int32_bias_and_multipliers"], b["int8_total"],
                          b["fp32_total"] / b["int8_total"]])
    return rows, size_rows, why


def _float(model, x):
    with mlc.no_grad():
        return model(mlc.Tensor(x, device=nd.cpu(), requires_grad=False)).numpy()


def _explain(name, q, xb, t_f, t_q, repeat):
    """Split the integer model's time: quantize the input, the layers' kernels, the rest."""
    t_in = timeit(lambda: q.quantize_input(xb), repeat=repeat)
    calls = []                               # every layer's kernel call, with its real input
    codes, z = q.quantize_input(xb), q.input_qparams[1]
    for s in q.steps:
        if isinstance(s, quant.program.QLinear):
            a2 = np.ascontiguousarray(codes.reshape(-1, codes.shape[-1]))
            args = (a2, s.packed, int(s.z_in), s.bias_q, s.m0, s.shift, int(s.z_out))
            calls.append((args, s.relu))
            codes = quant.qlinear(*args, relu=s.relu).reshape(codes.shape[:-1] + (-1,))
            if s.reshape is not None:
                codes = codes.reshape(s.reshape)
            z = s.z_out
        else:
            codes = s.run(codes, z)

    def kernels_only():
        for args, relu in calls:
            quant.qlinear(*args, relu=relu)

    t_layers = timeit(kernels_only, repeat=repeat)
    macs = sum(layer.shape[0] * layer.shape[1] for layer in q.layers)
    return (f"{name}, batch {xb.shape[0]}: int8 {t_q * 1e6:.0f} us vs fp32 {t_f * 1e6:.0f} us. "
            f"Quantizing the input takes {t_in * 1e6:.0f} us, the {len(q.layers)} fused "
            f"kernel calls {t_layers * 1e6:.0f} us in all (checks + launch + "
            f"{macs * xb.shape[0] / 1e3:.0f}k multiply-adds; fp32 does the same work with "
            f"float BLAS-like kernels), "
            f"the rest ({(t_q - t_in - t_layers) * 1e6:.0f} us) is Python: checks, im2col/pad "
            f"on codes, reshapes, dequantizing the output. At this size the arithmetic is "
            f"not what costs.")


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
    from mlc.quant.kernels_cpu import core_instructions

    print(f"  int8 core loop, instructions LLVM emitted: {core_instructions()}")

    models = _models(epochs=4 if args.quick else 10)
    mrows, size_rows, why = _model_rows(models, repeat)
    print("\ndigits inference, fp32 (mlc on cpu()) vs integer-only int8 (quant.quantize_model)")
    print_table(mrows, ["model", "batch", "fp32 ms", "int8 ms", "int8 speed-up", "fp32 acc %",
                        "int8 acc %"])
    print("\nweight bytes")
    print_table(size_rows, ["model", "fp32", "int8 codes", "scales", "int32 bias+M", "int8 total",
                            "ratio"])
    for line in why:
        print("\nwhy int8 is slower here: " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
