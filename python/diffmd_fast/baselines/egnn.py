"""EGNN, velocity variant (Satorras, Hoogeboom & Welling 2021, Eq. 7), as a next-frame model.

Per layer l, on the complete graph with invariant messages:
    m_ij   = φ_e(h_i, h_j, |x_i - x_j|², bonded_ij)
    v_i    = φ_v(h_i) v_i(t) + s · mean_j (x_i - x_j)/(|x_i - x_j| + 1) φ_x(m_ij)
    x_i   += v_i
    h_i   += φ_h(h_i, Σ_j m_ij)
and x(t+1) is the final x. s is the fitted speed scale (Å/frame) and the normalised difference is
the EGNN code's ``norm_diff`` option: coordinate messages come out in units of a typical frame's
motion, so one optimiser step cannot throw atoms by far more than they move per frame. Scalars only multiply relative vectors and the input velocity, so the
output is E(3)-equivariant. φ_v starts at 1/num_layers so the untrained model is the
constant-velocity extrapolation x(t) + v(t) (see common.py).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.batch import FrameBatch
from .common import (NextFrameModel, NodeEmbedding, make_edges, mlp, register, scatter_mean, scatter_sum,
                     small_init_, unit_dirs)


class EGNNLayer(nn.Module):
    def __init__(self, hidden: int, num_layers: int):
        super().__init__()
        self.phi_e = nn.Sequential(mlp(2 * hidden + 2, hidden, hidden), nn.SiLU())
        self.phi_x = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), small_init_(nn.Linear(hidden, 1)))
        self.phi_v = mlp(hidden, hidden, 1)
        nn.init.zeros_(self.phi_v[-1].weight)
        nn.init.constant_(self.phi_v[-1].bias, 1.0 / num_layers)
        self.phi_h = mlp(2 * hidden, hidden, hidden)

    def forward(self, x, v0, h, recv, send, bonded, unit):
        """x, v0 (N, 3) Å, Å/frame; h (N, hidden); edges (E,); unit () Å/frame. Returns new x, h."""
        rel = x[recv] - x[send]  # (E, 3)
        d2 = (rel * rel).sum(-1, keepdim=True)  # (E, 1) Å²
        m = self.phi_e(torch.cat([h[recv], h[send], d2, bonded], dim=-1))  # (E, hidden)
        n = x.shape[0]
        v = self.phi_v(h) * v0 + unit * scatter_mean(unit_dirs(rel, d2) * self.phi_x(m), recv, n)  # (N, 3)
        h = h + self.phi_h(torch.cat([h, scatter_sum(m, recv, n)], dim=-1))
        return x + v, h


@register("egnn")
class EGNN(NextFrameModel):
    def __init__(self, hidden: int = 64, num_layers: int = 4):
        super().__init__()
        self.embed = NodeEmbedding(hidden)
        self.layers = nn.ModuleList(EGNNLayer(hidden, num_layers) for _ in range(num_layers))

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        edges = make_edges(batch)
        h = self.embed(batch)  # (N, hidden)
        x, v0 = batch.x, batch.velocity
        for layer in self.layers:
            x, h = layer(x, v0, h, edges.recv, edges.send, edges.bonded, self.embed.speed_scale.scale.to(x.dtype))
        return x
