"""``mlc.memory``: where the bytes go, and how to need fewer of them.

::

    from mlc import memory
    memory.liveness(g)                          # {tensor: (first_step, last_step)}
    memory.lower_bound(g)                       # the widest step: no plan does better
    plan = memory.plan(g, strategy="greedy_by_size")
    plan.arena_bytes, plan.offsets, plan.draw()
    memory.assign(prog, plan)                   # a graph.Program with each tensor's offset
    exe = graph.build(g, memory_plan="greedy_by_size")   # runs in one arena: exe.plan
    memory.peak_bytes(fn, *args)                # measured: peak of live NDArray bytes
    with memory.track() as t: ...               # the same for a block; t.peak
    memory.checkpoint_sequential(modules, 4)    # keep 4 boundaries, recompute the rest
    memory.chunked_softmax_cross_entropy(logits, y, chunk=256)
    memory.chunked_attention(q, k, v, chunk=64) # online softmax over key blocks

One file per idea, in reading order:

- ``accounting.py``  measuring: :func:`track`, :func:`peak_bytes` (over the devices'
  counters in ``mlc/ndarray/accounting.py``);
- ``liveness.py``    steps, lifetimes, the lower bound, other execution orders;
- ``planners.py``    naive, shared objects, greedy by size, greedy by breadth;
- ``optimal.py``     the exact plan of a small graph (branch and bound);
- ``plan.py``        :class:`Plan`, :func:`plan`, the verifier, the picture;
- ``inplace.py``     which elementwise steps may write over their input;
- ``checkpoint.py``  training memory: recomputation (Chen et al. 2016);
- ``chunked.py``     computing in chunks: cross-entropy and attention.
"""

from .accounting import MemoryTrace, live_bytes, peak_bytes, track
from .liveness import (ALIGNMENT, align, breadths, liveness, lower_bound,
                       lower_bound_for_order, program, reorder, topological_order)
from .planners import (PLANNERS, Block, GreedyByBreadth, GreedyBySize, Naive, Planner,
                       SharedObjects, find_offset, get_planner)
from .optimal import Optimal, PlanTooLarge
from .plan import Plan, PlanError, assign, compare, plan, verify
from .inplace import alias_safe, inplace_pairs, inplace_savings
from .checkpoint import (CheckpointedSequential, Recompute, checkpoint_sequential, deep_mlp,
                         frontier, split_segments, sqrt_segments, train_step)
from .chunked import (attention, attention_memory, chunked_attention,
                      chunked_softmax_cross_entropy, cross_entropy_memory,
                      softmax_cross_entropy)

__all__ = [
    "MemoryTrace", "live_bytes", "peak_bytes", "track",
    "ALIGNMENT", "align", "breadths", "liveness", "lower_bound",
    "lower_bound_for_order", "program", "reorder", "topological_order",
    "PLANNERS", "Block", "GreedyByBreadth", "GreedyBySize", "Naive", "Planner",
    "SharedObjects", "find_offset", "get_planner", "Optimal", "PlanTooLarge",
    "Plan", "PlanError", "assign", "compare", "plan", "verify",
    "alias_safe", "inplace_pairs", "inplace_savings",
    "CheckpointedSequential", "Recompute", "checkpoint_sequential", "deep_mlp", "frontier",
    "split_segments", "sqrt_segments", "train_step",
    "attention", "attention_memory", "chunked_attention", "chunked_softmax_cross_entropy",
    "cross_entropy_memory", "softmax_cross_entropy",
]
