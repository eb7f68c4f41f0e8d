"""GMN, Graph Mechanics Network (Huang et al. 2022), small faithful version for molecules.

Objects: "sticks" are a matching of heavy-atom bonds (no two sticks share an atom — the paper's
"bonds without commonly-connected atoms"); every other atom is an isolated particle. Per layer:
    m_ij = φ_e(h_i, h_j, |x_ij|², bonded_ij, stick_ij);   f_i = s · mean_j x̂_ij φ_x(m_ij)   (forces)
    isolated i:  v_i = φ_v(h_i) v_i + f_i;  x_i += v_i
    stick (1,2): centre x0 = (x1+x2)/2, v0 = (v1+v2)/2, half-bond r = (x1-x2)/2,
                 angular velocity w = r̂ × (v1-v2)/2 / |r|,
                 a0 = (f1+f2)/2,  β = Σ_k (x_k - x0) × f_k / Σ_k |x_k - x0|²  (torque / inertia),
                 w = φ_w(h_c) w + β;  v0 = φ_v(h_c) v0 + a0;  x0 += v0;  r = Rot(w) r (Rodrigues),
                 x1,2 = x0 ± r;  v1,2 = v0 ± w × r,   with h_c = ψ(h1) + ψ(h2)
    h_i += φ_h(h_i, Σ_j m_ij)
x̂_ij = x_ij / (|x_ij| + 1) and s is the fitted speed scale (Å/frame), as in egnn.py.
Velocities are carried from layer to layer (as in the GMN code); the first layer's φ_v, φ_w start
at 1/num_layers and the others at 1, so the untrained model moves atoms by one frame of constant
(angular) velocity. Sticks keep their bond length exactly — the rigidity the DiffMD paper criticises.

Simplifications (documented): sticks come from the bonds of frame t (1.2 × covalent radii) chosen
greedily in atom order; hydrogens stay in the system (as DiffMD does, unlike the GMN paper) but
are never stick ends; a0 uses the plain mean of the stick forces (GMN's learned scalar on a
normalised 1×1 invariant is a constant); no hinges and no learnable forward kinematics.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.batch import FrameBatch
from .common import (NextFrameModel, NodeEmbedding, make_edges, mlp, register, scatter_mean, scatter_sum,
                     small_init_, unit_dirs)

# Å²: keeps the stick's inertia |r|² away from 0 when its two atoms coincide (degenerate input);
# negligible against a real half-bond (|r|² ≈ 0.5 Å²).
INERTIA_EPS = 1e-6


def select_sticks(z: torch.Tensor, recv: torch.Tensor, send: torch.Tensor, bonded: torch.Tensor) -> torch.Tensor:
    """(S, 2) int64: a greedy matching of heavy-atom bonds in atom order (no atom in two sticks)."""
    heavy = z > 1
    cand = (bonded[:, 0] > 0) & (recv < send) & heavy[recv] & heavy[send]
    used: set[int] = set()
    sticks = []
    for i, j in zip(recv[cand].tolist(), send[cand].tolist()):
        if i not in used and j not in used:
            used.update((i, j))
            sticks.append((i, j))
    return torch.tensor(sticks, dtype=torch.int64, device=z.device).reshape(-1, 2)


def rotate(r: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(S, 3): r rotated by the axis-angle vector w (angle |w| rad), Rodrigues' formula.

    Written with sinc so it stays smooth (and differentiable) as |w| -> 0.
    """
    theta = torch.sqrt((w * w).sum(-1, keepdim=True) + 1e-24)  # (S, 1)
    sinc = torch.sinc(theta / torch.pi)  # sin θ / θ
    half = 0.5 * torch.sinc(theta / (2 * torch.pi)) ** 2  # (1 - cos θ) / θ²
    return r * torch.cos(theta) + torch.cross(w, r, dim=-1) * sinc + w * (w * r).sum(-1, keepdim=True) * half


class GMNLayer(nn.Module):
    def __init__(self, hidden: int, vel_init: float):
        super().__init__()
        self.phi_e = nn.Sequential(mlp(2 * hidden + 3, hidden, hidden), nn.SiLU())
        self.phi_x = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), small_init_(nn.Linear(hidden, 1)))
        self.phi_v, self.phi_w = mlp(hidden, hidden, 1), mlp(hidden, hidden, 1)
        for f in (self.phi_v, self.phi_w):
            nn.init.zeros_(f[-1].weight)
            nn.init.constant_(f[-1].bias, vel_init)
        self.psi = mlp(hidden, hidden, hidden)  # stick-centre feature map ("center_mlp")
        self.phi_h = mlp(2 * hidden, hidden, hidden)

    def forward(self, x, v, h, recv, send, edge_attr, sticks, unit):
        """x (N, 3) Å, v (N, 3) Å/frame, h (N, hidden), edge_attr (E, 2), sticks (S, 2), unit () Å/frame."""
        n = x.shape[0]
        rel = x[recv] - x[send]  # (E, 3)
        d2 = (rel * rel).sum(-1, keepdim=True)
        m = self.phi_e(torch.cat([h[recv], h[send], d2, edge_attr], dim=-1))  # (E, hidden)
        f = unit * scatter_mean(unit_dirs(rel, d2) * self.phi_x(m), recv, n)  # (N, 3) Å/frame
        v_new = self.phi_v(h) * v + f  # isolated particles
        x_new = x + v_new
        if sticks.numel():
            x_new, v_new = self._sticks(x, v, f, h, sticks, x_new, v_new)
        h = h + self.phi_h(torch.cat([h, scatter_sum(m, recv, n)], dim=-1))
        return x_new, v_new, h

    def _sticks(self, x, v, f, h, sticks, x_new, v_new):
        i1, i2 = sticks[:, 0], sticks[:, 1]
        x1, x2, v1, v2, f1, f2 = x[i1], x[i2], v[i1], v[i2], f[i1], f[i2]  # (S, 3) each
        x0, v0, a0 = (x1 + x2) / 2, (v1 + v2) / 2, (f1 + f2) / 2
        r, vr = (x1 - x2) / 2, (v1 - v2) / 2  # half-bond and relative velocity
        r2 = (r * r).sum(-1, keepdim=True) + INERTIA_EPS  # (S, 1) Å²
        beta = (torch.cross(r, f1, dim=-1) - torch.cross(r, f2, dim=-1)) / (2 * r2)  # torque / inertia
        w = torch.cross(r, vr, dim=-1) / r2  # (S, 3) rad/frame
        h_c = self.psi(h[i1]) + self.psi(h[i2])
        w = self.phi_w(h_c) * w + beta
        v0 = self.phi_v(h_c) * v0 + a0
        x0 = x0 + v0
        r = rotate(r, w)
        spin = torch.cross(w, r, dim=-1)
        x_new = x_new.index_copy(0, i1, x0 + r).index_copy(0, i2, x0 - r)
        v_new = v_new.index_copy(0, i1, v0 + spin).index_copy(0, i2, v0 - spin)
        return x_new, v_new


@register("gmn")
class GMN(NextFrameModel):
    def __init__(self, hidden: int = 64, num_layers: int = 4):
        super().__init__()
        self.embed = NodeEmbedding(hidden)
        self.layers = nn.ModuleList(
            GMNLayer(hidden, 1.0 / num_layers if k == 0 else 1.0) for k in range(num_layers)
        )

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        edges = make_edges(batch)
        sticks = select_sticks(batch.z, edges.recv, edges.send, edges.bonded)
        is_stick = torch.zeros(batch.z.numel(), dtype=torch.int64, device=batch.z.device)
        is_stick[sticks.flatten()] = torch.arange(1, sticks.shape[0] + 1, device=batch.z.device).repeat_interleave(2)
        same = (is_stick[edges.recv] == is_stick[edges.send]) & (is_stick[edges.recv] > 0)
        edge_attr = torch.cat([edges.bonded, same.to(batch.x.dtype)[:, None]], dim=-1)  # (E, 2)
        h = self.embed(batch)  # fits the speed scale on first use
        x, v, unit = batch.x, batch.velocity, self.embed.speed_scale.scale.to(batch.x.dtype)
        for layer in self.layers:
            x, v, h = layer(x, v, h, edges.recv, edges.send, edge_attr, sticks, unit)
        return x
