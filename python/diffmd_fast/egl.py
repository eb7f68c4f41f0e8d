"""One equivariant geometric layer (EGL) of the paper's EGT score network, around the fused op.

Eqs. 12-17: q, k, m are linear maps of h (f_q, f_k, f_m); the op adds the projected bases
(sbf1 @ W_SBF1 to the query, sbf2 @ W_SBF2 to the key), takes a per-head softmax over neighbours
and returns msg = Σ α m and vec = Σ α (x_i - x_j). Around it:
    v' = f_v(h) v + Σ_heads γ_head vec_head           (Eq. 15; γ learnable, per head)
    x' = x + v' / num_layers                          (Eq. 16)
    h' = LN(h + W_o msg); h' = LN(h' + FFN(h'))       (Eq. 17 with f_h = output projection + FFN,
                                                        post-norm residuals as in the Transformer)
Scalars only multiply vectors and features only see invariants, so x, v are E(3)-equivariant
and h is invariant.

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

from . import ops, reference
from .basis import sbf_dim
from .graph import Graph

BACKENDS = {"fused": ops.egl_attention, "reference": reference.egl_attention}
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


class EGL(nn.Module):
    def __init__(self, hidden: int = 128, heads: int = 8, ffn: int = 2048, cutoff: float = 1.6,
                 num_radial: int = 2, num_spherical: int = 2, dropout: float = 0.1, num_layers: int = 1,
                 backend: str = "fused"):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.head_dim = heads, hidden // heads
        self.cutoff, self.num_radial, self.num_spherical = float(cutoff), num_radial, num_spherical
        self.num_layers = num_layers
        self.backend = backend
        K = sbf_dim(num_radial, num_spherical)
        self.f_q = nn.Linear(hidden, hidden)
        self.f_k = nn.Linear(hidden, hidden)
        self.f_m = nn.Linear(hidden, hidden)
        self.w_sbf1 = nn.Parameter(torch.randn(K, heads, self.head_dim) / math.sqrt(K))
        self.w_sbf2 = nn.Parameter(torch.randn(K, heads, self.head_dim) / math.sqrt(K))
        self.f_v = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.head_mix = nn.Parameter(torch.full((heads,), 1.0 / heads))  # γ of Eq. 15
        self.out = nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, hidden))
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def _ffn(self, h: torch.Tensor) -> torch.Tensor:
        p = self.ffn[2].p
        if not _use_fast_path(h) or (self.training and p > 0.0 and not _fast_dropout_ok(h, p)):
            return self.ffn(h)
        lin1, lin2 = self.ffn[0], self.ffn[3]
        return _FeedForward.apply(h, lin1.weight, lin1.bias, lin2.weight, lin2.bias, p, self.training)

    def forward(self, x: torch.Tensor, v: torch.Tensor, h: torch.Tensor, graph: Graph):
        N = h.shape[0]
        H, D = self.heads, self.head_dim
        q = self.f_q(h).view(N, H, D)
        k = self.f_k(h).view(N, H, D)
        m = self.f_m(h).view(N, H, D)
        msg, vec = BACKENDS[self.backend](
            x.contiguous(), v.contiguous(), q, k, m, self.w_sbf1, self.w_sbf2, graph.row_ptr, graph.col,
            cutoff=self.cutoff, num_radial=self.num_radial, num_spherical=self.num_spherical)
        # msg (N,H,D), vec (N,H,3)
        v_new = self.f_v(h) * v + torch.einsum("nhc,h->nc", vec, self.head_mix)  # Eq. 15
        x_new = x + v_new / self.num_layers  # Eq. 16
        p = self.dropout.p
        h = self.norm1(h + dropout(self.out(msg.reshape(N, H * D)), p, self.training))  # Eq. 17
        h = self.norm2(h + dropout(self._ffn(h), p, self.training))
        return x_new, v_new, h
