"""``mlc.deploy``: the whole path from a model to a file you can ship, in one call.

::

    art = mlc.deploy(model, example, quantize=None | "int8" | "int4-weight",
                     plan="greedy_by_size", target="cpu", calibration=None)
    art(x)                                   # numpy in, numpy out
    art.save("artifact/")                    # a folder: JSON and .npz, no pickle
    art2 = mlc.deploy.load("artifact/")      # no model code; kernels regenerated
    print(art.report(data=(X, y)))           # accuracy, latency, bytes, arena, kernels

The stages, each timed and each a function of the previous stage's value::

    trace     model -> Graph                       graph.trace
    passes    Graph -> Graph                       fold constants, CSE, dead code
    quantize  Graph -> Graph                       quant.quantize_graph (W8A8, calibrated)
                                                   or quant.quantize_weights (int4, g=32,
                                                   fp16 scales) + quant.quantize_tables
    fuse      Graph -> FusedGraph                  graph.fuse(policy="tvm")
    lower     FusedGraph -> Program                graph.lower: one kernel per group
    plan      Program -> Program with offsets      memory.plan + memory.assign
    compile   Program -> Executable                the arena, the weights in it

A stage that fails raises :class:`DeployError` naming the stage (and the op, where the
failing stage's error names one). The module itself is callable (``mlc.deploy(...)``
is :func:`deploy`), so ``mlc.deploy.load`` sits beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types

import numpy as np

from .perf.timing import stopwatch

__all__ = ["deploy", "load", "Artifact", "DeployError", "STAGES", "QUANTIZE"]

STAGES = ("trace", "passes", "quantize", "fuse", "lower", "plan", "compile")
QUANTIZE = (None, "int8", "int4-weight")
FORMAT, VERSION = "mlc-deploy", 1


class DeployError(ValueError):
    """A model the pipeline cannot deploy, or a folder that is not a deployable artifact."""


def _passes(g):
    from . import graph

    return graph.eliminate_dead_code(graph.eliminate_common_subexpressions(
        graph.fold_constants(g)))


def _quantize(g, how, calibration):
    from . import quant

    if how is None:
        return g
    if how == "int8":
        if calibration is None:
            raise DeployError("deploy: quantize='int8' needs calibration batches (a list "
                              "of example inputs), e.g. calibration=[X[:64], X[64:128]]")
        batches = [b if isinstance(b, (tuple, list)) else (b,) for b in calibration]
        return quant.quantize_graph(g, batches)
    # int4-weight: every weight matrix in 4 bits (groups of 32, fp16 scales: 4.5 bits a
    # weight), the other tables (a position table, an embedding) in int8; the vectors
    # (biases, layer norms) stay float32 (quant.weightonly.is_table says why)
    g = quant.quantize_weights(g, bits=4, group_size=32, strict=False, scale_dtype="float16")
    return quant.quantize_tables(g)


def _op_of(err: Exception, g) -> str:
    """The op a stage's error is about: the first op name of ``g`` that it mentions."""
    text = str(err)
    for op in sorted({n.op for n in g.nodes}, key=len, reverse=True):
        if op not in ("input", "constant") and op in text:
            return op
    return ""


def deploy(model, example, quantize=None, plan="greedy_by_size", target="cpu",
           calibration=None) -> "Artifact":
    """Trace ``model`` on ``example`` and run every stage (module docstring); return the
    :class:`Artifact`. ``example``: one input array (or a tuple of them); its leading axis
    is the batch, which stays free."""
    from . import graph, memory

    if quantize not in QUANTIZE:
        raise DeployError(f"deploy: quantize must be one of {QUANTIZE}, got {quantize!r}")
    examples = tuple(np.asarray(e) for e in (example if isinstance(example, tuple)
                                             else (example,)))
    # at batch 1 a broadcast over the batch cannot be told from the batch itself: trace at
    # 2 rows (the same row twice) so the graph's batch axis is found and stays free
    if all(e.ndim and e.shape[0] == 1 for e in examples):
        examples = tuple(np.repeat(e, 2, axis=0) for e in examples)
    times: dict = {}
    value = model

    def stage(name, fn):
        nonlocal value
        sw = stopwatch()
        try:
            value = fn(value)
        except DeployError:
            raise
        except Exception as e:
            g = current_graph
            op = _op_of(e, g) if g is not None else ""
            what = f" (op {op!r})" if op else ""
            raise DeployError(f"deploy: the {name} stage failed{what}: "
                              f"{type(e).__name__}: {e}") from e
        times[name] = sw.stop()
        return value

    current_graph = None
    current_graph = stage("trace", lambda m: graph.trace(m, *examples))
    current_graph = stage("passes", _passes)
    current_graph = stage("quantize", lambda g: _quantize(g, quantize, calibration))
    stage("fuse", lambda g: graph.fuse(g, policy="tvm"))
    stage("lower", lambda fg: graph.lower(fg, target))
    if plan is not None:
        stage("plan", lambda p: memory.assign(p, memory.plan(p, plan)))
    exe = stage("compile", graph.Executable)
    return Artifact(exe, {"quantize": quantize, "plan": plan, "target": target,
                          "compile_seconds": times})


class Artifact:
    """A deployed model: an :class:`~mlc.graph.Executable` and what made it."""

    def __init__(self, exe, meta: dict):
        self.exe, self.meta = exe, meta

    def __call__(self, *inputs):
        return self.exe(*inputs)

    @property
    def graph(self):
        return self.exe.graph

    @property
    def weight_bytes(self) -> int:
        """Bytes of every constant the artifact stores: the weight matrices (or their codes
        and scales), biases, layer norms, tables, as :attr:`weights` lists them. Nothing is
        left out, so fp32 / int8 / int4 ratios are ratios of what is shipped."""
        return int(sum(self.weights.values()))

    @property
    def weights(self) -> dict:
        """``{constant's name: bytes}``, largest first: where the weight bytes are."""
        sizes = {n.name: int(np.asarray(n.value).nbytes) for n in self.graph.params}
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))

    @property
    def compile_seconds(self) -> dict:
        return dict(self.meta["compile_seconds"])

    # ---- save and load -----------------------------------------------------------------

    def save(self, path) -> str:
        """Write folder ``path``: ``executable/`` (``exe.save``: JSON + .npz) and
        ``deploy.json`` (how it was made, and the SHA-256 of every file, so a changed
        file is found on load)."""
        path = str(path)
        os.makedirs(path, exist_ok=True)
        self.exe.save(os.path.join(path, "executable"))
        data = {"format": FORMAT, "version": VERSION, "meta": self.meta,
                "files": _digests(path)}
        with open(os.path.join(path, "deploy.json"), "w") as f:
            json.dump(data, f, indent=1)
        return path

    def __repr__(self):
        q = self.meta["quantize"] or "fp32"
        return f"<mlc.deploy artifact: {q}, {self.weight_bytes} weight bytes, {self.exe!r}>"

    def report(self, data=None, batch: int = 64, repeat: int = 7) -> "Report":
        """Measure the artifact: accuracy on ``data=(X, y)`` (argmax of the output), latency
        at batch 1 and ``batch`` (median and p90 of ``repeat`` rounds, ``mlc.perf.timeit``),
        weight bytes, the arena against its lower bound, kernels, compile seconds per stage
        and the time per kernel group (``exe.profile`` at ``batch``)."""
        from .perf import timeit

        X = data[0] if data is not None else _inputs_like(self.graph, batch)
        r = Report(quantize=self.meta["quantize"] or "fp32", weight_bytes=self.weight_bytes,
                   kernels=self.exe.kernels, compile_seconds=self.compile_seconds)
        if data is not None:
            r.accuracy = float((np.asarray(self(X)).argmax(-1) == np.asarray(data[1])).mean())
        for n in (1, batch):
            x = _take(X, n, batch)
            t = timeit(lambda x=x: self(x), repeat=repeat, min_time=0.02)
            r.latency[n] = (float(t), float(np.percentile(t.times, 90)))
        plan = self.exe.plan
        if plan is not None:
            r.arena_bytes, r.lower_bound = plan.arena_bytes, plan.lower_bound
        groups: dict = {}
        for kernel, sec in self.exe.profile(_take(X, batch, batch), repeat=3, min_time=0.005):
            key = kernel_group(kernel.nodes)
            groups[key] = groups.get(key, 0.0) + sec
        r.groups = dict(sorted(groups.items(), key=lambda kv: -kv[1]))
        return r


# The op that names a kernel's group: the first of these it contains, else its first op.
HEAVY = ("qlinear", "wmatmul", "matmul", "conv", "softmax", "layer_norm", "gelu", "take",
         "qadd", "quantize", "dequantize")


def kernel_group(nodes) -> str:
    ops = [n.op for n in nodes]
    for op in HEAVY:
        if op in ops:
            return op
    return ops[0] if ops else "?"


def _inputs_like(g, batch):
    rng = np.random.default_rng(0)
    n = g.inputs[0]
    shape = (batch, *[int(d) for d in n.shape[1:]])
    if np.issubdtype(np.dtype(n.dtype), np.integer):
        return np.zeros(shape, n.dtype)
    return rng.random(shape).astype(n.dtype)


def _take(X, n, batch):
    X = np.asarray(X)
    reps = -(-n // len(X))
    return np.ascontiguousarray(np.concatenate([X] * reps)[:n]) if reps > 1 else X[:n]


class Report:
    """What :meth:`Artifact.report` measured; prints as a report card with a bar per
    kernel group. ``bottleneck`` is the group that takes the most time."""

    def __init__(self, quantize, weight_bytes, kernels, compile_seconds):
        self.quantize, self.weight_bytes, self.kernels = quantize, weight_bytes, kernels
        self.compile_seconds = compile_seconds
        self.accuracy = None
        self.latency: dict = {}
        self.arena_bytes = self.lower_bound = None
        self.groups: dict = {}

    @property
    def bottleneck(self) -> str:
        return next(iter(self.groups), "")

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}

    def __str__(self) -> str:
        lines = [f"deployed model ({self.quantize})"]
        if self.accuracy is not None:
            lines.append(f"  accuracy        {100 * self.accuracy:.2f} %")
        for n, (med, p90) in self.latency.items():
            lines.append(f"  latency b={n:<4}  median {med * 1e6:9.1f} us   p90 "
                         f"{p90 * 1e6:9.1f} us")
        lines.append(f"  weight bytes    {self.weight_bytes}")
        if self.arena_bytes is not None:
            lines.append(f"  arena           {self.arena_bytes} B (lower bound "
                         f"{self.lower_bound} B)")
        lines.append(f"  kernels         {self.kernels}")
        lines.append("  compile s       " + ", ".join(
            f"{k} {v:.3f}" for k, v in self.compile_seconds.items()))
        total = sum(self.groups.values()) or 1.0
        lines.append("  time per kernel group:")
        for k, v in self.groups.items():
            bar = "#" * max(1, round(30 * v / total))
            lines.append(f"    {k:<12} {100 * v / total:5.1f} % {bar}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def _digests(path) -> dict:
    out = {}
    for root, _, files in os.walk(os.path.join(path, "executable")):
        for name in sorted(files):
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def load(path) -> Artifact:
    """The artifact saved in folder ``path``: version and every file's digest checked
    first, then ``graph.load_executable`` (kernels regenerated, nothing stored is run)."""
    from . import graph

    path = str(path)
    where = os.path.join(path, "deploy.json")
    try:
        with open(where) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DeployError(f"{path}: no deploy.json, not a folder written by "
                          f"artifact.save") from None
    except json.JSONDecodeError as e:
        raise DeployError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DeployError(f"{where}: not an mlc deploy artifact")
    if data.get("version") != VERSION:
        raise DeployError(f"{where}: written by another version of mlc.deploy (format "
                          f"version {data.get('version')!r}; this one reads {VERSION})")
    files = data.get("files")
    if not isinstance(files, dict) or not isinstance(data.get("meta"), dict):
        raise DeployError(f"{where}: 'files' and 'meta' missing")
    found = _digests(path)
    for name in sorted(set(files) | set(found)):
        if files.get(name) != found.get(name):
            state = "missing" if name not in found else (
                "not listed" if name not in files else "changed since it was saved")
            raise DeployError(f"{path}: {name} is {state} (tampered or mixed artifact)")
    from . import quant  # noqa: F401  (registers the quantized ops a graph may hold)

    exe = graph.load_executable(os.path.join(path, "executable"))
    return Artifact(exe, data["meta"])


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return deploy(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
