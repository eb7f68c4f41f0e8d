"""CPU fast path for the EGL feed-forward block and dropout (same modules, same parameters).

Speed on CPU (why the FFN and dropout are hand-written): at the paper's size the FFN (N x 2048)
is the largest activation of a training step, and torch's CPU dropout (bernoulli_ with one
Mersenne-Twister draw per element, then a float mask and a multiply) costs four times the FFN's
own matmul. So on CPU, in eager mode, a dropout mask is one compare pass of the activation against
a tensor of random bits (SFC64 words viewed as floats; see _random_bits_threshold), and the FFN is
one autograd function that keeps a single (N, F) activation, applies bias, ReLU and mask in place,
folds the dropout scale into the second matmul and does the ReLU + dropout backward in one pass.
The drop probability is rounded to a multiple of 2^-32 (2^-64 in float64) and the scale is the
exact 1 / keep probability, so the layer stays unbiased. On CUDA, under torch.compile and for
p >= 0.49 the plain modules run. The modules (ffn, dropout) hold the parameters and settings
either way, so state dicts do not depend on the path.
"""
from __future__ import annotations

import math
import struct

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

_FLOAT_LAYOUT = {torch.float32: ("<f", "<I", 32), torch.float64: ("<d", "<Q", 64)}


def _use_fast_path(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def _fast_dropout_ok(t: torch.Tensor, p: float) -> bool:
    """The random-bits mask covers p up to ~0.498 (see _random_bits_threshold) in float32/64."""
    return _use_fast_path(t) and t.dtype in _FLOAT_LAYOUT and 0.0 < p < 0.49


def _random_bits_threshold(dtype: torch.dtype, p: float) -> tuple[float, float]:
    """(t, 1 / P(keep)) with P(u <= t) = p' ≈ p (p' = round(p 2^b) / 2^b) for u a b-bit float whose bits
    are uniformly random.

    Why: a mask then costs one random word per element (or half of one) and one compare pass, with
    no uniform floats to build and no bool -> float conversion. u <= t holds exactly for the negative
    finite patterns with |u| >= |t| (NaN compares false): INF + 1 - B of them, B = bits(|t|) and INF =
    bits(+inf), so B = INF + 1 - round(p 2^b).
    """
    fmt, ifmt, b = _FLOAT_LAYOUT[dtype]
    inf_bits = struct.unpack(ifmt, struct.pack(fmt, math.inf))[0]
    drop = round(p * 2**b)
    t = -struct.unpack(fmt, struct.pack(ifmt, inf_bits + 1 - drop))[0]
    return t, 2**b / (2**b - drop)


def _random_bits_like(like: torch.Tensor) -> torch.Tensor:
    """A CPU tensor shaped and typed like ``like`` whose bits are uniformly random.

    The bits come from numpy's SFC64 (a small-state generator that passes BigCrush and PractRand),
    about 3x faster per word than torch's CPU Mersenne Twister, seeded by one draw from torch's
    default generator: masks follow torch.manual_seed and a checkpoint's saved torch RNG state.
    """
    n = like.numel()
    per_word = 8 // like.element_size()
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
    words = np.random.SFC64(seed).random_raw((n + per_word - 1) // per_word)  # uint64
    return torch.from_numpy(words.view(np.int64)).view(like.dtype)[:n].view(like.shape)


def _drop_(y: torch.Tensor, p: float) -> float:
    """Zeroes each element of y in place with probability p' ≈ p; returns the scale 1 / P(keep)."""
    t, scale = _random_bits_threshold(y.dtype, p)
    torch.ops.aten.threshold_backward.grad_input(y, _random_bits_like(y), t, grad_input=y)  # y if u > t else 0
    return scale


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: the random-bits mask of ``_drop_`` on CPU, F.dropout elsewhere."""
    if not training or p == 0.0:
        return x
    if not _fast_dropout_ok(x, p):
        return nn.functional.dropout(x, p, training)
    t, scale = _random_bits_threshold(x.dtype, p)
    return torch.ops.aten.threshold_backward(x, _random_bits_like(x), t) * scale  # differentiable in x


class _FeedForward(torch.autograd.Function):
    """out = scale · (mask ⊙ relu(h W1ᵀ + b1)) W2ᵀ + b2, saving only y = mask ⊙ relu(...) (N, F)."""

    @staticmethod
    def forward(ctx, h, w1, b1, w2, b2, p: float, training: bool):
        y = torch.mm(h, w1.t()).add_(b1).relu_()  # (N, F); addmm with a bias is 2x slower on CPU
        scale = _drop_(y, p) if training and p > 0.0 else 1.0
        ctx.save_for_backward(h, w1, w2, y)
        ctx.scale = scale
        return torch.addmm(b2, y, w2.t(), alpha=scale)  # (N, hidden)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # grad (N, hidden)
        h, w1, w2, y = ctx.saved_tensors
        need = ctx.needs_input_grad
        gy = torch.mm(grad, w2 * ctx.scale)  # (N, F)
        # y > 0 exactly where the unit was kept and active: the ReLU and dropout backward in one pass
        torch.ops.aten.threshold_backward.grad_input(gy, y, 0, grad_input=gy)
        gh = torch.mm(gy, w1) if need[0] else None
        gw1 = torch.mm(gy.t(), h) if need[1] else None
        gb1 = gy.sum(0) if need[2] else None
        gw2 = torch.mm(grad.t(), y).mul_(ctx.scale) if need[3] else None
        gb2 = grad.sum(0) if need[4] else None
        return gh, gw1, gb1, gw2, gb2, None, None


def feed_forward(ffn: nn.Sequential, h: torch.Tensor, training: bool) -> torch.Tensor:
    """ffn = Sequential(Linear, ReLU, Dropout, Linear) applied to h (N, hidden): the fused autograd
    function on CPU in eager mode, the modules themselves elsewhere (CUDA, torch.compile, p >= 0.49)."""
    p = ffn[2].p
    if not _use_fast_path(h) or (training and p > 0.0 and not _fast_dropout_ok(h, p)):
        return ffn(h)
    lin1, lin2 = ffn[0], ffn[3]
    return _FeedForward.apply(h, lin1.weight, lin1.bias, lin2.weight, lin2.bias, p, training)
