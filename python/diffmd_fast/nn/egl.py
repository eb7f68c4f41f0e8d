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

The FFN and the dropout run through feedforward.py (a CPU fast path, same parameters).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import ops
from ..ops import reference
from ..ops.basis import sbf_dim
from ..ops.graph import Graph
from .feedforward import dropout, feed_forward

BACKENDS = {"fused": ops.egl_attention, "reference": reference.egl_attention}


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

    def fused_params(self) -> list[torch.Tensor]:
        """This layer's tensors in the order the ``diffmd_fast::egt_score`` op reads one layer
        (csrc/egt_score/egt_score.cpp, kPerLayer of them): the attention projections, the SBF
        weights, the velocity MLP, the head mix and output, the feed-forward, the two norms."""
        return [self.f_q.weight, self.f_q.bias, self.f_k.weight, self.f_k.bias, self.f_m.weight, self.f_m.bias,
                self.w_sbf1, self.w_sbf2, self.f_v[0].weight, self.f_v[0].bias, self.f_v[2].weight, self.f_v[2].bias,
                self.head_mix, self.out.weight, self.out.bias, self.ffn[0].weight, self.ffn[0].bias,
                self.ffn[3].weight, self.ffn[3].bias, self.norm1.weight, self.norm1.bias, self.norm2.weight,
                self.norm2.bias]

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
        h = self.norm2(h + dropout(feed_forward(self.ffn, h, self.training), p, self.training))
        return x_new, v_new, h
