"""Op patterns: what a fusion pass needs to know about an operator (TVM's OpPatternKind).

Fusion asks one question of each op: *how does an output element depend on the input
elements?* The answer sorts ops into six kinds, from the easiest to fuse to the hardest:

=======================  ===============================================  ==================
pattern                  output element ``y[i]`` reads                    examples
=======================  ===============================================  ==================
``elemwise``             ``x[i]`` of each input, same index               add, exp, relu
``broadcast``            ``x[f(i)]``, ``f`` drops or zeroes some axes     broadcast_to
``injective``            ``x[f(i)]`` for some index map ``f``             reshape, permute,
                                                                          im2col, pad
``reduce``               many ``x[j]``, combined (sum, max)               summation
``out_elemwise_fusable`` many inputs, a heavy loop nest whose *output*    matmul, conv
                         can take an elementwise epilogue
``opaque``               anything: the compiler cannot see inside         col2im (scatter)
=======================  ===============================================  ==================

An elemwise or broadcast op can be computed *inside* the loop of whoever reads it (its
value at ``i`` is a cheap expression of loads), so it fuses into its consumer; an
injective op too, as long as the consumer is itself injective. A reduction or a matmul
is an *anchor*: a kernel holds at most one, with its elementwise prologue and epilogue.
"""

from __future__ import annotations

from .ops import PATTERNS, RANK, opdef


def pattern(node) -> str:
    """The pattern of ``node`` (a :class:`~mlc.graph.ir.Node`, or an op name)."""
    op = node if isinstance(node, str) else node.op
    if op in ("input", "constant"):
        return "opaque"  # leaves are not computed: nothing to fuse
    return opdef(op).pattern


def rank(p: str) -> int:
    """Position of pattern ``p`` in TVM's order (elemwise 0 ... opaque 5)."""
    return RANK[p]


__all__ = ["pattern", "rank", "PATTERNS"]
