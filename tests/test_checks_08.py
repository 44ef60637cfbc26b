"""The checks of unit 08 (graphs and fusion).

Each check must give full marks to a correct solution and fail, with a message that
points at the mistake, on the mistakes students make: a pattern table with a wrong row;
a post-dominator that forgets outputs, takes the first consumer, meets only one level
down, walks forwards, takes the farthest common node, skips the leaves, or enumerates
paths (the time limit stops it); a fusion rule that fuses only single-consumer chains,
ignores outputs, fuses injective ops, reductions, into a matmul or into one of several
consumer groups; a byte count that reads a value once per reader or once in all,
forgets constants, values handed to other kernels or the dtype; a CSE that ignores
attributes, compares the original inputs, treats divide as commutative, edits its
argument, keeps repeated constants or merges constants that only look alike. The judges
are also handed forged observations (malformed data, cycles, huge or invalid nodes) and
must fail them cleanly; an untouched stub hears only "not implemented yet", with no hint.
"""

from pathlib import Path

import numpy as np
import pytest
from check_util import check_runner, grade_cell

from mlc import graph
from mlc.grading.checks import graphs, graphs_passes, graphs_fusion
from mlc.grading.registry import CheckFailed, get
from mlc.grading.registry import Tester as _Tester

ROOT = Path(__file__).resolve().parents[1]
IDS = ["graphs.op_pattern", "graphs.post_dominator", "graphs.fuse_elementwise",
       "graphs.bytes_moved", "graphs.cse"]


# ---- the reference solutions (as in solutions/08_graphs_and_fusion.ipynb) ----------------------

PATTERN_OF = {
    **dict.fromkeys(["add", "multiply", "divide", "power", "maximum", "negate", "exp", "log",
                     "relu", "tanh", "sigmoid", "add_scalar", "mul_scalar", "divide_scalar",
                     "power_scalar", "maximum_scalar"], "elemwise"),
    **dict.fromkeys(["broadcast_to", "batch_norm"], "broadcast"),
    **dict.fromkeys(["reshape", "permute", "im2col", "pad", "crop", "flip"], "injective"),
    **dict.fromkeys(["summation", "reduce_max"], "reduce"),
    "matmul": "out_elemwise_fusable",
    "col2im": "opaque",
    **dict.fromkeys(["cast", "equal", "greater", "less", "erf", "gelu", "where"], "elemwise"),
    **dict.fromkeys(["slice", "concat", "take"], "injective"),
    **dict.fromkeys(["reduce_mean", "softmax", "layer_norm"], "reduce"),
}


def op_pattern(op_name):
    return PATTERN_OF.get(op_name, "opaque")


def make_post_dominator(outputs_have_none=True, meet=True, leaves=True):
    def post_dominator(g):
        users = g.users()
        outputs = {id(n) for n in g.outputs}
        ipdom, depth = {}, {}

        def lca(a, b):
            while a is not b:
                if a is None or b is None:
                    return None
                if depth[a] > depth[b]:
                    a = ipdom[a]
                elif depth[a] < depth[b]:
                    b = ipdom[b]
                else:
                    a, b = ipdom[a], ipdom[b]
            return a

        for n in reversed(g.nodes):
            if (outputs_have_none and id(n) in outputs) or not users[n]:
                d = None
            else:
                d = users[n][0]
                for u in users[n][1:] if meet else ():
                    d = lca(d, u)
            ipdom[n] = d
            depth[n] = 0 if d is None else depth[d] + 1
        return {n.name: (d.name if d is not None else None) for n, d in ipdom.items()
                if leaves or not n.is_leaf}

    return post_dominator


FUSABLE = ("elemwise", "broadcast")


def make_fuse(diamonds=True, outputs=True, into_anchor=False, any_consumer=False,
              fusable=FUSABLE, outputs_are_unread=False):
    def fuse_elementwise(g):
        users = g.users()
        outs = {id(n) for n in (g.ops if outputs_are_unread else g.outputs)
                if not outputs_are_unread or not users[n]}
        group = {}
        for n in reversed(g.ops):
            homes = {id(group[u]): group[u] for u in users[n]}
            ok = op_pattern(n.op) in fusable and (not outputs or id(n) not in outs)
            if ok and homes and (len(homes) == 1 or any_consumer) and \
                    (diamonds or len(users[n]) == 1):
                home = next(iter(homes.values()))
                if into_anchor or all(op_pattern(m.op) in fusable for m in home):
                    home.insert(0, n)
                    group[n] = home
                    continue
            group[n] = [n]
        return list({id(gr): gr for gr in group.values()}.values())[::-1]

    return fuse_elementwise


def make_bytes(distinct=True, constants=True, handed_over=True, itemsize=None):
    def bytes_moved(g, groups):
        users = g.users()
        outputs = {id(n) for n in g.outputs}
        total = 0

        def nbytes(n):
            return n.size * itemsize if itemsize else n.nbytes

        for gr in groups:
            inside = {id(n) for n in gr}
            reads = [x for n in gr for x in n.inputs if id(x) not in inside
                     and (constants or x.op != "constant")]
            if distinct:
                reads = list({id(x): x for x in reads}.values())
            writes = [n for n in gr if id(n) in outputs or (
                handed_over and any(id(u) not in inside for u in users[n]))]
            total += sum(nbytes(x) for x in reads) + sum(nbytes(n) for n in writes)
        return total

    return bytes_moved


def same_constant(c, n):
    return c.shape == n.shape and c.dtype == n.dtype and np.array_equal(c.value, n.value)


def make_cse(attrs=True, remap=True, commutative=False, in_place=False, constants=True,
             same=same_constant):
    def eliminate_common_subexpressions(g):
        new, seen, consts = {}, {}, []
        for n in g.nodes:
            ins = [new[x] for x in n.inputs]
            if n.op == "input":
                m = graph.Node("input", (), {}, n.shape, n.dtype, n.name)
            elif n.op == "constant":
                m = next((c for c in consts if constants and same(c, n)), None)
                if m is None:
                    m = graph.Node("constant", (), {}, n.shape, n.dtype, n.name, n.value)
                    consts.append(m)
            else:
                ids = [id(x) for x in (ins if remap else n.inputs)]
                if commutative:
                    ids.sort()
                key = (n.op, tuple(ids), repr(sorted(n.attrs.items())) if attrs else "")
                if key not in seen:
                    seen[key] = graph.Node(n.op, ins, n.attrs, n.shape, n.dtype, n.name)
                m = seen[key]
            new[n] = m
        if in_place:
            g.nodes.reverse()
            g.nodes.reverse()
            g.nodes[-1].attrs["touched"] = True
        nodes = list({id(m): m for m in new.values()}.values())
        return graph.Graph(nodes, [new[x] for x in g.inputs], [new[x] for x in g.outputs])

    return eliminate_common_subexpressions


REFERENCE = {"op_pattern": op_pattern, "post_dominator": make_post_dominator(),
             "fuse_elementwise": make_fuse(), "bytes_moved": make_bytes(),
             "eliminate_common_subexpressions": make_cse()}
run, fails = check_runner(REFERENCE)


# ---- full marks, stubs ---------------------------------------------------------------------------

@pytest.mark.parametrize("ex_id", IDS)
def test_reference_gets_full_marks(ex_id):
    rec = run(ex_id)
    assert rec["score"] == rec["max_score"] == get(ex_id).points, rec["message"]


def test_points():
    assert [get(i).points for i in IDS] == [1, 2, 3, 2, 3]
    assert {e.notebook for e in map(get, IDS)} == {"08_graphs_and_fusion"}


@pytest.mark.parametrize("ex_id", IDS)
def test_untouched_stub_hears_only_not_implemented(ex_id):
    def stub(*args, **kwargs):
        raise NotImplementedError("your code here")

    rec = run(ex_id, **{get(ex_id).needs[0]: stub})
    assert rec["score"] == 0 and "not implemented yet" in rec["message"], rec
    assert rec["hint"] == ""




@pytest.mark.parametrize("ex_id", IDS)
def test_hints_are_nudges(ex_id):
    hint = get(ex_id).hint
    assert hint and len(hint) < 400
    assert not any(code in hint for code in ("def ", "return ", "users[", "reversed(",
                                             "graph.", "np.", "=="))


# ---- exercise 1 ----------------------------------------------------------------------------------

def test_op_pattern_failures():
    ex = "graphs.op_pattern"
    msg = fails(ex, "classified wrong", "'broadcast_to'", "expected 'broadcast'",
                op_pattern=lambda op: "elemwise" if op == "broadcast_to" else op_pattern(op))
    assert "ops of unit 08: 1 of 28 classified wrong" in msg
    fails(ex, "op_pattern('matmul') returned 'reduce'",
          op_pattern=lambda op: "reduce" if op == "matmul" else op_pattern(op))
    fails(ex, "12 of 28 classified wrong", "and 8 more", op_pattern=lambda op: "elemwise")
    fails(ex, "returned None", op_pattern=lambda op: None)
    fails(ex, "op_pattern('add')", "ZeroDivisionError", op_pattern=lambda op: 1 / 0)


LECTURE_TABLE = {k: v for k, v in PATTERN_OF.items() if k in graphs.UNIT_08_OPS}


def test_op_pattern_copied_from_the_lecture_table_scores_zero():
    def op_pattern(op_name):
        return LECTURE_TABLE.get(op_name, "opaque")

    fails("graphs.op_pattern", "not in the lecture's table", "op_pattern('cast') returned "
          "'opaque'", op_pattern=op_pattern)


def test_op_pattern_guessing_elemwise_for_unknown_ops_scores_zero():
    def op_pattern(op_name):
        return LECTURE_TABLE.get(op_name, "elemwise")

    fails("graphs.op_pattern", "op_pattern('concat') returned 'elemwise'", op_pattern=op_pattern)


def test_op_pattern_calling_softmax_elementwise_scores_zero():
    def op_pattern(op_name):  # softmax and layer norm read a whole row for each element
        if op_name in ("softmax", "layer_norm", "reduce_mean"):
            return "elemwise"
        return PATTERN_OF.get(op_name, "opaque")

    fails("graphs.op_pattern", "op_pattern('layer_norm') returned 'elemwise'",
          op_pattern=op_pattern)


def test_op_pattern_must_not_ask_the_library():
    def op_pattern(op_name):  # the grader reads this source (the name is what it looks for)
        return graph.pattern(op_name)

    fails("graphs.op_pattern", "does not look the answer up", "pattern", op_pattern=op_pattern)


# ---- exercise 2 ----------------------------------------------------------------------------------

def test_post_dominator_failures():
    ex = "graphs.post_dominator"
    fails(ex, "a chain whose middle node is also an output", "%b should be None",
          post_dominator=make_post_dominator(outputs_have_none=False))
    fails(ex, "a diamond", "%a should be %d, got %b",
          post_dominator=make_post_dominator(meet=False))
    fails(ex, "no entry for %x", "inputs and constants included",
          post_dominator=make_post_dominator(leaves=False))
    fails(ex, "expected a dict", post_dominator=lambda g: [])
    fails(ex, "'zzz', which is no node",
          post_dominator=lambda g: {**make_post_dominator()(g), "zzz": None})


def test_post_dominator_accepts_nodes_as_keys_and_values():
    def with_nodes(g):
        names = make_post_dominator()(g)
        return {g.node(k): (g.node(v) if v else None) for k, v in names.items()}

    assert run("graphs.post_dominator", post_dominator=with_nodes)["score"] == 2


@pytest.mark.parametrize("obs", ["x", [["a"]], [[1, None]], [["a", 3]], None])
def test_post_dominator_judge_on_forged_observations(obs):
    ex = get("graphs.post_dominator")
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


# ---- exercise 3 ----------------------------------------------------------------------------------

def test_fuse_elementwise_failures():
    ex = "graphs.fuse_elementwise"
    fails(ex, "a diamond", "not maximal", "%a", "could join", fuse_elementwise=make_fuse(
        diamonds=False))
    fails(ex, "is not legal", "is a graph output", fuse_elementwise=make_fuse(outputs=False))
    fails(ex, "the digits MLP", "only elemwise and broadcast ops share a group",
          fuse_elementwise=make_fuse(into_anchor=True))
    fails(ex, "is not legal", "outside the group",
          fuse_elementwise=make_fuse(any_consumer=True))
    fails(ex, "not maximal", fuse_elementwise=lambda g: [[n] for n in g.ops])
    fails(ex, "op nodes only", fuse_elementwise=lambda g: [[n] for n in g.nodes])
    fails(ex, "is in no group", fuse_elementwise=lambda g: [[n] for n in g.ops[1:]])
    fails(ex, "is in two groups", fuse_elementwise=lambda g: [[n] for n in g.ops] + [g.ops[:1]])
    fails(ex, "expected a list of groups", fuse_elementwise=lambda g: None)
    fails(ex, "is no node of the graph", fuse_elementwise=lambda g: [["nope"]])


def test_fuse_elementwise_accepts_names_and_any_group_order():
    def names_reversed(g):
        return [[n.name for n in gr][::-1] for gr in make_fuse()(g)][::-1]

    assert run("graphs.fuse_elementwise", fuse_elementwise=names_reversed)["score"] == 3


def test_greedy_is_the_coarsest_legal_partition():
    """The reference the check uses agrees with the library's own view of a legal group
    on every case, and fusing any further would break legality (checked by the judge)."""
    ex = get("graphs.fuse_elementwise")
    for case in ex.check.cases():
        t = _Tester()
        ex.check.judge(case, case["_expected"], t)


@pytest.mark.parametrize("obs", [None, "groups", [[1, 2]], [["a"], "b"], [[None]]])
def test_fuse_elementwise_judge_on_forged_observations(obs):
    ex = get("graphs.fuse_elementwise")
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


# ---- exercise 4 ----------------------------------------------------------------------------------

def test_bytes_moved_failures():
    ex = "graphs.bytes_moved"
    fails(ex, "layer norm + softmax, one kernel per op", "expected 23456 bytes, got 23968",
          bytes_moved=make_bytes(distinct=False))
    fails(ex, "expected 29256 bytes", bytes_moved=make_bytes(constants=False))
    fails(ex, "one kernel per op", bytes_moved=make_bytes(handed_over=False))
    fails(ex, "float64", bytes_moved=make_bytes(itemsize=4))
    fails(ex, "expected an int", bytes_moved=lambda g, groups: "many")
    fails(ex, "expected an int", bytes_moved=lambda g, groups: 1.5)


def test_bytes_moved_writing_only_each_groups_last_node_scores_zero():
    def bytes_moved(g, groups):
        total = 0
        for gr in groups:
            inside = {id(n) for n in gr}
            reads = {id(x): x for n in gr for x in n.inputs if id(x) not in inside}
            total += sum(x.nbytes for x in reads.values()) + gr[-1].nbytes
        return total

    fails("graphs.bytes_moved", "runs of consecutive ops", bytes_moved=bytes_moved)


def test_bytes_moved_writing_outputs_and_handed_over_values_twice_scores_zero():
    def bytes_moved(g, groups):
        users, total = g.users(), 0
        outputs = {id(n) for n in g.outputs}
        for gr in groups:
            inside = {id(n) for n in gr}
            reads = {id(x): x for n in gr for x in n.inputs if id(x) not in inside}
            total += sum(x.nbytes for x in reads.values())
            total += sum(n.nbytes for n in gr if id(n) in outputs)
            total += sum(n.nbytes for n in gr if any(id(u) not in inside for u in users[n]))
        return total

    fails("graphs.bytes_moved", "expected", bytes_moved=bytes_moved)


def test_bytes_moved_writing_the_last_node_and_the_graph_outputs_scores_zero():
    def bytes_moved(g, groups):
        outputs, total = {id(n) for n in g.outputs}, 0
        for gr in groups:
            inside = {id(n) for n in gr}
            reads = {id(x): x for n in gr for x in n.inputs if id(x) not in inside}
            writes = {id(n): n for n in gr if id(n) in outputs}
            writes[id(gr[-1])] = gr[-1]
            total += sum(x.nbytes for x in reads.values()) + sum(n.nbytes for n in writes.values())
        return total

    fails("graphs.bytes_moved", "expected", bytes_moved=bytes_moved)


@pytest.mark.parametrize("obs", [None, "12", 1.5, True, [1]])
def test_bytes_moved_judge_on_forged_observations(obs):
    ex = get("graphs.bytes_moved")
    with pytest.raises(CheckFailed):
        ex.check.judge(ex.check.cases()[0], obs, _Tester())


def test_bytes_moved_reference_on_relu_x_w_b():
    """relu(x * w + b) on n x n float32: 4 kernels move 2 * 4n^2 + ... bytes unfused, one
    kernel reads x, w, b once and writes once."""
    import mlc
    from mlc import ops

    n = 16
    x = np.ones((n, n), "float32")
    W, B = mlc.Tensor(np.ones((1, n), "float32")), mlc.Tensor(np.ones((1, n), "float32"))
    g = graph.trace(lambda t: ops.relu(t * W.broadcast_to((n, n)) + B.broadcast_to((n, n))), x)
    data = graphs.graph_data(g)
    one = [[n.name for n in g.ops]]
    assert graphs_fusion.bytes_moved_reference(data, one) == 4 * (2 * n * n + 2 * n)
    assert make_bytes()(g, [list(g.ops)]) == 4 * (2 * n * n + 2 * n)


# ---- exercise 5 ----------------------------------------------------------------------------------

def test_cse_failures():
    ex = "graphs.cse"
    fails(ex, "hidden random graph", "differs from the original's",
          eliminate_common_subexpressions=make_cse(attrs=False))
    fails(ex, "softmax written twice", "one of them is left over",
          eliminate_common_subexpressions=lambda g: g)
    fails(ex, "one of them is left over", eliminate_common_subexpressions=make_cse(remap=False))
    fails(ex, "differs from the original's",
          eliminate_common_subexpressions=make_cse(commutative=True))
    fails(ex, "was changed", eliminate_common_subexpressions=make_cse(in_place=True))
    fails(ex, "repeated constant", eliminate_common_subexpressions=make_cse(constants=False))
    fails(ex, "returned None", eliminate_common_subexpressions=lambda g: None)
    fails(ex, "expected a Graph", eliminate_common_subexpressions=lambda g: [1, 2])

    def drops_an_input(g):
        out = make_cse()(g)
        return graph.Graph(out.nodes, out.inputs[:-1], out.outputs)

    fails(ex, "keep every input", eliminate_common_subexpressions=drops_an_input)


def _cse_case_and_good_obs():
    ex = get("graphs.cse")
    case = ex.check.cases()[0]
    g = graphs.build_graph(case["graph"])
    good = {"result": graphs_passes.read_graph(make_cse()(g), "r"),
            "argument": graphs_passes.read_graph(g, "a")}
    return ex, case, good


def test_cse_judge_accepts_the_good_observation():
    ex, case, good = _cse_case_and_good_obs()
    ex.check.judge(case, good, _Tester())


def _forge(good, fn):
    import copy

    obs = copy.deepcopy(good)
    fn(obs["result"])
    return obs


@pytest.mark.parametrize("forge,fragment", [
    (lambda r: r["nodes"][1].update(inputs=[5]), "malformed inputs"),
    (lambda r: r["nodes"][1].update(inputs=[1]), "malformed inputs"),  # reads itself
    (lambda r: r["nodes"][1].update(op="col2im"), "is not one these graphs use"),
    (lambda r: r["nodes"][1].update(op="input", inputs=[]), "does not run"),
    (lambda r: r["nodes"][1].update(dtype="float64"), "float32"),
    (lambda r: r["nodes"][1].update(attrs={"scalar": 1.0}), "takes attributes"),
    (lambda r: r["nodes"][2].update(attrs={"axes": (7,), "keepdims": True}), "axes="),
    (lambda r: r["nodes"][2].update(attrs={"axes": (1,), "keepdims": "yes"}), "keepdims"),
    (lambda r: r["nodes"][3].update(attrs={"shape": (1 << 20, 8)}), "positive ints"),
    (lambda r: r["nodes"][3].update(attrs={"shape": (3, 8)}), "cannot broadcast"),
    (lambda r: r["nodes"][3].update(shape=(9, 9)), "says its shape is"),
    (lambda r: r["nodes"][0].update(shape=(1 << 30,)), "bad shape"),
    (lambda r: r.update(outputs=[99]), "malformed inputs/outputs"),
    (lambda r: r.update(nodes="x"), "malformed observation of the graph"),
    (lambda r: r["nodes"].append({"op": "exp"}), "malformed node"),
])
def test_cse_judge_on_forged_observations(forge, fragment):
    ex, case, good = _cse_case_and_good_obs()
    assert [d["op"] for d in good["result"]["nodes"]][:4] == [
        "input", "exp", "summation", "broadcast_to"]
    with pytest.raises(CheckFailed, match=fragment):
        ex.check.judge(case, _forge(good, forge), _Tester())


def test_cse_judge_refuses_a_forged_constant():
    ex, case, good = _cse_case_and_good_obs()
    obs = _forge(good, lambda r: r["nodes"].append(
        {"name": "c", "op": "constant", "inputs": [], "attrs": {}, "shape": (2, 2),
         "dtype": "float32", "value": np.zeros(3, "float32")}))
    with pytest.raises(CheckFailed, match="value must be an array"):
        ex.check.judge(case, obs, _Tester())


def test_cse_hidden_graphs_need_every_kind_of_merge():
    """Each failure mode above is caught by some hidden case, not only by the first."""
    cases = get("graphs.cse").check.cases()
    assert len(cases) >= 12
    ops = {d["op"] for c in cases for d in c["graph"]["nodes"]}
    assert {"divide", "add_scalar", "summation", "broadcast_to", "constant"} <= ops


# ---- wrong but plausible answers (the checks audit): each scores 0 -----------------------------

@pytest.mark.parametrize("ops,wrong,fragment", [
    (("take",), "opaque", "op_pattern('take') returned 'opaque'"),           # "data-dependent"
    (("slice", "pad", "crop"), "elemwise", "returned 'elemwise', expected 'injective'"),
    (("batch_norm",), "elemwise", "op_pattern('batch_norm') returned 'elemwise'"),
    (("gelu", "erf"), "opaque", "returned 'opaque', expected 'elemwise'"),   # "composite"
    (("where",), "broadcast", "op_pattern('where') returned 'broadcast'"),
])
def test_op_pattern_plausible_wrong_rows_score_zero(ops, wrong, fragment):
    fails("graphs.op_pattern", fragment,
          op_pattern=lambda op: wrong if op in ops else op_pattern(op))


def _pdom_names(ipdom):
    return {n.name: (d.name if d is not None else None) for n, d in ipdom.items()}


def pdom_single_consumer(g):
    """Only a node with one consumer has a post-dominator (it misses every diamond)."""
    users, outs = g.users(), {id(n) for n in g.outputs}
    return {n.name: users[n][0].name if len(users[n]) == 1 and id(n) not in outs else None
            for n in g.nodes}


def pdom_one_level(g):
    """Several consumers agree only when their own post-dominators are one node."""
    users, outs, ipdom = g.users(), {id(n) for n in g.outputs}, {}
    for n in reversed(g.nodes):
        if id(n) in outs or not users[n]:
            ipdom[n] = None
        elif len(users[n]) == 1:
            ipdom[n] = users[n][0]
        else:
            ds = {id(ipdom[u]): ipdom[u] for u in users[n]}
            ipdom[n] = next(iter(ds.values())) if len(ds) == 1 else None
    return _pdom_names(ipdom)


def pdom_forward(g):
    """The chains met first to last: a consumer's post-dominator is not known yet."""
    users, outs, ipdom = g.users(), {id(n) for n in g.outputs}, {}

    def chain(u):
        out = [u]
        while ipdom.get(u) is not None:
            u = ipdom[u]
            out.append(u)
        return out

    for n in g.nodes:
        chains = [chain(u) for u in users[n]] if id(n) not in outs else []
        common = [c for c in chains[0] if all(c in o for o in chains[1:])] if chains else []
        ipdom[n] = common[0] if common else None
    return _pdom_names(ipdom)


def pdom_farthest(g):
    """The set of post-dominators right, then the farthest of them instead of the nearest."""
    users, outs, pd = g.users(), {id(n) for n in g.outputs}, {}
    order = {id(n): i for i, n in enumerate(g.nodes)}
    for n in reversed(g.nodes):
        sets = [pd[u] | {u} for u in users[n]] if id(n) not in outs and users[n] else []
        pd[n] = set.intersection(*sets) if sets else set()
    return {n.name: max(s, key=lambda m: order[id(m)]).name if s else None
            for n, s in pd.items()}


@pytest.mark.parametrize("wrong,fragments", [
    (pdom_single_consumer, ("a diamond", "%a should be %d, got None")),
    (pdom_one_level, ("nested diamonds", "%d should be %f, got None")),
    (pdom_forward, ("a diamond", "%a should be %d, got None")),
    (pdom_farthest, ("a chain", "%a should be %b, got %c")),
])
def test_post_dominator_plausible_wrong_answers_score_zero(wrong, fragments):
    fails("graphs.post_dominator", *fragments, post_dominator=wrong)


PDOM_BY_EVERY_PATH = '''
def post_dominator(g):
    """The nodes on every path to the exit, intersected: right, and 2^k paths for k
    stacked diamonds."""
    users = g.users()
    outputs = {id(n) for n in g.outputs}
    order = {id(n): i for i, n in enumerate(g.nodes)}

    def paths(n):
        if id(n) in outputs:
            yield ()
        for u in users[n]:
            for rest in paths(u):
                yield (u, *rest)

    out = {}
    for n in g.nodes:
        common = None
        for p in paths(n):
            common = set(map(id, p)) if common is None else common & set(map(id, p))
        after = [m for m in g.nodes if common and id(m) in common]
        out[n.name] = min(after, key=lambda m: order[id(m)]).name if after else None
    return out
'''


def test_post_dominator_by_enumerating_paths_runs_out_of_time(tmp_path):
    """Right on every small graph (it got full marks before the residual chain was a
    case); on 40 residual blocks it would walk 2^40 paths, so the grader's limit stops it."""
    ns = {}
    exec(PDOM_BY_EVERY_PATH, ns)  # noqa: S102 - the test's own wrong answer
    data = graphs.hand_graph([("a", "exp", ["x"]), ("b", "negate", ["a"]),
                              ("c", "tanh", ["a"]), ("d", "add", ["b", "c"]),
                              ("e", "relu", ["d"]), ("f", "add", ["a", "e"])], ["f"])
    g = graphs.build_graph(data)
    assert ns["post_dominator"](g) == make_post_dominator()(g)
    graded = grade_cell(tmp_path, "08_graphs_and_fusion", PDOM_BY_EVERY_PATH, timeout=4)
    rec = graded["graphs.post_dominator"]
    assert rec.score == 0 and "timed out" in rec.message, rec.message


def fuse_first_to_last(g):
    """Walked from the first node: a node joins its producer's group when it is that
    producer's only consumer, so broadcasts that feed a diamond's sink stay apart."""
    users, outs, group = g.users(), {id(n) for n in g.outputs}, {}
    for n in g.ops:
        prods = [x for x in n.inputs if x in group]
        if op_pattern(n.op) in FUSABLE and len(prods) == 1 and len(users[prods[0]]) == 1 \
                and id(prods[0]) not in outs \
                and all(op_pattern(m.op) in FUSABLE for m in group[prods[0]]):
            group[prods[0]].append(n)
            group[n] = group[prods[0]]
        else:
            group[n] = [n]
    return list({id(gr): gr for gr in group.values()}.values())


@pytest.mark.parametrize("wrong,fragments", [
    (make_fuse(fusable=("elemwise", "broadcast", "injective")),
     ("holds %flip (injective)", "only elemwise and broadcast ops share a group")),
    (make_fuse(fusable=("elemwise", "broadcast", "reduce")),
     ("layer norm + softmax", "(reduce): only elemwise and broadcast")),
    (make_fuse(outputs_are_unread=True),   # "an output is a node nobody reads"
     ("a chain whose middle node is also an output", "%b is a graph output")),
    (fuse_first_to_last, ("not maximal", "could join the group of all its consumers")),
    (make_fuse(fusable=("elemwise",)),     # a broadcast is no elementwise op, is it?
     ("the digits MLP", "not maximal", "%broadcast_to (broadcast_to, no output)")),
])
def test_fuse_elementwise_plausible_wrong_answers_score_zero(wrong, fragments):
    fails("graphs.fuse_elementwise", *fragments, fuse_elementwise=wrong)


def bytes_reading_inner_values(g, groups):
    """Every input of every node read from memory, values made inside the group too."""
    users, outs, total = g.users(), {id(n) for n in g.outputs}, 0
    for gr in groups:
        inside = {id(n) for n in gr}
        reads = {id(x): x for n in gr for x in n.inputs}
        total += sum(x.nbytes for x in reads.values()) + sum(
            n.nbytes for n in gr if id(n) in outs or any(id(u) not in inside for u in users[n]))
    return total


def bytes_reading_each_value_once_in_all(g, groups):
    """A value read by two kernels counted once, as if the second found it in a cache."""
    users, outs, total, seen = g.users(), {id(n) for n in g.outputs}, 0, set()
    for gr in groups:
        inside = {id(n) for n in gr}
        for x in (x for n in gr for x in n.inputs if id(x) not in inside):
            if id(x) not in seen:
                seen.add(id(x))
                total += x.nbytes
        total += sum(n.nbytes for n in gr
                     if id(n) in outs or any(id(u) not in inside for u in users[n]))
    return total


@pytest.mark.parametrize("wrong,fragment", [
    (bytes_reading_inner_values, "the elementwise rule's groups: expected 24840 bytes"),
    (bytes_reading_each_value_once_in_all, "one kernel per op: expected 23456 bytes"),
])
def test_bytes_moved_plausible_wrong_answers_score_zero(wrong, fragment):
    fails("graphs.bytes_moved", fragment, bytes_moved=wrong)


def cse_outputs_once(g):
    """Two outputs that became one node listed once: the caller gets fewer results."""
    out = make_cse()(g)
    return graph.Graph(out.nodes, out.inputs, list({id(o): o for o in out.outputs}.values()))


def cse_constants_last(g):
    """The merged constants appended after the ops that read them."""
    out = make_cse()(g)
    return graph.Graph([n for n in out.nodes if n.op != "constant"]
                       + [n for n in out.nodes if n.op == "constant"], out.inputs, out.outputs)


@pytest.mark.parametrize("wrong,fragments", [
    # constants keyed by their shape, by their bytes, or compared with np.allclose: each
    # got full marks while every constant of the hidden graphs held the same bias
    (make_cse(same=lambda c, n: c.shape == n.shape),
     ("constants that only look alike", "differs from the original's", "not equal")),
    (make_cse(same=lambda c, n: c.value.tobytes() == n.value.tobytes()),
     ("constants that only look alike", "matmul of shapes [(4, 8), (1, 8)] is not valid")),
    (make_cse(same=lambda c, n: c.shape == n.shape and np.allclose(c.value, n.value)),
     ("constants that only look alike", "output 3 differs from the original's")),
    (cse_outputs_once, ("the result has 2 outputs, the graph 3",)),
    (cse_constants_last, ("not in topological order",)),
])
def test_cse_plausible_wrong_answers_score_zero(wrong, fragments):
    fails("graphs.cse", *fragments, eliminate_common_subexpressions=wrong)


def test_cse_case_of_constants_that_only_look_alike():
    """Of its five constants only the twin merges; the near one is within np.allclose."""
    data = graphs_passes._constants_that_differ()
    g = graphs.build_graph(data)
    vals = {n.name: n.value for n in g.params}
    assert len(graph.eliminate_common_subexpressions(g).params) == 4
    assert np.allclose(vals["bias"], vals["bias_near"]) and not np.array_equal(
        vals["bias"], vals["bias_near"])
    assert vals["column"].tobytes() == vals["bias"].tobytes()


# ---- the package and the notebooks ---------------------------------------------------------

def test_modules_stay_small():
    for mod in (graphs, graphs_fusion, graphs_passes):
        assert len(Path(mod.__file__).read_text().splitlines()) <= 400


def test_solution_notebook_gets_full_marks(graded):
    report = graded(ROOT / "solutions" / "08_graphs_and_fusion.ipynb")
    assert (report.score, report.max_score) == (11, 11), [(r.id, r.message)
                                                          for r in report.results]


def test_released_notebook_gets_zero(graded):
    report = graded(ROOT / "exercises" / "08_graphs_and_fusion.ipynb")
    assert report.max_score == 11 and report.score == 0, report.results
    assert all("not implemented" in r.message for r in report.results), [
        r.message for r in report.results]
