"""Needle compatibility: what a student or instructor coming from CMU's dlsyscourse (needle,
homeworks 1 and 2) can expect to carry over to mlc, written from needle's documented
behaviour (its docstrings and the homework handouts), not from its code.

Covered: ``dtype="uint8"`` tensors and arrays (MNIST-style labels), the data transforms
``RandomFlipHorizontal`` and ``RandomCrop`` (needle's randomness calls, so seeded code sees
the same images), ``ops.logsoftmax``, ``divide_scalar`` with numpy scalars and 0-d /
1-element arrays, batched ``@`` 2-D and 2-D ``@`` batched as one MatMul node whose
gradients are shaped like its operands, ``NDArray.pad``/``flat``, ``ops.dilate``/``undilate``
(strided convolution backward as needle writes it).

Where mlc is deliberately stricter (see ``mlc/autograd/__init__.py``), the tests pin the
clear error: no dtype promotion between tensors, ``.data`` keeps its shape and dtype.
"""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import init, nn, ops
from mlc.data import DataLoader, NDArrayDataset, RandomCrop, RandomFlipHorizontal
from gradcheck_util import check_gradients

DEVICES = [nd.cpu_numpy(), nd.cpu()]


# ---- uint8 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_uint8_ndarray(device):
    x = np.array([[0, 7, 255], [1, 2, 3]], np.uint8)
    a = nd.array(x, dtype="uint8", device=device)
    assert a.dtype == "uint8" and a.numpy().dtype == np.uint8
    assert np.array_equal(a.numpy(), x)
    assert np.array_equal(a.permute((1, 0)).compact().numpy(), x.T)  # views and copies
    assert (a + 1).dtype == "uint8"                      # python scalars are weak
    assert np.array_equal((a * 0.5).numpy(), x * 0.5)    # a float scalar makes it float
    assert int(a.sum().numpy()) == int(x.sum())          # sums widen: no overflow at 255 + ...
    assert np.array_equal(a.astype("float32").numpy(), x.astype(np.float32))
    assert np.array_equal(a.max(axis=1).numpy(), x.max(axis=1))
    assert np.array_equal((a == 7).numpy(), (x == 7).astype(np.uint8))
    assert "uint8" in nd.DTYPES


def test_uint8_scalar_out_of_range_is_refused():
    a = nd.array(np.array([1, 2], np.uint8), dtype="uint8", device=nd.cpu_numpy())
    with pytest.raises(ValueError, match="out of range for uint8"):
        a + 300


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_uint8_labels(device):
    y_np = np.array([3, 0, 9, 3], np.uint8)
    y = mlc.Tensor(y_np, device=device, dtype="uint8", requires_grad=False)
    assert y.dtype == "uint8" and np.array_equal(y.numpy(), y_np)
    one_hot = init.one_hot(10, y, device=device)
    assert np.array_equal(one_hot.numpy(), np.eye(10, dtype=np.float32)[y_np])
    logits = mlc.Tensor(np.random.default_rng(0).standard_normal((4, 10)), device=device)
    loss = nn.SoftmaxLoss()(logits, y)
    z = logits.numpy().astype(np.float64)
    lse = np.log(np.exp(z).sum(axis=1))
    assert np.isclose(float(loss.numpy()), np.mean(lse - z[np.arange(4), y_np]), rtol=1e-5)
    loss.backward()
    assert logits.grad.shape == (4, 10)


# ---- data transforms -----------------------------------------------------------------------

def _image(h=5, w=6, c=2):
    return np.arange(h * w * c, dtype=np.float32).reshape(h, w, c) + 1  # no zero pixels


def test_random_flip_horizontal():
    img = _image()
    assert np.array_equal(RandomFlipHorizontal(p=1)(img), img[:, ::-1, :])
    assert np.array_equal(RandomFlipHorizontal(p=0)(img), img)
    # the flip happens when np.random.rand() < p, drawn from numpy's global generator
    for seed in range(8):
        np.random.seed(seed)
        flip = np.random.rand() < 0.5
        np.random.seed(seed)
        out = RandomFlipHorizontal(0.5)(img)
        assert np.array_equal(out, img[:, ::-1, :] if flip else img)
    assert RandomFlipHorizontal()(img).shape == img.shape
    with pytest.raises(ValueError):
        RandomFlipHorizontal()(img[:, :, 0])  # H x W x C images only


def test_random_crop():
    img = _image()
    h, w, _ = img.shape
    assert np.array_equal(RandomCrop(padding=0)(img), img)
    for seed in range(20):
        np.random.seed(seed)
        sx, sy = np.random.randint(low=-3, high=4, size=2)  # needle's draw, shift_x along H
        np.random.seed(seed)
        out = RandomCrop(3)(img)
        assert out.shape == img.shape
        for i in range(h):
            for j in range(w):
                inside = 0 <= i + sx < h and 0 <= j + sy < w
                want = img[i + sx, j + sy] if inside else 0
                assert np.all(out[i, j] == want), (seed, i, j)


def test_transforms_in_a_dataset_and_loader():
    images = np.stack([_image(4, 4, 1) * k for k in range(1, 7)])
    labels = np.arange(6, dtype=np.uint8)
    ds = NDArrayDataset(images, labels, transforms=[RandomFlipHorizontal(p=1)])
    x, y = ds[2]
    assert np.array_equal(x, images[2][:, ::-1, :]) and y == 2
    batches = list(DataLoader(ds, batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 4, 4, 1), (2, 4, 4, 1)]
    assert np.array_equal(batches[0][0].numpy(), images[:4, :, ::-1, :])
    assert np.array_equal(batches[1][1].numpy(), [4, 5])


# ---- ops -----------------------------------------------------------------------------------

def test_logsoftmax_is_log_softmax():
    z = mlc.Tensor(np.random.default_rng(1).standard_normal((3, 5)) * 10)
    got = ops.logsoftmax(z)
    assert np.allclose(got.numpy(), ops.log_softmax(z).numpy())
    assert np.allclose(np.exp(got.numpy()).sum(axis=1), 1, rtol=1e-5)


@pytest.mark.parametrize("scalar", [2.0, 2, np.float32(2), np.float64(2), np.array(2.0),
                                    np.array([2.0]), np.array([[2]])],
                         ids=["float", "int", "np.float32", "np.float64", "0-d", "1-element",
                              "1x1 int"])
def test_divide_scalar_accepts_numbers_and_one_element_arrays(scalar):
    x = mlc.Tensor(np.array([1.0, 4.0, -6.0]))
    for y in (ops.divide_scalar(x, scalar), x / scalar):
        assert y.dtype == "float32" and y.shape == (3,)
        assert np.allclose(y.numpy(), [0.5, 2.0, -3.0])
    ops.summation(ops.divide_scalar(x, scalar)).backward()
    assert np.allclose(x.grad.numpy(), 0.5)


def test_divide_scalar_refuses_arrays_of_several_elements():
    x = mlc.Tensor(np.ones(3))
    with pytest.raises(TypeError, match="divide_scalar"):
        ops.divide_scalar(x, np.array([1.0, 2.0]))


@pytest.mark.parametrize("a_shape", [(2, 3, 4), (5, 2, 3, 4), (1, 3, 4)])
def test_batched_matmul_with_a_matrix_is_one_op(a_shape):
    rng = np.random.default_rng(2)
    a_np, b_np = rng.standard_normal(a_shape), rng.standard_normal((4, 5))
    a = mlc.Tensor(a_np, dtype="float64")
    b = mlc.Tensor(b_np, dtype="float64")
    out = a @ b
    assert isinstance(out.op, ops.MatMul)
    assert out.inputs[0] is a and out.inputs[1] is b  # no reshape around it
    assert np.allclose(out.numpy(), a_np @ b_np)
    g_np = rng.standard_normal(out.shape)
    g = mlc.Tensor(g_np, dtype="float64")
    ga, gb = out.op.gradient_as_tuple(g, out)
    assert np.allclose(ga.numpy(), g_np @ b_np.T)
    assert np.allclose(gb.numpy(), a_np.reshape(-1, 4).T @ g_np.reshape(-1, 5))
    out.backward(g)
    assert a.grad.shape == a_shape and b.grad.shape == (4, 5)
    assert np.allclose(b.grad.numpy(), gb.numpy())


def test_matmul_gradients_can_be_differentiated_again():
    rng = np.random.default_rng(3)
    a = mlc.Tensor(rng.standard_normal((2, 3, 4)), dtype="float64")
    b = mlc.Tensor(rng.standard_normal((4, 2)), dtype="float64")
    out = a @ b
    g = mlc.Tensor(np.ones(out.shape), dtype="float64")
    _, gb = out.op.gradient_as_tuple(g, out)  # gb = sum over batch and rows of a
    ops.summation(gb).backward()
    assert np.allclose(a.grad.numpy(), 2.0)   # d/da of sum(a^T 1) = number of columns of b


@pytest.mark.parametrize("b_shape", [(2, 4, 5), (3, 2, 4, 5)])
def test_a_matrix_with_batched_matmul_is_one_op(b_shape):
    rng = np.random.default_rng(4)
    a_np, b_np = rng.standard_normal((3, 4)), rng.standard_normal(b_shape)
    a = mlc.Tensor(a_np, dtype="float64")
    b = mlc.Tensor(b_np, dtype="float64")
    out = a @ b
    assert isinstance(out.op, ops.MatMul) and out.inputs[0] is a and out.inputs[1] is b
    assert np.allclose(out.numpy(), a_np @ b_np)
    g_np = rng.standard_normal(out.shape)
    ga, gb = out.op.gradient_as_tuple(mlc.Tensor(g_np, dtype="float64"), out)
    assert ga.shape == (3, 4) and gb.shape == b_shape  # each shaped like its operand
    batch = tuple(range(len(b_shape) - 2))
    assert np.allclose(ga.numpy(), (g_np @ np.swapaxes(b_np, -1, -2)).sum(axis=batch))
    assert np.allclose(gb.numpy(), a_np.T @ g_np)
    check_gradients(lambda x, y: x @ y, a_np, b_np)


def test_a_matrix_with_batched_matmul_traces_and_builds_as_one_node():
    from mlc import graph

    w = mlc.Tensor(np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32))
    x = np.random.default_rng(8).standard_normal((2, 4, 5)).astype(np.float32)
    g = graph.trace(lambda t: ops.relu(w @ t), x)
    assert [n.op for n in g.nodes if n.op not in ("input", "constant")] == ["matmul", "relu"]
    x_new = np.random.default_rng(9).standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(graph.build(g)(x_new), np.maximum(w.numpy() @ x_new, 0),
                               rtol=1e-5, atol=1e-5)


# ---- NDArray.pad, NDArray.flat, ops.dilate / undilate ---------------------------------------

@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_ndarray_pad_and_flat(device):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a = nd.array(x, device=device)
    pads = ((0, 0), (1, 2), (2, 0))
    np.testing.assert_array_equal(a.pad(pads).numpy(), np.pad(x, pads))
    flat = a.flat
    assert flat.shape == (24,)
    flat[5] = flat[5] + 100.0  # a view: needle's numeric gradient checks write through it
    assert a.numpy()[0, 1, 1] == 105.0
    with pytest.raises(ValueError, match="non-contiguous"):
        _ = a.permute((2, 0, 1)).flat
    np.testing.assert_array_equal(a.permute((2, 0, 1)).compact().flat.numpy(),
                                  a.numpy().transpose(2, 0, 1).reshape(-1))
    with pytest.raises(ValueError, match="one .before, after. pair per axis"):
        a.pad(((1, 1),))
    with pytest.raises(ValueError, match=">= 0"):
        a.pad(((0, 0), (-1, 0), (0, 0)))


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_dilate_as_needle_writes_it(device):
    x = mlc.Tensor(np.arange(1, 7, dtype=np.float32).reshape(2, 3), device=device)
    np.testing.assert_array_equal(ops.dilate(x, (1,), 1).numpy(),
                                  [[1, 0, 2, 0, 3, 0], [4, 0, 5, 0, 6, 0]])
    np.testing.assert_array_equal(ops.dilate(x, (0,), 2).numpy(),
                                  [[1, 2, 3], [0, 0, 0], [0, 0, 0], [4, 5, 6], [0, 0, 0],
                                   [0, 0, 0]])
    d = ops.dilate(x, (0, 1), 1)
    assert d.shape == (4, 6)
    np.testing.assert_array_equal(ops.undilate(d, (0, 1), 1).numpy(), x.numpy())
    np.testing.assert_array_equal(ops.dilate(x, (0, 1), 0).numpy(), x.numpy())
    with pytest.raises(ValueError, match="out of range"):
        ops.dilate(x, (2,), 1)
    with pytest.raises(ValueError, match="dilation must be an int >= 0"):
        ops.dilate(x, (0,), -1)


def test_dilate_and_undilate_gradients():
    rng = np.random.default_rng(5)
    check_gradients(lambda t: ops.dilate(t, (0, 2), 1), rng.standard_normal((2, 3, 2)))
    check_gradients(lambda t: ops.undilate(t, (1,), 2), rng.standard_normal((2, 6)))


def test_strided_conv_backward_through_dilate():
    """needle's strided convolution backward: the gradient of a stride-2 convolution is the
    stride-1 one's with the output gradient dilated (zeros where stride 2 skipped)."""
    rng = np.random.default_rng(6)
    x = mlc.Tensor(rng.standard_normal((1, 5, 5, 2)), dtype="float64")
    w = mlc.Tensor(rng.standard_normal((3, 3, 2, 3)), dtype="float64")
    g = rng.standard_normal((1, 2, 2, 3))
    ops.conv(x, w, stride=2).backward(mlc.Tensor(g, dtype="float64"))
    x1 = mlc.Tensor(x.numpy(), dtype="float64")
    dense = ops.conv(x1, w.detach(), stride=1)  # (1, 3, 3, 3): every position
    gd = ops.dilate(mlc.Tensor(g, dtype="float64", requires_grad=False), (1, 2), 1)
    dense.backward(ops.crop(gd, ((0, 0), (0, 1), (0, 1), (0, 0))))
    np.testing.assert_allclose(x1.grad.numpy(), x.grad.numpy(), rtol=1e-10)


# ---- deliberately stricter ----------------------------------------------------------------

def test_power_of_two_dtypes_is_refused_with_a_reason():
    x32 = mlc.Tensor(np.array([1.0, 2.0]), dtype="float32")
    x64 = mlc.Tensor(np.array([2.0, 2.0]), dtype="float64")
    with pytest.raises(TypeError, match="does not promote"):
        x32 ** x64
    with pytest.raises(TypeError, match="does not promote"):
        ops.add(x32, x64)
    # scalars are weak, as in numpy: they never promote
    for y in (x32 ** 2.0, x32 ** np.float64(3.0), x32 * np.float64(2)):
        assert y.dtype == "float32"


def test_assigning_data_of_another_shape_or_dtype_is_refused():
    w = mlc.Tensor(np.zeros((2, 3)))
    w.data = mlc.Tensor(np.ones((2, 3)))
    assert np.array_equal(w.numpy(), np.ones((2, 3)))
    with pytest.raises(ValueError, match="cannot set data"):
        w.data = mlc.Tensor(np.ones((3, 2)))
    with pytest.raises(ValueError, match="cannot set data"):
        w.data = mlc.Tensor(np.ones((2, 3)), dtype="float64")
