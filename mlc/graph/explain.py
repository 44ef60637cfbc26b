"""Why two ops were not fused: one row per edge that crosses from one kernel to another.

Compilers fuse silently; when a model runs slower than hoped, the question "why are
these two ops separate kernels?" has no answer but reading the pass's source. Here
every edge left between two groups gets a reason code from a closed set
(:data:`REASONS`) and a sentence naming the nodes::

    print(graph.explain_fusion(graph.fuse(g, "tvm")))

    producer       consumer        reason          why
    %summation     %divide_scalar  reduce_epilogue %summation is a reduction; policy 'tvm'
                                                   starts a new kernel after a reduction ...

The reason is the one the policy recorded when it tried to fuse the producer into its
immediate post-dominator (fusion only ever merges a node with everything up to its
post-dominator, so the producer's decision explains each of its outgoing edges).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..perf import format_table
from .pattern import pattern

REASONS = {
    "opaque": "an opaque op (the compiler cannot see inside it) is always a kernel of its own",
    "graph_output": "the producer is a graph output: its value is written to memory anyway, "
                    "and TVM never fuses an output into its users",
    "multiple_consumers_outside": "the producer's consumers lead to different outputs and "
                                  "never meet again (it has no post-dominator), so fusing "
                                  "it into one of them would not save writing it out",
    "not_post_dominated": "the consumer does not post-dominate the producer: the producer "
                          "could only fuse with everything up to its post-dominator, and a "
                          "path there crosses an op that cannot join",
    "path_through_anchor": "another path from the producer to this consumer crosses an op "
                           "(a reduction or matmul) that cannot sit inside the kernel",
    "reduce_epilogue": "the producer is a reduction; TVM starts a new kernel after a "
                       "reduction (the 'epilogue' policy fuses its elementwise epilogue)",
    "matmul_prologue": "the consumer is a matmul/conv: ops fuse after it (an epilogue), not "
                       "into its operands",
    "injective_into_anchor": "an injective op (reshape, permute, im2col, pad) fuses only into "
                             "injective consumers under this policy, not into a reduction "
                             "or matmul",
    "epilogue_not_elementwise": "a matmul takes only an elementwise epilogue, and the path "
                                "to its post-dominator is not elementwise",
    "anchor_conflict": "the fused kernel would hold two anchors (reductions or matmuls), "
                       "which one loop nest cannot schedule",
    "size_limit": "the fused group would exceed the policy's max_group_size",
    "fusion_disabled": "the policy fuses nothing (one kernel per op)",
}


@dataclass
class FusionEdge:
    """One unfused edge: ``producer -> consumer``, a reason code and a sentence."""

    producer: object
    consumer: object
    reason: str
    sentence: str

    def __iter__(self):  # rows unpack as (producer, consumer, reason, sentence)
        return iter((self.producer, self.consumer, self.reason, self.sentence))


class FusionReport(list):
    """A list of :class:`FusionEdge` that prints as a table."""

    def __str__(self) -> str:
        if not self:
            return "every edge between ops is fused: one kernel per output"
        rows = [[f"%{e.producer.name}", f"%{e.consumer.name}", e.reason, e.sentence]
                for e in self]
        return format_table(rows, ["producer", "consumer", "reason", "why"])

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    def counts(self) -> dict:
        out: dict = {}
        for e in self:
            out[e.reason] = out.get(e.reason, 0) + 1
        return out



def _a(word: str) -> str:
    """``word`` with its indefinite article: "an injective", "a reduce"."""
    return f"{'an' if str(word)[:1] in 'aeiou' else 'a'} {word}"

def _sentence(code, p, c, info, policy) -> str:
    P, C = f"%{p.name}", f"%{c.name}"
    d = info.get("sink")
    D = f"%{d.name}" if d is not None else "?"
    if code == "opaque":
        x = info.get("node", c)
        return f"%{x.name} ({x.op}) is opaque: it runs as its own kernel"
    if code == "graph_output":
        return f"{P} is a graph output; its value is written out, so it is not fused into {C}"
    if code == "multiple_consumers_outside":
        return (f"{P} has {info.get('n_users', 'several')} consumers that never meet again "
                f"(no post-dominator); fusing it into {C} would still write it out")
    if code == "not_post_dominated":
        x = info["through"]
        return (f"{C} does not post-dominate {P}; {P} could fuse only up to {D}, and a "
                f"path there goes through %{x.name} ({info['pattern']})")
    if code == "path_through_anchor":
        x = info["through"]
        return (f"fusing {P} into {C} would take in %{x.name} ({info['pattern']}) on "
                "another path between them")
    if code == "reduce_epilogue":
        return (f"{P} is a reduction ({p.op}); policy {policy.name!r} starts a new kernel "
                "after a reduction")
    if code == "matmul_prologue":
        return f"{D} is {_a(pattern(d))} op: {P} would be its prologue, and only epilogues fuse"
    if code == "injective_into_anchor":
        return (f"{P} ({p.op}, injective) is read by {D} through {_a(info['path'])} edge; "
                f"policy {policy.name!r} fuses injective ops only into injective ones")
    if code == "epilogue_not_elementwise":
        return (f"{P} ({p.op}) reaches its post-dominator {D} through {_a(info['path'])} op; "
                "a matmul takes only an elementwise epilogue")
    if code == "anchor_conflict":
        return f"fusing {P} into {D}'s kernel would put two reductions/matmuls in one kernel"
    if code == "size_limit":
        return (f"{P} with {D}'s kernel would be {info['size']} ops, above "
                f"max_group_size={info['limit']}")
    if code == "fusion_disabled":
        return f"policy {policy.name!r} puts every op in its own kernel"
    raise AssertionError(f"reason code {code!r} is not in REASONS")


def explain_fusion(fg) -> FusionReport:
    """One :class:`FusionEdge` per edge between two op nodes in different groups."""
    if not hasattr(fg, "group_of"):
        raise TypeError(f"explain_fusion explains a fused graph, not a {type(fg).__name__}: "
                        f"fuse it first, fg = graph.fuse(g), then graph.explain_fusion(fg)")
    users = fg.graph.users()
    report = FusionReport()
    for p in fg.graph.ops:
        for c in users[p]:
            if fg.group_of[p] == fg.group_of[c]:
                continue
            code, info = fg.reasons.get(p) or ("not_post_dominated", {})
            info = dict(info)
            if pattern(c) == "opaque" or pattern(p) == "opaque":
                code, info = "opaque", {"node": c if pattern(c) == "opaque" else p}
            elif code == "path_blocked":
                code = "not_post_dominated" if c is not info["sink"] else "path_through_anchor"
            elif code == "multiple_consumers_outside":
                info["n_users"] = len(users[p])
            if code not in REASONS:
                raise AssertionError(f"fusion recorded an unknown reason {code!r}")
            if code == "not_post_dominated" and "through" not in info:
                raise AssertionError(f"no fusion decision recorded for %{p.name}")
            report.append(FusionEdge(p, c, code, _sentence(code, p, c, info, fg.policy)))
    return report
