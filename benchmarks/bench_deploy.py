"""Deployment, end to end: the tiny ViT and the tiny GPT's decode step, same run.

    mlc bench deploy            # trains the ViT (about 20 s), then times everything
    mlc bench deploy --quick    # untrained ViT (accuracy column meaningless), fewer rounds

1. The tiny ViT at batch 1 and 64: mlc eager (autograd Tensors, no graph), ``mlc.deploy``
   fp32, int8 (calibrated on 256 training digits) and int4-weight (group 32), and ONNX
   Runtime's CPU provider on ``graph.to_onnx`` of the same traced graph (when it imports);
   PyTorch is not a column (not installed here). Every library gets the same threads
   (``limit_threads``, ``intra_op_num_threads``). Test accuracy and weight bytes per row;
   each deployed artifact is saved and reloaded, and must compute the same bits.
2. The tiny GPT's greedy decoding at its full context: tokens per second without the KV
   cache (the whole prefix again per token) and with it (the compiled decode step), and
   the cache's bytes against the weights' as the context grows.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

import mlc
from mlc import graph
from mlc.models import gpt as G
from mlc.models import tiny_gpt, tiny_vit, train_tiny_vit
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
    print(f"\ntiny ViT on digits ({threads} threads each; time / deploy fp32 time)")
    print_table(table, ["runtime", "acc %", "weight B", "b=1 us", "b=64 us", "b=1 ratio",
                        "b=64 ratio"])
    return table


def bench_decode(repeat: int):
    model, x = tiny_gpt()
    L = model.length
    prompt, n = x[:1, :L + 1], L
    step = G.compile_decoder(model, batch=1)
    model.generate(prompt, n, kv_cache=True, step=step)           # compile outside the clock
    gen = [[kind, timeit(f, repeat=repeat, number=1)] for kind, f in (
        ("eager, no cache", lambda: model.generate(prompt, n, kv_cache=False)),
        ("eager, KV cache", lambda: model.generate(prompt, n, kv_cache=True)),
        ("compiled step, KV cache", lambda: model.generate(prompt, n, kv_cache=True,
                                                           step=step)))]
    print(f"\ntiny GPT (untrained; the time does not depend on the weights), greedy decoding "
          f"of {n} tokens after {L + 1} (context {model.context}), batch 1")
    print_table([[k, t * 1e3, n / t] for k, t in gen], ["generate", "ms", "tokens/s"])
    # one token at the full context, one thing changed at a time: the whole prefix again
    # (full forward) vs the step over the cache, each eager and each compiled
    ids = np.zeros((1, model.context), "int64")
    full = graph.build(graph.trace(model, ids))
    fwd = _eager(model)
    cache, ccache = G.KVCache(model, 1), G.KVCache(model, 1, step)
    eager_step = lambda: cache.decode(ids[:, :1], model.context - 1)      # noqa: E731
    comp_step = lambda: ccache.decode(ids[:, :1], model.context - 1)      # noqa: E731
    per = [[kind, timeit(f, repeat=repeat) * 1e6] for kind, f in (
        ("eager, full forward", lambda: fwd(ids)), ("eager, KV-cache step", eager_step),
        ("compiled, full forward", lambda: full(ids)), ("compiled, KV-cache step", comp_step))]
    print(f"\none token at the full context ({model.context} positions)")
    print_table(per, ["decode", "us per token"])
    print(f"the cache's speed-up per token: eager {per[0][1] / per[1][1]:.1f}x, compiled "
          f"{per[2][1] / per[3][1]:.1f}x")
    wbytes = sum(p.numpy().nbytes for p in model.parameters())
    dh = model.d // model.heads
    rows = [[t, 2 * len(model.blocks) * t * model.heads * dh * 4, wbytes]
            for t in (model.context, 64, 256, 1024)]
    for r in rows:
        r.append(r[1] / r[2])
    print_table(rows, ["context", "cache B", "weight B", "cache / weights"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench deploy",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="untrained ViT, fewer rounds")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per case")
    args = parser.parse_args(argv)
    with stopwatch() as sw:
        bench_vit(not args.quick, 3 if args.quick else args.repeat)
        bench_decode(3 if args.quick else args.repeat)
    print(f"\n({sw.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
