"""mlc.compress pruning: masks, scopes, 2:4, iterative pruning, channel pruning."""

import numpy as np
import pytest

import mlc
from mlc import compress as C
from mlc import nn
from mlc.data import load_digits
from mlc.models import digits_cnn, digits_mlp


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def trained_mlp(digits):
    X_train, y_train, _, _ = digits
    model = digits_mlp(hidden=(256,), seed=0)[0]
    C.fit(model, X_train, y_train, epochs=10, seed=0)
    return model


def _mlp(seed=0, hidden=(32,)):
    return digits_mlp(hidden=hidden, seed=seed)[0]


def test_masks_keep_zeros_through_training(digits):
    X_train, y_train, _, _ = digits
    model = _mlp()
    C.prune_magnitude(model, 0.7)
    masks = [C.get_mask(m, a) for _, m, a in C.prunable(model)]
    assert C.sparsity(model) == pytest.approx(0.7, abs=1e-3)
    C.fit(model, X_train[:256], y_train[:256], epochs=2, seed=1)
    for (_, m, a), mask in zip(C.prunable(model), masks, strict=True):
        w = C.effective_weight(m, a)
        assert (w[mask == 0] == 0).all()
        assert np.count_nonzero(w[mask == 1]) == mask.sum()  # the survivors did train
    assert C.sparsity(model) == pytest.approx(0.7, abs=1e-3)
    # the masks are buffers: saved with the model
    assert any(n.endswith("weight_mask") for n in model.state_dict())


def test_masked_forward_equals_plain_model_with_zeroed_weights(digits):
    X = digits[2][:20]
    model = _mlp()
    C.prune_magnitude(model, 0.5, scope="layer")
    before = C.predict(model, X)
    C.remove_masks(model)
    assert not any(n.endswith("_mask") for n in model.state_dict())
    assert "forward" not in vars(model[0])
    np.testing.assert_allclose(C.predict(model, X), before, rtol=1e-6, atol=1e-6)
    assert C.sparsity(model) == pytest.approx(0.5, abs=1e-3)


def test_global_and_layer_scope():
    model = _mlp()
    sizes = [m.weight.size for _, m, _ in C.prunable(model)]
    C.prune_magnitude(model, 0.8, scope="layer")
    for name, zeros, size in C.layer_sparsity(model):
        assert zeros == round(0.8 * size), name
    g = _mlp()
    # make the last layer's weights large: global pruning must spare them
    last = g[2].weight
    last.data = mlc.Tensor(last.numpy() + 10, device=last.device, requires_grad=False)
    C.prune_magnitude(g, 0.8, scope="global")
    rows = C.layer_sparsity(g)
    assert sum(r[1] for r in rows) == round(0.8 * sum(sizes))
    assert rows[1][1] == 0 and rows[0][1] > 0.8 * rows[0][2]
    # the global threshold: every pruned |w| <= every kept |w|
    w = np.concatenate([np.abs(g[0].weight.numpy()).ravel(), np.abs(last.numpy()).ravel()])
    m = np.concatenate([C.get_mask(g[0]).ravel(), C.get_mask(g[2]).ravel()])
    assert w[m == 0].max() <= w[m == 1].min()


def test_prune_magnitude_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scope"):
        C.prune_magnitude(_mlp(), 0.5, scope="net")
    with pytest.raises(ValueError, match="amount"):
        C.prune_magnitude(_mlp(), 1.5)
    with pytest.raises(ValueError, match="no prunable"):
        C.prune_magnitude(nn.Sequential(nn.ReLU()), 0.5)


def test_pruning_is_cumulative():
    model = _mlp()
    C.prune_magnitude(model, 0.5)
    first = [C.get_mask(m) for _, m, _ in C.prunable(model)]
    C.prune_magnitude(model, 0.75)
    for (_, m, _), old in zip(C.prunable(model), first, strict=True):
        assert (C.get_mask(m)[old == 0] == 0).all()  # once pruned, stays pruned
    assert C.sparsity(model) == pytest.approx(0.75, abs=1e-3)


def test_2_4_pruning_keeps_the_two_largest_of_every_four():
    model = _mlp(hidden=(16,))
    w0 = model[0].weight.numpy().copy()
    C.prune_2_4(model)
    w = C.effective_weight(model[0])          # (in=64, out=16): groups along the input
    groups = w.reshape(16, 4, 16)
    assert (np.count_nonzero(groups, axis=1) == 2).all()
    g0 = np.abs(w0.reshape(16, 4, 16))
    kept = np.abs(groups) > 0
    assert (np.where(kept, g0, np.inf).min(axis=1)
            >= np.where(kept, -np.inf, g0).max(axis=1)).all()
    assert C.sparsity(model) == pytest.approx(0.5)
    assert C.is_2_4(w.T) and C.model_bytes(model)["2:4"] is not None


def test_iterative_pruning_to_90_percent_loses_at_most_one_point(digits, trained_mlp):
    """Done-when of issue 12: the digits MLP pruned iteratively to >= 90% sparsity with
    fine-tuning loses <= 1 point of test accuracy."""
    model = C.clone(trained_mlp)
    rows = C.iterative_prune(model, digits, schedule=(0.5, 0.75, 0.9), epochs=3, lr=0.01)
    dense, final = rows[0]["accuracy"], rows[-1]["accuracy"]
    assert C.sparsity(model) >= 0.9
    assert rows[-1]["sparsity"] >= 0.9
    assert dense - final <= 0.01 + 1e-9, rows
    assert [r["amount"] for r in rows] == [0.0, 0.5, 0.75, 0.9]


def test_prune_channels_keeps_the_function_of_the_kept_units(digits, trained_mlp):
    X = digits[2]
    plan = C.channel_plan(trained_mlp, 0.5)
    assert len(plan) == 1 and plan[0][0] == 0 and plan[0][1].size == 128
    small = C.prune_channels(trained_mlp, 0.5)
    assert small[0].weight.shape == (64, 128) and small[2].weight.shape == (128, 10)
    assert trained_mlp[0].weight.shape == (64, 256)  # the original is untouched
    keep = plan[0][1]
    # hidden units: exactly the kept columns of the original's
    h_big = C.predict(nn.Sequential(trained_mlp[0], trained_mlp[1]), X)
    h_small = C.predict(nn.Sequential(small[0], small[1]), X)
    np.testing.assert_array_equal(h_small, h_big[:, keep])
    # output: the original with the removed units silenced
    silenced = C.clone(trained_mlp)
    mask = np.zeros((64, 256), np.float32)
    mask[:, keep] = 1
    C.apply_mask(silenced[0], mask)
    C.apply_mask(silenced[0], mask[:1], "bias")  # the bias is (1, 256)
    np.testing.assert_allclose(C.predict(small, X), C.predict(silenced, X), rtol=1e-5,
                               atol=1e-5)
    # half the hidden units, half the bytes
    ratio = C.model_bytes(small)["dense"] / C.model_bytes(trained_mlp)["dense"]
    assert 0.49 <= ratio <= 0.51
    assert C.count_parameters(small) < 0.51 * C.count_parameters(trained_mlp)
    assert C.count_flops(small, X[:1]) <= 0.5 * C.count_flops(trained_mlp, X[:1])


def test_prune_channels_through_batchnorm_and_a_deep_chain():
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Sequential(nn.Linear(32, 16), nn.Tanh()), nn.Linear(16, 10))
    X = np.random.default_rng(0).standard_normal((50, 64)).astype(np.float32)
    C.fit(model, X, np.arange(50) % 10, epochs=1, batch_size=10)  # non-trivial running stats
    plan = C.channel_plan(model, 0.25)
    assert [(i, k.size) for i, k in plan] == [(0, 24), (3, 12)]
    small = C.prune_channels(model, 0.25)
    assert small[1].running_mean.shape == (24,) and small[1].dim == 24
    assert small[3][0].weight.shape == (24, 12) and small[4].weight.shape == (12, 10)
    h = C.predict(nn.Sequential(*model.modules[:3]), X)[:, plan[0][1]]
    np.testing.assert_allclose(C.predict(nn.Sequential(*small.modules[:3]), X), h,
                               rtol=1e-5, atol=1e-6)


def test_prune_channels_on_the_cnn_keeps_kept_channels(digits):
    X = digits[2][:16].reshape(-1, 8, 8, 1)
    model = digits_cnn(channels=(8, 16), seed=0)[0]
    plan = C.channel_plan(model, 0.5)
    assert [(i, k.size) for i, k in plan] == [(0, 4), (2, 8)]
    small = C.prune_channels(model, 0.5)
    assert small[0].weight.shape == (3, 3, 1, 4)
    assert small[2].weight.shape == (3, 3, 4, 8)
    assert small[5].weight.shape == (16 * 8, 10)
    # feature maps after the second conv: the kept channels of the original's, when the
    # first conv's removed channels are silenced
    silenced = C.clone(model)
    m = np.zeros(silenced[0].weight.shape, np.float32)
    m[..., plan[0][1]] = 1
    C.apply_mask(silenced[0], m)
    C.apply_mask(silenced[0], (m[0, 0, 0] > 0).astype(np.float32), "bias")
    f_big = C.predict(nn.Sequential(*silenced.modules[:4]), X)[..., plan[1][1]]
    f_small = C.predict(nn.Sequential(*small.modules[:4]), X)
    np.testing.assert_allclose(f_small, f_big, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(C.predict(small, X), _silenced_cnn_logits(silenced, plan, X),
                               rtol=1e-4, atol=1e-4)


def _silenced_cnn_logits(silenced, plan, X):
    m = np.zeros(silenced[2].weight.shape, np.float32)
    m[..., plan[1][1]] = 1
    C.apply_mask(silenced[2], m)
    C.apply_mask(silenced[2], (m[0, 0, 0] > 0).astype(np.float32), "bias")
    return C.predict(silenced, X)


def test_prune_channels_errors():
    with pytest.raises(ValueError, match="amount"):
        C.prune_channels(_mlp(), 1.0)
    model = _mlp()
    with pytest.raises(IndexError, match="kept units"):
        C.prune_channels(model, 0.5, plan=[(0, np.array([0, 99]))])
    # a Residual is a barrier: nothing before it is pruned
    res = nn.Sequential(nn.Linear(8, 8), nn.Residual(nn.Linear(8, 8)), nn.Linear(8, 2))
    assert C.channel_plan(res, 0.5) == []


def test_lottery_ticket_runs_and_reports_spread(digits):
    X_train, y_train, X_test, y_test = digits
    small = (X_train[:300], y_train[:300], X_test[:100], y_test[:100])
    r = C.lottery_ticket(lambda s: _mlp(s, (32,)), small, amount=0.8, seeds=(0, 1),
                         epochs=2)
    for key in ("dense", "rewind", "reinit"):
        assert len(r[key]) == 2 and 0.0 <= r[f"{key}_mean"] <= 1.0 and r[f"{key}_std"] >= 0
    assert r["rewind_mean"] > 0.3  # the ticket trains
