"""Operator fusion: cut a graph into groups, each group one kernel.

Unfused, every op is a kernel that reads its inputs from memory and writes its output
back. For ``relu(x * w + b)`` on big arrays that is three passes over memory where one
would do: fusion puts ``multiply``, ``add`` and ``relu`` in one loop, and the
intermediates live in registers. The question is *which* ops may share a kernel; a
fusion **policy** answers it. Three are here, each a small object (strings map to them):

``"tvm"`` (:class:`TVMPolicy`): the rules of TVM's FuseOps pass. For each op, in
topological order, look at its immediate post-dominator ``d`` (see
:mod:`mlc.graph.dominators`) and fuse the op *and every path from it to d* into d's group
when the patterns on those paths allow it:

* an ``elemwise``/``broadcast`` op fuses into a post-dominator of any pattern but
  ``opaque``, reached through elemwise/broadcast/injective ops (chains, and diamonds
  whose sink post-dominates);
* an ``out_elemwise_fusable`` op (matmul) fuses into a post-dominator reached through
  elementwise edges only: the matmul with its epilogue (bias, ReLU);
* an ``injective`` op fuses into an injective post-dominator (second phase, after the
  matmuls have taken their epilogues);
* a ``reduce`` op never fuses into what follows it, and ``opaque`` ops never fuse;
* no group grows beyond ``max_group_size`` ops, and a graph output is never fused into
  its users (its value must be written out anyway).

``"epilogue"`` (:class:`EpiloguePolicy`): the same plus what Inductor and tinygrad do
with reductions: a reduction takes its elementwise epilogue (and may chain into a
following reduction of the same rows), and injective ops fuse into a reduction. Softmax
and layer norm become one or two kernels instead of three or more.

``"none"`` (:class:`NoFusion`): one kernel per op, the baseline.

``fuse(g, policy)`` returns a :class:`FusedGraph`; :func:`~mlc.graph.explain.explain_fusion`
says, for each edge left between two kernels, why.
"""

from __future__ import annotations

from .dominators import edge_pattern, path_nodes, path_pattern, post_dominators
from .ops import PATTERNS, RANK
from .pattern import pattern

ELEMWISE, BROADCAST, INJECTIVE, REDUCE, OUT_EW, OPAQUE = range(6)


class _Group:
    """A union-find set of nodes: one kernel in the making."""

    __slots__ = ("parent", "pattern", "size", "anchors")

    def __init__(self, rank: int):
        self.parent, self.pattern, self.size = None, rank, 1
        self.anchors = 1 if rank in (REDUCE, OUT_EW) else 0

    def root(self) -> "_Group":
        g = self
        while g.parent is not None:
            g = g.parent
        node = self
        while node.parent is not None and node.parent is not g:
            node.parent, node = g, node.parent
        return g


class FusionPolicy:
    """The machinery shared by the policies: post-dominators, groups, path checks.

    A subclass decides, per op, whether it may join its post-dominator's group
    (:meth:`try_node`), returning ``None`` when it fused or a reason code when not.
    """

    name = "base"
    phases = (0, 1)

    def __init__(self, max_group_size: int = 256):
        if max_group_size < 1:
            raise ValueError(f"max_group_size must be at least 1, got {max_group_size}")
        self.max_group_size = int(max_group_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_group_size={self.max_group_size})"

    # -- the driver ------------------------------------------------------------------------
    def run(self, g) -> "FusedGraph":
        self.g = g
        self.users = g.users()
        self.ipdom = post_dominators(g, self.users)
        self.outputs = {id(n) for n in g.outputs}
        self.groups = {n: _Group(RANK[pattern(n)]) for n in g.ops}
        self.reasons: dict = {}
        for phase in self.phases:
            for n in g.ops:
                r = self.try_node(n, phase)
                if r is not None:
                    self.reasons[n] = r
                elif n in self.reasons and self.same(n, self.ipdom.get(n)):
                    del self.reasons[n]
        return FusedGraph(g, self._collect(g), self, self.reasons, self.ipdom)

    def _collect(self, g) -> list:
        by_root: dict = {}
        for n in g.ops:
            by_root.setdefault(id(self.groups[n].root()), []).append(n)
        return list(by_root.values())

    # -- helpers for the rules --------------------------------------------------------------
    def same(self, a, b) -> bool:
        return b is not None and b in self.groups and \
            self.groups[a].root() is self.groups[b].root()

    def gpattern(self, n) -> int:
        return self.groups[n].root().pattern if n in self.groups else OPAQUE

    def check_path(self, src, sink, ok) -> tuple | None:
        """``None`` if ``ok(group pattern, is_sink)`` holds on every node of every path
        from ``src`` to ``sink``; else ``(blocking node, its group pattern)``."""
        for n in path_nodes(src, sink, self.users):
            p = self.gpattern(n)
            if not ok(p, n is sink):
                return n, PATTERNS[p]
        return None

    def commit(self, src, sink) -> str | None:
        """Merge ``src`` and every path to ``sink`` into ``sink``'s group (or say why not)."""
        target = self.groups[sink].root()
        roots = {id(target): target}
        for n in [src] + [m for m in path_nodes(src, sink, self.users) if m is not sink]:
            r = self.groups[n].root()
            roots.setdefault(id(r), r)
        size = sum(r.size for r in roots.values())
        if size > self.max_group_size:
            return ("size_limit", {"size": size, "limit": self.max_group_size})
        if not self.can_merge(list(roots.values())):
            return ("anchor_conflict", {"sink": sink})
        for r in roots.values():
            if r is target:
                continue
            r.parent = target
            target.size += r.size
            target.anchors += r.anchors
            if r.pattern >= REDUCE:
                target.pattern = max(target.pattern, r.pattern)
        return None

    def can_merge(self, roots) -> bool:
        """TVM: at most one group with an anchor (a reduction or a matmul)."""
        return sum(1 for r in roots if r.anchors) <= 1

    def try_node(self, n, phase):
        """Abstract: each policy says whether ``n`` may join its post-dominator's group."""
        raise NotImplementedError


def _upto(limit):
    return lambda p, is_sink: p <= limit


class TVMPolicy(FusionPolicy):
    """TVM's FuseOps rules (``src/relay/transforms/fuse_ops.cc``), see the module doc."""

    name = "tvm"

    def precheck(self, n):
        """The conditions common to every pattern; a reason, or the post-dominator."""
        if self.gpattern(n) == OPAQUE:
            return ("opaque", {"node": n}), None
        if id(n) in self.outputs:
            return ("graph_output", {}), None
        d = self.ipdom.get(n)
        if d is None:
            return ("multiple_consumers_outside", {}), None
        if pattern(d) == "opaque":
            return ("opaque", {"node": d}), None
        return None, d

    def try_node(self, n, phase):
        reason, d = self.precheck(n)
        if reason is not None:
            return reason
        if self.same(n, d):
            return None
        p = self.gpattern(n)
        dom = RANK[path_pattern(n, d, self.users)]
        info = {"sink": d}
        if p == OUT_EW:
            if phase != 0:
                return self.reasons.get(n)
            if dom != ELEMWISE:
                return self._why_not_epilogue(n, d, dom, info)
            return self._fuse(n, d, _upto(BROADCAST), info)
        if p <= BROADCAST:
            if dom == OUT_EW:
                return ("matmul_prologue", info)
            if dom == OPAQUE:
                return ("opaque", {"node": d})
            inner = self.inner_limit
            return self._fuse(n, d, lambda k, sink: k <= OUT_EW if sink else k <= inner, info)
        if p == INJECTIVE:
            if phase != 1:
                return ("deferred", info)
            return self.injective(n, d, dom, info)
        return self.reduction(n, d, dom, info)

    inner_limit = INJECTIVE  # the most complex pattern allowed strictly inside a path

    def _why_not_epilogue(self, n, d, dom, info):
        """Why matmul group ``n`` cannot take the path to ``d`` as its epilogue."""
        if pattern(d) == "out_elemwise_fusable":
            return ("matmul_prologue", info)
        for x in path_nodes(n, d, self.users):
            if x is not d and self.gpattern(x) >= REDUCE:
                return ("path_blocked",
                        {**info, "through": x, "pattern": PATTERNS[self.gpattern(x)]})
        if self.gpattern(d) >= REDUCE:
            return ("anchor_conflict", info)
        return ("epilogue_not_elementwise", {**info, "path": PATTERNS[dom]})

    def _fuse(self, n, d, ok, info):
        block = self.check_path(n, d, ok)
        if block is not None:
            x, xp = block
            code = "path_blocked" if x is not d else (
                "matmul_prologue" if xp == "out_elemwise_fusable" else "anchor_conflict")
            return (code, {**info, "through": x, "pattern": xp})
        return self.commit(n, d)

    def injective(self, n, d, dom, info):
        if dom > INJECTIVE:
            return ("injective_into_anchor", {**info, "path": PATTERNS[dom]})
        return self._fuse(n, d, _upto(INJECTIVE), info)

    def reduction(self, n, d, dom, info):
        return ("reduce_epilogue", info)


class EpiloguePolicy(TVMPolicy):
    """TVM's rules plus reduction epilogues and injective ops into reductions."""

    name = "epilogue"
    inner_limit = REDUCE  # reductions may sit inside a fused path (multi-reduction kernels)

    def injective(self, n, d, dom, info):
        if dom == REDUCE:
            return self._fuse(n, d, _upto(REDUCE), info)
        return super().injective(n, d, dom, info)

    def reduction(self, n, d, dom, info):
        if dom == OUT_EW:
            return ("matmul_prologue", info)
        if dom > REDUCE:
            return ("opaque", {"node": d})
        return self._fuse(n, d, _upto(REDUCE), info)

    def can_merge(self, roots) -> bool:
        """Several reductions may share a kernel; a matmul shares it with none."""
        heavy = [r for r in roots if r.anchors]
        return len(heavy) <= 1 or all(r.pattern == REDUCE for r in heavy)


class NoFusion(FusionPolicy):
    """One kernel per op."""

    name = "none"
    phases = (0,)

    def try_node(self, n, phase):
        return ("fusion_disabled", {})


POLICIES = {"tvm": TVMPolicy, "epilogue": EpiloguePolicy, "none": NoFusion}


def get_policy(policy, max_group_size: int | None = None) -> FusionPolicy:
    """A policy object from a name ("tvm", "epilogue", "none"), a class or an instance."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown fusion policy {policy!r}; expected one of "
                             f"{', '.join(sorted(POLICIES))} (or a FusionPolicy object)")
        policy = POLICIES[policy]
    if isinstance(policy, type) and issubclass(policy, FusionPolicy):
        return policy() if max_group_size is None else policy(max_group_size)
    if isinstance(policy, FusionPolicy):
        if max_group_size is not None:
            policy = type(policy)(max_group_size)
        return policy
    raise TypeError(f"policy must be a name or a FusionPolicy, got {type(policy).__name__}")


class FusedGraph:
    """A graph cut into kernels: ``groups`` (each a list of nodes in topological order,
    the groups themselves in an order that runs them), ``group_of[node]`` the index of a
    node's group, ``policy`` the policy used, ``reasons`` why each op that ends a group did
    not join its post-dominator, ``ipdom`` the post-dominator map."""

    def __init__(self, graph, groups, policy, reasons, ipdom):
        self.graph, self.policy, self.reasons, self.ipdom = graph, policy, reasons, ipdom
        pos = {n: i for i, n in enumerate(graph.nodes)}
        groups = [sorted(gr, key=pos.__getitem__) for gr in groups]
        self.groups = _order_groups(groups)
        self.group_of = {n: i for i, gr in enumerate(self.groups) for n in gr}

    @property
    def kernels(self) -> int:
        return len(self.groups)

    def group_pattern(self, i: int) -> str:
        """The pattern of group ``i``: its most complex member's."""
        return PATTERNS[max(RANK[pattern(n)] for n in self.groups[i])]

    def __str__(self) -> str:
        lines = [f"FusedGraph: {self.kernels} kernels from {len(self.graph.ops)} ops "
                 f"(policy {self.policy.name!r})"]
        for i, gr in enumerate(self.groups):
            names = ", ".join(f"%{n.name}" for n in gr)
            lines.append(f"  kernel {i} [{self.group_pattern(i)}]: {names}")
        return "\n".join(lines)

    __repr__ = __str__

    def draw(self, ax=None):
        return self.graph.draw(ax=ax, fused=self)


def _order_groups(groups):
    """The groups in an order where each runs after the groups it reads from."""
    where = {n: i for i, gr in enumerate(groups) for n in gr}
    deps = [{where[x] for n in gr for x in n.inputs if x in where} - {i}
            for i, gr in enumerate(groups)]
    order, state = [], [0] * len(groups)

    def visit(i):
        if state[i] == 2:
            return
        if state[i] == 1:
            raise AssertionError("fusion made a cycle between kernels (a bug in the policy)")
        state[i] = 1
        for j in sorted(deps[i]):
            visit(j)
        state[i] = 2
        order.append(i)

    for i in range(len(groups)):
        visit(i)
    return [groups[i] for i in order]


def fuse(g, policy="tvm", max_group_size: int | None = None) -> FusedGraph:
    """Group the ops of ``g`` into kernels under ``policy`` ("tvm", "epilogue", "none",
    or a :class:`FusionPolicy`); ``max_group_size`` caps the ops per kernel."""
    return get_policy(policy, max_group_size).run(g)


__all__ = ["FusedGraph", "FusionPolicy", "TVMPolicy", "EpiloguePolicy", "NoFusion",
           "POLICIES", "fuse", "get_policy", "edge_pattern"]
