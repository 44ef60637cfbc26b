"""Liveness: when each tensor of a program exists, and the least memory any plan needs.

An executor runs a program as a list of **steps** (one kernel each). A tensor is written
by the step that makes it and must stay in memory until the last step that reads it;
graph outputs stay until the end. That closed interval ``[first, last]`` is its
*lifetime*::

    step:        0        1        2        3
               matmul    add     relu    matmul_1
    %matmul    [=================]                   (0, 1)  read by add
    %add                [=================]          (1, 2)  read by relu
    %relu                        [=================] (2, 3)
    %matmul_1                             [========] (3, 3)  a graph output

Inputs and constants are not tensors of the plan (the caller and the model own them).

What counts as a step:

- a :class:`~mlc.graph.Graph`: every op node is one step, in the graph's order (what
  ``graph.build(g, fuse=False)`` runs);
- a :class:`~mlc.graph.FusedGraph`: every group is one step, in the group order; only a
  group's outputs (read by a later group, or returned) are tensors: the values inside a
  group live in registers;
- a :class:`~mlc.graph.Program` (what ``graph.lower`` makes) or a built
  :class:`~mlc.graph.Executable`: its steps, in order.

A view step (a lone reshape) writes a tensor too: it has a lifetime of its own, but a
memory plan gives it its source's bytes (:mod:`mlc.memory.plan`).

The **lower bound** (Pisarchyk and Lee 2020 call the bytes live at a step the *operator
breadth*) is the largest breadth over all steps: at that step all those tensors exist at
once, so no plan can use less. A planner is judged by how close it gets::

    breadth:    [b0, b1, b2, b3]        lower_bound = max(breadth)

The order of the steps changes the breadths: running one branch of a graph to the end
before starting the next keeps fewer tensors alive than interleaving them.
:func:`topological_order` gives other valid orders ("bfs" interleaves branches,
"memory_aware" greedily picks the ready op that leaves the fewest bytes live), and
:func:`reorder` a graph with its nodes in that order.
"""

from __future__ import annotations

ALIGNMENT = 64  # bytes: every offset and every size in a plan is a multiple of this


def align(nbytes: int, alignment: int = ALIGNMENT) -> int:
    """``nbytes`` rounded up to a multiple of ``alignment`` (64 bytes: a cache line)."""
    if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        # hardware alignments are powers of two; 3 would put floats across cache lines
        raise ValueError(f"alignment must be a power of two number of bytes (1, 2, 4, ..., "
                         f"64), got {alignment!r}")
    return -(-int(nbytes) // alignment) * alignment


def program(g):
    """The :class:`~mlc.graph.Program` of ``g`` (a Graph: one step per op; a FusedGraph:
    one per group; an Executable or a Program: its own), without compiling anything."""
    from ..graph.program import Program

    return Program.of(g)


def liveness(g) -> dict:
    """``{tensor: (first_step, last_step)}``, both inclusive, in execution order.

    ``first_step`` is the step that writes the tensor, ``last_step`` the last one that
    reads it (the final step for a graph output; its own step for a value nobody reads).
    """
    prog = program(g)
    live: dict = {}
    for i, s in enumerate(prog.steps):
        for t in s.writes:
            live[t] = [i, i]
        for t in s.reads:
            if t in live:
                live[t][1] = i
    end = len(prog.steps) - 1
    for t in prog.outputs:
        if t in live:
            live[t][1] = end
    return {t: (a, b) for t, (a, b) in live.items()}


def breadths(g, alignment: int = ALIGNMENT) -> list[int]:
    """The bytes live at each step (each tensor rounded up to ``alignment``)."""
    prog = program(g)
    out = [0] * len(prog.steps)
    for t, (a, b) in liveness(prog).items():
        size = align(t.nbytes, alignment)
        for i in range(a, b + 1):
            out[i] += size
    return out


def lower_bound(g, alignment: int = ALIGNMENT) -> int:
    """The most bytes live at any one step: no plan's arena can be smaller.

    Sizes are rounded up to ``alignment`` (every plan aligns its offsets, so a tensor
    blocks at least that much); ``alignment=1`` gives the raw bound.
    """
    return max(breadths(g, alignment), default=0)


# ---- other orders of the same graph -------------------------------------------------------

def topological_order(g, strategy: str = "memory_aware") -> list:
    """The op nodes of graph ``g`` in another valid order.

    - ``"as_given"``: the graph's own order;
    - ``"bfs"``: Kahn's algorithm with a first-in first-out queue: every ready op runs
      in the order it became ready, which interleaves parallel branches;
    - ``"dfs"``: a last-in first-out stack: one branch runs to its end first;
    - ``"memory_aware"``: at each step, the ready op after which the fewest bytes are
      live (it frees the most, or allocates the least), ties to the graph's order.
    """
    ops = [n for n in g.nodes if not n.is_leaf]
    if strategy == "as_given":
        return ops
    if strategy not in ("bfs", "dfs", "memory_aware"):
        raise ValueError(f"unknown order {strategy!r}; expected 'as_given', 'bfs', 'dfs' "
                         "or 'memory_aware'")
    pos = {n: i for i, n in enumerate(ops)}
    users = g.users()
    waiting = {n: len({x for x in n.inputs if not x.is_leaf}) for n in ops}
    readers_left = {n: len(users[n]) for n in ops}
    outputs = {id(n) for n in g.outputs}
    ready = [n for n in ops if waiting[n] == 0]
    order = []
    while ready:
        if strategy == "bfs":
            n = ready.pop(0)
        elif strategy == "dfs":
            n = ready.pop()
        else:
            def delta(n):
                freed = sum(x.nbytes for x in dict.fromkeys(n.inputs) if not x.is_leaf
                            and readers_left[x] == 1 and id(x) not in outputs)
                return (n.nbytes - freed, pos[n])
            n = min(ready, key=delta)
            ready.remove(n)
        order.append(n)
        for x in dict.fromkeys(n.inputs):
            if not x.is_leaf:
                readers_left[x] -= 1
        for u in users[n]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    return order


def reorder(g, strategy: str = "memory_aware"):
    """Graph ``g`` with its op nodes in :func:`topological_order` (leaves first).

    The new graph shares ``g``'s nodes (a reordering changes no value), so liveness and
    plans of both can be compared tensor by tensor.
    """
    from ..graph import Graph

    leaves = [n for n in g.nodes if n.is_leaf]
    return Graph(leaves + topological_order(g, strategy), g.inputs, g.outputs)


def lower_bound_for_order(g, strategy: str = "memory_aware",
                          alignment: int = ALIGNMENT) -> int:
    """The lower bound of ``g`` run in another order (see :func:`topological_order`)."""
    return lower_bound(reorder(g, strategy), alignment)
