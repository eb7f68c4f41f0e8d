"""A harmonic covalent-bond prior for the score network's anchor (beyond the paper).

Why: with ``anchor`` (and EDM preconditioning) the network predicts the next frame as a correction
to the constant-velocity step x(t) + v(t). Where it has never seen data (a bond stretched past what
the training temperature reaches) the correction is arbitrary and often ~0, so the default there is
ballistic flight: a hydrogen keeps its thermal speed (~0.02 Å/fs at 500 K) and leaves its bond
within ~30 frames. The prior makes the default a restoring one. The anchor becomes the Verlet step
of a harmonic bond model,
    x_anchor = 2 x(t) - x(t-1) + Δt² F_bond(x(t)) / m,
    F_bond on i = -Σ_{j bonded to i} k_ij (r_ij - r0_ij) û_ij,
with k and r0 per element pair measured on the training data (equipartition, k = k_B T / var(r),
r0 the mean length). The bonds are a fixed topology: ``graph.bonds`` (a rollout perceives it once,
on its start frame, ops.graph.with_covalent_bonds), or, when the graph carries none (training on
data frames), the covalent bonds perceived on x(t). A fixed topology matters: a prior that perceives
bonds by distance on every frame captures non-bonded neighbours (the 1-3 C...O of ethanol at 2.4 Å,
ring 1-3 C...C at 2.4 Å) as soon as they come within its reach and pulls them to a bond length,
which pumps energy into the molecule (measured: a prior with a 1.4-1.6 × radii switch heated
ethanol to 3,000-8,000 K within 30 frames, without any network). The network learns the rest of the
dynamics as a correction to this step (Δ-learning), and off the data it falls back to bonds that
pull back instead of breaking. Its tables are buffers: they are saved with the weights.
"""
from __future__ import annotations

import torch
from ase import units
from ase.data import atomic_masses
from torch import nn

from ..ops.graph import Graph, covalent_bonds


class BondPrior(nn.Module):
    """Harmonic bond prior (module docstring). ``set_tables`` gives it the element-pair tables that
    training measures on its data (training.conditioning.bond_statistics); until then (and for
    element pairs without data) it exerts no force."""

    def __init__(self, max_z: int) -> None:
        super().__init__()
        self.register_buffer("k", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # eV/Å²
        self.register_buffer("r0", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # Å
        self.register_buffer("frame_fs", torch.zeros((), dtype=torch.float64))  # the model's frame time
        self.register_buffer("masses", torch.as_tensor(atomic_masses[: max_z + 1], dtype=torch.float64))  # amu

    @torch.no_grad()
    def set_tables(self, k: torch.Tensor, r0: torch.Tensor, frame_fs: float) -> None:
        """Force constants ``k`` (eV/Å²) and rest lengths ``r0`` (Å), (max_z + 1, max_z + 1) each, for a
        model whose frames are ``frame_fs`` fs apart. Raises ValueError on a non-positive frame time
        or tables of another shape."""
        if not frame_fs > 0:
            raise ValueError(f"the bond prior needs a positive frame time, got {frame_fs} fs")
        if k.shape != self.k.shape or r0.shape != self.r0.shape:
            raise ValueError(f"bond tables must be {tuple(self.k.shape)}, got {tuple(k.shape)} and {tuple(r0.shape)}")
        self.k.copy_(k)
        self.r0.copy_(r0)
        self.frame_fs.fill_(frame_fs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints before the fixed topology carried a covalent-radii buffer, now read from ASE
        state_dict.pop(prefix + "radii", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) Å: the prior's Verlet displacement Δt² F_bond(x) / m at positions x (N, 3) Å, over the
        bonds ``graph.bonds`` (perceived on x when the graph has none)."""
        dtype = x.dtype
        x = x.to(torch.float64)
        recv, send = covalent_bonds(graph, x, z) if graph.bonds is None else graph.bonds  # (M,) each
        r = x[recv] - x[send]  # (M, 3) Å
        dist = r.norm(dim=-1).clamp_min(1e-6)  # (M,)
        zr, zs = z[recv], z[send]
        magnitude = -self.k[zr, zs] * (dist - self.r0[zr, zs]) / dist  # (M,) eV/Å² (F along r)
        force = torch.zeros_like(x).index_add_(0, recv, magnitude.unsqueeze(-1) * r)  # (N, 3) eV/Å
        step = self.frame_fs**2 * units.fs**2 * force / self.masses[z].unsqueeze(-1)  # (N, 3) Å
        return step.to(dtype)
