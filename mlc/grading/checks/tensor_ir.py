"""Unit 05, tensor IR (exercises 1-2): te programs checked against numpy.

The exercises ask for a *function of the shapes* returning a ``tir.PrimFunc``, so a check
makes programs for shapes the student never saw. A PrimFunc cannot travel: ``observe``
(worker) reports its parameters, its reduce extents and what running it did (built with
``tir.build`` for "python", where a read past the end of a buffer is an IndexError, or
once for "cpu"; run on the case's arrays, outputs starting as NaN). ``judge`` (grader)
computes the numpy reference and, when a result is wrong, compares it with the usual
mistakes (relu inside the sum, no padding, stride ignored, ...). Exercises 3 and 4
(``mean_var``, ``block_info``) are in :mod:`.tensor_ir_blocks`, on the same plumbing.
"""

from __future__ import annotations

import numpy as np

from ..registry import Check, CheckFailed, call, exercise, need

NB = "05_tensor_ir"
TOL = {"rtol": 1e-4, "atol": 1e-5}


# ---- in the worker: a PrimFunc as data --------------------------------------------------------

def _observe_prim(ns: dict, name: str, case: dict) -> dict:
    """Call the student's ``name(*args)``; describe what it returned and what running it did."""
    from ... import te, tir
    from ...tir.functor import blocks_in

    res = call(case["call"], need(ns, name), *case["args"])
    if isinstance(res, (list, tuple)) and res and all(isinstance(x, te.Tensor) for x in res):
        return {"kind": "tensors", "names": [str(x.name) for x in res]}
    if isinstance(res, te.Tensor):
        return {"kind": "tensor", "name": str(res.name)}
    if not isinstance(res, tir.PrimFunc):
        return {"kind": "other", "type": type(res).__name__}
    params = [[str(p.name), [int(s) for s in p.shape], str(p.dtype)] for p in res.params]
    blocks = list(blocks_in(res.body))
    reduce = sorted(int(iv.extent) for b in blocks for iv in b.iter_vars if iv.kind == "reduce")
    return {"kind": "primfunc", "params": params, "reduce": reduce, "blocks": len(blocks),
            "run": _run(res, case)}


def _run(func, case: dict) -> dict:
    """Build ``func`` for the case's target, run it on the case's inputs and NaN outputs."""
    from ... import tir

    inputs = [np.array(a, dtype=np.float32) for a in case["inputs"]]
    outputs = [np.full(tuple(s), np.nan, np.float32) for s in case["outputs"]]
    try:
        mod = tir.build(func, case["target"])
    except Exception as err:  # noqa: BLE001 - reported as data, judged in the grader
        return _error("build", err)
    try:
        mod(*inputs, *outputs)
    except Exception as err:  # noqa: BLE001
        return _error("run", err)
    return {"outputs": outputs}


def _error(stage: str, err: BaseException) -> dict:
    return {"stage": stage, "type": type(err).__name__,
            "mro": [c.__name__ for c in type(err).__mro__], "text": str(err)[:2000]}


# ---- in the grader: reading the observation ---------------------------------------------------

def _text(v, limit: int = 300) -> str:
    """A string from the worker, on one line and of bounded length."""
    s = " ".join((v if isinstance(v, str) else repr(v)).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _malformed(call_: str, what: str):
    return CheckFailed(f"{call_}: malformed observation ({what})")


def _ints(v, call_: str, what: str) -> list[int]:
    if not isinstance(v, (list, tuple)) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise _malformed(call_, what)
    return [int(x) for x in v]


def _check_params(params, call_: str, expected) -> list[str]:
    """``expected``: a list of (role, shape) in parameter order; all float32. Returns the
    parameters' names."""
    if not isinstance(params, list):
        raise _malformed(call_, "parameters")
    got = []
    for p in params:
        if not (isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[0], str)
                and isinstance(p[2], str)):
            raise _malformed(call_, "parameters")
        got.append((_text(p[0], 60), tuple(_ints(p[1], call_, "a parameter's shape")), p[2]))
    want = ", ".join(f"{role} {shape}" for role, shape in expected)
    if len(got) != len(expected):
        have = ", ".join(f"{n} {s}" for n, s, _ in got)
        raise CheckFailed(f"{call_}: the PrimFunc should take {len(expected)} buffers, in this "
                          f"order: {want}; yours takes {len(got)}: {have}. Pass "
                          "create_prim_func the inputs and then the outputs, and nothing else")
    for pos, ((pname, pshape, pdtype), (role, shape)) in enumerate(
            zip(got, expected, strict=True)):
        if pshape != tuple(shape):
            raise CheckFailed(f"{call_}: parameter {pos} ({pname}) should be {role} of shape "
                              f"{tuple(shape)}, but it has shape {pshape}")
        if pdtype != "float32":
            raise CheckFailed(f"{call_}: parameter {pos} ({pname}) should be float32, "
                              f"got {_text(pdtype, 40)}")
    return [pname for pname, _, _ in got]


def _outputs(case: dict, obs, expected, explain=None) -> tuple[list, list[int]]:
    """The outputs of a te exercise's run (float64 arrays) and its reduce extents, after
    checking what was returned and its parameters. ``explain(red, index_error)`` adds a
    diagnosis to the message of a failed build or run."""
    c = case["call"]
    if not isinstance(obs, dict):
        raise _malformed(c, "not a dict")
    kind = obs.get("kind")
    if kind == "tensors":
        raise CheckFailed(f"{c} returned a list of te tensors; pass them to "
                          "te.create_prim_func([...]) and return the PrimFunc it makes")
    if kind == "tensor":
        raise CheckFailed(f"{c} returned the te tensor {_text(obs.get('name'), 60)}; return "
                          "the PrimFunc that te.create_prim_func makes of the inputs and "
                          "outputs instead")
    if kind != "primfunc":
        raise CheckFailed(f"{c} should return a tir.PrimFunc (made by te.create_prim_func), "
                          f"got {_text(obs.get('type'), 60)}")
    names = _check_params(obs.get("params"), c, expected)
    red = _ints(obs.get("reduce"), c, "reduce extents")
    run = obs.get("run")
    if not isinstance(run, dict):
        raise _malformed(c, "run")
    if "stage" in run:
        msg, index_error = _run_message(case, run)
        raise CheckFailed(msg + (explain(red, index_error) if explain else ""))
    outs = run.get("outputs")
    if not isinstance(outs, list) or len(outs) != len(case["outputs"]):
        raise _malformed(c, "outputs")
    arrays = []
    for i, (o, shape) in enumerate(zip(outs, case["outputs"], strict=True)):
        try:
            a = np.asarray(o, dtype=np.float64)
        except (TypeError, ValueError):
            raise _malformed(c, f"output {i}") from None
        if a.shape != tuple(shape):
            raise _malformed(c, f"output {i} has shape {a.shape}")
        if np.isnan(a).any():  # outputs start as NaN; the inputs and references are finite
            raise CheckFailed(f"{c}: {int(np.isnan(a).sum())} of {a.size} elements of the "
                              f"output {names[len(names) - len(outs) + i]} were never written "
                              "(they are still NaN): does its compute cover all of it?")
        arrays.append(a)
    return arrays, red


def _run_message(case: dict, run: dict) -> tuple[str, bool]:
    """The message of a failed build or run, and whether it was an IndexError."""
    c, target = case["call"], case["target"]
    mro = run.get("mro") if isinstance(run.get("mro"), list) else []
    kind = _text(run.get("type"), 60)
    text = run.get("text") if isinstance(run.get("text"), str) else ""
    first = _text(text.strip().splitlines()[0] if text.strip() else "")
    if run.get("stage") == "build":
        if "VerifyError" in mro:
            return f"{c}: the PrimFunc is not well formed: {_text(text, 600)}", False
        return f"{c}: building it for {target!r} raised {kind}: {first}", False
    if "IndexError" in mro:
        return (f"{c}: the program reads or writes outside a buffer (IndexError: {first}). "
                "Check every index against the shape of the buffer it reads", True)
    return f"{c}, built for {target!r}, raised {kind}: {first}", False


def _close(a, b, rtol=1e-4, atol=1e-5) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _te_cases(rng, name: str, shapes, cpu_shape, inputs, outputs) -> list[dict]:
    """One case per shape ("python"), then one built for "cpu". ``inputs(rng, *shape)`` and
    ``outputs(*shape)`` give the input arrays and the output shapes."""
    out = []
    for shape, target in [*((s, "python") for s in shapes), (cpu_shape, "cpu")]:
        c = f"{name}({', '.join(map(repr, shape))})"
        out.append({"what": c if target == "python" else f"{c} built for 'cpu'", "call": c,
                    "args": list(shape), "inputs": inputs(rng, *shape),
                    "outputs": [list(s) for s in outputs(*shape)], "target": target})
    return out


# ---- exercise 1: batch matmul + relu ---------------------------------------------------------

def _bmm_ref(A, B):
    return np.maximum(np.einsum("bik,bkj->bij", A.astype(np.float64), B.astype(np.float64)), 0)


@exercise("tensor_ir.batch_matmul_relu", points=2, notebook=NB, needs=("batch_matmul_relu",),
          hint="two compute stages: the batched product is a reduction over the shared "
               "dimension, and the relu applies to each finished element of it in a stage "
               "of its own; the PrimFunc's parameters are the inputs, then the output (the "
               "lecture's te.compute, te.reduce_axis and te.create_prim_func)")
class _BatchMatmulRelu(Check):
    def cases(self):
        rng = np.random.default_rng(50)

        def inputs(rng, b, n, k, m):
            return [rng.uniform(-1, 1, (b, n, k)).astype(np.float32),
                    rng.uniform(-1, 1, (b, k, m)).astype(np.float32)]

        return _te_cases(rng, "batch_matmul_relu",
                         [(1, 1, 1, 1), (2, 3, 4, 5), (3, 5, 2, 7), (1, 6, 9, 4)],
                         (2, 16, 12, 8), inputs, lambda b, n, k, m: [(b, n, m)])

    def observe(self, ns, case):
        return _observe_prim(ns, "batch_matmul_relu", case)

    def judge(self, case, obs, t):
        b, n, k, m = case["args"]
        A, B = case["inputs"]

        def explain(red, index_error):  # the usual reason for a read past the end here
            return "" if k in red else (f". The reduction should run over the shared "
                                        f"dimension k = {k}, but the reduce axes of your "
                                        f"program have extents {red}")

        (C,), red = _outputs(case, obs, [("A", (b, n, k)), ("B", (b, k, m)),
                                         ("the output", (b, n, m))], explain)
        ref = _bmm_ref(A, B)
        if not _close(C, ref):
            _diagnose_bmm(case["call"], A, B, C, k, red)
        t.close(C, ref, f"{case['what']} equals relu(A @ B) on random inputs", **TOL)


def _diagnose_bmm(c, A, B, C, k, red):
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    if _close(C, np.einsum("bik,bkj->bij", A64, B64)):
        raise CheckFailed(f"{c}: the result is A @ B without the relu: negative entries "
                          "must become 0, in a compute stage after the sum")
    for which, X in (("A", A64[:1]), ("B", B64[:1])):  # one input's first matrix for all
        if len(A) > 1 and _close(C, _bmm_ref(*((X, B64) if which == "A" else (A64, X)))):
            raise CheckFailed(f"{c}: every matrix of the batch is multiplied with {which}[0]: "
                              f"index {which} with the batch iterator too")
    inside = np.maximum(A64[:, :, :, None] * B64[:, None, :, :], 0).sum(axis=2)
    if _close(C, inside):
        raise CheckFailed(f"{c}: you applied the relu to each product inside the sum "
                          "(sum of relu(a*b)); relu must apply to the finished sum, in a "
                          "compute stage of its own")
    if k not in red:
        raise CheckFailed(f"{c}: the reduction should run over the shared dimension "
                          f"k = {k}, but the reduce axes of your program have extents {red}")


# ---- exercise 2: conv2d, NCHW, stride and padding ---------------------------------------------

def conv2d_ref(X, Wt, stride, pad):
    """Cross-correlation as in deep learning frameworks: out[n, f, y, x] = sum over c, kh, kw
    of Xpad[n, c, y*stride + kh, x*stride + kw] * W[f, c, kh, kw]."""
    N, C, H, W = X.shape
    F, _, KH, KW = Wt.shape
    OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
    Xp = np.pad(X.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, OH, OW))
    for kh in range(KH):
        for kw in range(KW):
            patch = Xp[:, :, kh:kh + stride * (OH - 1) + 1:stride,
                       kw:kw + stride * (OW - 1) + 1:stride]
            out += np.einsum("nchw,fc->nfhw", patch, Wt[:, :, kh, kw].astype(np.float64))
    return out


def _out_size(H, W, KH, KW, stride, pad):
    return (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1


@exercise("tensor_ir.conv2d", points=3, notebook=NB, needs=("conv2d_nchw",),
          hint="pad first, in a compute stage of its own that gives zeros outside the image; "
               "then one reduction over the input channels and the kernel window together, "
               "the window's origin moving by stride from one output element to the next. "
               "Check the output shape against the formula in the exercise")
class _Conv2d(Check):
    def cases(self):
        rng = np.random.default_rng(51)

        def inputs(rng, N, C, H, W, F, KH, KW, stride, pad):
            return [rng.uniform(-1, 1, (N, C, H, W)).astype(np.float32),
                    rng.uniform(-1, 1, (F, C, KH, KW)).astype(np.float32)]

        def outputs(N, C, H, W, F, KH, KW, stride, pad):
            return [(N, F, *_out_size(H, W, KH, KW, stride, pad))]

        # (N, C, H, W, F, KH, KW, stride, pad)
        shapes = [(1, 1, 3, 3, 1, 1, 1, 1, 0), (1, 2, 5, 5, 3, 3, 3, 1, 0),
                  (1, 2, 5, 6, 2, 3, 3, 1, 1), (2, 3, 7, 6, 2, 3, 2, 2, 1),
                  (1, 2, 6, 5, 2, 2, 3, 2, 0), (1, 1, 4, 4, 1, 3, 3, 1, 2),
                  # H + 2*pad - KH = 5 and W + 2*pad - KW = 7, odd: floor (the last window
                  # that fits), not ceil, decides the output size
                  (2, 2, 6, 7, 3, 3, 2, 2, 1)]
        return _te_cases(rng, "conv2d_nchw", shapes, (1, 3, 8, 8, 4, 3, 3, 1, 1), inputs,
                         outputs)

    def observe(self, ns, case):
        return _observe_prim(ns, "conv2d_nchw", case)

    def judge(self, case, obs, t):
        N, C, H, W, F, KH, KW, stride, pad = case["args"]
        OH, OW = _out_size(H, W, KH, KW, stride, pad)
        X, Wt = case["inputs"]

        def explain(red, index_error):
            if index_error and red != sorted([C, KH, KW]):
                return (f". The reduce axes should have extents {sorted([C, KH, KW])} "
                        f"(C, KH, KW); yours have {red}")
            if index_error and pad and obs.get("blocks") == 1:
                return (f". With pad = {pad} the windows at the border reach past the input: "
                        "read a zero-padded copy of X (a compute stage with te.if_then_else) "
                        "instead of X itself")
            if index_error:
                return (". Check the index of every read: the padded copy reads X only "
                        "where (h, w) lies inside the image (te.if_then_else), and the window "
                        "of out[n, f, y, x] starts at row y*stride and column x*stride and "
                        "spans KH x KW elements, one step apart")
            return ""

        expected = [("the input X", (N, C, H, W)), ("the weight", (F, C, KH, KW)),
                    (f"the output, (N, F, OH, OW) with OH = (H + 2*pad - KH) // stride + 1 = "
                     f"{OH} and OW = {OW},", (N, F, OH, OW))]
        (out,), red = _outputs(case, obs, expected, explain)
        ref = conv2d_ref(X, Wt, stride, pad)
        if not _close(out, ref):
            _diagnose_conv(case["call"], X, Wt, out, ref, case["args"], red)
        t.close(out, ref, f"{case['what']} equals a numpy conv2d (stride {stride}, pad {pad})",
                **TOL)


def _diagnose_conv(c, X, Wt, out, ref, args, red):
    N, C, H, W, F, KH, KW, stride, pad = args
    bad = ~np.isclose(out, ref, **TOL)
    if pad:
        # output positions whose window lies wholly inside the unpadded input
        ys = np.arange(out.shape[2]) * stride - pad
        xs = np.arange(out.shape[3]) * stride - pad
        inner = ((ys >= 0) & (ys + KH <= H))[:, None] & ((xs >= 0) & (xs + KW <= W))[None, :]
        if inner.any() and not bad[:, :, inner].any():
            raise CheckFailed(f"{c}: the interior of the output is right, the border is "
                              f"wrong: with pad = {pad} a window that overhangs the input "
                              "must read zeros there (a negative index reads from the other "
                              "end of the array in Python; it does not give 0)")
    if stride > 1:
        # the program may slide the window by 1 instead of by stride
        full = conv2d_ref(X, Wt, 1, pad)
        if _close(out, full[:, :, :out.shape[2], :out.shape[3]]):
            raise CheckFailed(f"{c}: the window moves by 1 element instead of by "
                              f"stride = {stride}: see in the exercise's formula which input "
                              "row and column an output element's window starts at")
    _diagnose_edge(c, bad, args)
    if red != sorted([C, KH, KW]):
        raise CheckFailed(f"{c}: a conv2d sums over the input channels and the kernel "
                          f"window, so its reduce axes should have extents {sorted([C, KH, KW])}"
                          f" (C, KH, KW); yours have {red}")
    if _close(out, conv2d_ref(X, Wt[:, :, ::-1, ::-1].copy(), stride, pad)):
        raise CheckFailed(f"{c}: the kernel is flipped (a true convolution); deep-learning "
                          "conv2d is a cross-correlation: the kernel index and the offset "
                          "into the window run the same way (see the exercise's formula)")


def _diagnose_edge(c, bad, args):
    """Wrong only in the last output rows or columns: their windows read X's far edge."""
    N, C, H, W, F, KH, KW, stride, pad = args
    for axis, name, size, k, dim in ((3, "columns", W, KW, "w"), (2, "rows", H, KH, "h")):
        wrong = np.flatnonzero(bad.any(axis=tuple(a for a in range(4) if a != axis)))
        n_out = bad.shape[axis]
        if 0 < len(wrong) < n_out and wrong[0] * stride - pad + k > size - 1:
            raise CheckFailed(f"{c}: only the last output {name} ({wrong.tolist()} of "
                              f"{n_out}) are wrong: their windows read the last {name} of X. "
                              f"Check the padded copy's condition on {dim} against the "
                              f"{'width W' if dim == 'w' else 'height H'}")
