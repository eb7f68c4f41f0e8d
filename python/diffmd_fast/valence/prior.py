"""A valence force field prior (bonds, angles, torsions) for the score network's anchor (beyond the
paper).

Why: with ``anchor`` (and EDM preconditioning) the network predicts the next frame as a correction
to the constant-velocity step x(t) + v(t). Where it has never seen data (a bond stretched past what
the training temperature reaches) the correction is arbitrary and often ~0, so the default there is
ballistic flight: a hydrogen keeps its thermal speed (~0.02 Å/fs at 500 K) and leaves its bond
within ~30 frames. The prior makes the default a restoring one. The anchor becomes the Verlet step
of a valence force field (harmonic bonds and angles, torsions; Morse bonds where force matching
fits their anharmonicity, valence/anharmonic.py),
    x_anchor = 2 x(t) - x(t-1) + Δt² F(x(t)) / m,   F = -∇U,
    U = Σ_bonds ½ k_ij (r_ij - r0_ij)² + Σ_angles [½ K_ijk (cos θ_ijk - c0_ijk)² + ½ k^UB_ijk (r_ik - r^UB_ijk)²]
        + Σ_dihedrals U_t(φ_ijkl),
    U_t(φ) = -(k_B T / m) log ½[exp(κ cos n(φ - φ0)) + exp(κ cos n(φ + φ0))]  (+ a constant),
(the angle term in its cosine form, GROMOS 96's, smooth through 180°), with k, r0 per pair, K, c0 per
(end, centre, end) triple and κ, n, φ0 per quadruple t of atom types, measured on the training data:
bonds and angles by equipartition (k = k_B T / var(r), K = k_B T / var(cos θ); r0, c0 the means),
torsions by Boltzmann inversion of their circular distribution. The Urey-Bradley springs between the
ends of an angle (CHARMM's 1-3 term) come from force matching only (valence.force_matching; without
reference forces k^UB = 0): an angle term alone cannot hold two hydrogens of a CH2 or CH3 apart as the
molecule does, and the prior's H-C-H scissoring fell 8-10 % below GFN2-xTB's (bundled ethanol's
normal modes at the xTB minimum: mean error -10 % without them, -5 % with them).

Every pair spring (bonds, Urey-Bradley) is Verlet-matched to the frame time Δt: set_tables stores
k' = k [sin(ωΔt/2) / (ωΔt/2)]², ω = sqrt(k/μ), μ the pair's reduced mass, so that the Verlet step
x(t+1) = 2x(t) - x(t-1) - Δt² k' x(t)/μ of an isolated spring is its exact two-frame recurrence
x(t+1) = 2 cos(ωΔt) x(t) - x(t-1), and the spring oscillates at its own frequency. With the physical
k, Verlet at 2 fs frames runs a C-H stretch 6 % and an O-H stretch 10 % fast; matched, prior-alone
rollouts of bundled ethanol and aspirin reach a VDOS overlap of 0.76 and 0.84 (0.67 and 0.79
without the Urey-Bradley terms and the matching; 8 x 20 ps, Langevin τ 100 fs).

The torsions: exp(-U_t / k_B T) is an equal mixture of two von Mises distributions of nφ about ±φ0,
the torsion and its mirror image, because a molecule and its reflection have the same energy and a
reflection flips every dihedral's sign (a single well at the data's φ0 = -93° of aspirin's ester
would make the model's dynamics differ from its mirror image's, breaking E(3) equivariance). n in
1, 2, 3 (3 for a methyl rotor, 2 for a planar group seen cis and trans), one well at φ0 = 0 or π/n
or a pair at ±φ0, and κ are chosen by likelihood (valence.fit._torsion_fit); for κ -> 0 (a
free rotor) the term vanishes. The m dihedrals about one bond (9 for ethane's C-C) all measure its
one rotation, so each carries k_B T / m: summed, the bond's rotation has the free energy the data
show, not m times it (DREIDING's rule; the full k_B T on each term made prior-only steps 20 % worse
on ethanol, 0.030 against 0.025 Å). That rule is too soft for motions that move only some of the m
dihedrals (out-of-plane wags): with reference forces the amplitudes can be fitted instead
(valence.force_matching, model.prior_torsion_matching). Without the torsions the valence field holds bonds and angles
but lets every group rotate freely: prior-only aspirin drifted from the data's conformer, h(r) JSD
0.006 after 5 ps and 0.017 after 100 ps; with them 0.002 over 20 ps (bundled aspirin, 2 fs frames,
8 starts, Langevin τ 10 fs). The price: a torsion prior holds the molecule near the conformers its
data visited (and their mirror images), so a model cannot find others the data never showed
(model.prior_torsions = false leaves them out).

An atom's type is its environment (valence.topology.atom_environments: element and bonded neighbours'
elements, the atom types of classical force fields), so aspirin's C=O (1.21 Å) and C-O (1.36 Å)
bonds, or its ring C-C (1.39 Å) and ring-carboxyl C-C (1.48 Å), each get their own rest length;
pooled per element pair they shared one, 0.01-0.1 Å off for every bond, and prior-only MD missed the
data's h(r) by JSD 0.019 (0.006 typed by environment, the same as per-bond constants; bundled
aspirin, 5 ps, 2 fs frames). Types the data never showed (another molecule) fall back to their
element pair's or triple's pooled values; torsions of quadruples the data never showed get no term
(a torsion's preference is a property of its groups, not of its elements).

Excluded volume: nothing in bonds, angles and torsions keeps atoms more than two bonds apart from
running into each other (prior-only aspirin brought its two carbonyl-side oxygens to 1.57 Å and a
hydroxyl H onto the ester O within picoseconds). Each such pair (``graph.nonbonded``) gets a one-sided
harmonic wall, ½ WALL_K (d0 - r)² below d0: 0.95 of the closest approach of that element pair in the
training data, so in-distribution frames never feel it, and for element pairs the data never showed
apart 0.6 of their van der Waals radii sum (Bondi's, ASE's table): the repulsive priors of coarse-grained
models (CGnet), kept to the wall.

The bonds are a fixed topology: ``graph.bonds``, ``angles``, ``dihedrals``, ``environments`` (the
molecule's: its trajectory's bonds at the median, FrameBatch.bonds, valence.topology.window_graph, held
for a whole rollout), or, when the graph carries none, the covalent bonds perceived on x. A fixed topology
matters: a prior that perceives bonds by distance on every frame captures non-bonded neighbours (the
1-3 C...O of ethanol at 2.4 Å, ring 1-3 C...C at 2.4 Å) as soon as they come within its reach and
pulls them to a bond length, which pumps energy into the molecule (measured: a prior with a
1.4-1.6 × radii switch heated ethanol to 3,000-8,000 K within 30 frames, without any network). The
network learns the rest of the dynamics (the instantaneous forces the fitted free energies average
out, non-bonded forces, anharmonicity) as a correction to this step (Δ-learning), and off the data
it falls back to bonds that pull back instead of breaking. Its tables are buffers: they are saved
with the weights.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from ase import units
from ase.data import chemical_symbols, covalent_radii, vdw_radii
from torch import nn

from ..data.elements import ATOMIC_MASSES
from ..ops import fused
from ..ops.graph import Graph
from .anharmonic import morse_correction_energy, morse_correction_force
from .torsion import torsion_gradients, torsion_slope
from .topology import ENV_BASE, atom_environments, bond_dihedrals, environment_label, with_covalent_bonds

Typed = dict[tuple[int, ...], tuple[float, float]]  # atom-environment pair or triple -> (constant, rest value)

MIN_BOND_PERIOD_FS = 7.5  # fs: the H2 stretch (4,160 cm^-1, 8.0 fs) is the fastest bond vibration there is
WALL_K = 20.0  # eV/Å²: the excluded-volume walls' stiffness (k_B T at 500 K goes 0.07 Å into one)
WALL_MARGIN = 0.95  # a wall at this fraction of the closest approach the data show
WALL_VDW = 0.6  # element pairs the data never showed apart: a wall at this fraction of their van der Waals sum


class BondPrior(nn.Module):
    """Harmonic bonded-terms prior (module docstring). ``set_tables`` gives it the tables that training
    measures on its data (valence.fit.bond_statistics, angle_statistics,
    environment_statistics); until then (and for element pairs and triples without data) it exerts no
    force.

    Its tables are indexed by atom type t: t = z (< max_z + 1) for an atom of an environment the data
    never showed, t = max_z + 1 + e for the data's environment e (buffer ``environments``, sorted).
    Bonds: ``k``, ``r0`` (T, T); angles: ``angle_k``, ``angle_c0`` and their Urey-Bradley springs
    ``ub_k``, ``ub_r0`` (S, S, S) over the slots ``slot`` (T,) of the types with angle data (-1: none);
    the pair springs' constants Verlet-matched to ``frame_fs`` (module docstring); torsions:
    ``torsions`` (Q, 4) (k_B T / m eV, κ, n, φ0 rad) of the quadruples ``dihedral_keys`` (Q,) (sorted,
    ``dihedral_key``). The sizes follow the data, and a checkpoint loads at its own."""

    def __init__(self, max_z: int) -> None:
        super().__init__()
        self.register_buffer("k", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # eV/Å²
        self.register_buffer("r0", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))  # Å
        # Morse steepness of each bond type (valence/anharmonic.py), 1/Å; 0: harmonic
        self.register_buffer("alpha", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))
        self.anharmonic = False  # any α > 0: a Python flag, so a compiled frame has no data-dependent branch
        self.register_buffer("frame_fs", torch.zeros((), dtype=torch.float64))  # the model's frame time
        self.register_buffer("masses", torch.as_tensor(ATOMIC_MASSES[: max_z + 1], dtype=torch.float64))  # amu
        self.register_buffer("environments", torch.zeros(0, dtype=torch.int64))  # (E,) sorted codes
        self.register_buffer("slot", torch.full((max_z + 1,), -1, dtype=torch.int64))
        self.register_buffer("angle_k", torch.zeros(0, 0, 0, dtype=torch.float64))  # eV
        self.register_buffer("angle_c0", torch.zeros(0, 0, 0, dtype=torch.float64))  # cos θ0
        # torsions per quadruple of types: sorted keys (dihedral_key), (Q, 4) k_B T / m eV, κ, n, φ0 rad each
        self.register_buffer("dihedral_keys", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("torsions", torch.zeros(0, 4, dtype=torch.float64))
        self.register_buffer("ub_k", torch.zeros(0, 0, 0, dtype=torch.float64))  # eV/Å², Urey-Bradley (0: none)
        self.register_buffer("ub_r0", torch.zeros(0, 0, 0, dtype=torch.float64))  # Å
        # excluded volume: (Z, Z) Å distance below which two atoms > 2 bonds apart are pushed apart (0: none)
        self.register_buffer("wall", torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64))

    @property
    def num_elements(self) -> int:
        return self.masses.numel()

    def replace_buffer(self, name: str, value: torch.Tensor) -> None:
        """Put ``value`` in place of the table ``name`` (any size), on the tables' device."""
        self._buffers[name] = value.to(self._buffers[name].device)

    @torch.no_grad()
    def set_tables(self, k: torch.Tensor, r0: torch.Tensor, frame_fs: float,
                   angles: dict[tuple[int, int, int], tuple[float, float]] | None = None,
                   typed_bonds: Typed | None = None, typed_angles: Typed | None = None,
                   typed_dihedrals: dict[tuple[int, int, int, int], tuple[float, float, int, float]] | None = None,
                   contacts: dict[tuple[int, int], float] | None = None,
                   typed_urey_bradley: Typed | None = None, verlet_check: bool = True) -> None:
        """Element tables: force constants ``k`` (eV/Å²) and rest lengths ``r0`` (Å), (max_z + 1, max_z + 1)
        each, and ``angles`` {(z_end, z_centre, z_end): (K eV, cos θ0)}; environment tables, which take
        precedence: ``typed_bonds`` {(env, env): (k, r0)} and ``typed_angles`` {(env_end, env_centre,
        env_end): (K, cos θ0)} over the codes of valence.topology.atom_environments (either order of the ends), and
        ``typed_dihedrals`` {(env_i, env_j, env_k, env_l): (k_B T / m eV, κ, n, φ0 rad)} (either direction);
        ``typed_urey_bradley`` {(env_end, env_centre, env_end): (k^UB eV/Å², r^UB Å)} (k 0: no term);
        ``contacts`` {(z_a, z_b): closest approach Å} of atoms more than two bonds apart in the data,
        where the excluded-volume walls go (at WALL_MARGIN of it; other element pairs at WALL_VDW of
        their van der Waals radii sum; without ``contacts``, no walls).
        For a model whose frames are ``frame_fs`` fs apart: the bond and Urey-Bradley constants given
        are the physical ones, and the tables hold them Verlet-matched to that frame time. Raises
        ValueError on a non-positive frame time, element tables of another shape, an environment code
        of an element beyond max_z, or a frame time at which the Verlet step of the stiffest bond is
        unstable (ω Δt >= 2: ~3 fs for X-H stretches, i.e. strides above 4 of 0.5 fs data).
        ``verlet_check=False`` skips that check (and the pooled constants that replace a too-stiff bond
        type): tables that are only the starting point of a fit (valence.force_matching), whose own
        result is checked."""
        if not frame_fs > 0:
            raise ValueError(f"the bond prior needs a positive frame time, got {frame_fs} fs")
        z1 = self.num_elements
        if k.shape != (z1, z1) or r0.shape != (z1, z1):
            raise ValueError(f"bond tables must be {(z1, z1)}, got {tuple(k.shape)} and {tuple(r0.shape)}")
        angles, typed_bonds, typed_angles = angles or {}, typed_bonds or {}, typed_angles or {}
        typed_dihedrals, typed_ub = typed_dihedrals or {}, typed_urey_bradley or {}
        envs = sorted({e for key in (*typed_bonds, *typed_angles, *typed_dihedrals, *typed_ub) for e in key})
        if envs and max(e % ENV_BASE for e in envs) >= z1:
            raise ValueError(f"an environment's element is beyond this model's max_z {z1 - 1}")
        index = {e: z1 + n for n, e in enumerate(envs)}  # environment code -> type
        element = torch.cat([torch.arange(z1), torch.tensor([e % ENV_BASE for e in envs], dtype=torch.int64)])  # (T,)
        # bonds: every type pair starts at its element pair's values, the data's environment pairs overwrite
        k_t = k.double()[element[:, None], element[None, :]].clone()  # (T, T)
        r0_t = r0.double()[element[:, None], element[None, :]].clone()
        alpha_t = torch.zeros_like(k_t)  # Morse steepness: only force matching gives one (pooled pairs: harmonic)
        unstable = []
        for (a, b), (kk, rr, *morse) in typed_bonds.items():
            if verlet_check and self._omega(kk, int(element[index[a]]), int(element[index[b]])) * frame_fs >= 2.0:
                unstable.append(f"{environment_label(a)}-{environment_label(b)}")
                continue  # an estimate from too few periods of data: its element pair's pooled value instead
            for i, j in ((index[a], index[b]), (index[b], index[a])):
                k_t[i, j], r0_t[i, j] = kk, rr
                alpha_t[i, j] = morse[0] if morse else 0.0
        if unstable:
            warnings.warn(f"bond prior: the data's force constants of {', '.join(unstable)} would make the Verlet "
                          f"step unstable at {frame_fs:g} fs frames (too short a trajectory to measure them); "
                          f"their element pairs' pooled constants are used instead", stacklevel=2)
        if verlet_check:
            self._check_verlet(k_t, element, frame_fs)
        masses = self.masses.cpu()
        k_t = self._verlet_matched(k_t, masses[element[:, None]], masses[element[None, :]], frame_fs)
        # angles: slots for the elements with angle data, then one per environment
        with_data = sorted({z for key in angles for z in key})
        if with_data and with_data[-1] >= z1:
            raise ValueError(f"angle table element {with_data[-1]} beyond this model's max_z {z1 - 1}")
        slot = torch.full((element.numel(),), -1, dtype=torch.int64)
        slot[with_data] = torch.arange(len(with_data))
        slot[z1:] = len(with_data) + torch.arange(len(envs))
        # each slot's row of the element angle table: its element's, the extra zero row W for an element
        # without angle data
        w = len(with_data)
        row = {z: n for n, z in enumerate(with_data)}
        se = torch.tensor(list(range(w)) + [row.get(e % ENV_BASE, w) for e in envs], dtype=torch.int64)  # (S,)
        elem_k = torch.zeros(w + 1, w + 1, w + 1, dtype=torch.float64)
        elem_c0 = torch.zeros(w + 1, w + 1, w + 1, dtype=torch.float64)
        for (a, c, b), (kk, c0) in angles.items():
            elem_k[row[a], row[c], row[b]] = elem_k[row[b], row[c], row[a]] = kk
            elem_c0[row[a], row[c], row[b]] = elem_c0[row[b], row[c], row[a]] = c0
        ang_k = elem_k[se[:, None, None], se[None, :, None], se[None, None, :]]  # (S, S, S)
        ang_c0 = elem_c0[se[:, None, None], se[None, :, None], se[None, None, :]]
        for (a, c, b), (kk, c0) in typed_angles.items():
            sa, sc, sb = (int(slot[index[e]]) for e in (a, c, b))
            ang_k[sa, sc, sb] = ang_k[sb, sc, sa] = kk
            ang_c0[sa, sc, sb] = ang_c0[sb, sc, sa] = c0
        ub_k, ub_r0 = torch.zeros_like(ang_k), torch.zeros_like(ang_k)
        for (a, c, b), (kk, rr) in typed_ub.items():
            sa, sc, sb = (int(slot[index[e]]) for e in (a, c, b))
            m = masses[[a % ENV_BASE, b % ENV_BASE]]
            ub_k[sa, sc, sb] = ub_k[sb, sc, sa] = self._verlet_matched(torch.tensor(max(kk, 0.0)), m[0], m[1], frame_fs)
            ub_r0[sa, sc, sb] = ub_r0[sb, sc, sa] = rr
        num_types = element.numel()
        # a quadruple given both ways round: the later value
        canonical = {min(key, key[::-1]): value for key, value in typed_dihedrals.items()}
        torsions = sorted((self.dihedral_key(*(torch.tensor(index[e]) for e in key), num_types=num_types).item(), value)
                          for key, value in canonical.items())
        self.frame_fs.fill_(frame_fs)
        self.replace_buffer("wall", self._walls(contacts))
        for name, value in (("k", k_t), ("r0", r0_t), ("alpha", alpha_t), ("environments", torch.tensor(envs, dtype=torch.int64)),
                            ("slot", slot), ("angle_k", ang_k), ("angle_c0", ang_c0), ("ub_k", ub_k), ("ub_r0", ub_r0),
                            ("dihedral_keys", torch.tensor([key for key, _ in torsions], dtype=torch.int64)),
                            ("torsions", torch.tensor([value for _, value in torsions], dtype=torch.float64).reshape(-1, 4))):
            self.replace_buffer(name, value)
        self.anharmonic = bool((alpha_t > 0).any())

    def _walls(self, contacts: dict | None) -> torch.Tensor:
        """(Z, Z) Å wall distances from ``contacts`` (set_tables)."""
        z1 = self.num_elements
        if not contacts:
            return torch.zeros(z1, z1, dtype=torch.float64)
        vdw = np.zeros(z1)
        table = np.nan_to_num(np.asarray(vdw_radii, dtype=np.float64), nan=0.0)[:z1]  # Bondi's, to Z = 103
        vdw[: len(table)] = table
        vdw = np.where(vdw > 0, vdw, 2.0 * np.asarray(covalent_radii, dtype=np.float64)[:z1])  # untabulated elements
        wall = torch.as_tensor(WALL_VDW * (vdw[:, None] + vdw[None, :]))
        for (a, b), d in contacts.items():
            if np.isfinite(d) and a < z1 and b < z1:
                wall[a, b] = wall[b, a] = WALL_MARGIN * d
        return wall

    def _with_morse(self, force: torch.Tensor, x: torch.Tensor, types: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``force`` (N, 3) eV/Å plus the Morse bonds' correction to its harmonic bond force
        (valence/anharmonic.py); ``force`` itself, with no op on the rollout's path, for a harmonic prior.
        ``types`` (N,) from atom_types."""
        if not self.anharmonic:
            return force
        return force + morse_correction_force(x, graph.bonds, types, self.k, self.r0, self.alpha)

    def wall_force(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) float64 eV/Å of the excluded-volume walls, -∇ Σ ½ WALL_K (d0 - r)² over the pairs of
        ``graph.nonbonded`` closer than their wall d0 (Å, per element pair), x (N, 3) Å."""
        force = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
        pairs = graph.nonbonded
        if pairs is None or pairs.shape[1] == 0:
            return force
        i, j = pairs
        d = (x[i] - x[j]).to(torch.float64)  # (P, 3) Å
        r = d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        push = WALL_K * (self.wall[z[i], z[j]].unsqueeze(-1) - r).clamp_min(0.0) / r * d  # on i, (P, 3) eV/Å
        return force.index_add_(0, i, push).index_add_(0, j, -push)

    @staticmethod
    def dihedral_key(ti: torch.Tensor, tj: torch.Tensor, tk: torch.Tensor, tl: torch.Tensor, num_types: int) -> torch.Tensor:
        """int64 code of the type quadruple i-j-k-l of a torsion, the same read either way (the dihedral
        angle of l-k-j-i is that of i-j-k-l): the smaller of the two base-``num_types`` numbers."""
        forward = ((ti * num_types + tj) * num_types + tk) * num_types + tl
        backward = ((tl * num_types + tk) * num_types + tj) * num_types + ti
        return torch.minimum(forward, backward)

    @staticmethod
    def key_types(key: int, num_types: int) -> list[int]:
        """The type quadruple (i, j, k, l) a dihedral_key encodes (the reading it was encoded in)."""
        return [(key // num_types**p) % num_types for p in (3, 2, 1, 0)]

    @staticmethod
    def _omega(k: float, za: int, zb: int) -> float:
        """1/fs: the angular frequency sqrt(k / reduced mass) of a bond of constant k (eV/Å²)."""
        return float(k * (1 / ATOMIC_MASSES[za] + 1 / ATOMIC_MASSES[zb])) ** 0.5 * units.fs

    @staticmethod
    def _verlet_matched(k: torch.Tensor, m_a: torch.Tensor, m_b: torch.Tensor, frame_fs: float) -> torch.Tensor:
        """k [sin(ωΔt/2) / (ωΔt/2)]² (eV/Å², elementwise), ω = sqrt(k/μ) of springs k between masses m_a, m_b
        (amu): the constant whose Verlet step at Δt = ``frame_fs`` oscillates at ω (module docstring).
        Needs ωΔt < 2 (set_tables checks the bonds first)."""
        k = k.double()
        mu = (m_a * m_b / (m_a + m_b)).double()
        half = 0.5 * frame_fs * units.fs * torch.sqrt(k.clamp_min(0.0) / mu)  # (…) ωΔt/2, rad
        return torch.where(half > 0, k * (torch.sin(half) / half.clamp_min(1e-12)) ** 2, k)

    @staticmethod
    def _check_verlet(k: torch.Tensor, element: torch.Tensor, frame_fs: float) -> None:
        """Verlet is stable only while ω Δt < 2 for the stiffest bond (ω² = k / reduced mass)."""
        pairs = (k > 0).nonzero().tolist()
        if not pairs:
            return
        omega, a, b = max((BondPrior._omega(float(k[i, j]), int(element[i]), int(element[j])), int(element[i]),
                           int(element[j])) for i, j in pairs)
        if omega * frame_fs >= 2.0:
            period = 2 * math.pi / omega
            cause = (f"; a period under {MIN_BOND_PERIOD_FS:g} fs is faster than any real bond's (H2: 8.0 fs), so "
                     "its constant was fitted from too little data: a longer reference trajectory fits it"
                     if period < MIN_BOND_PERIOD_FS else "")
            raise ValueError(f"the bond prior's stiffest bond ({chemical_symbols[a]}-{chemical_symbols[b]}, period "
                             f"{period:.1f} fs) makes its Verlet step unstable at {frame_fs:g} fs frames; "
                             f"it needs steps shorter than {2.0 / omega:.2f} fs (a smaller train.stride, or "
                             f"model.prior_substeps to take each frame in substeps){cause}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints before the fixed topology carried a covalent-radii buffer (now read from ASE), those
        # before the angle tables none (they load as none), those before the environments only element
        # tables (16-slot angle tables); the tables take the checkpoint's sizes
        state_dict.pop(prefix + "radii", None)
        for name in ("environments", "slot", "angle_k", "angle_c0", "dihedral_keys", "torsions"):
            state_dict.setdefault(prefix + name, getattr(self, name))
        for name in ("ub_k", "ub_r0"):  # from before the Urey-Bradley terms: none
            state_dict.setdefault(prefix + name, torch.zeros_like(state_dict[prefix + "angle_k"]))
        state_dict.setdefault(prefix + "wall", torch.zeros_like(self.wall))  # from before the walls: none
        state_dict.setdefault(prefix + "alpha", torch.zeros_like(state_dict[prefix + "k"]))  # before Morse bonds: harmonic
        for name in ("k", "r0", "alpha", "environments", "slot", "angle_k", "angle_c0", "ub_k", "ub_r0", "dihedral_keys", "torsions"):
            saved = state_dict[prefix + name]
            if saved.shape != self._buffers[name].shape:
                self.replace_buffer(name, torch.zeros(saved.shape, dtype=saved.dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.anharmonic = bool((self.alpha > 0).any())

    def atom_types(self, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N,) int64 each atom's row of the tables (class docstring) from its environment in ``graph``
        (perceived from graph.bonds when the graph carries none)."""
        if self.environments.numel() == 0:
            return z
        env = graph.environments if graph.environments is not None else atom_environments(graph.bonds, z)
        pos = torch.searchsorted(self.environments, env).clamp_max(self.environments.numel() - 1)
        return torch.where(self.environments[pos] == env, self.num_elements + pos, z)

    def forward(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) Å: the prior's Verlet displacement Δt² F(x) / m at positions x (N, 3) Å, over the bonds
        and angles of ``graph`` (perceived on x when the graph has none)."""
        if graph.bonds is None:
            graph = with_covalent_bonds(graph, x, z)
        step = self.frame_fs**2 * units.fs**2 * self.force(x, z, graph) / self.masses[z].unsqueeze(-1)  # (N, 3) Å
        return step.to(x.dtype)

    def force(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) float64 eV/Å: -∇U at positions x (N, 3) Å over ``graph.bonds``, ``graph.angles`` and
        ``graph.dihedrals``: one call of the compiled ``diffmd_fast::valence_force`` op when autograd is
        off (rollouts, training targets), else ``force_reference``. Raises (op) on indices outside the
        atoms."""
        if fused.HAS_EXTENSION and not (torch.is_grad_enabled() and x.requires_grad):
            types = self.atom_types(z, graph)
            angles = graph.angles if graph.angles is not None else graph.bonds.new_zeros(3, 0)
            dihedrals, torsion = self.torsion_terms(types, graph, x.shape[0])
            force = fused.valence_force(x, types, graph.bonds, angles, self.k, self.r0, self.slot, self.angle_k,
                                        self.angle_c0, self.ub_k, self.ub_r0, dihedrals, torsion)
            return self._with_morse(force + self.wall_force(x, z, graph), x, types, graph)
        return self.force_reference(x.to(torch.float64), z, graph)

    def torsion_types(self) -> list[tuple[int, int, int, int]]:
        """The environment-code quadruples (valence.topology.valence_types' reading) of the torsions in the tables."""
        n, z1 = self.k.shape[0], self.num_elements
        out = []
        for key in self.dihedral_keys.tolist():
            codes = tuple(int(self.environments[t - z1]) if t >= z1 else t for t in self.key_types(key, n))
            out.append(min(codes, codes[::-1]))
        return out

    def urey_bradley_springs(self) -> dict[tuple[int, int, int], tuple[float, float]]:
        """{(env_end, env_centre, env_end') (ends ascending, valence.topology.valence_types' reading):
        (k eV/Å², rest Å)} of the Urey-Bradley springs in the tables, with the Verlet-matched constants
        the rollouts use; an element slot reads as its atomic number."""
        z1, code = self.num_elements, {}  # slot -> environment code of its type
        for t, s in enumerate(self.slot.tolist()):
            if s >= 0:
                code.setdefault(s, t if t < z1 else int(self.environments[t - z1]))
        out = {}
        for a, c, b in (self.ub_k > 0).nonzero().tolist():
            ends = sorted((code[a], code[b]))
            out[(ends[0], code[c], ends[1])] = (float(self.ub_k[a, c, b]), float(self.ub_r0[a, c, b]))
        return dict(sorted(out.items()))

    def morse_bonds(self) -> dict[tuple[int, int], tuple[float, float, float]]:
        """{(env, env') ascending: (k eV/Å² Verlet-matched, r0 Å, α 1/Å)} of the bond types with Morse
        stretches (valence/anharmonic.py); an element type reads as its atomic number."""
        z1 = self.num_elements
        code = lambda t: t if t < z1 else int(self.environments[t - z1])
        out = {}
        for a, b in (self.alpha > 0).nonzero().tolist():
            if a <= b:
                out[tuple(sorted((code(a), code(b))))] = (float(self.k[a, b]), float(self.r0[a, b]), float(self.alpha[a, b]))
        return dict(sorted(out.items()))

    def torsion_terms(self, types: torch.Tensor, graph: Graph, num_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(dihedrals (4, D) int64, torsion (D, 4) float64): the dihedrals of ``graph`` (perceived from its
        bonds when it carries none) and each one's (k_B T / m eV, κ, n, φ0 rad), looked up by its type
        quadruple (``types`` (N,) from atom_types); all zero for a quadruple without data (no term)."""
        dih = graph.dihedrals if graph.dihedrals is not None else bond_dihedrals(graph.bonds, num_atoms)
        q = self.dihedral_keys.numel()
        if q == 0 or dih.shape[1] == 0:
            return dih[:, :0], torch.zeros(0, 4, dtype=torch.float64, device=types.device)
        i, j, k, l = dih  # (D,) each
        key = self.dihedral_key(types[i], types[j], types[k], types[l], num_types=self.k.shape[0])
        pos = torch.searchsorted(self.dihedral_keys, key).clamp_max(q - 1)
        known = (self.dihedral_keys[pos] == key).unsqueeze(-1)  # (D, 1)
        return dih, self.torsions[pos].double() * known

    def torsion_force(self, x: torch.Tensor, types: torch.Tensor, graph: Graph) -> torch.Tensor:
        """(N, 3) float64 eV/Å in PyTorch ops (the op's reference): -∇ Σ U_t(φ) (module docstring) over the
        dihedrals of ``graph`` whose type quadruple has data, x (N, 3) float64 Å, ``types`` (N,) from
        atom_types (torsion_gradients: φ and its gradients)."""
        force = torch.zeros_like(x)
        dih, torsion = self.torsion_terms(types, graph, x.shape[0])
        if dih.shape[1] == 0:
            return force
        phi, grads = torsion_gradients(x, dih)
        du = torsion_slope(phi, torsion).unsqueeze(-1)  # (D, 1) eV
        for atoms, grad in zip(dih, grads):
            force.index_add_(0, atoms, -du * grad)
        return force

    def force_reference(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """``force`` in PyTorch ops (differentiable; the op's reference), x (N, 3) float64 Å."""
        t = self.atom_types(z, graph)  # (N,)
        recv, send = graph.bonds  # (M,) each, both directions: each term's force on its receiver
        r = x[recv] - x[send]  # (M, 3) Å
        dist = r.norm(dim=-1).clamp_min(1e-6)  # (M,)
        tr, ts = t[recv], t[send]
        magnitude = -self.k[tr, ts] * (dist - self.r0[tr, ts]) / dist  # (M,) eV/Å² (F along r)
        force = torch.zeros_like(x).index_add_(0, recv, magnitude.unsqueeze(-1) * r)  # (N, 3) eV/Å
        if graph.angles is not None and graph.angles.shape[1] > 0 and self.angle_k.numel() > 0:
            force = force + self.angle_force(x, t, graph.angles)
        return self._with_morse(force + self.torsion_force(x, t, graph) + self.wall_force(x, z, graph), x, t, graph)

    def energy(self, x: torch.Tensor, z: torch.Tensor, graph: Graph) -> torch.Tensor:
        """() float64 eV: U(x) of the module docstring, summed over every term of ``graph`` (one molecule
        or a batch), x (N, 3) Å; force_reference is its -∇ (tested). The torsion wells' constant is
        chosen so that a term is 0 at its minimum's height when κ -> 0. For monitoring: the energy of
        prior-only (Verlet) dynamics is conserved up to the step's O(Δt²) fluctuation."""
        x = x.to(torch.float64)
        t = self.atom_types(z, graph)
        recv, send = graph.bonds  # both directions: each bond twice
        dist = (x[recv] - x[send]).norm(dim=-1)
        u = 0.25 * (self.k[t[recv], t[send]] * (dist - self.r0[t[recv], t[send]]) ** 2).sum()
        if self.anharmonic:
            u = u + morse_correction_energy(x, graph.bonds, t, self.k, self.r0, self.alpha)
        if graph.angles is not None and graph.angles.shape[1] > 0 and self.angle_k.numel() > 0:
            i, j, k = graph.angles
            si, sj, sk = self.slot[t[i]], self.slot[t[j]], self.slot[t[k]]
            known = (si >= 0) & (sj >= 0) & (sk >= 0)  # slot -1 indexes the last entry: masked
            a, b = x[i] - x[j], x[k] - x[j]
            cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)
            u = u + 0.5 * (self.angle_k[si, sj, sk] * known * (cos - self.angle_c0[si, sj, sk]) ** 2).sum()
            u = u + 0.5 * (self.ub_k[si, sj, sk] * known * ((x[i] - x[k]).norm(dim=-1) - self.ub_r0[si, sj, sk]) ** 2).sum()
        dih, torsion = self.torsion_terms(t, graph, x.shape[0])
        if dih.shape[1] > 0:
            kt, kappa, n, phi0 = torsion.unbind(-1)
            phi = torsion_gradients(x, dih)[0]  # (D,) rad
            wells = torch.stack([phi - phi0, phi + phi0], -1)  # (D, 2)
            u = u - (kt * (torch.logsumexp(kappa.unsqueeze(-1) * torch.cos(n.unsqueeze(-1) * wells), -1)
                           - math.log(2.0) - kappa)).sum()
        if graph.nonbonded is not None and graph.nonbonded.shape[1] > 0:
            i, j = graph.nonbonded
            over = (self.wall[z[i], z[j]] - (x[i] - x[j]).norm(dim=-1)).clamp_min(0.0)
            u = u + 0.5 * WALL_K * (over * over).sum()
        return u

    def angle_force(self, x: torch.Tensor, t: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """(N, 3) float64 eV/Å in PyTorch ops: -∇ of the cosine-harmonic angles ``angles`` (3, A) and their
        Urey-Bradley springs, x (N, 3) float64 Å, ``t`` (N,) from atom_types."""
        i, j, k = angles  # (A,) each
        si, sj, sk = self.slot[t[i]], self.slot[t[j]], self.slot[t[k]]
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
        d = x[i] - x[k]  # (A, 3) Å, the Urey-Bradley spring's
        r = d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        f_ub = -(self.ub_k[si, sj, sk] * known).unsqueeze(-1) * (r - self.ub_r0[si, sj, sk].unsqueeze(-1)) / r * d
        f_i, f_k = f_i + f_ub, f_k - f_ub
        return torch.zeros_like(x).index_add_(0, i, f_i).index_add_(0, k, f_k).index_add_(0, j, -(f_i + f_k))
