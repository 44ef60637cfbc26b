"""Deployment, end to end: the tiny ViT through every runtime, same run.

    mlc bench deploy            # trains the ViT (about 20 s), then times everything
    mlc bench deploy --quick    # untrained ViT (accuracy column meaningless), fewer rounds

1. The tiny ViT at batch 1 and 64: mlc eager (autograd Tensors, no graph), ``mlc.deploy``
   fp32, int8 (calibrated on 256 training digits) and int4-weight (groups of 32, fp16
   scales; the position table in int8), and ONNX
   Runtime's CPU provider on ``graph.to_onnx`` of the same traced graph (when it imports);
   PyTorch is not a column (not installed here). Every library gets the same threads
   (``limit_threads``, ``intra_op_num_threads``). Test accuracy and weight bytes per row;
   each deployed artifact is saved and reloaded, and must compute the same bits.

The tiny GPT's decoding, with and without its KV cache, is ``mlc bench decode``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

import mlc
from mlc import graph
from mlc.models import tiny_vit, train_tiny_vit
from mlc.perf import print_table, stopwatch, timeit
from mlc.perf.threads import limit_threads


def _eager(model):
    def run(x):
        with mlc.no_grad():
            return model(mlc.Tensor(x, dtype=str(x.dtype), requires_grad=False)).numpy()
    return run


def _ort(model, threads):
    """ONNX Runtime on ``graph.to_onnx`` of the model traced at each batch it is called
    with (the export has a fixed batch), sessions made outside the clock."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sessions: dict = {}

    def run(x):
        if len(x) not in sessions:
            g = graph.trace(model, x, batch_axis=False)
            sessions[len(x)] = ort.InferenceSession(graph.to_onnx(g).SerializeToString(), so,
                                                    providers=["CPUExecutionProvider"])
        return sessions[len(x)].run(None, {"x": x})[0]
    return run


def bench_vit(trained: bool, repeat: int, threads: int = 2):
    Xtr, _, Xte, yte = mlc.data.load_digits()
    model, x = tiny_vit()
    if trained:
        train_tiny_vit(model)
    rows = {"mlc eager": (_eager(model), None)}
    for q in (None, "int8", "int4-weight"):
        art = mlc.deploy(model, x, quantize=q, calibration=[Xtr[:128], Xtr[128:256]])
        with tempfile.TemporaryDirectory() as d:
            again = mlc.deploy.load(art.save(d))
            assert np.array_equal(again(Xte), art(Xte)), "a reloaded artifact differs"
        rows[f"deploy {q or 'fp32'}"] = (art, art.weight_bytes)
    ort = _ort(model, threads)
    if ort is not None:
        rows["onnxruntime"] = (ort, rows["deploy fp32"][1])
    table = []
    with limit_threads(threads):
        for name, (fn, wbytes) in rows.items():
            acc = float((fn(Xte).argmax(1) == yte).mean())
            for b in (1, 64):
                fn(Xte[:b])                   # compile/plan/session outside the clock
            ts = [timeit(lambda fn=fn, b=b: fn(Xte[:b]), repeat=repeat) for b in (1, 64)]
            table.append([name, f"{100 * acc:.2f}", wbytes or "", ts[0] * 1e6, ts[1] * 1e6])
    base = {b: table[1][3 + i] for i, b in enumerate((1, 64))}
    for row in table:
        row += [row[3] / base[1], row[4] / base[64]]
        row.insert(3, f"{row[2] / table[1][2]:.3f}" if row[2] else "")
    print(f"\ntiny ViT on digits ({threads} threads each; time / deploy fp32 time)")
    print_table(table, ["runtime", "acc %", "weight B", "of fp32", "b=1 us", "b=64 us",
                        "b=1 ratio", "b=64 ratio"])
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench deploy",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="untrained ViT, fewer rounds")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per case")
    args = parser.parse_args(argv)
    with stopwatch() as sw:
        bench_vit(not args.quick, 3 if args.quick else args.repeat)
    print(f"\n({sw.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
