"""A harmonic covalent-bond prior for the score network's anchor (beyond the paper).

Why: with ``anchor`` (and EDM preconditioning) the network predicts the next frame as a correction
to the constant-velocity step x(t) + v(t). Where it has never seen data (a bond stretched past what
the training temperature reaches) the correction is arbitrary and often ~0, so the default there is
ballistic flight: a hydrogen keeps its thermal speed (~0.02 Å/fs at 500 K) and leaves its bond
within ~30 frames. The prior makes the default a restoring one. The anchor becomes the Verlet step
of a harmonic bond model,
    x_anchor = 2 x(t) - x(t-1) + Δt² F_bond(x(t)) / m,
    F_bond on i = -Σ_j k_ij (r_ij - r0_ij) s(r_ij / ρ_ij) û_ij,
with k and r0 per element pair measured on the training data (equipartition, k = k_B T / var(r),
r0 the mean length), ρ_ij the sum of covalent radii and s a switch that is 1 up to 1.4 ρ and falls
smoothly (cosine) to 0 at 1.6 ρ, so non-bonded neighbours never feel it. The network learns the
rest of the dynamics as a correction to this step (Δ-learning), and off the data it falls back to
bonds that pull back instead of breaking. Its tables are buffers: they are saved with the weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from ase import units
from ase.data import atomic_masses, covalent_radii
from torch import nn

from ..ops.graph import Graph

SWITCH_ON, SWITCH_OFF = 1.4, 1.6  # × sum of covalent radii: full prior force below, none above


def bond_statistics(trajs: Sequence, max_z: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, r0), each (max_z + 1, max_z + 1) float64 and symmetric, per element pair: the harmonic force
    constant k = k_B T / var(r) (eV/Å², equipartition of a classical harmonic bond) and the mean
    length r0 (Å) of every covalent bond of that pair (perceived in each trajectory's first frame:
    covalent radii x 1.2), over all frames, T each trajectory's mean kinetic temperature; bonds of a
    pair pooled (mean of their variances and mean lengths). Pairs never bonded in the data: 0."""
    from ..evaluation.longrun import temperature_series
    from ..evaluation.metrics import bond_lengths, bonds_from_reference

    kt_sum, var_sum, len_sum, count = (np.zeros((max_z + 1, max_z + 1)) for _ in range(4))
    for traj in trajs:
        if traj.num_frames < 3:
            continue
        z = np.asarray(traj.numbers)
        bonds = bonds_from_reference(traj.positions[:1], z)
        if not len(bonds):
            continue
        kT = units.kB * float(temperature_series(traj.positions, z, traj.dt_fs).mean())  # eV
        lengths = bond_lengths(traj.positions, bonds)  # (T, B) Å
        for (i, j), mean, var in zip(bonds, lengths.mean(axis=0), lengths.var(axis=0)):
            a, b = sorted((int(z[i]), int(z[j])))
            kt_sum[a, b] += kT
            var_sum[a, b] += var
            len_sum[a, b] += mean
            count[a, b] += 1
    k = np.divide(kt_sum, var_sum, out=np.zeros_like(kt_sum), where=var_sum > 0)
    r0 = np.divide(len_sum, count, out=np.zeros_like(len_sum), where=count > 0)
    return torch.from_numpy(np.maximum(k, k.T)), torch.from_numpy(np.maximum(r0, r0.T))


class BondPrior(nn.Module):
    """Harmonic bond prior (module docstring). ``fit`` measures its tables on training trajectories;
    until then (and for element pairs without data) it exerts no force."""

    def __init__(self, max_z: int) -> None:
        super().__init__()
        self.register_buffer("k", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # eV/Å²
        self.register_buffer("r0", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # Å
        self.register_buffer("frame_fs", torch.zeros((), dtype=torch.float64))  # the model's frame time
        self.register_buffer("radii", torch.as_tensor(covalent_radii[: max_z + 1], dtype=torch.float64))  # Å
        self.register_buffer("masses", torch.as_tensor(atomic_masses[: max_z + 1], dtype=torch.float64))  # amu

    @torch.no_grad()
    def fit(self, trajs: Sequence, frame_fs: float) -> None:
        """Measure k and r0 on ``trajs`` (bond_statistics) for a model with frames ``frame_fs`` fs apart."""
        if not frame_fs > 0:
            raise ValueError(f"the bond prior needs a positive frame time, got {frame_fs} fs")
        k, r0 = bond_statistics(trajs, self.k.shape[0] - 1)
        self.k.copy_(k)
        self.r0.copy_(r0)
        self.frame_fs.fill_(frame_fs)

    def forward(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) Å: the prior's Verlet displacement Δt² F_bond(x) / m at positions x (N, 3) Å."""
        dtype = x.dtype
        counts = graph.row_ptr[1:] - graph.row_ptr[:-1]
        recv = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), counts)  # (E,)
        send = graph.col
        r = (x[recv] - x[send]).to(torch.float64)  # (E, 3) Å
        dist = r.norm(dim=-1).clamp_min(1e-6)  # (E,)
        zr, zs = z[recv], z[send]
        ratio = dist / (self.radii[zr] + self.radii[zs])
        t = ((ratio - SWITCH_ON) / (SWITCH_OFF - SWITCH_ON)).clamp(0.0, 1.0)
        switch = 0.5 * (1.0 + torch.cos(math.pi * t))  # (E,) 1 -> 0
        magnitude = -self.k[zr, zs] * (dist - self.r0[zr, zs]) * switch / dist  # (E,) eV/Å² (F along r)
        force = torch.zeros(x.shape, dtype=torch.float64, device=x.device).index_add_(
            0, recv, magnitude.unsqueeze(-1) * r)  # (N, 3) eV/Å
        step = self.frame_fs**2 * units.fs**2 * force / self.masses[z].unsqueeze(-1)  # (N, 3) Å
        return step.to(dtype)
