"""In-place reuse: an elementwise step may write its output over an input that dies there.

``relu`` reads ``x[i]`` and writes ``y[i]``, and nothing reads ``x`` afterwards, so ``y``
can live in ``x``'s bytes::

    before:  %add  [=======]                   after:  %add + %relu  [===============]
             %relu        [========]                   (one buffer, written in place)

A step may do it only when it is **alias-safe**: each output element is written after
the input element at the *same index* was read and no other element of the input is
read later. :func:`alias_safe` checks that from the step's nodes: every node inside
the step that depends on the input is elementwise (``graph.pattern == "elemwise"``),
with the shape of the output, and the step has that one output. A broadcast, a
reduction, a matmul or a permute reads other indices (``C[i, j]`` needs all of
``A[i, :]``) and is never done in place. The input must also not be a graph input or
constant (the caller owns those), nor returned by the graph.
"""

from __future__ import annotations

from .liveness import liveness, program


def alias_safe(step, src, out) -> bool:
    """Whether ``step`` may write ``out`` into the bytes of its input ``src``."""
    from ..graph import pattern

    if len(step.writes) != 1 or step.writes[0] is not out:
        return False
    if src.shape != out.shape or src.dtype != out.dtype or src.nbytes != out.nbytes:
        return False
    inside = set(step.nodes)
    tainted = {src}
    for n in step.nodes:                       # topological: follow what reads src
        if any(x in tainted for x in n.inputs):
            if pattern(n) != "elemwise" or n.shape != out.shape:
                return False
            tainted.add(n)
    return out in tainted and all(n in inside for n in tainted if n is not src)


def inplace_pairs(g) -> dict:
    """``{output: input}`` for every step that can write its output over a dying input.

    The input must be a tensor of the program (written by an earlier step), die at this
    step, not be a graph output, share its bytes with no view (a view's bytes live as
    long as the view does), and pass :func:`alias_safe`. Each input is used once.
    """
    from .plan import views_of

    prog = program(g)
    live = liveness(prog)
    views = views_of(prog, live)
    outputs = {id(t) for t in prog.outputs} | {id(t) for t in views} | \
        {id(t) for t in views.values()}
    pairs: dict = {}
    taken: set = set()
    for i, step in enumerate(prog.steps):
        if len(step.writes) != 1:
            continue
        out = step.writes[0]
        for src in step.reads:
            if (src in live and live[src][1] == i and id(src) not in outputs
                    and src not in taken and alias_safe(step, src, out)):
                pairs[out] = src
                taken.add(src)
                break
    return pairs


def inplace_savings(g, strategy: str = "greedy_by_size") -> dict:
    """What in-place reuse saves on ``g``: the pairs, the bytes written in place, and the
    arena of ``strategy`` without and with it (``saved = without - with``)."""
    from .plan import plan as make_plan

    pairs = inplace_pairs(g)
    without = make_plan(g, strategy).arena_bytes
    with_ = make_plan(g, strategy, inplace=True).arena_bytes
    return {"pairs": {o.name: i.name for o, i in pairs.items()},
            "bytes_in_place": sum(o.nbytes for o in pairs),
            "arena_without": without, "arena_with": with_, "saved": without - with_}
