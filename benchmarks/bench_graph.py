"""Operator fusion, measured: mlc.graph's compiled kernels against numpy in the same run.

    mlc bench graph            # full sizes
    mlc bench graph --quick    # smaller sizes, for a quick look

Three tables:

1. ``relu(x * w + b)`` on an N x N float32 matrix (``w``, ``b`` per-column vectors):
   numpy (three passes over memory and two temporaries) against the one fused compiled
   kernel, both writing into a preallocated output, and ``np.copyto`` (the memory
   bandwidth a one-pass kernel can hope for). GB/s counts the useful traffic, one read of
   ``x`` and one write of the result. "fused kernel" is kernel time only
   (``exe.profile``: the kernel called on the executor's arrays, output included, so no
   allocation or input check is timed); "exe(x)" is a whole call, which also checks the
   input and allocates the fresh output array (first-touch page faults on 64 MiB).
2. softmax and layer norm over the rows of a 4096 x 1024 matrix: unfused (one kernel per
   op) against the "tvm" and "epilogue" fusion policies: kernels and time.
3. inference of the course's digits MLP and CNN at batch 1 and 256: ``mlc.Tensor`` eager,
   the graph unfused, the graph fused, and PyTorch eager on the CPU when torch imports.
"""

from __future__ import annotations

import argparse

import numpy as np

import mlc
from mlc import graph, nn, ops
from mlc.graph import examples
from mlc.perf import print_table, timeit


def _kernel_time(exe, x, repeat):
    """Seconds per call of all kernels, on arrays allocated beforehand (exe.profile)."""
    return exe.profile(x, repeat=repeat, min_time=0.1).total


def bench_bias_relu(n, repeat):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n), dtype=np.float32)
    w = rng.standard_normal(n, dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    W, B = mlc.Tensor(w), mlc.Tensor(b)
    g = graph.trace(lambda t: ops.relu(t * W + B), x)
    exe = graph.build(g, target="cpu")
    out = np.empty_like(x)
    assert np.allclose(exe(x), np.maximum(x * w + b, 0), atol=1e-5)
    gb = 2 * x.nbytes / 1e9
    t_np = timeit(lambda: np.maximum(np.add(np.multiply(x, w), b), 0, out=out), repeat=repeat)
    t_copy = timeit(lambda: np.copyto(out, x), repeat=repeat)
    t_k = _kernel_time(exe, x, repeat)
    t_call = timeit(lambda: exe(x), repeat=repeat)
    rows = [["numpy (3 passes)", 3, t_np * 1e3, gb / t_np, 1.0, t_copy / t_np],
            [f"fused kernel ({exe.kernels})", exe.kernels, t_k * 1e3, gb / t_k, t_np / t_k,
             t_copy / t_k],
            ["exe(x) (allocates output)", exe.kernels, t_call * 1e3, gb / t_call,
             t_np / t_call, t_copy / t_call],
            ["np.copyto (bandwidth)", 1, t_copy * 1e3, gb / t_copy, t_np / t_copy, 1.0]]
    print(f"\nrelu(x * w + b), {n}x{n} float32")
    print_table(rows, ["version", "kernels", "ms", "GB/s", "vs numpy", "vs copy"])
    return rows


def bench_reductions(rows_, cols, repeat):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows_, cols), dtype=np.float32)
    table = []
    cases = [("softmax", lambda t: ops.softmax(t, axis=-1),
              lambda: _np_softmax(x)),
             ("layernorm", nn.LayerNorm1d(cols), lambda: _np_layernorm(x))]
    for name, model, np_fn in cases:
        g = graph.trace(model, x)
        t_np = timeit(np_fn, repeat=repeat)
        table.append([name, "numpy", "", t_np * 1e3, 1.0])
        for label, fuse, policy in (("unfused", False, "tvm"), ("tvm", True, "tvm"),
                                    ("epilogue", True, "epilogue")):
            exe = graph.build(g, target="cpu", fuse=fuse, policy=policy)
            assert np.allclose(exe(x), np_fn(), atol=1e-5)
            t = _kernel_time(exe, x, repeat)
            table.append([name, label, exe.kernels, t * 1e3, t_np / t])
    print(f"\nrow softmax and layer norm, {rows_}x{cols} float32 (kernel time)")
    print_table(table, ["model", "version", "kernels", "ms", "vs numpy"])
    return table


def _np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _np_layernorm(x):
    m = x.mean(axis=-1, keepdims=True)
    c = x - m
    return c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + 1e-5)


def _torch_model(model, kind):
    try:
        import torch
    except ImportError:
        return None
    p = [t.numpy() for t in model.parameters()]
    if kind == "mlp":
        w1, b1, w2, b2 = (torch.from_numpy(a) for a in p)
        return lambda x: torch.relu(x @ w1 + b1) @ w2 + b2
    w1, b1, w2, b2, w3, b3 = (torch.from_numpy(a) for a in p)
    c1 = w1.permute(3, 2, 0, 1).contiguous()
    c2 = w2.permute(3, 2, 0, 1).contiguous()

    def f(x):  # NHWC in, as the course's model
        h = torch.relu(torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), c1, b1, padding=1))
        h = torch.relu(torch.nn.functional.conv2d(h, c2, b2, stride=2, padding=1))
        return h.permute(0, 2, 3, 1).reshape(x.shape[0], -1) @ w3 + b3
    return f


def bench_models(batches, repeat):
    table = []
    for kind, make in (("mlp", examples.digits_mlp), ("cnn", examples.digits_cnn)):
        for batch in batches:
            model, x = make(batch=batch)
            model.eval()
            g = graph.trace(model, x)
            unfused = graph.build(g, target="cpu", fuse=False)
            fused = graph.build(g, target="cpu", fuse=True)
            xt = mlc.Tensor(x, requires_grad=False)
            ref = model(xt).numpy()
            assert np.allclose(fused(x), ref, atol=1e-4) and np.allclose(unfused(x), ref, atol=1e-4)
            with mlc.no_grad():
                t_eager = timeit(lambda m=model, t=xt: m(t), repeat=repeat)
            t_un = timeit(lambda e=unfused, a=x: e(a), repeat=repeat)
            t_fu = timeit(lambda e=fused, a=x: e(a), repeat=repeat)
            row = [kind, batch, t_eager * 1e6, f"{t_un * 1e6:.1f} ({unfused.kernels})",
                   f"{t_fu * 1e6:.1f} ({fused.kernels})", t_eager / t_fu]
            tf = _torch_model(model, kind)
            if tf is not None:
                import torch

                xt_ = torch.from_numpy(x)
                assert np.allclose(tf(xt_).numpy(), ref, atol=1e-4)
                with torch.no_grad():
                    t_t = timeit(lambda f=tf, a=xt_: f(a), repeat=repeat)
                row += [t_t * 1e6, t_t / t_fu]
            table.append(row)
    headers = ["model", "batch", "eager us", "unfused us (kernels)", "fused us (kernels)",
               "fused vs eager"]
    if any(len(r) > 6 for r in table):
        headers += ["torch us", "fused vs torch"]
        table = [r + [""] * (8 - len(r)) for r in table]
    print("\ninference, mlc.Tensor eager vs compiled graph (cpu target)")
    print_table(table, headers)
    return table


def bench_onnxruntime(batches, repeat, threads: int = 2):
    """The same traced graph, compiled by mlc and exported with ``graph.to_onnx`` to ONNX
    Runtime (CPU provider); both given ``threads`` threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("\nONNX Runtime columns skipped: onnxruntime is not installed "
              "(pip install -e \".[onnx]\")")
        return []
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    table = []
    for kind, make in (("mlp", examples.digits_mlp), ("cnn", examples.digits_cnn)):
        for batch in batches:
            model, x = make(batch=batch)
            model.eval()
            g = graph.trace(model, x)
            fused = graph.build(g, target="cpu", fuse=True)
            sess = ort.InferenceSession(graph.to_onnx(g).SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
            feed = {g.inputs[0].name: x}
            assert np.allclose(sess.run(None, feed)[0], fused(x), atol=1e-4)
            t_fu = timeit(lambda e=fused, a=x: e(a), repeat=repeat)
            t_ort = timeit(lambda s=sess, f=feed: s.run(None, f), repeat=repeat)
            table.append([kind, batch, t_fu * 1e6, t_ort * 1e6, t_ort / t_fu])
    print(f"\ninference, mlc fused graph (cpu target) vs ONNX Runtime on the to_onnx export, "
          f"{threads} threads each")
    print_table(table, ["model", "batch", "mlc fused us", "onnxruntime us", "ort / mlc time"])
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench graph", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per case")
    args = parser.parse_args(argv)
    n, (r, c), batches = ((1024, (512, 256), (1, 64)) if args.quick
                          else (4096, (4096, 1024), (1, 256)))
    bench_bias_relu(n, args.repeat)
    bench_reductions(r, c, args.repeat)
    bench_models(batches, args.repeat)
    bench_onnxruntime((1, 64), args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
