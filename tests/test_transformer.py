"""A GPT-style block (embedding of int64 ids, layer norm, causal multi-head attention, GELU
MLP, residual adds) through the whole compiler: trace, build, run on new ids."""

import numpy as np
import pytest

import mlc
from mlc import graph, nn
from mlc.graph.examples import GPTBlock, gpt_block

VOCAB, T = 20, 5  # gpt_block's defaults


def _ids(rng, batch):
    return rng.integers(0, VOCAB, size=(batch, T)).astype("int64")


def _eager(model, ids):
    with mlc.no_grad():
        return model(mlc.Tensor(ids, dtype="int64", requires_grad=False)).numpy()


@pytest.fixture(scope="module")
def block():
    model, ids = gpt_block()
    rng = np.random.default_rng(1)
    g = graph.trace(model, ids)
    return model, g, graph.build(g, target="cpu"), rng


def test_gpt_block_traces_builds_and_equals_eager_on_new_ids(block):
    model, g, exe, rng = block
    assert all(n.dtype in ("float32", "int64") for n in g.nodes)
    assert g.inputs[0].dtype == "int64"
    ops_used = {n.op for n in g.ops}
    assert {"take", "layer_norm", "softmax", "gelu", "matmul"} <= ops_used
    for _ in range(2):
        ids = _ids(rng, 2)
        want = _eager(model, ids)
        np.testing.assert_allclose(graph.interpret(g, ids), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(exe(ids), want, rtol=1e-5, atol=1e-5)


def test_causal_masking_last_token_does_not_change_earlier_outputs(block):
    model, g, exe, rng = block
    ids = _ids(rng, 2)
    other = ids.copy()
    other[:, -1] = (ids[:, -1] + 1) % VOCAB
    a, b = exe(ids), exe(other)
    np.testing.assert_array_equal(a[:, :-1], b[:, :-1])
    assert not np.allclose(a[:, -1], b[:, -1])


def test_attention_without_mask_sees_the_future_and_shapes_are_checked():
    np.random.seed(1)
    attn = nn.MultiHeadAttention(4, 2)
    x = np.random.randn(1, 3, 4).astype("float32")
    y = x.copy()
    y[0, -1] += 1.0
    with mlc.no_grad():
        a, b = attn(mlc.Tensor(x)).numpy(), attn(mlc.Tensor(y)).numpy()
    assert not np.allclose(a[:, 0], b[:, 0])
    with pytest.raises(ValueError, match="not a multiple"):
        nn.MultiHeadAttention(6, 4)
    with pytest.raises(ValueError, match=r"expects \(batch, time, 4\)"):
        attn(mlc.Tensor(np.zeros((3, 4), "float32")))


def test_block_trains_embedding_gets_scatter_added_gradients():
    np.random.seed(2)
    model = GPTBlock()
    ids = np.array([[1, 1, 2, 3, 1]], dtype="int64")
    out = model(mlc.Tensor(ids, dtype="int64", requires_grad=False))
    (out * out).sum().backward()
    grad = model.emb.weight.grad.numpy()
    assert grad.shape == (VOCAB, model.emb.dim)
    used = {1, 2, 3}
    assert all(np.abs(grad[r]).sum() > 0 for r in used)
    assert all(np.abs(grad[r]).sum() == 0 for r in range(VOCAB) if r not in used)
    assert model.ln1.weight.grad is not None and model.attn.q.weight.grad is not None
