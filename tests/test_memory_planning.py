"""mlc.memory: liveness, the lower bound, the planners and their verifier."""

import numpy as np
import pytest

from mlc import graph, memory
from mlc.graph import Graph, Node
from mlc.memory import Block, PlanError, PlanTooLarge
from mlc.models import digits_cnn, digits_mlp

STRATEGIES = ["naive", "shared_objects", "greedy_by_size", "greedy_by_breadth", "optimal"]


def _chain():
    b = graph.GraphBuilder()
    x = b.input((4, 16), name="x")
    w = b.constant(np.ones((16, 16), "float32"), name="w")
    m = b.op("matmul", x, w, name="mm")
    r = b.op("relu", m, name="r")
    e = b.op("exp", r, name="e")
    m2 = b.op("matmul", e, w, name="mm2")
    return b.graph(m2)


def _models():
    out = {}
    for name, make in (("mlp", lambda: digits_mlp(batch=8)),
                       ("cnn", lambda: digits_cnn(batch=4)),
                       ("deep_mlp", lambda: (memory.deep_mlp(16, width=64),
                                             np.random.rand(8, 64).astype("float32")))):
        model, x = make()
        g = graph.eliminate_dead_code(graph.fold_constants(graph.trace(model, x)))
        out[name] = (g, x)
    return out


MODELS = _models()


def test_liveness_of_a_chain():
    g = _chain()
    live = {t.name: iv for t, iv in memory.liveness(g).items()}
    assert live == {"mm": (0, 1), "r": (1, 2), "e": (2, 3), "mm2": (3, 3)}
    assert memory.breadths(g) == [256, 512, 512, 512]
    assert memory.lower_bound(g) == 512
    assert memory.lower_bound(g, alignment=1) == 512


def test_liveness_of_a_fused_graph_has_group_steps():
    g, _ = MODELS["cnn"]
    fg = graph.fuse(g)
    live = memory.liveness(fg)
    assert max(b for _, b in live.values()) == fg.kernels - 1
    inside = {n for gr in fg.groups for n in gr} - set(live)
    assert inside and all(not n.is_leaf for n in inside)      # fused values are no tensors
    assert memory.lower_bound(fg) <= memory.lower_bound(g)


def test_order_changes_the_bound():
    # four branches, each a big intermediate reduced to a small value, then added up
    b = graph.GraphBuilder()
    x = b.input((64, 64), name="x")
    ends = []
    for i in range(4):
        big = b.op("exp", x, name=f"big{i}")
        ends.append(b.op("summation", big, axes=(0, 1), name=f"small{i}"))
    total = ends[0]
    for e in ends[1:]:
        total = b.op("add", total, e)
    g = b.graph(total)
    bfs = memory.lower_bound_for_order(g, "bfs")
    aware = memory.lower_bound_for_order(g, "memory_aware")
    assert aware < bfs
    assert aware <= memory.lower_bound_for_order(g, "dfs") < bfs
    assert bfs >= 4 * 64 * 64 * 4
    assert memory.lower_bound(memory.reorder(g, "as_given")) == memory.lower_bound(g)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_plan_of_a_chain(strategy):
    p = memory.plan(_chain(), strategy)
    assert p.strategy == strategy
    assert p.arena_bytes >= p.lower_bound == 512
    assert all(off % 64 == 0 for off in p.offsets.values())
    assert set(p.sizes.values()) == {256}
    if strategy != "naive":
        assert p.arena_bytes == 512
    else:
        assert p.arena_bytes == 1024


def test_verifier_catches_an_overlap():
    p = memory.plan(_chain(), "greedy_by_size")
    mm, r = [t for t in p.offsets if t.name in ("mm", "r")]
    p.offsets[r] = p.offsets[mm] + 64
    with pytest.raises(PlanError, match="overlap"):
        p.verify()
    p.offsets[r] = 32
    with pytest.raises(PlanError, match="multiple of 64"):
        p.verify()


def test_unknown_strategy_and_optimal_limit():
    with pytest.raises(ValueError, match="unknown memory planner"):
        memory.plan(_chain(), "best")
    blocks = [Block(i, 64, i, i + 1) for i in range(30)]
    with pytest.raises(PlanTooLarge, match="max_blocks"):
        memory.Optimal(max_blocks=24).place(blocks)


def _random_graph(rng) -> Graph:
    nodes = [Node("input", (), {}, (int(rng.integers(1, 9)), 8), "float32", "x0")]
    inputs = list(nodes)
    for i in range(int(rng.integers(1, 16))):
        k = int(rng.integers(1, 3))
        srcs = [nodes[int(j)] for j in rng.integers(0, len(nodes), k)]
        op = ["relu", "exp", "add", "matmul", "summation"][int(rng.integers(0, 5))]
        shape = srcs[0].shape if rng.random() < 0.5 else (int(rng.integers(1, 33)), 8)
        nodes.append(Node(op, srcs, {}, shape, "float32", f"n{i}"))
    outs = [nodes[-1]] + ([nodes[int(rng.integers(1, len(nodes)))]] if rng.random() < 0.3
                          else [])
    return Graph(nodes, inputs, outs)


def test_every_planner_passes_the_verifier_on_random_graphs():
    rng = np.random.default_rng(1)
    for case in range(200):
        g = _random_graph(rng)
        lb = memory.lower_bound(g)
        arenas = {}
        for s in STRATEGIES:
            for inplace in (False, True):
                try:
                    p = memory.plan(g, memory.Optimal(max_nodes=5_000) if s == "optimal"
                                    else s, inplace=inplace)
                except PlanTooLarge:
                    continue
                p.verify()                                       # plan() verified it too
                assert p.arena_bytes >= p.lower_bound
                if not inplace:
                    assert p.lower_bound == lb
                    arenas[s] = p.arena_bytes
        assert arenas["naive"] >= max(arenas.values()), case
        if "optimal" in arenas:
            assert arenas["optimal"] <= min(arenas.values()), case


def test_planners_on_random_blocks():
    rng = np.random.default_rng(2)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        blocks = []
        for i in range(n):
            a = int(rng.integers(0, 10))
            blocks.append(Block(i, 64 * int(rng.integers(1, 20)), a, a + int(rng.integers(0, 4))))
        for s in STRATEGIES:
            offs = memory.get_planner(s).place(blocks)
            for x in blocks:
                for y in blocks:
                    if x.index < y.index and x.meets(y):
                        ox, oy = offs[x.index], offs[y.index]
                        assert ox + x.size <= oy or oy + y.size <= ox, (s, x, y)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_is_close_to_the_bound_on_the_course_models(name):
    g, _ = MODELS[name]
    for view in (g, graph.fuse(g)):
        lb = memory.lower_bound(view)
        for s in ("greedy_by_size", "greedy_by_breadth"):
            p = memory.plan(view, s)
            assert p.arena_bytes <= 1.05 * lb, (name, s, p.arena_bytes, lb)
        assert memory.plan(view, "shared_objects").arena_bytes >= lb


def test_deep_mlp_greedy_is_3x_below_naive():
    g, _ = MODELS["deep_mlp"]
    for view in (g, graph.fuse(g)):
        naive = memory.plan(view, "naive").arena_bytes
        assert naive >= 3 * memory.plan(view, "greedy_by_size").arena_bytes


def test_optimal_on_the_small_models():
    for name in ("mlp", "cnn"):
        g, _ = MODELS[name]
        p = memory.plan(graph.fuse(g), "optimal")
        assert p.arena_bytes == p.lower_bound


def test_inplace_pairs_are_alias_safe():
    g, _ = MODELS["mlp"]
    pairs = {o.name: i.name for o, i in memory.inplace_pairs(g).items()}
    assert pairs["relu"] == "add"             # relu writes over the add it consumes
    assert "matmul" not in pairs              # a matmul reads whole rows: never in place
    s = memory.inplace_savings(g)
    assert s["saved"] > 0 and s["arena_with"] < s["arena_without"]
    p = memory.plan(g, inplace=True)
    relu = next(t for t in p.offsets if t.name == "relu")
    assert p.offsets[relu] == p.offsets[p.inplace[relu]]


def test_plan_draw_and_table():
    import matplotlib

    matplotlib.use("Agg")
    p = memory.plan(_chain(), "greedy_by_size")
    ax = p.draw()
    assert len(ax.patches) == len(p.offsets)
    assert "arena 512 B" in str(p)
    rows = memory.compare(_chain())
    assert [r["strategy"] for r in rows] == STRATEGIES
