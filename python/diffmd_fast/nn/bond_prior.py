"""A harmonic prior of the bonded terms (bonds and angles) for the score network's anchor (beyond the
paper).

Why: with ``anchor`` (and EDM preconditioning) the network predicts the next frame as a correction
to the constant-velocity step x(t) + v(t). Where it has never seen data (a bond stretched past what
the training temperature reaches) the correction is arbitrary and often ~0, so the default there is
ballistic flight: a hydrogen keeps its thermal speed (~0.02 Å/fs at 500 K) and leaves its bond
within ~30 frames. The prior makes the default a restoring one. The anchor becomes the Verlet step
of a valence force field of harmonic bonds and angles,
    x_anchor = 2 x(t) - x(t-1) + Δt² F(x(t)) / m,   F = -∇U,
    U = Σ_bonds ½ k_ij (r_ij - r0_ij)² + Σ_angles ½ K_ijk (cos θ_ijk - c0_ijk)²,
(the angle term in its cosine form, GROMOS 96's, smooth through 180°), with k, r0 per element pair
and K, c0 per (end, centre, end) element triple measured on the training data by equipartition
(k = k_B T / var(r), K = k_B T / var(cos θ); r0, c0 the means). The bonds are a fixed topology:
``graph.bonds``/``graph.angles`` (a rollout perceives them once, on its start frame,
ops.graph.with_covalent_bonds), or, when the graph carries none (training on data frames), the
covalent bonds perceived on x(t). A fixed topology matters: a prior that perceives bonds by distance
on every frame captures non-bonded neighbours (the 1-3 C...O of ethanol at 2.4 Å, ring 1-3 C...C at
2.4 Å) as soon as they come within its reach and pulls them to a bond length, which pumps energy
into the molecule (measured: a prior with a 1.4-1.6 × radii switch heated ethanol to 3,000-8,000 K
within 30 frames, without any network). The network learns the rest of the dynamics (torsions,
non-bonded forces, anharmonicity) as a correction to this step (Δ-learning), and off the data it
falls back to bonds that pull back instead of breaking. Its tables are buffers: they are saved with
the weights.
"""
from __future__ import annotations

import math

import torch
from ase import units
from ase.data import atomic_masses, chemical_symbols
from torch import nn

from ..ops.fused import VALENCE_COMPILED
from ..ops.graph import Graph, with_covalent_bonds

ANGLE_ELEMENTS = 16  # distinct elements the angle table holds (the training data's)


class BondPrior(nn.Module):
    """Harmonic bonded-terms prior (module docstring). ``set_tables`` gives it the tables that training
    measures on its data (training.conditioning.bond_statistics, angle_statistics); until then (and
    for element pairs and triples without data) it exerts no force."""

    def __init__(self, max_z: int) -> None:
        super().__init__()
        self.register_buffer("k", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # eV/Å²
        self.register_buffer("r0", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # Å
        self.register_buffer("frame_fs", torch.zeros((), dtype=torch.float64))  # the model's frame time
        self.register_buffer("masses", torch.as_tensor(atomic_masses[: max_z + 1], dtype=torch.float64))  # amu
        # angles per (end, centre, end) over the slots of the data's elements: slot[z] (-1: none)
        self.register_buffer("slot", torch.full((max_z + 1,), -1, dtype=torch.int64))
        s = ANGLE_ELEMENTS
        self.register_buffer("angle_k", torch.zeros(s, s, s, dtype=torch.float64))  # eV
        self.register_buffer("angle_c0", torch.zeros(s, s, s, dtype=torch.float64))  # cos θ0

    @torch.no_grad()
    def set_tables(self, k: torch.Tensor, r0: torch.Tensor, frame_fs: float,
                   angles: dict[tuple[int, int, int], tuple[float, float]] | None = None) -> None:
        """Force constants ``k`` (eV/Å²) and rest lengths ``r0`` (Å), (max_z + 1, max_z + 1) each, for a
        model whose frames are ``frame_fs`` fs apart; ``angles`` maps (z_end, z_centre, z_end) to
        (K eV, cos θ0). Raises ValueError on a non-positive frame time, tables of another shape,
        angles over more than ANGLE_ELEMENTS elements, or a frame time at which the Verlet step of the
        stiffest bond is unstable (ω Δt >= 2: ~3 fs for X-H stretches, i.e. strides above 4 of 0.5 fs data)."""
        if not frame_fs > 0:
            raise ValueError(f"the bond prior needs a positive frame time, got {frame_fs} fs")
        if k.shape != self.k.shape or r0.shape != self.r0.shape:
            raise ValueError(f"bond tables must be {tuple(self.k.shape)}, got {tuple(k.shape)} and {tuple(r0.shape)}")
        pairs = (k > 0).nonzero().tolist()
        if pairs:  # Verlet is stable only while ω Δt < 2 for the stiffest bond (ω² = k / reduced mass)
            masses = torch.as_tensor(atomic_masses, dtype=torch.float64)
            omega, a, b = max((float(k[a, b] * (1 / masses[a] + 1 / masses[b])) ** 0.5 * units.fs, a, b) for a, b in pairs)
            if omega * frame_fs >= 2.0:
                raise ValueError(f"the bond prior's stiffest bond ({chemical_symbols[a]}-{chemical_symbols[b]}, period "
                                 f"{2 * math.pi / omega:.1f} fs) makes its Verlet step unstable at {frame_fs:g} fs frames; "
                                 f"it needs frames shorter than {2.0 / omega:.2f} fs (a smaller train.stride)")
        angles = angles or {}
        elements = sorted({z for key in angles for z in key})
        if len(elements) > ANGLE_ELEMENTS:
            raise ValueError(f"the angle prior holds at most {ANGLE_ELEMENTS} elements, the data has {len(elements)}")
        if elements and elements[-1] >= self.slot.numel():
            raise ValueError(f"angle table element {elements[-1]} beyond this model's max_z {self.slot.numel() - 1}")
        self.k.copy_(k)
        self.r0.copy_(r0)
        self.frame_fs.fill_(frame_fs)
        self.slot.fill_(-1)
        self.slot[elements] = torch.arange(len(elements))
        self.angle_k.zero_()
        self.angle_c0.zero_()
        for (a, c, b), (kk, c0) in angles.items():
            sa, sc, sb = (int(self.slot[e]) for e in (a, c, b))
            self.angle_k[sa, sc, sb] = self.angle_k[sb, sc, sa] = kk
            self.angle_c0[sa, sc, sb] = self.angle_c0[sb, sc, sa] = c0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints before the fixed topology carried a covalent-radii buffer (now read from ASE) and
        # no angle tables (they load as none)
        state_dict.pop(prefix + "radii", None)
        for name in ("slot", "angle_k", "angle_c0"):
            state_dict.setdefault(prefix + name, getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) Å: the prior's Verlet displacement Δt² F(x) / m at positions x (N, 3) Å, over the bonds
        and angles of ``graph`` (perceived on x when the graph has none)."""
        if graph.bonds is None:
            graph = with_covalent_bonds(graph, x, z)
        step = self.frame_fs**2 * units.fs**2 * self.force(x, z, graph) / self.masses[z].unsqueeze(-1)  # (N, 3) Å
        return step.to(x.dtype)

    def force(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) float64 eV/Å: -∇U at positions x (N, 3) Å over ``graph.bonds`` and ``graph.angles``: one
        call of the compiled ``diffmd_fast::valence_force`` op when autograd is off (rollouts,
        training targets), else ``force_reference``. Raises (op) on indices outside the atoms."""
        if VALENCE_COMPILED and not (torch.is_grad_enabled() and x.requires_grad):
            angles = graph.angles if graph.angles is not None else graph.bonds.new_zeros(3, 0)
            return torch.ops.diffmd_fast.valence_force(x, z, graph.bonds, angles, self.k, self.r0, self.slot,
                                                       self.angle_k, self.angle_c0)
        return self.force_reference(x.to(torch.float64), z, graph)

    def force_reference(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``force`` in PyTorch ops (differentiable; the op's reference), x (N, 3) float64 Å."""
        recv, send = graph.bonds  # (M,) each, both directions: each term's force on its receiver
        r = x[recv] - x[send]  # (M, 3) Å
        dist = r.norm(dim=-1).clamp_min(1e-6)  # (M,)
        zr, zs = z[recv], z[send]
        magnitude = -self.k[zr, zs] * (dist - self.r0[zr, zs]) / dist  # (M,) eV/Å² (F along r)
        force = torch.zeros_like(x).index_add_(0, recv, magnitude.unsqueeze(-1) * r)  # (N, 3) eV/Å
        if graph.angles is None or graph.angles.shape[1] == 0:
            return force
        i, j, k = graph.angles  # (A,) each
        si, sj, sk = self.slot[z[i]], self.slot[z[j]], self.slot[z[k]]
        known = (si >= 0) & (sj >= 0) & (sk >= 0)
        kk = self.angle_k[si, sj, sk] * known  # (A,) eV; slot -1 indexes the last entry: masked
        c0 = self.angle_c0[si, sj, sk]
        u, w = x[i] - x[j], x[k] - x[j]  # (A, 3) Å
        lu, lw = u.norm(dim=-1, keepdim=True).clamp_min(1e-6), w.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        uh, wh = u / lu, w / lw
        cos = (uh * wh).sum(-1, keepdim=True)  # (A, 1)
        coef = -(kk * (cos.squeeze(-1) - c0)).unsqueeze(-1)  # (A, 1) eV: -dU/dcos
        f_i = coef * (wh - cos * uh) / lu  # (A, 3) eV/Å: -dU/dx_i = -dU/dcos · dcos/dx_i
        f_k = coef * (uh - cos * wh) / lw
        return force.index_add_(0, i, f_i).index_add_(0, k, f_k).index_add_(0, j, -(f_i + f_k))
