"""The tensor IR: building nodes by hand, dtype rules, printing, structural equality,
well-formedness and the integer arithmetic behind schedules."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlc import tir
from mlc.tir import arith


def hand_written_add(n=4, name_i="i"):
    """B[i] = A[i] + 1, written with the node classes."""
    A = tir.Buffer("A", (n,), "float32")
    B = tir.Buffer("B", (n,), "float32")
    i, vi = tir.Var(name_i), tir.Var("v" + name_i)
    blk = tir.Block("B", [tir.IterVar(vi, n, "spatial")], [i],
                    tir.BufferStore(B, A[vi] + 1.0, [vi]))
    return tir.PrimFunc([A, B], tir.For(i, n, blk))


def test_nodes_operators_and_dtypes():
    i = tir.Var("i")
    x = tir.Var("x", "float32")
    e = i * 4 + 1
    assert isinstance(e, tir.Add) and e.dtype == "int32"
    assert (x * 2).b.dtype == "float32"            # python scalars take the other's dtype
    assert (i < 3).dtype == "bool" and tir.Select(i < 3, x, 0.0).dtype == "float32"
    assert (i // 2).dtype == "int32" and isinstance(i % 2, tir.FloorMod)
    assert tir.exp(x).op == "exp" and tir.Cast("int32", x).dtype == "int32"
    with pytest.raises(TypeError, match="dtype mismatch"):
        x + tir.Var("y", "float64")
    with pytest.raises(TypeError, match="true division"):
        i / 2
    with pytest.raises(TypeError, match="no truth value"):
        bool(i < 3)
    with pytest.raises(TypeError, match="float constant"):
        i * 0.5
    assert i in [tir.Var("i"), i]     # == builds EQ, whose truth is identity
    assert tir.Var("i") not in [i]
    with pytest.raises(IndexError, match="2 dims"):
        tir.Buffer("A", (2, 3))[0]
    with pytest.raises(ValueError, match="unknown kind"):
        tir.For(i, 4, None, kind="fast")
    with pytest.raises(ValueError, match="unknown thread tag"):
        tir.For(i, 4, None, kind="thread_binding", thread_tag="warp.x")


def test_script_shows_blocks_axes_and_loop_kinds():
    f = hand_written_add()
    text = f.script()
    assert 'def main(A: Buffer((4,), "float32"), B: Buffer((4,), "float32")):' in text
    assert "for i in range(4):" in text and 'with block("B"):' in text
    assert "vi = axis.spatial(4, i)" in text and "B[vi] = A[vi] + 1.0" in text
    par = f.with_body(f.body.with_(kind="parallel"))
    assert "for i in parallel(4):" in par.script()
    gpu = f.with_body(f.body.with_(kind="thread_binding", thread_tag="threadIdx.x"))
    assert 'for i in thread_binding(4, "threadIdx.x"):' in gpu.script()
    assert repr(tir.Var("a") * (tir.Var("b") + 1)) == "a * (b + 1)"
    assert repr(tir.Var("a") - (tir.Var("b") - 1)) == "a - (b - 1)"


def test_structural_equal_is_alpha_equivalence():
    a, b = hand_written_add(name_i="i"), hand_written_add(name_i="j")
    assert tir.structural_equal(a, b)
    assert not tir.structural_equal(a, hand_written_add(n=5))
    i, j = tir.Var("i"), tir.Var("j")
    assert tir.structural_equal(i + 1, j + 1)
    assert not tir.structural_equal(i + j, i + i)      # two vars cannot map to one
    assert not tir.structural_equal(i + 1, i + 2)
    with pytest.raises(AssertionError, match="not structurally equal"):
        tir.assert_structural_equal(a, hand_written_add(n=5))


def test_verify_names_what_is_wrong():
    f = hand_written_add()
    assert tir.verify(f) == []
    A, B = f.params
    i, vi, k = tir.Var("i"), tir.Var("vi"), tir.Var("k")
    T = tir.Buffer("T", (4,))

    def bad(store, bindings=None, ivs=None):
        blk = tir.Block("B", ivs or [tir.IterVar(vi, 4)], bindings or [i], store)
        return tir.PrimFunc([A, B], tir.For(i, 4, blk))

    cases = [
        (bad(tir.BufferStore(B, A[vi], [vi]), bindings=[k]), "uses unbound variable k"),
        (bad(tir.BufferStore(B, A[i], [vi])), "uses loop variable i directly"),
        (bad(tir.BufferStore(B, T[vi], [vi])), "buffer T is used but not declared"),
        (bad(tir.BufferStore(B, tir.BufferLoad(A, [vi, vi]), [vi])),
         "A has 1 dims but is indexed with 2 indices"),
        (bad(tir.BufferStore(B, A[vi], [vi + 1])), "store to B may leave the buffer"),
    ]
    for func, msg in cases:
        with pytest.raises(tir.VerifyError, match=msg):
            tir.verify(func)
    twice = tir.PrimFunc([A, B], tir.seq(f.body, f.body))
    errors = tir.verify(twice, raise_error=False)
    assert any("bound more than once" in e for e in errors)
    assert any("name is used by another block" in e for e in errors)


def test_simplify_undoes_split_and_fuse():
    i0, i1, f = tir.Var("i0"), tir.Var("i1"), tir.Var("f")
    r = {i0: (0, 7), i1: (0, 3), f: (0, 31)}
    assert arith.simplify((i0 * 4 + i1) // 4, r) is i0
    assert arith.simplify((i0 * 4 + i1) % 4, r) is i1
    assert arith.simplify((f // 4) * 4 + f % 4, r) is f
    assert repr(arith.simplify((i0 + 1) * 2 - i0 - 2, r)) == "i0"
    assert arith.simplify(i0 * 4 + i1 < 32, r).value == 1
    assert isinstance(arith.simplify(i0 * 4 + i1 < 30, r), tir.LT)
    assert arith.simplify(tir.min(i1, 9), r) is i1
    assert arith.bound(i0 * 4 - i1, r) == (-3, 28)
    assert arith.bound(i0 * tir.Var("unknown"), r) == (-math.inf, math.inf)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 5), min_size=4, max_size=4), st.integers(1, 6),
       st.integers(0, 7), st.integers(0, 3), st.sampled_from(["div", "mod", "lin"]))
def test_simplify_preserves_values(coef, c, x0, x1, op):
    """For values inside the ranges, the simplified expression evaluates the same."""
    a, b = tir.Var("a"), tir.Var("b")
    r = {a: (0, 7), b: (0, 3)}
    lin = a * coef[0] + b * coef[1] + coef[2]
    e = {"div": lin // c, "mod": lin % c, "lin": lin * coef[3] - a}[op]

    def ev(x):
        return tir.arith.simplify(tir.substitute(x, {a: x0, b: x1})).value

    assert ev(arith.simplify(e, r)) == ev(e)
    lo, hi = arith.bound(e, r)
    assert lo <= ev(e) <= hi
