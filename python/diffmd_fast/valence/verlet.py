"""The valence prior's step in phase space: velocity-Verlet substeps over one model frame.

Why: a window of positions gives the velocity at x(t) only through x(t) - x(t-1), which fixes the
prior's step to one position-Verlet step per frame, and Verlet is unstable for the stiffest bond once
ω Δt >= 2 (~3.3 fs frames for a C-H stretch). Carrying each atom's velocity v(t) as part of the
state (``FrameBatch.v``, ``model.prior_substeps``) lets the prior integrate the frame in k
velocity-Verlet substeps of Δt / k (multiple time stepping, RESPA's inner loop; Tuckerman, Berne &
Martyna 1992): stable at any k with Δt / k under that limit, and time-reversible. With the data's
velocity it is also the better anchor at the same frame time: the prior alone's one-step error at
2 fs frames falls from 0.0124 Å (position Verlet on the window) to 0.0084 Å (two substeps) on
bundled ethanol, from 0.0087 to 0.0063 Å on aspirin (benches/results/README.md).

The network's correction to the prior's frame, δ = x(t+1) - x_p(t+1), enters the velocity as a kick
at the start of the frame, v(t+1) = v_p(t+1) + δ / Δt (``next_velocity``): a kick Δv moves a free
atom by Δv Δt over the frame. (As a constant force over the frame, 2 δ / Δt, or halfway, 1.5 δ / Δt,
it needed more friction to hold the temperature and lost h(r) and spectrum on bundled ethanol.) The
rollout corrections then act on that velocity (dynamics/physics.py, their ``phase`` forms).
"""
from __future__ import annotations

import torch
from ase import units

from ..ops.graph import Graph
from .prior import BondPrior
from .topology import with_covalent_bonds


def phase_step(prior: BondPrior, x: torch.Tensor, v: torch.Tensor, z: torch.Tensor, graph: Graph,
               substeps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_p (N, 3) Å, v_p (N, 3) Å/fs): positions x (N, 3) Å and velocities v (N, 3) Å/fs after
    ``substeps`` velocity-Verlet steps of ``prior.frame_fs`` fs each (the time step its springs are
    Verlet-matched to) under the prior's forces, over ``graph``'s bonds, angles and torsions (perceived
    on x when the graph has none). Returned in x's dtype; the substeps run in float64. Raises
    ValueError for substeps < 1."""
    if substeps < 1:
        raise ValueError(f"phase_step needs substeps >= 1, got {substeps}")
    if graph.bonds is None:  # one topology for every substep: the start's
        graph = with_covalent_bonds(graph, x, z)
    h = prior.frame_fs  # () float64 fs: a tensor, so a compiled frame reads it without a host sync
    scale = units.fs**2 / prior.masses[z].unsqueeze(-1)  # (N, 1): eV/Å -> Å/fs² per amu
    pos, vel = x.double(), v.double()
    acc = prior.force(pos, z, graph) * scale  # (N, 3) Å/fs²
    for _ in range(substeps):
        vel = vel + 0.5 * h * acc
        pos = pos + h * vel
        acc = prior.force(pos, z, graph) * scale
        vel = vel + 0.5 * h * acc
    return pos.to(x.dtype), vel.to(x.dtype)


def next_velocity(x_new: torch.Tensor, x_prior: torch.Tensor, v_prior: torch.Tensor,
                  frame_fs: float | torch.Tensor) -> torch.Tensor:
    """(N, 3) Å/fs: the velocity at a generated frame x_new (N, 3) Å whose prior step was (x_prior Å,
    v_prior Å/fs), v_prior + (x_new - x_prior) / Δt with Δt = ``frame_fs`` fs (module docstring)."""
    return (v_prior.double() + (x_new - x_prior).double() / frame_fs).to(x_new.dtype)
