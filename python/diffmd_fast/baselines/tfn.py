"""A Tensor Field Network (Thomas et al. 2018) / SE(3)-style baseline built with e3nn.

Node features are e3nn irreps: invariant scalars (z embedding, speed) and the velocity as a 1o
vector. Each layer convolves neighbours with filters W(|r_ij|) ⊗ Y(r̂_ij) — a
``FullyConnectedTensorProduct`` of the sender's features with the spherical harmonics of the edge
direction, its weights produced per edge by an MLP of a smooth radial basis and the bonded flag —
averages over neighbours, adds a linear self-interaction and applies a gated nonlinearity. A final
``o3.Linear`` reads one 1o vector per atom, the displacement correction:
    x(t+1) = x(t) + φ_v(scalars) v(t) + s · out_1o
(s = fitted speed scale in Å/frame, φ_v starts at 1: constant-velocity extrapolation at init).
Parity is kept (O(3) irreps), so the model is E(3)-equivariant, reflections included.

Choices: spherical harmonics up to l = 2; hidden irreps h×0e + h/4×(1o + 1e) + h/8×2e; the radial
basis spans [0, r_max] with a smooth cutoff (default 5 Å covers the nearest shells of small
molecules; longer pairs are still in the complete graph but get a zero filter).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch import nn

from ..data.batch import FrameBatch
from .common import Edges, NextFrameModel, NodeEmbedding, make_edges, mlp, register, scatter_mean

SH_IRREPS = o3.Irreps.spherical_harmonics(2)  # 0e + 1o + 2e of the edge direction


def hidden_irreps(hidden: int) -> tuple[o3.Irreps, o3.Irreps, o3.Irreps]:
    """(scalars, gated, all) irreps of a hidden layer of width ``hidden``."""
    n1, n2 = max(1, hidden // 4), max(1, hidden // 8)
    scalars = o3.Irreps(f"{hidden}x0e")
    gated = o3.Irreps(f"{n1}x1o + {n1}x1e + {n2}x2e")
    return scalars, gated, (scalars + gated).simplify()


class TFNLayer(nn.Module):
    def __init__(self, irreps_in: o3.Irreps, hidden: int, num_basis: int):
        super().__init__()
        scalars, gated, self.irreps_out = hidden_irreps(hidden)
        self.gate = Gate(scalars, [nn.functional.silu], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)
        self.tp = o3.FullyConnectedTensorProduct(irreps_in, SH_IRREPS, self.gate.irreps_in, shared_weights=False)
        self.radial = FullyConnectedNet([num_basis + 1, hidden, self.tp.weight_numel], nn.functional.silu)
        self.self_int = o3.Linear(irreps_in, self.gate.irreps_in)

    def forward(self, feats, sh, edge_scalars, recv, send):
        """feats (N, irreps_in.dim), sh (E, sh.dim), edge_scalars (E, num_basis + 1)."""
        msg = self.tp(feats[send], sh, self.radial(edge_scalars))  # (E, gate_in.dim)
        return self.gate(self.self_int(feats) + scatter_mean(msg, recv, feats.shape[0]))


def radial_features(edges: Edges, r_max: float, num_basis: int) -> torch.Tensor:
    """(E, num_basis + 1) invariant edge scalars: a smooth radial basis of |r_ij| on [0, r_max] Å
    (zero at and beyond r_max, scaled to O(1) components) and the bonded flag."""
    basis = soft_one_hot_linspace(
        edges.dist[:, 0], 0.0, r_max, num_basis, basis="smooth_finite", cutoff=True
    ) * num_basis**0.5  # (E, num_basis)
    return torch.cat([basis, edges.bonded], dim=-1)


class IrrepsNextFrame(NextFrameModel):
    """Shared body of the e3nn baselines (TFN, SE(3)-Transformer): embed, stack layers, read out a 1o.

    ``make_layer(irreps_in)`` builds one layer with ``irreps_out`` and the call signature
    ``layer(feats (N, irreps_in.dim), sh (E, SH_IRREPS.dim), edge_scalars (E, num_basis + 1), recv, send)``.
    """

    def __init__(self, hidden: int, num_layers: int, num_basis: int, r_max: float,
                 make_layer: Callable[[o3.Irreps], nn.Module]):
        super().__init__()
        self.num_basis, self.r_max = num_basis, float(r_max)
        self.embed = NodeEmbedding(hidden)
        irreps = o3.Irreps(f"{hidden}x0e + 1x1o")
        layers = []
        for _ in range(num_layers):
            layers.append(make_layer(irreps))
            irreps = layers[-1].irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = o3.Linear(irreps, o3.Irreps("1x1o"))
        with torch.no_grad():
            self.readout.weight.mul_(1e-3)  # start as constant-velocity extrapolation, like the others
        self.phi_v = mlp(hidden, hidden, 1)
        nn.init.zeros_(self.phi_v[-1].weight)
        nn.init.ones_(self.phi_v[-1].bias)

    def forward(self, batch: FrameBatch) -> torch.Tensor:
        edges = make_edges(batch)
        h0 = self.embed(batch)  # (N, hidden); fits the speed scale on first use
        v = batch.velocity  # (N, 3) Å/frame
        scale = self.embed.speed_scale.scale.to(v.dtype)  # Å/frame
        feats = torch.cat([h0, v / scale], dim=-1)  # irreps hidden x0e + 1x1o
        sh = o3.spherical_harmonics(SH_IRREPS, edges.rel, normalize=True, normalization="component")
        edge_scalars = radial_features(edges, self.r_max, self.num_basis)
        for layer in self.layers:
            feats = layer(feats, sh, edge_scalars, edges.recv, edges.send)
        return batch.x + self.phi_v(h0) * v + scale * self.readout(feats)


@register("tfn")
class TFN(IrrepsNextFrame):
    def __init__(self, hidden: int = 64, num_layers: int = 4, num_basis: int = 8, r_max: float = 5.0):
        super().__init__(hidden, num_layers, num_basis, r_max, lambda irreps: TFNLayer(irreps, hidden, num_basis))
