"""Model compression on the digits: what each technique buys and costs, measured.

    mlc bench compress            # full: 1024 x 1024 sweep, 3 seeds, longer training
    mlc bench compress --quick    # fewer sparsities, seeds and epochs
    mlc bench compress --plot pareto.png   # also save the Pareto chart (and time vs sparsity)

1. **Break-even**: CSR and 2:4 matmul (Numba) against the dense kernel of ``mlc.ndarray``
   (``cpu()``) and numpy for a 1024 x 1024 weight at batch 1 and 64, over sparsity; the
   sparsity from which CSR is as fast as each dense reference.
2. **The digits MLP** (64-256-10): dense; magnitude-pruned iteratively to 90% (masks, so
   as slow as dense) and the same as CSR ``SparseLinear`` layers; 2:4 pruned and
   fine-tuned (masked and 2:4-compressed); half the hidden units removed by channel
   pruning (a smaller dense model) and fine-tuned; SVD low rank (energy 0.9) fine-tuned;
   int8 post-training quantization (``mlc.quant``) for the Pareto chart; and the
   experiments that need seeds: lottery ticket, distillation (student alone vs
   distilled, and a temperature sweep), accuracy vs rank, early exit's accuracy vs FLOPs.
3. **The digits CNN**: standard convs vs a depthwise-separable second conv, channel
   pruning and magnitude pruning.

Latency is one forward pass over the 360 test images (``mlc.perf.timeit``, median);
every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from mlc import compress as C
from mlc import perf
from mlc.data import load_digits
from mlc.models import digits_cnn, digits_mlp


def _pm(mean, std):
    return f"{mean:.2%} ± {std:.2%}"


def break_even(args):
    sp = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99) if args.quick else C.SPARSITIES
    rows = []
    # one thread first (Numba and numpy's OpenBLAS): every kernel on equal terms; then
    # every thread the libraries would use by themselves
    for threads in (1, None):
        rows += C.time_vs_sparsity(n=1024, batches=(1, 64), sparsities=sp,
                                   repeat=3 if args.quick else 5,
                                   min_time=0.05 if args.quick else 0.2, threads=threads)
    print("== 1. Sparse matmul, 1024 x 1024 weight: time vs sparsity ==")
    print(C.break_even_table(rows))
    return rows


def _summ(model, data, name, args, batch=None):
    return C.summary(model, data, name=name, repeat=3 if args.quick else 5,
                     min_time=0.05 if args.quick else 0.2, batch=batch)


def _int8_row(model, data, name, args):
    """The int8 PTQ model of mlc.quant as a Pareto point (skipped if quant is not there)."""
    try:
        from mlc import quant
    except ImportError as e:  # another issue's module
        print(f"   ({name}: mlc.quant not importable: {e})")
        return None
    X_train, _, X_test, y_test = data
    qm = quant.quantize_model(model, [X_train[:512]])
    acc = float((np.asarray(qm(X_test)).argmax(1) == y_test).mean())
    lat = perf.timeit(lambda: qm(X_test), repeat=3 if args.quick else 5,
                      min_time=0.05 if args.quick else 0.2)
    nbytes = qm.weight_bytes()["int8_total"]
    return dict(name=name, params=C.count_parameters(model), nonzeros=C.count_nonzeros(model),
                stored_bytes=nbytes, bytes_dense=4 * C.count_parameters(model),
                best_bytes=nbytes, best_format="int8 (quant)",
                flops=C.count_flops(model, X_test[:1]),
                sparse_flops=C.count_flops(model, X_test[:1], True), latency=lat,
                accuracy=acc, latency_batch=len(X_test))


def mlp_section(data, args):
    X_train, y_train, X_test, y_test = data
    epochs = 10
    print("\n== 2. The digits MLP 64-256-10 ==")
    dense = digits_mlp(hidden=(256,), seed=0)[0]
    C.fit(dense, X_train, y_train, epochs=epochs, seed=0)
    rows = [_summ(dense, data, "mlp dense", args)]

    pruned = C.clone(dense)
    steps = C.iterative_prune(pruned, data, schedule=(0.5, 0.75, 0.9), epochs=3, lr=0.01)
    print("iterative magnitude pruning (global), 3 epochs of fine-tuning per step:")
    perf.print_table([[r["amount"], r["sparsity"], "-" if r["accuracy_pruned"] is None
                       else r["accuracy_pruned"], r["accuracy"]] for r in steps],
                     ["target", "sparsity", "acc. just pruned", "acc. fine-tuned"])
    print(f"loss of accuracy at {steps[-1]['sparsity']:.1%} sparsity: "
          f"{(steps[0]['accuracy'] - steps[-1]['accuracy']) * 100:.2f} points")
    rows.append(_summ(pruned, data, "pruned 90% (masked)", args))
    rows.append(_summ(C.to_sparse(C.clone(pruned)), data, "pruned 90% (csr)", args))

    p24 = C.prune_2_4(C.clone(dense))
    C.fit(p24, X_train, y_train, epochs=3, lr=0.003, seed=1)
    rows.append(_summ(p24, data, "2:4 (masked)", args))
    rows.append(_summ(C.to_sparse(C.clone(p24), fmt="2:4"), data, "2:4 (compressed)", args))

    half = C.prune_channels(dense, 0.5)
    rows.append(_summ(half, data, "channels/2 (no fine-tune)", args))
    C.fit(half, X_train, y_train, epochs=3, lr=0.003, seed=2)
    rows.append(_summ(half, data, "channels/2 + fine-tune", args))

    lowr = C.low_rank_model(dense, energy=0.9)
    rank = lowr[0].rank
    C.fit(lowr, X_train, y_train, epochs=3, lr=0.003, seed=3)
    rows.append(_summ(lowr, data, f"low rank {rank} (E=0.9)", args))

    q = _int8_row(dense, data, "int8 PTQ", args)
    if q is not None:
        rows.append(q)
    print(C.summary_table(rows))
    d, h = rows[0], next(r for r in rows if r["name"] == "channels/2 + fine-tune")
    print(f"channels/2: {h['stored_bytes'] / d['stored_bytes']:.3f} of the dense bytes")

    # timed in alternation: the load of a shared machine drifts between two measurements
    contenders = {"mlp dense": dense, "channels/2": half, "pruned 90% (masked)": pruned,
                  "pruned 90% (csr)": C.to_sparse(C.clone(pruned))}
    table = []
    for batch in (len(X_test), 1):
        lat = C.compare_latency(contenders, X_test[:batch], rounds=3 if args.quick else 5)
        base = lat["mlp dense"]
        for name, t in lat.items():
            table.append([batch, name, t["median"] * 1e3, t["min"] * 1e3,
                          base["median"] / t["median"], base["min"] / t["min"]])
    print("latency, models timed in alternation (median of rounds, and best round):")
    perf.print_table(table, ["batch", "model", "ms median", "ms best", "speed-up (median)",
                             "speed-up (best)"])

    _seeds_section(dense, data, args)
    return rows


def _seeds_section(dense, data, args):
    X_train, y_train, X_test, y_test = data
    seeds = (0, 1) if args.quick else (0, 1, 2)
    lt = C.lottery_ticket(lambda s: digits_mlp(hidden=(256,), seed=s)[0], data, amount=0.9,
                          seeds=seeds, epochs=10)
    print(f"\nlottery ticket, 90% sparse (one-shot, global), 10 epochs, {len(seeds)} seeds "
          "(mean ± std of test accuracy):")
    perf.print_table([[k, _pm(lt[f"{k}_mean"], lt[f"{k}_std"])] for k in
                      ("dense", "rewind", "reinit")], ["run", "accuracy"])

    dseeds = (0, 1, 2) if args.quick else (0, 1, 2, 3, 4)
    temps = (2.0, 8.0) if args.quick else (1.0, 2.0, 4.0, 8.0)
    teacher = dense
    print(f"\ndistillation: teacher = the dense MLP ({C.accuracy(teacher, X_test, y_test):.2%}"
          f" on test), {len(dseeds)} seeds; alone and distilled start from the same weights")
    settings = [("all 1437", data, 16, 10 if args.quick else 20, 0.5),
                ("first 200", (X_train[:200], y_train[:200], X_test, y_test), 32, 30, 0.9)]
    table = []
    for label, d, hidden, epochs, alpha in settings:
        for T in temps:
            r = C.distillation_experiment(
                teacher, lambda s, h=hidden: digits_mlp(hidden=(h,), seed=s)[0], d,
                seeds=dseeds, T=T, alpha=alpha, epochs=epochs)
            table.append([label, f"64-{hidden}-10", epochs, T, alpha,
                          _pm(r["alone_mean"], r["alone_std"]),
                          _pm(r["distilled_mean"], r["distilled_std"]), r["gain"] * 100])
    perf.print_table(table, ["student's data", "student", "epochs", "T", "alpha",
                             "alone", "distilled", "gain (points)"])

    ranks = (2, 4, 8, 16, 32) if args.quick else (2, 4, 8, 16, 32, 64)
    sweep = C.rank_sweep(dense, data, ranks, fine_tune_epochs=2)
    print("\nlow rank of the first layer (64 x 256), accuracy vs rank:")
    perf.print_table([[r["rank"], r["params"], r["accuracy"], r["accuracy_finetuned"]]
                      for r in sweep], ["rank", "params", "as factorised", "fine-tuned 2 ep"])

    ee = C.early_exit_mlp(256, seed=0)
    C.fit(ee, X_train, y_train, epochs=10, loss_fn=ee.loss, seed=0)
    curve = C.early_exit_curve(ee, X_test, y_test)
    print("\nearly exit after the first layer (exit when max softmax >= threshold):")
    perf.print_table([[r["threshold"], r["exit_fraction"], r["flops"] / 1e3,
                       r["flops"] / r["flops_full"], r["accuracy"]] for r in curve],
                     ["threshold", "exited", "kFLOP/example", "of full", "accuracy"])


def cnn_section(args):
    data = load_digits(flatten=False)
    X_train, y_train, X_test, y_test = data
    epochs = 3 if args.quick else 6
    print(f"\n== 3. The digits CNN (conv 3x3 16, conv 3x3/2 32, fc), {epochs} epochs ==")
    std = digits_cnn(channels=(16, 32), seed=0)[0]
    C.fit(std, X_train, y_train, epochs=epochs, seed=0)
    sep = digits_cnn(channels=(16, 32), seed=0, conv=C.DepthwiseSeparableConv)[0]
    C.fit(sep, X_train, y_train, epochs=epochs, seed=0)
    rows = [_summ(std, data, "cnn standard", args), _summ(sep, data, "cnn depthwise-sep.", args)]
    half = C.prune_channels(std, 0.5)
    C.fit(half, X_train, y_train, epochs=2, lr=0.003, seed=1)
    rows.append(_summ(half, data, "cnn channels/2 + ft", args))
    pruned = C.clone(std)
    C.iterative_prune(pruned, data, schedule=(0.5, 0.75), epochs=1, lr=0.003)
    rows.append(_summ(pruned, data, "cnn pruned 75% (masked)", args))
    print(C.summary_table(rows))
    cost = C.conv_cost(16, 32, 3, out_pixels=16)
    print(f"second conv alone: {cost['standard_params']} -> {cost['separable_params']} "
          f"weights ({cost['ratio']:.3f}x)")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mlc bench compress",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer points, seeds, epochs")
    parser.add_argument("--plot", metavar="PATH", help="save the Pareto chart to PATH")
    parser.add_argument("--skip-kernels", action="store_true", help="skip section 1")
    args = parser.parse_args(argv)

    import os

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"machine: {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in load) if load else 'unknown'} (timings are this run's)")
    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile

    # one tick per section on stderr; stdout goes through tqdm so the tables print above it
    with perf.stopwatch() as sw, contextlib.redirect_stdout(DummyTqdmFile(sys.stdout)), \
            tqdm(total=3, desc="mlc bench compress", unit="section", file=sys.stderr) as bar:
        bar.set_postfix_str("sparse kernels")
        sparse_rows = None if args.skip_kernels else break_even(args)
        bar.update()
        bar.set_postfix_str("MLP")
        mlp_rows = mlp_section(load_digits(), args)
        bar.update()
        bar.set_postfix_str("CNN")
        cnn_rows = cnn_section(args)
        bar.update()
    front = C.pareto_front(mlp_rows)
    print("\nPareto front of the MLP (accuracy vs stored bytes): "
          + ", ".join(r["name"] for r in front))
    front = C.pareto_front(mlp_rows, cost="latency")
    print("Pareto front of the MLP (accuracy vs latency): "
          + ", ".join(r["name"] for r in front))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        axes = C.pareto_chart(mlp_rows + cnn_rows, title="digits: compression techniques")
        axes[0].figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        if sparse_rows:
            ax = C.plot_time_vs_sparsity(sparse_rows)
            ax[0].figure.savefig(args.plot.replace(".png", "") + "_sparsity.png", dpi=120,
                                 bbox_inches="tight")
        plt.close("all")
        print(f"charts saved next to {args.plot}")
    print(f"\n(benchmark ran in {sw.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
