"""mlc.models: the tiny ViT and GPT build seeded, generate equal with and without the KV
cache (eager and compiled), and refuse bad prompts by name."""

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


def test_generate_bad_inputs():
    m, x = tiny_gpt()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.generate([[1, 2, 11]], 2)
    with pytest.raises(ValueError, match="context"):
        m.generate(np.zeros((1, 8), "int64"), 5)
    with pytest.raises(ValueError, match="integer ids"):
        m.generate(np.zeros((1, 3), "float32"), 1)
