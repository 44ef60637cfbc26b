"""Post-dominators: where all the futures of a node meet.

A node ``d`` *post-dominates* ``n`` when every path from ``n`` to the graph's outputs
passes through ``d``. The *immediate* post-dominator ``ipdom(n)`` is the closest one;
these links form a tree (the post-dominator tree). Fusion needs it because of diamonds::

        %a = exp(%x)                 ipdom(%a) = %d: both paths out of %a meet at %d,
       /            \\                so %a, %b, %c, %d can be one kernel and %a's
    %b = neg(%a)   %c = tanh(%a)     value never leaves it. Without %d (if %b and %c
       \\            /                were both outputs), %a has no post-dominator and
        %d = add(%b, %c)             fusing it into %b alone would still have to write
                                     %a out for %c.

We compute it the way TVM's FuseOps does, in one sweep over the nodes in reverse
topological order: a node's ipdom is the lowest common ancestor, in the tree built so
far, of the nodes that read it. A graph output has no post-dominator (its value must be
written out anyway), nor has a node whose users lead to different outputs.
"""

from __future__ import annotations

from .ops import RANK, PATTERNS
from .pattern import pattern


def post_dominators(g, users=None) -> dict:
    """``{node: immediate post-dominator, or None}`` for every node of ``g``."""
    users = users if users is not None else g.users()
    outputs = {id(n) for n in g.outputs}
    parent: dict = {}
    depth: dict = {}

    def lca(a, b):
        while a is not b:
            if a is None or b is None:
                return None
            if depth[a] < depth[b]:
                b = parent[b]
            elif depth[a] > depth[b]:
                a = parent[a]
            else:
                a, b = parent[a], parent[b]
        return a

    for n in reversed(g.nodes):
        us = users[n]
        if id(n) in outputs or not us:
            p = None
        else:
            p = us[0]
            for u in us[1:]:
                p = lca(p, u)
                if p is None:
                    break
        parent[n] = p
        depth[n] = 1 if p is None else depth[p] + 1
    return parent


def edge_pattern(producer, consumer) -> str:
    """The pattern of the edge ``producer -> consumer``: the consumer's pattern, except
    that a broadcasting op reads an input of its own shape elementwise (as in TVM)."""
    p = pattern(consumer)
    if p == "broadcast" and producer.shape == consumer.shape:
        return "elemwise"
    return p


def path_nodes(src, sink, users) -> list:
    """The nodes on all paths from ``src`` (excluded) to ``sink`` (included), in the
    order first met. ``sink`` must post-dominate ``src``."""
    seen, order, stack = set(), [], list(reversed(users[src]))
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        order.append(n)
        if n is not sink:
            stack.extend(reversed(users[n]))
    return order


def path_pattern(src, sink, users) -> str:
    """The most complex edge pattern on the paths from ``src`` to ``sink``."""
    worst = 0
    nodes = [src] + path_nodes(src, sink, users)
    on = {id(n) for n in nodes}
    for n in nodes:
        if n is sink:
            continue
        for u in users[n]:
            if id(u) in on:
                worst = max(worst, RANK[edge_pattern(n, u)])
    return PATTERNS[worst]
