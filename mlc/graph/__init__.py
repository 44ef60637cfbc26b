"""``mlc.graph``: the graph level of the compiler.

A model becomes a dataflow graph (:func:`trace`), passes rewrite it (``fold_constants``,
``eliminate_dead_code``, ``eliminate_common_subexpressions``, ``fold_batch_norm``),
fusion groups its operators into kernels (:func:`fuse`, explained by
:func:`explain_fusion`), each group lowers through ``te`` to one ``tir.PrimFunc``
(:func:`lower_group`), :func:`lower` makes the :class:`Program` (the steps after
fusion, each a compiled kernel) and :func:`build` runs the whole pipeline::

    from mlc import graph
    g = graph.trace(model, example)     # the batch axis N is a symbol: any batch runs
    print(g)
    fg = graph.fuse(g, policy="tvm")
    print(graph.explain_fusion(fg))
    prog = graph.lower(fg, target="cpu")
    exe = graph.build(g, target="cpu", memory_plan="greedy_by_size")
    exe(x)                          # numpy in, numpy out; equals graph.interpret(g, x)
    exe.program, exe.plan           # what it runs, and where each tensor lives
    graph.save(g, "g"); exe.save("exe")                  # JSON + .npz, no pickle
    graph.load("g"); graph.load_executable("exe")        # validated, kernels regenerated

One file per idea: ``ir`` (Node, Graph), ``ops`` (the op registry), ``trace``,
``interpret``, ``passes``, ``pattern``, ``dominators``, ``fuse``, ``explain``,
``lower``, ``program`` (the steps after fusion), ``executor``, ``symbolic`` (the batch
axis), ``serialize`` (save and load without pickle), ``draw``.
"""

from .ir import Graph, GraphBuilder, Node, rewrite, topo_sort
from .ops import OPS, PATTERNS, OpDef, decompose, register
from .pattern import pattern
from .trace import TraceError, trace
from .interpret import Interpreter, interpret

__all__ = ["Graph", "GraphBuilder", "Node", "OPS", "PATTERNS", "OpDef", "TraceError",
           "Interpreter", "decompose", "interpret", "pattern", "register", "rewrite",
           "topo_sort", "trace"]
from .passes import (DEFAULT_PASSES, PassManager, eliminate_common_subexpressions,  # noqa: E402
                     eliminate_dead_code, fold_batch_norm, fold_constants, run_passes)
from .dominators import post_dominators  # noqa: E402
from .fuse import (POLICIES, EpiloguePolicy, FusedGraph, FusionPolicy, NoFusion,  # noqa: E402
                   TVMPolicy, fuse, get_policy)
from .explain import REASONS, FusionEdge, FusionReport, explain_fusion  # noqa: E402

__all__ += ["DEFAULT_PASSES", "PassManager", "eliminate_common_subexpressions",
            "eliminate_dead_code", "fold_batch_norm", "fold_constants", "run_passes",
            "post_dominators", "POLICIES", "EpiloguePolicy", "FusedGraph", "FusionPolicy",
            "NoFusion", "TVMPolicy", "fuse", "get_policy", "REASONS", "FusionEdge",
            "FusionReport", "explain_fusion"]
from .lower import LoweredGroup, intrinsic_calls, lower_group  # noqa: E402
# after ``.lower`` (the module): ``graph.lower`` is the function that makes a Program
from .program import Kernel, Program, Step, lower  # noqa: E402
from .executor import Executable, ProfileReport, build  # noqa: E402

__all__ += ["LoweredGroup", "intrinsic_calls", "lower_group", "Kernel", "Program", "Step", "lower",
            "Executable", "ProfileReport", "build"]
from .symbolic import Dim, at_batch, batch_size  # noqa: E402
from .serialize import FormatError, load, load_executable, save  # noqa: E402

__all__ += ["Dim", "at_batch", "batch_size", "FormatError", "load", "load_executable", "save"]
from . import examples  # noqa: E402  (graph.examples: the course's small models, seeded)

__all__ += ["examples"]
from .frontend import OnnxImportError, UnsupportedOpError, from_onnx  # noqa: E402
from .onnx_export import to_onnx  # noqa: E402

__all__ += ["OnnxImportError", "UnsupportedOpError", "from_onnx", "to_onnx"]
