"""Accounting (live and peak bytes per device), checkpointing and chunked computation."""

import numpy as np
import pytest

import mlc
import mlc.ndarray as nd
from mlc import memory


@pytest.mark.parametrize("device", [d for d in (nd.cpu(), nd.cpu_numpy(), nd.cuda())
                                    if d.enabled()], ids=str)
def test_devices_count_their_bytes_exactly(device):
    m = device.memory
    with memory.track(device) as t:
        a = nd.empty((64, 32), device=device)
        assert m.live - t.start[device.name] == 64 * 32 * 4
        v = a.permute((1, 0))[3:10]                  # a view: no bytes
        assert m.live - t.start[device.name] == 8192
        b = a.astype("float64")
        assert m.live - t.start[device.name] == 8192 * 3
        del a, v
        assert m.live - t.start[device.name] == 16384
        del b
    assert t.peak == 24576 and t.retained == 0
    assert memory.peak_bytes(lambda: nd.empty((10,), "int8", device=device), device=device) == 10


def test_track_nests_and_keeps_the_outer_peak():
    dev = nd.cpu_numpy()
    with memory.track(dev) as outer:
        big = nd.empty((1000,), device=dev)
        del big
        with memory.track(dev) as inner:
            small = nd.empty((10,), device=dev)
            del small
        assert inner.peak == 40
    assert outer.peak == 4000
    assert memory.live_bytes(dev) >= 0


def _grads(model, params, x, y):
    for p in params:
        p.grad = None
    memory.train_step(model, x, y)
    return [p.grad.numpy() for p in params]


def test_checkpointing_16_layers_in_4_segments():
    model = memory.deep_mlp(16, width=128)
    params = model.parameters()
    x = mlc.Tensor(np.random.rand(128, 64).astype("float32"), requires_grad=False)
    y = np.random.randint(0, 10, 128)
    ck = memory.checkpoint_sequential(model, 4)
    assert [len(s) for s in ck.segments] == [4, 4, 4, 4]
    g_plain = _grads(model, params, x, y)
    g_ck = _grads(ck, params, x, y)
    for a, b in zip(g_plain, g_ck, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    plain = memory.peak_bytes(memory.train_step, model, x, y)
    check = memory.peak_bytes(memory.train_step, ck, x, y)
    assert plain >= 1.8 * check, (plain, check)


def test_checkpoint_segments_and_dropout():
    with pytest.raises(ValueError, match="segments"):
        memory.checkpoint_sequential(memory.deep_mlp(4, width=8), 5)
    assert memory.split_segments(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert memory.sqrt_segments(16) == 4
    np.random.seed(3)
    model = mlc.nn.Sequential(mlc.nn.Linear(8, 8), mlc.nn.Dropout(0.5), mlc.nn.ReLU(),
                              mlc.nn.Linear(8, 4))
    x = mlc.Tensor(np.random.rand(16, 8).astype("float32"), requires_grad=False)
    y = np.random.randint(0, 4, 16)
    params = model.parameters()
    np.random.seed(7)
    g_plain = _grads(model, params, x, y)
    np.random.seed(7)
    g_ck = _grads(memory.checkpoint_sequential(model, [2, 2]), params, x, y)
    for a, b in zip(g_plain, g_ck, strict=True):      # the same dropout mask twice
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_frontier_rows():
    model = memory.deep_mlp(4, width=32)
    rows = memory.frontier(model, np.random.rand(32, 64).astype("float32"),
                           np.random.randint(0, 10, 32), repeat=1, time_it=False)
    assert [r["segments"] for r in rows] == [0, 1, 2, 4]
    assert [r["is_sqrt"] for r in rows] == [False, False, True, False]
    assert all(r["peak_bytes"] > 0 for r in rows)


@pytest.mark.parametrize("device", [nd.cpu_numpy(), nd.cpu()], ids=str)
def test_chunked_forms_equal_the_full_ones(device):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((150, 16)).astype("float32") for _ in range(3))
    full = memory.attention(q, k, v, device=device).numpy()
    for chunk in (7, 32, 200):
        out = memory.chunked_attention(q, k, v, chunk=chunk, device=device).numpy()
        assert np.abs(out - full).max() <= 1e-5
    h = rng.standard_normal((300, 16)).astype("float32")
    w = rng.standard_normal((16, 50)).astype("float32")
    lab = rng.integers(0, 50, 300)
    ref = memory.softmax_cross_entropy(h, w, lab, device=device)
    for chunk in (1, 64, 1000):
        got = memory.chunked_softmax_cross_entropy(h, w, lab, chunk=chunk, device=device)
        assert abs(got - ref) <= 1e-5 * abs(ref)
    z = h.astype("float64") @ w
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    assert abs(ref - (lse - z[np.arange(300), lab]).mean()) <= 1e-5 * abs(ref)


def test_chunked_peak_grows_with_the_chunk_not_the_sequence():
    rows = memory.attention_memory(seq_lens=(64, 128, 256), chunk=32, dim=16)
    work = [r["chunked"] - r["out_bytes"] for r in rows]
    assert len(set(work)) == 1                      # the same working memory at every length
    assert rows[-1]["full"] >= 3 * rows[-2]["full"]  # the full form grows with L^2
    assert rows[-1]["chunked"] < rows[-1]["full"] / 4
    ce = memory.cross_entropy_memory(rows_list=(256, 1024), chunk=64, vocab=256)
    assert ce[0]["chunked"] == ce[1]["chunked"] and ce[1]["full"] >= 3 * ce[0]["full"]
