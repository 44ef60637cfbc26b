"""mlc.autograd: tensors, the graph, topological order, backward, no_grad, errors."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import ops
from mlc.autograd import Tensor, compute_gradient_of_variables, find_topo_sort

CPU_NUMPY = nd.cpu_numpy()
DEVICES = [nd.cpu_numpy(), nd.cpu()] + ([nd.cuda()] if nd.cuda().enabled() else [])


# --- the package -------------------------------------------------------------------


def test_autograd_is_a_package_with_the_old_names():
    import mlc.autograd as ag
    from mlc.autograd import backward, grad_mode, tensor

    assert ag.Tensor is tensor.Tensor is mlc.Tensor
    assert ag.find_topo_sort is backward.find_topo_sort
    assert ag.compute_gradient_of_variables is backward.compute_gradient_of_variables
    assert ag.no_grad is grad_mode.no_grad is mlc.no_grad
    for name in ("Value", "Op", "TensorOp", "TensorTuple", "TensorTupleOp", "sum_node_list",
                 "enable_grad", "is_grad_enabled"):
        assert hasattr(ag, name), name


def test_every_lazy_submodule_imports():
    import importlib

    for name in sorted(mlc._SUBMODULES):
        assert importlib.import_module(f"mlc.{name}") is getattr(mlc, name)


# --- construction --------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES, ids=lambda d: d.name)
def test_tensor_from_lists_numpy_ndarrays_and_tensors(device):
    t = Tensor([[1, 2], [3, 4]], device=device)
    assert t.shape == (2, 2) and t.dtype == "float32" and t.device == device
    assert t.requires_grad and t.op is None and t.grad is None
    np.testing.assert_array_equal(t.numpy(), [[1, 2], [3, 4]])
    # numpy float64 data becomes float32 unless a dtype is asked for
    assert Tensor(np.ones(3), device=device).dtype == "float32"
    assert Tensor(np.ones(3), device=device, dtype="float64").dtype == "float64"
    # an NDArray keeps its dtype and device unless told otherwise
    a = nd.array(np.arange(6.0).reshape(2, 3), dtype="float64", device=device)
    ta = Tensor(a, requires_grad=False)
    assert ta.dtype == "float64" and ta.device == device and not ta.requires_grad
    tb = Tensor(a, device=CPU_NUMPY, dtype="float32")
    assert tb.device == CPU_NUMPY and tb.dtype == "float32"
    np.testing.assert_array_equal(tb.numpy(), a.numpy())
    assert Tensor(ta).dtype == "float64"
    assert Tensor(3.0, device=device).shape == ()


def test_tensor_rejects_objects_and_moves_between_devices():
    with pytest.raises(TypeError):
        Tensor([object()])
    t = Tensor([1.0, 2.0], device=CPU_NUMPY)
    u = t.to(nd.cpu())
    assert u.device == nd.cpu() and np.array_equal(u.numpy(), t.numpy())
    assert t.to(CPU_NUMPY) is t
    assert "requires_grad=True" in repr(t) and Tensor([5.0]).item() == 5.0


def test_operators_match_numpy():
    a_np = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    b_np = np.array([[2.0, 1.0, -1.0], [3.0, 0.25, 2.0]])
    a, b = Tensor(a_np, dtype="float64"), Tensor(b_np, dtype="float64")
    cases = [
        (a + b, a_np + b_np), (a + 1, a_np + 1), (1 + a, 1 + a_np), (a - b, a_np - b_np),
        (a - 2, a_np - 2), (2 - a, 2 - a_np), (a * b, a_np * b_np), (3 * a, 3 * a_np),
        (a / b, a_np / b_np), (a / 2, a_np / 2), (2 / b, 2 / b_np), (a ** 2, a_np ** 2),
        (-a, -a_np), (a @ b.transpose(), a_np @ b_np.T), (a.sum(), a_np.sum()),
        (a.sum(1), a_np.sum(1)), (a.sum((0, 1)), a_np.sum()), (a.reshape(3, 2), a_np.reshape(3, 2)),
        (a.reshape((6,)), a_np.reshape(6)), (a.transpose(), a_np.T),
        (a.broadcast_to((4, 2, 3)), np.broadcast_to(a_np, (4, 2, 3))),
        ((b * b) ** b, (b_np * b_np) ** b_np), (a.exp(), np.exp(a_np)),
        (a.relu(), np.maximum(a_np, 0)),
        (a.tanh(), np.tanh(a_np)), (a.sigmoid(), 1 / (1 + np.exp(-a_np))),
    ]
    for got, want in cases:
        assert got.dtype == "float64"
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert (a.sum()).shape == ()


def test_sigmoid_and_logsumexp_do_not_overflow():
    x = Tensor([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(ops.sigmoid(x).numpy(), [0.0, 0.5, 1.0])
    big = Tensor([[1000.0, 1000.0], [-1000.0, 0.0]])
    np.testing.assert_allclose(ops.logsumexp(big, (1,)).numpy(),
                               [1000.0 + np.log(2.0), 0.0], rtol=1e-6)


# --- the graph ------------------------------------------------------------------------


def test_ops_record_their_inputs():
    a, b = Tensor([1.0, 2.0]), Tensor([3.0, 4.0])
    c = a * b
    assert isinstance(c.op, ops.EWiseMul) and c.inputs == [a, b]
    assert c.requires_grad and not c.is_leaf()
    d = Tensor([1.0], requires_grad=False) * 2
    assert d.op is None and not d.requires_grad  # constants build no graph


def test_topo_sort_is_post_order_dfs():
    a, b = Tensor([1.0]), Tensor([2.0])
    c = a * b
    d = c + a
    e = d.sum()
    order = find_topo_sort([e])
    assert order == [a, b, c, d, e]
    # several roots: each node once, after everything it depends on
    f = (b * 3).sum()
    order = find_topo_sort([e, f])
    assert len(order) == len(set(map(id, order))) == 7
    pos = {id(n): i for i, n in enumerate(order)}
    for n in order:
        assert all(pos[id(i)] < pos[id(n)] for i in n.inputs)


def test_topo_sort_matches_recursive_reference_on_random_dags():
    rng = np.random.default_rng(3)
    for _ in range(5):
        nodes = [Tensor(rng.standard_normal(2)) for _ in range(3)]
        for _ in range(15):
            i, j = rng.integers(0, len(nodes), 2)
            nodes.append(nodes[i] * nodes[j] if rng.random() < 0.5 else nodes[i] + nodes[j])
        roots = [nodes[-1], nodes[-4]]
        assert find_topo_sort(roots) == recursive_topo(roots)


def recursive_topo(roots):
    """Post-order depth-first search, written recursively: the textbook reference."""
    order, seen = [], set()

    def visit(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        for parent in node.inputs:
            visit(parent)
        order.append(node)

    for root in roots:
        visit(root)
    return order


def test_topo_sort_handles_deep_graphs():
    x = Tensor([1.0])
    y = x
    for _ in range(3000):  # deeper than Python's default recursion limit
        y = y + 1.0
    assert len(find_topo_sort([y])) == 3001
    y.sum().backward()
    assert x.grad.numpy()[0] == 1.0


# --- backward ---------------------------------------------------------------------------


def test_backward_simple_and_shared_nodes():
    x = Tensor([1.0, -2.0, 3.0], dtype="float64")
    y = (x * x + x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 1)
    z = x + x  # the same input twice: both paths add up
    z.backward(Tensor([1.0, 1.0, 1.0], dtype="float64"))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_intermediate_grads_and_out_grad():
    x = Tensor([[1.0, 2.0]], dtype="float64")
    h = x * 3
    out = h.exp()
    g = np.array([[0.5, -1.0]])
    compute_gradient_of_variables(out, Tensor(g, dtype="float64", requires_grad=False),
                                  retain_graph=True)
    np.testing.assert_allclose(h.grad.numpy(), g * np.exp(3 * x.numpy()))
    np.testing.assert_allclose(x.grad.numpy(), 3 * g * np.exp(3 * x.numpy()))
    out.backward(g)  # numpy out_grad is accepted too
    np.testing.assert_allclose(x.grad.numpy(), 3 * g * np.exp(3 * x.numpy()))


def test_backward_errors_name_the_shapes():
    x = Tensor(np.ones((2, 3)))
    y = x * 2
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"\(3,\)"):
        y.backward(Tensor(np.ones(3)))


def test_constants_get_no_grad():
    x = Tensor([1.0, 2.0])
    c = Tensor([3.0, 4.0], requires_grad=False)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])


# --- gradients of gradients -----------------------------------------------------------


def test_second_derivative_of_cube():
    x = Tensor([1.0, -2.0, 0.5], dtype="float64")
    (x ** 3).sum().backward(create_graph=True)
    dx = x.grad
    np.testing.assert_allclose(dx.numpy(), 3 * x.numpy() ** 2)
    assert dx.requires_grad and dx.op is not None  # the gradient is a graph itself
    dx.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


def test_hessian_vector_product():
    rng = np.random.default_rng(5)
    A_np, x_np, v_np = rng.standard_normal((4, 3)), rng.standard_normal((3, 1)), \
        rng.standard_normal((3, 1))
    A = Tensor(A_np, dtype="float64", requires_grad=False)
    x = Tensor(x_np, dtype="float64")
    v = Tensor(v_np, dtype="float64", requires_grad=False)
    # f(x) = sum(exp(A x)) + sum(tanh(x)): H = A^T diag(exp(Ax)) A + diag(-2 tanh sech^2)
    f = ops.exp(A @ x).sum() + ops.tanh(x).sum()
    f.backward(create_graph=True)
    g = x.grad
    (g * v).sum().backward()
    t = np.tanh(x_np)
    H = A_np.T @ np.diag(np.exp(A_np @ x_np)[:, 0]) @ A_np + np.diag((-2 * t * (1 - t ** 2))[:, 0])
    np.testing.assert_allclose(x.grad.numpy(), H @ v_np, rtol=1e-10)


# --- no_grad, detach, data ---------------------------------------------------------------


def test_no_grad_builds_no_graph():
    x = Tensor([1.0, 2.0])
    with mlc.no_grad():
        y = x * 2 + 1
        assert not mlc.is_grad_enabled()
        with mlc.enable_grad():
            z = x * 3
    assert mlc.is_grad_enabled()
    assert y.op is None and y.inputs == [] and not y.requires_grad
    assert z.op is not None and z.requires_grad
    np.testing.assert_allclose(y.numpy(), [3.0, 5.0])

    @mlc.no_grad()
    def infer(t):
        return t * t

    assert infer(x).op is None and mlc.is_grad_enabled()
    with pytest.raises(RuntimeError):
        with mlc.no_grad():
            raise RuntimeError("boom")
    assert mlc.is_grad_enabled()  # restored after an exception


def test_detach_and_data():
    x = Tensor([1.0, 2.0])
    y = x * 2
    d = y.detach()
    assert d.op is None and not d.requires_grad
    np.testing.assert_array_equal(d.numpy(), y.numpy())
    assert y.data.op is None
    x.data = Tensor([5.0, 6.0])
    np.testing.assert_array_equal(x.numpy(), [5.0, 6.0])
    with pytest.raises(ValueError, match=r"\(3,\)"):
        x.data = Tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="float64"):
        x.data = Tensor([1.0, 2.0], dtype="float64")


# --- errors -----------------------------------------------------------------------------


def test_ops_across_devices_fail_clearly():
    a = Tensor([1.0, 2.0], device=nd.cpu())
    b = Tensor([1.0, 2.0], device=CPU_NUMPY)
    with pytest.raises(ValueError, match="cpu_numpy") as err:
        a + b
    assert "different devices" in str(err.value)
    with pytest.raises(ValueError, match="different devices"):
        ops.matmul(a.reshape(1, 2), b.reshape(2, 1))


def test_shape_and_dtype_errors_name_them():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 3\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 3\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match="broadcast"):
        a.broadcast_to((3, 3))
    with pytest.raises(ValueError, match="axis 2"):
        a.sum(2)
    with pytest.raises(TypeError, match="float64"):
        a * Tensor(np.ones((2, 3)), dtype="float64")
    with pytest.raises(ValueError, match="at least 2 axes"):
        Tensor([1.0, 2.0]) @ Tensor([1.0, 2.0])
    with pytest.raises(TypeError):
        ops.add_scalar(a, "x")


@pytest.mark.skipif(not nd.cuda().enabled(), reason="no CUDA device or simulator here")
def test_backward_on_cuda():
    dev = nd.cuda()
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], device=dev)
    w = Tensor([[0.5], [-1.0]], device=dev)
    loss = ops.tanh(x @ w).sum()
    loss.backward()
    assert w.grad.device == dev
    xn, wn = x.numpy(), w.numpy()
    np.testing.assert_allclose(w.grad.numpy(), xn.T @ (1 - np.tanh(xn @ wn) ** 2), rtol=1e-5)
