"""The EGL's CPU fast path: hand-written FFN autograd and the cheap dropout mask (diffmd_fast.nn.egl)."""
from __future__ import annotations

import pytest
import torch

from diffmd_fast.nn import feedforward
from diffmd_fast.nn.egl import EGL


def _ffn(hidden=16, ffn=64, p=0.1, seed=0):
    torch.manual_seed(seed)
    layer = EGL(hidden=hidden, heads=4, ffn=ffn, dropout=p).double()
    return layer


def test_fast_ffn_matches_plain_modules_without_dropout():
    layer = _ffn(p=0.0).train()
    h = torch.randn(11, 16, dtype=torch.float64, requires_grad=True)
    fast = feedforward.feed_forward(layer.ffn, h, layer.training)
    plain = layer.ffn(h)
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(fast)
    params = [h, *layer.ffn.parameters()]
    torch.testing.assert_close(torch.autograd.grad(fast, params, g), torch.autograd.grad(plain, params, g),
                               rtol=1e-12, atol=1e-12)


def test_fast_ffn_gradcheck_with_a_fixed_dropout_mask():
    layer = _ffn(hidden=8, ffn=10, p=0.3).train()
    h = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    lin1, lin2 = layer.ffn[0], layer.ffn[3]

    def f(h_, w1, b1, w2, b2):
        torch.manual_seed(7)  # same mask on every call
        return feedforward._FeedForward.apply(h_, w1, b1, w2, b2, 0.3, True)

    assert torch.autograd.gradcheck(f, (h, lin1.weight, lin1.bias, lin2.weight, lin2.bias))


def test_fast_ffn_equals_masked_plain_ffn():
    """out = scale * (mask * relu(h W1^T + b1)) W2^T + b2 with the very mask _drop_ draws."""
    layer = _ffn(p=0.25).train()
    h = torch.randn(40, 16, dtype=torch.float64)
    lin1, lin2 = layer.ffn[0], layer.ffn[3]
    torch.manual_seed(3)
    out = feedforward.feed_forward(layer.ffn, h, layer.training)
    torch.manual_seed(3)
    mask = torch.ones(40, 64, dtype=torch.float64)
    scale = feedforward._drop_(mask, 0.25)
    assert 0 < mask.sum() < mask.numel()
    expected = lin2(torch.relu(lin1(h)) * mask * scale)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.1, 0.45])
def test_random_bits_mask_rate_scale_and_reproducibility(dtype, p):
    y = torch.ones(2000, 2000, dtype=dtype)
    torch.manual_seed(0)
    scale = feedforward._drop_(y, p)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert abs(y.mean().item() - (1 - p)) < 1e-3  # 4M draws: std 2.5e-4 (a 0.2 % bias would show)
    assert abs(scale * (1 - p) - 1) < 1e-6  # unbiased: E[mask * scale] = 1
    torch.manual_seed(0)
    again = torch.ones_like(y)
    feedforward._drop_(again, p)
    assert torch.equal(y, again)
    other = torch.ones_like(y)
    feedforward._drop_(other, p)
    assert not torch.equal(y, other)


def test_random_bits_threshold_counts_patterns_exactly():
    """All 2^16 top halves of a float32 (every bfloat16 value, NaNs included): the drop share is p."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32)
    u = (bits << 16).view(torch.float32)
    t, _ = feedforward._random_bits_threshold(torch.float32, 0.1)
    dropped = (u <= t).double().mean().item()
    assert abs(dropped - 0.1) < 2**-15


def test_dropout_is_identity_in_eval_and_unbiased_in_training():
    x = torch.ones(200, 500)
    assert feedforward.dropout(x, 0.1, training=False) is x
    assert feedforward.dropout(x, 0.0, training=True) is x
    y = feedforward.dropout(x, 0.1, training=True)
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.equal(feedforward.dropout(x, 1.0, training=True), torch.zeros_like(x))
    assert abs(feedforward.dropout(x, 0.6, training=True).mean().item() - 1.0) < 0.02  # plain F.dropout path


def test_eval_layer_is_deterministic_and_training_layer_is_not():
    torch.manual_seed(0)
    layer = EGL(hidden=16, heads=4, ffn=32, dropout=0.5, backend="reference")
    x, v, h = torch.randn(6, 3), 0.1 * torch.randn(6, 3), torch.randn(6, 16)
    from diffmd_fast.ops.graph import complete_graph

    g = complete_graph(torch.zeros(6, dtype=torch.long))
    layer.eval()
    torch.testing.assert_close(layer(x, v, h, g)[2], layer(x, v, h, g)[2])
    layer.train()
    assert not torch.allclose(layer(x, v, h, g)[2], layer(x, v, h, g)[2])
