"""Views (reshape, permute, broadcast_to, getitem, as_strided), compact and setitem,
checked against numpy on random shapes with hypothesis.

The CPU devices get many examples; CUDA (in the simulator) gets a few, on tiny arrays.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlc.ndarray as nd

CPU_DEVICES = [nd.cpu(), nd.cpu_numpy()]
CUDA = [nd.cuda()] if nd.cuda().enabled() else []  # the simulator counts as enabled


def _settings(n):
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _device_params():
    """(device, max_examples): the simulator runs one OS thread per CUDA thread."""
    return [pytest.param(d, n, id=d.name)
            for ds, n in ((CPU_DEVICES, 40), (CUDA, 4)) for d in ds]


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def _data(shape, seed=0):
    """Distinct values, so a wrong element cannot match by accident."""
    return np.random.default_rng(seed).permutation(int(np.prod(shape))).astype(
        np.float32).reshape(shape)


def _check(view: nd.NDArray, expected: np.ndarray):
    assert view.shape == expected.shape
    np.testing.assert_array_equal(view.numpy(), expected)
    c = view.compact()
    assert c.is_compact()
    np.testing.assert_array_equal(c.numpy(), expected)


@st.composite
def index_for(draw, shape):
    """A basic index: per axis an int (possibly negative) or a slice with any step."""
    idx = []
    for n in shape:
        if draw(st.booleans()):
            idx.append(draw(st.integers(-n, n - 1)))
        else:
            start = draw(st.one_of(st.none(), st.integers(-n - 1, n + 1)))
            stop = draw(st.one_of(st.none(), st.integers(-n - 1, n + 1)))
            step = draw(st.one_of(st.none(), st.sampled_from([1, 2, 3, -1, -2])))
            idx.append(slice(start, stop, step))
    return tuple(idx[:draw(st.integers(1, len(shape)))])


@pytest.mark.parametrize("device,n", _device_params())
def test_permute_matches_numpy(device, n):

    @_settings(n)
    @given(data=st.data(), shape=shapes)
    def run(data, shape):
        x = _data(shape)
        axes = tuple(data.draw(st.permutations(range(len(shape)))))
        a = nd.array(x, device=device)
        v = a.permute(axes)
        assert v.handle is a.handle  # a view, not a copy
        _check(v, np.transpose(x, axes))

    run()


@pytest.mark.parametrize("device,n", _device_params())
def test_getitem_matches_numpy(device, n):

    @_settings(n)
    @given(data=st.data(), shape=shapes)
    def run(data, shape):
        x = _data(shape)
        idx = data.draw(index_for(shape))
        a = nd.array(x, device=device)
        v = a[idx]
        assert v.handle is a.handle
        _check(v, x[idx])

    run()


@pytest.mark.parametrize("device,n", _device_params())
def test_broadcast_to_matches_numpy(device, n):

    @_settings(n)
    @given(data=st.data(), shape=shapes)
    def run(data, shape):
        # squash some axes to 1, then stretch them back and add leading axes
        small = tuple(1 if data.draw(st.booleans()) else s for s in shape)
        lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
        x = _data(small)
        a = nd.array(x, device=device)
        v = a.broadcast_to(lead + shape)
        assert v.handle is a.handle
        assert all(s == 0 for s in v.strides[:len(lead)])  # new axes: stride 0
        for s, n0, n1 in zip(v.strides[len(lead):], small, shape, strict=True):
            assert s == 0 or not (n0 == 1 and n1 > 1)  # stretched axes: stride 0
        _check(v, np.broadcast_to(x, lead + shape))

    run()


@pytest.mark.parametrize("device,n", _device_params())
def test_reshape_matches_numpy(device, n):

    @_settings(n)
    @given(data=st.data(), shape=shapes)
    def run(data, shape):
        x = _data(shape)
        size = x.size
        # a random factorisation of size, with one entry replaced by -1 sometimes
        dims, rest = [], size
        for _ in range(data.draw(st.integers(0, 3))):
            divisors = [d for d in range(1, rest + 1) if rest % d == 0]
            d = data.draw(st.sampled_from(divisors))
            dims.append(d)
            rest //= d
        dims.append(rest)
        if data.draw(st.booleans()):
            dims[data.draw(st.integers(0, len(dims) - 1))] = -1
        a = nd.array(x, device=device)
        v = a.reshape(tuple(dims))
        assert v.handle is a.handle
        _check(v, x.reshape(tuple(dims)))

    run()


@pytest.mark.parametrize("device,n", _device_params())
def test_as_strided_matches_numpy(device, n):

    @_settings(n)
    @given(data=st.data(), size=st.integers(1, 60))
    def run(data, size):
        x = _data((size,))
        ndim = data.draw(st.integers(1, 3))
        shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
        strides = tuple(data.draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
        if sum((s - 1) * t for s, t in zip(shape, strides, strict=True)) >= size:
            return
        a = nd.array(x, device=device)
        v = a.as_strided(shape, strides)
        expected = np.lib.stride_tricks.as_strided(x, shape, tuple(4 * t for t in strides))
        _check(v, expected)

    run()


@pytest.mark.parametrize("device,n", _device_params())
def test_composed_views_and_setitem(device, n):
    """Chains of views, then writing through a view: numpy does the same on a copy."""

    @_settings(n)
    @given(data=st.data(), shape=shapes)
    def run(data, shape):
        x = _data(shape)
        axes = tuple(data.draw(st.permutations(range(len(shape)))))
        a = nd.array(x, device=device)
        xt = np.transpose(x, axes)
        idx = data.draw(index_for(xt.shape))
        v = a.permute(axes)[idx]
        _check(v, xt[idx])

        expected = x.copy()
        target = np.transpose(expected, axes)[idx + (...,)]  # a view into `expected`
        if data.draw(st.booleans()):
            value = float(data.draw(st.integers(-9, 9)))
            a.permute(axes)[idx] = value
            target[...] = value
        else:
            # a source of a smaller shape that broadcasts into the view
            src_shape = tuple(1 if data.draw(st.booleans()) else s for s in target.shape)
            src = -_data(src_shape, seed=1) - 1
            a.permute(axes)[idx] = nd.array(src, device=device)
            target[...] = src
        np.testing.assert_array_equal(a.numpy(), expected)

    run()


@pytest.mark.parametrize("device", CPU_DEVICES + CUDA, ids=lambda d: d.name)
def test_compact_is_identity_on_compact_arrays(device):
    a = nd.array(_data((3, 4)), device=device)
    assert a.is_compact() and a.compact() is a
    t = a.permute((1, 0))
    assert not t.is_compact()
    assert t.compact() is not t and t.compact().handle is not a.handle
    # a contiguous slice reshapes without copying, but is not compact (offset/size)
    row = a[1]
    assert row.offset == 4 and not row.is_compact()
    assert row.reshape((2, 2)).handle is a.handle


@pytest.mark.parametrize("device", CPU_DEVICES + CUDA, ids=lambda d: d.name)
def test_setitem_from_overlapping_view_of_itself(device):
    x = np.arange(8, dtype=np.float32)
    a = nd.array(x, device=device)
    a[::-1] = a  # source and destination share the buffer
    np.testing.assert_array_equal(a.numpy(), x[::-1])
    a[1:] = a[:-1]
    y = x[::-1].copy()
    y[1:] = y[:-1].copy()
    np.testing.assert_array_equal(a.numpy(), y)


@pytest.mark.parametrize("device", CPU_DEVICES, ids=lambda d: d.name)
def test_large_views_use_the_parallel_walk(device, monkeypatch):
    """The parallel Numba build of the strided walk: transpose, setitem and fill."""
    from mlc.ndarray.backends.cpu import jit as cpu_jit

    monkeypatch.setattr(cpu_jit, "PARALLEL_THRESHOLD", 1 << 10)
    x = np.random.default_rng(0).standard_normal((300, 400)).astype(np.float32)
    a = nd.array(x, device=device)
    np.testing.assert_array_equal(a.permute((1, 0)).compact().numpy(), x.T)
    np.testing.assert_array_equal(a[::-2, 3:].compact().numpy(), x[::-2, 3:])
    b = nd.zeros((400, 300), device=device)
    b[:, :] = a.permute((1, 0))
    np.testing.assert_array_equal(b.numpy(), x.T)
    b[::3] = 7.0
    y = x.T.copy()
    y[::3] = 7.0
    np.testing.assert_array_equal(b.numpy(), y)
