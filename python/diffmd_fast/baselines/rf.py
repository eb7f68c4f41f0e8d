"""Radial Field (Köhler, Klein & Noé 2019, equivariant flows), velocity variant, as a next-frame model.

The RF layer has no hidden node state: each atom moves along a learned radial field of its
neighbours plus a learned multiple of its velocity,
    x_i += s · mean_j (x_i - x_j)/(|x_i - x_j| + 1) φ(|x_i - x_j|, a_ij) + ψ(|v_i|) v_i,
with edge attributes a_ij = (embedding of z_i, embedding of z_j, bonded_ij). This follows the
velocity RF used as a baseline by EGNN and GMN (``GCL_rf_vel``: tanh-bounded φ, tiny init).
s is the fitted speed scale (Å/frame; see common.py). ψ starts at 1/num_layers, so the untrained model extrapolates at constant velocity.
Simplification: z enters through a learned embedding instead of raw one-hot edge attributes.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.batch import FrameBatch
from .common import (MAX_Z, NextFrameModel, SpeedScale, make_edges, mlp, register, scatter_mean, small_init_,
                     unit_dirs)

Z_DIM = 8  # size of the atom-type embedding in the edge attributes


class RFLayer(nn.Module):
    def __init__(self, hidden: int, num_layers: int):
        super().__init__()
        self.phi = nn.Sequential(
            nn.Linear(1 + 2 * Z_DIM + 1, hidden), nn.SiLU(), small_init_(nn.Linear(hidden, 1)), nn.Tanh()
        )
        self.psi = mlp(1, hidden, 1)
        nn.init.zeros_(self.psi[-1].weight)
        nn.init.constant_(self.psi[-1].bias, 1.0 / num_layers)

    def forward(self, x, v, speed, edge_attr, recv, send, unit):
        """x (N, 3) Å, v (N, 3) Å/frame, speed (N, 1) scaled, edge_attr (E, 2 Z_DIM + 1), unit () Å/frame."""
        rel = x[recv] - x[send]  # (E, 3)
        d2 = (rel * rel).sum(-1, keepdim=True)  # (E, 1) Å²
        phi = self.phi(torch.cat([torch.sqrt(d2 + 1e-12), edge_attr], dim=-1))  # (E, 1)
        field = unit * scatter_mean(unit_dirs(rel, d2) * phi, recv, x.shape[0])
        return x + field + self.psi(speed) * v


@register("rf")
class RadialField(NextFrameModel):
    def __init__(self, hidden: int = 64, num_layers: int = 4):
        super().__init__()
        self.speed_scale = SpeedScale()
        self.z_emb = nn.Embedding(MAX_Z, Z_DIM)
        self.layers = nn.ModuleList(RFLayer(hidden, num_layers) for _ in range(num_layers))

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        edges = make_edges(batch)
        zf = self.z_emb(batch.z)  # (N, Z_DIM)
        edge_attr = torch.cat([zf[edges.recv], zf[edges.send], edges.bonded], dim=-1)
        speed = self.speed_scale(batch)  # (N, 1)
        x, v, unit = batch.x, batch.velocity, self.speed_scale.scale.to(batch.x.dtype)
        for layer in self.layers:
            x = layer(x, v, speed, edge_attr, edges.recv, edges.send, unit)
        return x
