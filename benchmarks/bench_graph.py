"""Operator fusion, measured: mlc.graph's compiled kernels against numpy in the same run.

    mlc bench graph            # full sizes
    mlc bench graph --quick    # smaller sizes, for a quick look

Five tables:

1. ``relu(x * w + b)`` on an N x N float32 matrix (``w``, ``b`` per-column vectors):
   numpy (three passes over memory and two temporaries) against the one fused compiled
   kernel, both writing into a preallocated output, and ``np.copyto`` (the memory
   bandwidth a one-pass kernel can hope for). GB/s counts the useful traffic, one read of
   ``x`` and one write of the result. "fused kernel" is kernel time only
   (``exe.profile``: the kernel called on the executor's arrays, output included, so no
   allocation or input check is timed); "exe(x)" is a whole call, which also checks the
   input and allocates the fresh output array (first-touch page faults on 64 MiB).
2. softmax and layer norm over the rows of a 4096 x 1024 matrix: the composite op (one
   kernel) and its primitive ops unfused and under the "tvm" and "epilogue" policies:
   kernels, exps per element (one everywhere), time; then attention's batched matmuls
   ``Q K^T`` and ``A V`` (8 heads, 64 tokens, head dim 32) against numpy.
3. inference of the course's digits MLP and CNN at batch 1 and 256: ``mlc.Tensor`` eager,
   the graph unfused, the graph fused, and PyTorch eager on the CPU when torch imports.
4. the same models and a GPT-style block (the course has no tiny ViT yet) at batch 1 and
   64, the fused graph against ONNX Runtime (CPU provider) running the graph exported with
   ``graph.to_onnx``, two threads each (when onnxruntime imports).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

import mlc
from mlc import graph, nn, ops
from mlc.perf import limit_threads
from mlc.graph import examples
from mlc.graph import intrinsic_calls
from mlc.perf import print_table, timeit
from mlc.models import digits_cnn, digits_mlp


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


def _exps_per_element(exe, size):
    """exp calls one run of the executable's kernels makes, per element of the input."""
    return sum(intrinsic_calls(k.func, "exp") for k in exe.kernel_list
               if k.func is not None) / size


def bench_reductions(rows_, cols, repeat, threads=1):
    """Softmax and layer norm: the composite op (one node, its own fused loops) and its
    decomposition into primitive ops under each fusion policy. Every version computes one
    exp per element (column "exp/elem"), so the times differ by fusion alone."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows_, cols), dtype=np.float32)
    table = []
    cases = [("softmax", lambda t: ops.softmax(t, axis=-1), lambda: _np_softmax(x)),
             ("layernorm", nn.LayerNorm(cols), lambda: _np_layernorm(x))]
    with limit_threads(threads):
        for name, model, np_fn in cases:
            g = graph.trace(model, x)
            parts = graph.decompose(g)
            t_np = timeit(np_fn, repeat=repeat)
            table.append([name, "numpy", "", "", t_np * 1e3, 1.0])
            for label, gx, fuse, policy in (
                    ("primitive ops, unfused", parts, False, "none"),
                    ("primitive ops, tvm", parts, True, "tvm"),
                    ("primitive ops, epilogue", parts, True, "epilogue"),
                    (f"one {name} op", g, True, "tvm")):
                exe = graph.build(gx, target="cpu", fuse=fuse, policy=policy)
                assert np.allclose(exe(x), np_fn(), atol=1e-5)
                t = _kernel_time(exe, x, repeat)
                table.append([name, label, exe.kernels, f"{_exps_per_element(exe, x.size):g}",
                              t * 1e3, t_np / t])
    print(f"\nrow softmax and layer norm, {rows_}x{cols} float32 (kernel time, "
          f"{threads} thread)")
    print_table(table, ["model", "version", "kernels", "exp/elem", "ms", "vs numpy"])
    return table


def bench_attention(batch, heads, time, d_head, repeat, threads=1):
    """Attention's batched matmuls, ``Q K^T`` and ``A V`` over (batch, heads), compiled
    (the batched hand schedule) against numpy's ``@`` (a loop of BLAS calls)."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((batch, heads, time, d_head), dtype=np.float32)
    kt = rng.standard_normal((batch, heads, d_head, time), dtype=np.float32)
    a = rng.standard_normal((batch, heads, time, time), dtype=np.float32)
    v = rng.standard_normal((batch, heads, time, d_head), dtype=np.float32)
    table = []
    with limit_threads(threads):
        for name, x, y in (("Q K^T", q, kt), ("A V", a, v)):
            exe = graph.build(graph.trace(lambda s, t: s @ t, x, y), target="cpu")
            assert np.allclose(exe(x, y), x @ y, atol=1e-4)
            out = np.empty(x.shape[:-1] + y.shape[-1:], np.float32)
            t_np = timeit(lambda a_=x, b_=y, o=out: np.matmul(a_, b_, out=o), repeat=repeat)
            t = exe.profile(x, y, repeat=repeat, min_time=0.1).total
            flop = 2 * out.size * x.shape[-1]
            table.append([name, f"{x.shape} @ {y.shape}", t_np * 1e6, t * 1e6,
                          flop / t / 1e9, t_np / t])
    print(f"\nattention's batched matmuls: batch {batch}, {heads} heads, {time} tokens, "
          f"head dim {d_head} ({threads} thread)")
    print_table(table, ["product", "shapes", "numpy us", "compiled us", "GFLOP/s",
                        "vs numpy"])
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


def _traced_models(batches, transformer: bool = False):
    """``(kind, batch, model, x, graph)`` for the digits MLP and CNN (and a GPT-style block
    of 16 tokens, d = 32, 4 heads, and the tiny ViT) at each batch."""
    models = [("mlp", digits_mlp), ("cnn", digits_cnn)]
    if transformer:
        models.append(("gpt block", lambda batch: examples.gpt_block(batch, 16, 64, 32, 4)))
        models.append(("tiny vit", lambda batch: mlc.models.tiny_vit(batch=batch)))
    for kind, make in models:
        for batch in batches:
            model, x = make(batch=batch)
            model.eval()
            yield kind, batch, model, x, graph.trace(model, x)


def bench_models(batches, repeat):
    table = []
    for kind, batch, model, x, g in _traced_models(batches):
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
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    table = []
    with limit_threads(threads):
        for kind, batch, _, x, g in _traced_models(batches, transformer=True):
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
    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile

    sections = (("bias + relu", lambda: bench_bias_relu(n, args.repeat)),
                ("reductions", lambda: bench_reductions(r, c, args.repeat)),
                ("attention", lambda: bench_attention(1, 8, 64, 32, args.repeat)),
                ("models", lambda: bench_models(batches, args.repeat)),
                ("onnxruntime", lambda: bench_onnxruntime((1, 64), args.repeat)))
    # the bar goes to stderr; stdout goes through tqdm so the tables print above the bar
    with contextlib.redirect_stdout(DummyTqdmFile(sys.stdout)), \
            tqdm(sections, desc="mlc bench graph", unit="section", file=sys.stderr) as bar:
        for name, run in bar:
            bar.set_postfix_str(name)
            run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
