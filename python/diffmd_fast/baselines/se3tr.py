"""An SE(3)-Transformer (Fuchs, Worrall, Fischer & Welling 2020, NeurIPS) baseline built with e3nn.

Same body as tfn.py (node irreps: z embedding and speed as 0e, the velocity as one 1o; same radial
basis, spherical harmonics and 1o readout x(t+1) = x(t) + φ_v(scalars) v(t) + s · out_1o), but each
layer replaces TFN's neighbour mean by equivariant multi-head attention. For receiver i and sender j
on the complete graph, with Y = spherical harmonics of r̂_ij and R_ij = radial basis of |r_ij| plus
the bonded flag:
    k_ij = W_K(R_ij)(f_j ⊗ Y)        values  v_ij = W_V(R_ij)(f_j ⊗ Y)   (per-edge e3nn tensor
                                      products, weights from one radial MLP, as TFN's filters)
    q_i  = W_Q f_i                     (o3.Linear: mixes channels within each irrep type)
    a_ij^h = softmax_j( <q_i^h, k_ij^h> / sqrt(d_k) )   per head h, over i's incoming edges
    f_i  ← Gate( W_S f_i + W_O Σ_j a_ij^h v_ij^h )
The logit is the plain inner product of two features with identical irreps, block by block, so it
is invariant under O(3); all maps are O(3)-equivariant (parity kept), so the model is
E(3)-equivariant, reflections included.

Choices: spherical harmonics up to l = 2 (as tfn.py); 4 heads; values h×0e + h/4×(1o + 1e) + h/8×2e
and keys with half those channels (split evenly over heads; every multiplicity is rounded up to a
multiple of the head count); key and value filters share one radial MLP. Pairs beyond r_max (5 Å)
get zero keys and values: logit 0, so they take some attention weight but carry nothing.

Where it differs from the original: e3nn's gated nonlinearity (tfn.py's) in place of the paper's
norm nonlinearity and layer norm; the complete molecular graph (as every baseline here) instead of a
k-NN / radius neighbourhood; O(3) irreps with parity instead of SO(3) types only; no separate
attentive self-interaction (the skip W_S f_i is a plain linear self-interaction); l ≤ 2 for speed.
"""
from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

from .common import register, scatter_softmax, scatter_sum
from .tfn import SH_IRREPS, IrrepsNextFrame, hidden_irreps


def head_irreps(channels: int, heads: int) -> o3.Irreps:
    """Irreps with the layout of ``hidden_irreps(channels)``, each multiplicity a multiple of ``heads``."""
    _, _, irreps = hidden_irreps(channels)
    return o3.Irreps([(heads * math.ceil(mul / heads), ir) for mul, ir in irreps])


def _head_blocks(x: torch.Tensor, irreps: o3.Irreps, heads: int):
    """Yield (E, heads, mul/heads, 2l+1) views of ``x`` (E, irreps.dim), one per irrep block."""
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        yield x[:, sl].reshape(x.shape[0], heads, mul // heads, ir.dim)


class SE3AttentionLayer(nn.Module):
    def __init__(self, irreps_in: o3.Irreps, hidden: int, num_basis: int, heads: int):
        super().__init__()
        scalars, gated, self.irreps_out = hidden_irreps(hidden)
        self.gate = Gate(scalars, [nn.functional.silu], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)
        self.heads = heads
        self.irreps_key, self.irreps_value = head_irreps(max(1, hidden // 2), heads), head_irreps(hidden, heads)
        self.query = o3.Linear(irreps_in, self.irreps_key)
        self.tp_key = o3.FullyConnectedTensorProduct(irreps_in, SH_IRREPS, self.irreps_key, shared_weights=False)
        self.tp_value = o3.FullyConnectedTensorProduct(irreps_in, SH_IRREPS, self.irreps_value, shared_weights=False)
        self.radial = FullyConnectedNet(
            [num_basis + 1, hidden, self.tp_key.weight_numel + self.tp_value.weight_numel], nn.functional.silu
        )
        self.project = o3.Linear(self.irreps_value, self.gate.irreps_in)
        self.self_int = o3.Linear(irreps_in, self.gate.irreps_in)

    def attention(self, q: torch.Tensor, k: torch.Tensor, recv: torch.Tensor, n: int) -> torch.Tensor:
        """(E, heads) weights a_ij^h from queries q (E, key.dim) at the receivers and keys k (E, key.dim)."""
        logits = sum((qb * kb).sum(dim=(2, 3)) for qb, kb in zip(
            _head_blocks(q, self.irreps_key, self.heads), _head_blocks(k, self.irreps_key, self.heads)))  # (E, H)
        return scatter_softmax(logits / (self.irreps_key.dim / self.heads) ** 0.5, recv, n)

    def forward(self, feats, sh, edge_scalars, recv, send):
        """feats (N, irreps_in.dim), sh (E, sh.dim), edge_scalars (E, num_basis + 1)."""
        n, f_send = feats.shape[0], feats[send]
        w_key, w_value = self.radial(edge_scalars).split([self.tp_key.weight_numel, self.tp_value.weight_numel], -1)
        alpha = self.attention(self.query(feats)[recv], self.tp_key(f_send, sh, w_key), recv, n)  # (E, H)
        value = self.tp_value(f_send, sh, w_value)  # (E, value.dim)
        weighted = torch.cat([
            (vb * alpha[:, :, None, None]).reshape(value.shape[0], -1)
            for vb in _head_blocks(value, self.irreps_value, self.heads)
        ], dim=-1)  # (E, value.dim), blocks in irreps order
        return self.gate(self.self_int(feats) + self.project(scatter_sum(weighted, recv, n)))


@register("se3tr")
class SE3Transformer(IrrepsNextFrame):
    def __init__(self, hidden: int = 64, num_layers: int = 4, num_basis: int = 8, r_max: float = 5.0,
                 heads: int = 4):
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        super().__init__(hidden, num_layers, num_basis, r_max,
                         lambda irreps: SE3AttentionLayer(irreps, hidden, num_basis, heads))
