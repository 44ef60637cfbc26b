"""mlc.models: the tiny ViT and GPT build seeded, generate equal with and without the KV
cache (eager and compiled), and refuse bad prompts by name; the compiled decoder keeps its
cache as state, written in place (``cache_write``, the executor's state buffers)."""

import numpy as np
import pytest

from mlc import graph
from mlc.models import gpt as G
from mlc.models import tiny_gpt, tiny_vit


def test_tiny_vit_seeded_and_compiles():
    m1, x = tiny_vit(batch=3)
    m2, _ = tiny_vit(batch=3)
    import mlc
    with mlc.no_grad():
        a = m1(mlc.Tensor(x, requires_grad=False)).numpy()
        b = m2(mlc.Tensor(x, requires_grad=False)).numpy()
    assert a.shape == (3, 10) and np.array_equal(a, b)
    exe = graph.build(graph.trace(m1, x))
    np.testing.assert_allclose(exe(x), a, rtol=1e-4, atol=1e-5)


def test_generate_kv_cache_equals_recompute_eager_and_compiled():
    m, x = tiny_gpt(batch=3)
    prompt = x[:, :6]
    full = m.generate(prompt, 5, kv_cache=False)
    assert full.shape == (3, 5)
    assert np.array_equal(full, m.generate(prompt, 5, kv_cache=True))
    step = G.compile_decoder(m, batch=3, target="python")
    assert np.array_equal(full, m.generate(prompt, 5, kv_cache=True, step=step))


def test_decode_step_logits_match_full_forward():
    import mlc
    m, x = tiny_gpt(batch=2)
    with mlc.no_grad():
        full = m(mlc.Tensor(x, dtype="int64", requires_grad=False)).numpy()
    cache = G.KVCache(m, 2)
    for t in range(x.shape[1]):
        np.testing.assert_allclose(cache.decode(x[:, t:t + 1], t), full[:, t], atol=1e-4)


def test_prefill_writes_every_prompt_slot_at_once():
    import mlc
    m, x = tiny_gpt(batch=2)
    with mlc.no_grad():
        full = m(mlc.Tensor(x, dtype="int64", requires_grad=False)).numpy()
    stepped, whole = G.KVCache(m, 2), G.KVCache(m, 2)
    for t in range(5):
        stepped.decode(x[:, t:t + 1], t)
    np.testing.assert_allclose(whole.prefill(x[:, :5]), full[:, 4], atol=1e-4)
    for a, b in zip(stepped.arrays(), whole.arrays(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not any(k[..., 5:].any() for k in whole.k)        # keys: slots on the last axis
    assert not any(v[:, :, 5:].any() for v in whole.v)


def test_decoder_owns_its_cache_and_writes_it_in_place():
    m, x = tiny_gpt(batch=2)
    dec = G.compile_decoder(m, batch=2, target="python")
    bufs = dict(dec.cache)
    c = m.context
    assert sorted(bufs) == ["k_0", "k_1", "v_0", "v_1"] and dec.nbytes == 2 * 2 * 2 * c * 32 * 4
    ref = G.KVCache(m, 2)
    np.testing.assert_allclose(dec.prefill(x[:, :4]), ref.prefill(x[:, :4]), atol=1e-5)
    for t in (4, 5):
        np.testing.assert_allclose(dec.decode(x[:, t:t + 1], t), ref.decode(x[:, t:t + 1], t),
                                   atol=1e-5)
    prefill = dec.prefill_executable(4)
    for name, want in zip(dec.names, ref.arrays(), strict=True):
        # the same buffers, shared by prefill and decode, holding slots 0..5
        assert dec.step.state[name] is bufs[name] and prefill.state[name] is bufs[name]
        np.testing.assert_allclose(bufs[name], want, atol=1e-5)
    # the step's inputs are the token and its position: the cache is neither passed nor
    # returned, and cache_write's output is the state buffer itself
    assert [n.name for n in dec.step.graph.inputs if n.name not in dec.cache] == ["ids", "start"]
    assert len(dec.step.graph.outputs) == 1
    env = dec.step._run(dec.step._with_state([x[:, 6:7], dec._start(6)], "step"))
    writes = [n for n in dec.step.graph.ops if n.op == "cache_write"]
    assert len(writes) == 4
    assert all(env[dec.step._slot[n]] is bufs[n.inputs[0].name] for n in writes)
    with pytest.raises(IndexError, match=f"position {c}, outside a cache of {c} slots"):
        dec.decode(x[:, :1], c)
    with pytest.raises(ValueError, match="sized for batch 2"):
        dec.decode(x[:1, :1], 3)


def test_decode_step_copies_no_cache():
    """One decode step at context 512 allocates far less than the cache's bytes (a copy of
    the cache per step, in or out, would allocate all of them)."""
    import tracemalloc

    np.random.seed(0)
    m = G.TinyGPT(context=512, d=16, heads=2, blocks=1)
    m.eval()
    dec = G.compile_decoder(m, batch=1, target="python")
    ids = np.zeros((1, 1), "int64")
    dec.decode(ids, 0)
    tracemalloc.start()
    try:
        dec.decode(ids, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert dec.nbytes == 2 * 512 * 16 * 4
    assert peak < dec.nbytes / 4, (peak, dec.nbytes)


def test_state_needs_an_input_read_by_nothing_else():
    b = graph.GraphBuilder()
    cache = b.input((2, 3, 5), name="cache")
    new = b.input((2, 3, 1), name="new")
    start = b.input((2, 1), "int64", name="start")
    out = b.op("add", b.op("cache_write", cache, new, start, axis=2), cache)
    with pytest.raises(ValueError, match="nothing else reads"):
        graph.build(b.graph(out), target="python")
    b = graph.GraphBuilder()
    cache, new = b.input((2, 3, 5), name="cache"), b.input((2, 3, 2), name="new")
    start = b.input((2, 1), "int64", name="start")
    g = b.graph(b.op("relu", b.op("cache_write", cache, new, start, axis=2)))
    exe = graph.build(g, target="python")
    n = np.arange(12, dtype="float32").reshape(2, 3, 2)
    s = np.array([[1], [3]], "int64")
    want = graph.interpret(g, np.zeros((2, 3, 5), "float32"), n, s)
    np.testing.assert_array_equal(exe(n, s), want)
    assert exe.state["cache"][1, :, 3:].tolist() == n[1].tolist()
    with pytest.raises(TypeError, match="kept inside"):
        exe(np.zeros((2, 3, 5), "float32"), n, s)
    with pytest.raises(IndexError, match="position 4"):
        exe(n, np.array([[0], [4]], "int64"))
    with pytest.raises(ValueError, match="axis 0 is 1, expected 2"):
        exe(n[:1], s[:1])


def test_generate_bad_inputs():
    m, x = tiny_gpt()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.generate([[1, 2, 11]], 2)
    with pytest.raises(ValueError, match="context"):
        m.generate(np.zeros((1, m.context - 3), "int64"), 5)
    with pytest.raises(ValueError, match="integer ids"):
        m.generate(np.zeros((1, 3), "float32"), 1)
