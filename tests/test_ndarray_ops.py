"""Elementwise ops, reductions, matmul and dtypes on every enabled device, against numpy.

Shapes are tiny so the CUDA simulator keeps up; a few CPU-only tests use arrays large
enough to run the parallel Numba builds.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlc.ndarray as nd

DEVICES = [pytest.param(d, id=d.name) for d in nd.all_devices() if d.enabled()]
CPU_DEVICES = [pytest.param(d, id=d.name) for d in (nd.cpu(), nd.cpu_numpy())]
RNG = np.random.default_rng(0)


def rand(shape, dtype="float32", lo=-3.0, hi=3.0):
    if dtype.startswith("int"):
        return RNG.integers(int(lo), int(hi) + 1, size=shape).astype(dtype)
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def close(actual: nd.NDArray, expected, dtype=None, rtol=1e-5, atol=1e-6):
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == (dtype or expected.dtype.name)
    np.testing.assert_allclose(actual.numpy(), expected, rtol=rtol, atol=atol)


BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.true_divide),
    "power": (lambda a, b: a ** b, np.power),
    "maximum": (lambda a, b: a.maximum(b), np.maximum),
    "minimum": (lambda a, b: a.minimum(b), np.minimum),
    "eq": (lambda a, b: a == b, np.equal),
    "ne": (lambda a, b: a != b, np.not_equal),
    "lt": (lambda a, b: a < b, np.less),
    "le": (lambda a, b: a <= b, np.less_equal),
    "gt": (lambda a, b: a > b, np.greater),
    "ge": (lambda a, b: a >= b, np.greater_equal),
}
COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}


def _operands(op, shape_a, shape_b, dtype):
    if op in ("power", "div"):  # positive bases and small exponents
        return rand(shape_a, dtype, 1, 4), rand(shape_b, dtype, 1, 3)
    if op in COMPARE:  # few distinct values, so many pairs are equal
        return rand(shape_a, dtype, -1, 1).round(), rand(shape_b, dtype, -1, 1).round()
    return rand(shape_a, dtype), rand(shape_b, dtype)


def _expected(op, x, y):
    out = BINARY[op][1](x, y)
    if op in COMPARE:  # 1/0 in the promoted dtype of the inputs
        out = out.astype(np.result_type(x, y))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((4, 1, 3), (2, 1)), ((3,), (2, 1, 3))],
                         ids=["same", "bcast", "bcast-lead"])
def test_binary_float32(device, op, shapes):
    x, y = _operands(op, shapes[0], shapes[1], "float32")
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    close(BINARY[op][0](a, b), _expected(op, x, y))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("dtype", ["int8", "int32", "float64"])
def test_binary_other_dtypes(device, op, dtype):
    x, y = _operands(op, (2, 3), (2, 3), dtype)
    a, b = nd.array(x, dtype=dtype, device=device), nd.array(y, dtype=dtype, device=device)
    close(BINARY[op][0](a, b), _expected(op, x, y), rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_scalar_and_reflected_forms(device, op):
    x = rand((2, 3), "float32", 1, 3)
    a = nd.array(x, device=device)
    for s in (2, 0.5, -1.5):
        if op == "power" and s < 0:
            continue
        close(BINARY[op][0](a, s), _expected(op, x, np.float32(s)))
    # reflected: python calls a.__radd__(2) etc.
    close(2 - a, 2 - x)
    close(2 / a, np.float32(2) / x)
    close(2 ** a, np.float32(2) ** x, rtol=1e-5)
    close(3 * a, 3 * x)
    close(1 + a, 1 + x)
    close(-a, -x)


# Overflowing int products warn in the CUDA simulator (numpy scalars), silently wrap elsewhere.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_promotion_follows_numpy(device):
    i8 = nd.array([1, 2, 3], dtype="int8", device=device)
    i32 = nd.array([1, 2, 3], dtype="int32", device=device)
    f32 = nd.array([1, 2, 3], dtype="float32", device=device)
    assert (i8 + i32).dtype == "int32"
    assert (i8 + f32).dtype == "float32"
    assert (i32 + f32).dtype == "float64"
    assert (i32 / i32).dtype == "float64"
    assert (i8 + 1).dtype == "int8"       # python scalars are weak
    assert (f32 * 2.5).dtype == "float32"
    assert (i32 * 2.5).dtype == "float64"
    assert (f32 * np.float64(2.5)).dtype == "float32"
    close(i32 / 2, np.array([0.5, 1, 1.5]))
    close(i8 * 100, np.array([100, -56, 44], dtype=np.int8))  # int8 wraps, as in numpy


UNARY = {
    "neg": (lambda a: -a, np.negative, (-3, 3)),
    "abs": (lambda a: a.abs(), np.abs, (-3, 3)),
    "log": (lambda a: a.log(), np.log, (0.01, 5)),
    "exp": (lambda a: a.exp(), np.exp, (-5, 5)),
    "tanh": (lambda a: a.tanh(), np.tanh, (-4, 4)),
    "sqrt": (lambda a: a.sqrt(), np.sqrt, (0, 9)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary(device, op, dtype):
    fn, ref, (lo, hi) = UNARY[op]
    x = rand((3, 4), dtype, lo, hi)
    a = nd.array(x, dtype=dtype, device=device)
    close(fn(a), ref(x), rtol=2e-6 if dtype == "float32" else 1e-12)
    # on a non-compact view too
    close(fn(a.permute((1, 0))[::2]), ref(x.T[::2]), rtol=2e-6 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["int8", "int32"])
def test_unary_on_integers(device, dtype):
    x = rand((2, 5), dtype, -5, 5)
    a = nd.array(x, dtype=dtype, device=device)
    close(-a, -x)
    close(a.abs(), np.abs(x))
    with pytest.raises(TypeError, match=f"log needs a float array, got {dtype}"):
        a.log()


@pytest.mark.parametrize("device", CPU_DEVICES)
def test_exp_float32_special_values(device):
    """The vectorised float32 exp: ulp-level accuracy, and overflow/underflow/NaN as numpy."""
    x = np.concatenate([RNG.uniform(-87, 88, 5000), RNG.standard_normal(5000),
                        [np.nan, np.inf, -np.inf, 89.0, 100.0, -87.5, -100.0, -104.0, 0.0,
                         -0.0, 1e-8, 88.0, -87.0]]).astype(np.float32)
    got = nd.array(x, device=device).exp().numpy()
    with np.errstate(over="ignore"):
        want = np.exp(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-44)


REDUCE_CASES = [None, 0, 1, -1, (0, 2), (1, 2), (0, 1, 2), ()]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("axis", REDUCE_CASES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(device, axis, keepdims):
    x = rand((2, 3, 4))
    a = nd.array(x, device=device)
    close(a.sum(axis=axis, keepdims=keepdims), x.sum(axis=axis, keepdims=keepdims))
    close(a.max(axis=axis, keepdims=keepdims), x.max(axis=axis, keepdims=keepdims))
    # a non-compact input: reduce a permuted view
    t = a.permute((2, 0, 1))
    xt = x.transpose(2, 0, 1)
    close(t.sum(axis=axis, keepdims=keepdims), xt.sum(axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["int8", "int32", "float64"])
def test_reductions_dtypes(device, dtype):
    x = rand((3, 5), dtype, -100, 100)
    a = nd.array(x, dtype=dtype, device=device)
    out_dtype = "int32" if dtype.startswith("int") else dtype
    close(a.sum(axis=1), x.sum(axis=1).astype(out_dtype), dtype=out_dtype)
    close(a.sum(), np.asarray(x.sum()).astype(out_dtype), dtype=out_dtype)
    close(a.max(axis=0), x.max(axis=0))


@pytest.mark.parametrize("device", DEVICES)
def test_max_propagates_nan_and_empty_sum(device):
    x = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    a = nd.array(x, device=device)
    np.testing.assert_array_equal(a.max(axis=1).numpy(), [np.nan, 6.0])
    np.testing.assert_array_equal(a.maximum(2.0).numpy(), np.maximum(x, 2.0))
    e = nd.empty((3, 0), device=device)
    close(e.sum(axis=1), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"max over axes \(1,\).*\(3, 0\)"):
        e.max(axis=1)


MATMUL_SHAPES = [((3, 4), (4, 5)), ((1, 7), (7, 1)), ((9, 6), (6, 11)), ((4,), (4, 3)),
                 ((3, 4), (4,)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                 ((3, 0), (0, 2))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_float32(device, shapes):
    x, y = rand(shapes[0]), rand(shapes[1])
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    close(a @ b, x @ y, rtol=1e-5, atol=1e-5)
    close(nd.matmul(a, b, tiled=True), x @ y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["int8", "int32", "float64"])
def test_matmul_dtypes(device, dtype):
    x, y = rand((5, 7), dtype, -128, 127), rand((7, 6), dtype, -128, 127)
    a = nd.array(x, dtype=dtype, device=device)
    b = nd.array(y, dtype=dtype, device=device)
    out_dtype = "int32" if dtype == "int8" else dtype
    # int8 x int8 accumulates exactly in int32 (numpy's int8 matmul would overflow)
    want = x.astype(out_dtype) @ y.astype(out_dtype)
    close(a @ b, want, dtype=out_dtype, rtol=1e-12)
    close(nd.matmul(a, b, tiled=True), want, dtype=out_dtype, rtol=1e-12)


@pytest.fixture
def parallel_builds(monkeypatch):
    """Run Numba's parallel builds on test-sized arrays (normally only for big ones)."""
    from mlc.ndarray.backends.cpu import jit as cpu_jit

    monkeypatch.setattr(cpu_jit, "PARALLEL_THRESHOLD", 1 << 10)


@pytest.mark.parametrize("device", CPU_DEVICES)
@pytest.mark.parametrize("n", [64, 203])
def test_matmul_blocked_sizes(device, n, parallel_builds):
    """Sizes that hit the 4x4 micro-kernel, the edges, several k blocks and threads."""
    x, y = rand((n, 2 * n + 129)), rand((2 * n + 129, n + 3))
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    close(a @ b, x.astype(np.float64) @ y, dtype="float32", rtol=1e-4, atol=1e-3)
    close(a.permute((1, 0)).compact().permute((1, 0)) @ b, x @ y, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("device", CPU_DEVICES)
def test_large_elementwise_and_reductions(device, parallel_builds):
    """The parallel builds, on arrays of several blocks (and blocked float32 sums)."""
    x = rand((300, 500))
    y = rand((500,))
    a, b = nd.array(x, device=device), nd.array(y, device=device)
    close(a + b, x + y)
    close((a * 0.5).exp(), np.exp(x * np.float32(0.5)), rtol=2e-6)
    close(a.tanh(), np.tanh(x), rtol=2e-6)
    close(a.sum(axis=0), x.sum(axis=0), rtol=1e-4, atol=1e-3)
    close(a.sum(axis=1), x.sum(axis=1), rtol=1e-4, atol=1e-3)
    close(a.sum(), x.astype(np.float64).sum(), dtype="float32", rtol=1e-5, atol=1e-2)
    close(a.max(axis=0), x.max(axis=0))
    close(a.max(), x.max())
    close(a.astype("float64"), x.astype(np.float64))
    with np.errstate(invalid="ignore"):  # NaN for negative x, as in numpy
        close(a.log(), np.log(x), rtol=2e-6)
    close(a - 1.0, x - 1, rtol=2e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_astype_round_trips(device):
    x = rand((2, 4), "float32", -100, 100)
    a = nd.array(x, device=device)
    for dtype in ("float64", "int32", "int8"):
        close(a.astype(dtype), x.astype(dtype))
    i = nd.array([1, -2, 3], dtype="int8", device=device)
    close(i.astype("float32"), np.array([1, -2, 3], np.float32))
    close(i.astype("int32").astype("float64"), np.array([1, -2, 3], np.float64))


@settings(max_examples=25, deadline=None)
@given(shape_a=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       drop=st.lists(st.booleans(), min_size=3, max_size=3),
       op=st.sampled_from(["add", "mul", "maximum", "ge"]))
def test_broadcasting_is_numpys(shape_a, drop, op):
    shape_b = [1 if d else n for n, d in zip(shape_a, drop, strict=False)][1:]
    x, y = rand(tuple(shape_a)), rand(tuple(shape_b))
    a, b = nd.array(x), nd.array(y)
    close(BINARY[op][0](a, b), _expected(op, x, y))
    close(BINARY[op][0](b, a), _expected(op, y, x))


@pytest.mark.parametrize("device", DEVICES)
def test_construction_and_fields(device):
    a = nd.full((2, 3), 1.5, device=device)
    assert a.shape == (2, 3) and a.strides == (3, 1) and a.offset == 0
    assert a.ndim == 2 and a.size == 6 and a.dtype == "float32" and a.device == device
    close(a, np.full((2, 3), 1.5, np.float32))
    close(nd.zeros((2,), "int8", device), np.zeros(2, np.int8))
    close(nd.ones((1, 2), "float64", device), np.ones((1, 2)))
    e = nd.empty((4, 0), device=device)
    assert e.size == 0 and e.numpy().shape == (4, 0)
    a.fill(2)
    close(a, np.full((2, 3), 2, np.float32))
    a[:, 1].fill(-1)
    close(a, np.array([[2, -1, 2]] * 2, np.float32))
    assert "dtype=float32" in repr(a) and repr(device) in repr(a)
    assert np.asarray(a).shape == (2, 3)
    s = nd.array(3.0, device=device)
    assert s.shape == () and float(s) == 3.0
    h = nd.NDArray.make((2, 2), device=device)
    v = nd.NDArray.make((2,), strides=(2,), device=device, handle=h.handle, offset=1)
    h.fill(0)
    v.fill(5)
    close(h, np.array([[0, 5], [0, 5]], np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_random_is_seeded_by_numpy(device):
    np.random.seed(3)
    a = nd.randn(2, 3, device=device)
    np.random.seed(3)
    b = nd.randn((2, 3), device=device)
    close(a, b.numpy())
    r = nd.rand(4, device=device, rng=np.random.default_rng(1))
    close(r, np.random.default_rng(1).random(4).astype(np.float32))
    assert r.numpy().min() >= 0 and r.numpy().max() < 1
    assert device.randn(2, 2).shape == (2, 2)
    close(device.one_hot(3, [2, 0]), np.eye(3, dtype=np.float32)[[2, 0]])


@pytest.mark.parametrize("device", DEVICES)
def test_stack_concatenate_split(device):
    xs = [rand((2, 3)) for _ in range(3)]
    arrs = [nd.array(x, device=device) for x in xs]
    close(nd.stack(arrs), np.stack(xs))
    close(nd.stack(arrs, axis=2), np.stack(xs, axis=2))
    close(nd.concatenate(arrs, axis=1), np.concatenate(xs, axis=1))
    parts = nd.split(nd.stack(arrs, axis=1), axis=1)
    assert len(parts) == 3
    for p, x in zip(parts, xs, strict=True):
        close(p, x)


def test_free_functions():
    x = rand((2, 3))
    a = nd.array(x)
    close(nd.flip(a, 1), x[:, ::-1])
    close(nd.flip(a), x[::-1, ::-1])
    close(nd.summation(a, axis=0), x.sum(axis=0))
    close(nd.max(a, axis=1, keepdims=True), x.max(axis=1, keepdims=True))
    close(nd.exp(nd.log(nd.abs(a))), np.abs(x), rtol=1e-5)
    close(nd.maximum(a, 0), np.maximum(x, 0))
    close(nd.reshape(nd.broadcast_to(a, (2, 2, 3)).compact(), (4, 3)), np.tile(x, (2, 1)))
    close(nd.permute(a, (1, 0)), x.T)
    close(nd.tanh(a) + nd.sqrt(nd.abs(a)), np.tanh(x) + np.sqrt(np.abs(x)), rtol=1e-5)


def test_devices():
    assert nd.default_device() == nd.cpu()
    assert nd.cpu() != nd.cpu_numpy() and nd.cpu() == nd.cpu()
    assert [d.name for d in nd.all_devices()] == ["cpu", "cpu_numpy", "cuda"]
    assert repr(nd.cuda()) == "cuda()" and nd.cpu().enabled()
    x = rand((2, 3))
    a = nd.array(x)
    for d in (d for d in nd.all_devices() if d.enabled()):
        b = a.to(d)
        assert b.device == d
        close(b.to(nd.cpu_numpy()).permute((1, 0)), x.T)
    assert a.to(nd.cpu()) is a


def test_every_backend_implements_the_interface():
    for d in nd.all_devices():
        if d.enabled():
            missing = [f for f in nd.BACKEND_API if not hasattr(d.mod, f)]
            assert not missing, (d, missing)
