"""One line per model: what compression bought and what it cost, and the Pareto chart.

:func:`summary` measures a model on test data: parameters, nonzeros, the bytes it stores
as it is (a masked model stores its zeros and its masks: pruning alone saves nothing),
the bytes it would take in every format of ``sparse.FORMATS`` (and the smallest of them,
which for a dense model is int8: quantization), FLOPs per example (dense,
and counting nonzero weights only), latency of one forward pass over a batch (the one
timer, ``mlc.perf.timeit``) and accuracy. :func:`summary_table` prints several side by
side; :func:`pareto_chart` draws accuracy against bytes and against latency.

A model is on the **Pareto front** when no other model is at least as good on both axes
and strictly better on one: smaller *and* at least as accurate. Only front models are
worth choosing; the rest are dominated. Summaries from elsewhere (the int8 models of
``mlc.quant``, say) join the chart as any dict with ``name``, ``accuracy``,
``stored_bytes`` and ``latency``. :func:`compare_latency` times several models in
alternation, which is fairer on a shared machine than timing one after the other while
the load drifts.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import Tensor, no_grad
from ..perf import format_table, timeit
from .flops import count_flops, count_nonzeros, count_parameters, model_bytes, stored_model_bytes
from ..models.train import accuracy

__all__ = ["summary", "summary_table", "pareto_front", "pareto_chart", "compare_latency"]


def _test_split(data):
    if isinstance(data, (tuple, list)) and len(data) == 4:
        return data[2], data[3]
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise ValueError("summary: data is (X_test, y_test) or load_digits()'s 4-tuple")


def summary(model: nn.Module, data, name: str | None = None, batch: int | None = None,
            repeat: int = 5, min_time: float = 0.05, latency: bool = True) -> dict:
    """Measure ``model`` on ``data`` (``(X_test, y_test)`` or ``load_digits()``'s tuple).

    ``batch`` examples per timed forward pass (default: the whole test set);
    ``latency=False`` skips the timing (it is the slow part). Keys: ``name``,
    ``params``, ``nonzeros``, ``stored_bytes`` (as the model is), ``bytes`` (dict by
    format), ``bytes_dense``,
    ``best_bytes``, ``best_format``, ``flops``, ``sparse_flops``, ``latency``
    (seconds per forward pass, a ``perf.Timing``), ``latency_batch``, ``accuracy``.
    """
    X, y = _test_split(data)
    by_fmt = model_bytes(model)
    best_fmt = min((f for f in by_fmt if by_fmt[f] is not None), key=lambda f: by_fmt[f])
    X = np.asarray(X, np.float32)
    xb = X if batch is None else X[:batch]
    row = dict(name=name or type(model).__name__, params=count_parameters(model),
               nonzeros=count_nonzeros(model), stored_bytes=stored_model_bytes(model),
               bytes=by_fmt, bytes_dense=by_fmt["dense"],
               best_bytes=by_fmt[best_fmt], best_format=best_fmt,
               flops=count_flops(model, X[:1]), sparse_flops=count_flops(model, X[:1], True),
               accuracy=accuracy(model, X, y), latency=None, latency_batch=len(xb))
    if latency:
        device = next((p.device for p in model.parameters()), None)
        t = Tensor(xb, device=device, requires_grad=False)
        model.eval()

        def run():
            with no_grad():
                model(t).numpy()

        row["latency"] = timeit(run, repeat=repeat, min_time=min_time)
    return row


def summary_table(rows: list[dict]) -> str:
    """Rows of :func:`summary` as a plain-text table (KiB, kFLOP, ms)."""
    headers = ["model", "params", "nonzeros", "stored KiB", "fp32 KiB", "best KiB", "format",
               "kFLOP/ex", "sparse kFLOP/ex", "ms/batch", "accuracy"]
    body = []
    for r in rows:
        lat = r.get("latency")
        body.append([r["name"], r["params"], r["nonzeros"], r["stored_bytes"] / 1024,
                     r["bytes_dense"] / 1024,
                     r["best_bytes"] / 1024, r["best_format"], r["flops"] / 1e3,
                     r["sparse_flops"] / 1e3, "-" if lat is None else float(lat) * 1e3,
                     r["accuracy"]])
    return format_table(body, headers)


def pareto_front(rows: list[dict], cost: str = "stored_bytes") -> list[dict]:
    """The rows no other row dominates (``cost`` lower or equal *and* accuracy higher or
    equal, one of them strictly), sorted by cost."""
    pts = [r for r in rows if r.get(cost) is not None]
    front = []
    for r in pts:
        c, a = float(r[cost]), r["accuracy"]
        dominated = any(float(o[cost]) <= c and o["accuracy"] >= a
                        and (float(o[cost]) < c or o["accuracy"] > a) for o in pts)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: float(r[cost]))


def pareto_chart(rows: list[dict], axes=None, title: str | None = None):
    """Accuracy against stored bytes (left) and against latency (right), the Pareto front
    joined by a line. Returns the two matplotlib axes.

    Each model keeps one colour and marker in both panels and is named once, in a legend
    under them: models of this size cluster (several share an accuracy to the image), and
    names written next to the points would overlap."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    colours = plt.get_cmap("tab10").colors
    markers = "osD^vP*Xh<>p"
    style = {r["name"]: dict(color=colours[i % len(colours)], marker=markers[i % len(markers)])
             for i, r in enumerate(rows)}
    for ax, cost, scale, label in ((axes[0], "stored_bytes", 1 / 1024, "stored KiB"),
                                   (axes[1], "latency", 1e3, "ms per batch")):
        pts = [r for r in rows if r.get(cost) is not None]
        for r in pts:
            ax.scatter(float(r[cost]) * scale, r["accuracy"] * 100, s=40, label=r["name"],
                       edgecolors="k", linewidths=0.4, zorder=3, **style[r["name"]])
        front = pareto_front(pts, cost)
        ax.plot([float(r[cost]) * scale for r in front], [r["accuracy"] * 100 for r in front],
                "k--", linewidth=1, label="Pareto front", zorder=2)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
    fig = axes[0].figure
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8,
               frameon=False)
    fig.subplots_adjust(bottom=0.24)
    if title:
        fig.suptitle(title)
    return axes


def compare_latency(models: dict, X, rounds: int = 5, repeat: int = 3,
                    min_time: float = 0.05) -> dict:
    """Seconds per forward pass over ``X`` of each model in ``{name: model}``, timed in
    alternation: ``rounds`` times, each model once per round (``perf.timeit``). Returns
    ``{name: {"median": ..., "min": ..., "rounds": [...]}}``, ``median`` being the median
    of the rounds' medians and ``min`` the best round of all."""
    X = np.asarray(X, np.float32)
    runs = {}
    for name, model in models.items():
        device = next((p.device for p in model.parameters()), None)
        t = Tensor(X, device=device, requires_grad=False)
        model.eval()

        def run(model=model, t=t):
            with no_grad():
                model(t).numpy()

        runs[name] = run
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(timeit(run, repeat=repeat, min_time=min_time))
    return {name: dict(median=float(np.median([float(t) for t in ts])),
                       min=min(t.min for t in ts), rounds=[float(t) for t in ts])
            for name, ts in times.items()}
