"""Force matching of the valence prior's bond, angle and Urey-Bradley force constants to the reference forces.

Boltzmann inversion (valence.fit: k = k_B T / var(r)) reads each coordinate's constant
from its own fluctuation, which is the curvature of that coordinate's potential of mean force: a
bond coupled to angles and to its neighbours fluctuates differently from an isolated spring, so
the fitted bands sit away from the reference's. The data carry the engine's forces (GFN2-xTB, eV/Å),
and with the rest values held at the data's mean geometry (Boltzmann inversion's r0, cos θ0) the
bonded forces are linear in their force constants:
    U_bond  = ½ k (r - r0)²       -> F = k · (-(r - r0) ∇r),
    U_angle = ½ K (cos θ - c0)²   -> F = K · (-(cos θ - c0) ∇cos θ),
    U_UB    = ½ k (r13 - r13_0)²  -> F = k · (-(r13 - r13_0) ∇r13)   (the spring between an angle's ends),
so the constants of every bond type (environment pair) and angle type (environment triple) that
best reproduce the reference forces on sampled frames, after the prior's torsion forces are taken
off, are one linear least-squares problem (force matching: Ercolessi & Adams 1994; the multiscale
coarse-graining of Izvekov & Voth 2005, VOTCA's csg_fmatch; the bonded priors of CGnet).
The rest values stay where the data's distributions sit: fitted freely, they absorb the non-bonded
forces the prior has no term for and move the bond-length distribution (h(r)) off the reference's,
while what the forces measure well, and Boltzmann inversion misreads, is the curvature.
With ``anharmonic`` each bond's force gains the next term of its Morse expansion about the mean
length on its stretched side, F = -k dr + c + a dr² (still linear in the unknowns), read back as a Morse bond whose minimum
sits where that force vanishes (valence/anharmonic.py): the residual that a harmonic fit leaves along
a bond is mostly that parabola.
With ``torsions`` the torsions' amplitudes join the fit: each type's well shape (κ, n, φ0, from its
circular distribution, valence.fit) stays and its amplitude becomes one more linear unknown,
    U_t = A · u_t(φ)   -> F = A · (-u_t'(φ) ∇φ).
Boltzmann inversion gives every dihedral about one bond k_B T / m (DREIDING's rule), right for the
rotation about that bond, where all m move together, but too soft for the motions that move only some
of them: the out-of-plane wags of a planar group. On 4-chloroanisole the prior's harmonic modes below
1,000 cm⁻¹ sat 26 % below GFN2-xTB's at its minimum, 16 % with the amplitudes matched.
A type whose fit is unphysical (k, K or A <= 0) keeps its Boltzmann-inverted constant; a Urey-Bradley
spring fitted to k <= 0 is left out (Boltzmann inversion cannot tell it from its angle). Forces whose
fit disagrees with the Boltzmann constants by more than UNIT_MISMATCH in the median over bond types
(forces in other units than eV/Å) leave every constant Boltzmann-inverted, with a warning.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from .anharmonic import ALPHA_MAX
from .prior import BondPrior
from .topology import bond_dihedrals, trajectory_graph
from .torsion import torsion_gradients, torsion_slope

FRAMES = 400  # frames sampled per trajectory: ~10^4 force components per parameter for a 20-atom molecule
# Force matching and Boltzmann inversion measure one curvature two ways; on GFN2-xTB data the bond
# constants agree within ~2x (ethanol C-H: 27 against 43 eV/Å²). A median ratio beyond this factor
# means forces in other units than eV/Å (kcal/mol/Å: 23x; Hartree/Bohr: 51x), not chemistry.
UNIT_MISMATCH = 5.0
MORSE_COLUMNS = 3  # per bond type with anharmonic: a rest-length shift, the stretched side's dr² and dr³ terms


def _design(x: torch.Tensor, graph, env: torch.Tensor, bonds: dict, angles: dict, bond_keys: dict,
            angle_keys: dict, springs: dict | None = None, spring_keys: dict | None = None,
            anharmonic: bool = False, dihedrals: dict | None = None, dihedral_keys: dict | None = None) -> torch.Tensor:
    """(T, N, 3, P) float64: the force on every atom of frames x (T, N, 3) Å per unit force constant of
    each type: column b of bond type b (eV/Å² -> eV/Å), then column a after them of angle type a
    (eV -> eV/Å), then the Urey-Bradley springs' of ``spring_keys`` (eV/Å² -> eV/Å), each at the rest
    value ``bonds``/``angles``/``springs`` give it ({key: (constant, rest)}); with ``anharmonic`` then
    MORSE_COLUMNS per bond type, a constant force along the bond (eV/Å per eV/Å: a shift of its rest
    length) and, where r > r0, one growing as (r - r0)² (eV/Å³ -> eV/Å: the Morse cubic term,
    valence/anharmonic.py) and one as (r - r0)³ (the quartic term, which on one side would otherwise
    bias the cubic one low by ~20 %); then one per torsion type of ``dihedral_keys`` (the force of its
    wells ``dihedrals`` {key: (amplitude, κ, n, φ0)} per unit amplitude, eV -> eV/Å)."""
    t, n = x.shape[:2]
    springs, spring_keys = springs or {}, spring_keys or {}
    dihedrals, dihedral_keys = dihedrals or {}, dihedral_keys or {}
    base = len(bond_keys) + len(angle_keys) + len(spring_keys)
    morse_base = base
    base += MORSE_COLUMNS * len(bond_keys) if anharmonic else 0
    out = torch.zeros(t, n, 3, base + len(dihedral_keys), dtype=torch.float64)
    view = out.permute(1, 3, 0, 2)  # (N, P, T, 3): one (atom, column) pair per index

    def add(atoms: torch.Tensor, col: torch.Tensor, part: torch.Tensor) -> None:  # part (T, K, 3)
        view.index_put_((atoms, col), part.permute(1, 0, 2), accumulate=True)

    recv, send = graph.bonds  # both directions: each bond's force on its receiver
    d = x[:, recv] - x[:, send]  # (T, M, 3) Å
    r = d.norm(dim=-1, keepdim=True)
    key = [tuple(sorted((int(env[a]), int(env[b])))) for a, b in zip(recv.tolist(), send.tolist())]
    r0 = torch.tensor([bonds[q][1] for q in key], dtype=torch.float64).unsqueeze(-1)  # (M, 1) Å
    col = torch.tensor([bond_keys[q] for q in key])
    add(recv, col, -(r - r0) * d / r)
    if anharmonic:
        stretched = (r - r0).clamp_min(0.0)  # (T, M, 1) Å: the Morse side
        add(recv, morse_base + MORSE_COLUMNS * col, d / r)
        add(recv, morse_base + MORSE_COLUMNS * col + 1, stretched ** 2 * d / r)
        add(recv, morse_base + MORSE_COLUMNS * col + 2, stretched ** 3 * d / r)
    if graph.angles.shape[1]:
        i, j, k = graph.angles
        u, w = x[:, i] - x[:, j], x[:, k] - x[:, j]  # (T, A, 3)
        lu, lw = u.norm(dim=-1, keepdim=True), w.norm(dim=-1, keepdim=True)
        uh, wh = u / lu, w / lw
        cos = (uh * wh).sum(-1, keepdim=True)
        gi, gk = (wh - cos * uh) / lu, (uh - cos * wh) / lw  # ∇_i cos, ∇_k cos; ∇_j = -(gi + gk)
        key = [(min(int(env[a]), int(env[c])), int(env[b]), max(int(env[a]), int(env[c])))
               for a, b, c in zip(i.tolist(), j.tolist(), k.tolist())]
        c0 = torch.tensor([angles[q][1] for q in key], dtype=torch.float64).unsqueeze(-1)  # (A, 1)
        col = torch.tensor([len(bond_keys) + angle_keys[q] for q in key])
        for atoms, g in ((i, gi), (k, gk), (j, -(gi + gk))):
            add(atoms, col, -(cos - c0) * g)
        has = torch.tensor([q in spring_keys for q in key])  # (A,)
        if bool(has.any()):
            sel = [q for q in key if q in spring_keys]
            d = x[:, i[has]] - x[:, k[has]]  # (T, A', 3) Å
            r = d.norm(dim=-1, keepdim=True)
            r13 = torch.tensor([springs[q][1] for q in sel], dtype=torch.float64).unsqueeze(-1)  # (A', 1) Å
            col = torch.tensor([len(bond_keys) + len(angle_keys) + spring_keys[q] for q in sel])
            add(i[has], col, -(r - r13) * d / r)
            add(k[has], col, (r - r13) * d / r)
    if dihedral_keys:
        dih = graph.dihedrals if graph.dihedrals is not None else bond_dihedrals(graph.bonds, n)
        key = [min(q, q[::-1]) for q in (tuple(int(env[a]) for a in quad) for quad in dih.T.tolist())]
        has = torch.tensor([q in dihedral_keys for q in key], dtype=torch.bool)  # (D,): types without data get no term
        if bool(has.any()):
            sel = [q for q in key if q in dihedral_keys]
            shape = torch.tensor([(1.0, *dihedrals[q][1:]) for q in sel], dtype=torch.float64)  # (D', 4) unit amplitude
            phi, grads = torsion_gradients(x, dih[:, has])  # (T, D'), 4 x (T, D', 3)
            slope = torsion_slope(phi, shape).unsqueeze(-1)  # (T, D', 1) eV per unit amplitude
            col = torch.tensor([base + dihedral_keys[q] for q in sel])
            for atoms, grad in zip(dih[:, has], grads):
                add(atoms, col, -slope * grad)
    return out


def force_matched(trajs: Sequence, prior: BondPrior, tables: dict, frames: int = FRAMES,
                  anharmonic: bool = False, torsions: bool = False) -> tuple[dict, str]:
    """(tables, a one-line summary): ``tables`` (valence.fit.valence_statistics, what BondPrior.set_tables
    takes) with the force constants of "typed_bonds", "typed_angles" and "typed_urey_bradley" ({key:
    (force constant, rest value)}) refitted by force matching (module docstring) on up to ``frames``
    evenly spaced frames of each trajectory that has forces, their rest values kept. With
    ``anharmonic`` each bond type's force also gets a constant and, stretched, a (r - r0)² term (the
    Morse expansion about the data's mean length, -k dr + c + a dr²), read back as a Morse bond
    (valence/anharmonic.py): "typed_bonds" values (k, r_e, α), α = 2a / 3k (0 where the fit gives
    a <= 0), the rest length moved to where the fitted force vanishes. With ``torsions`` the amplitudes
    of "typed_dihedrals" are fitted with them ({key: (amplitude eV, κ, n, φ0)}, the wells' shapes
    kept); without, ``prior`` holds the Boltzmann-inverted tables (set_tables), whose torsion forces are
    taken off the reference forces first. Trajectories without forces leave the tables as they are."""
    typed_bonds, typed_angles = tables["typed_bonds"], tables["typed_angles"]
    springs = tables.get("typed_urey_bradley") or {}
    with_forces = [t for t in trajs if t.forces is not None and t.num_frames >= 3]
    if not with_forces:
        return tables, "no reference forces: Boltzmann-inverted constants kept"
    bond_keys = {key: n for n, key in enumerate(sorted(typed_bonds))}
    angle_keys = {key: n for n, key in enumerate(sorted(typed_angles))}
    spring_keys = {key: n for n, key in enumerate(sorted(k for k in springs if k in angle_keys))}
    dihedrals = {min(key, key[::-1]): value for key, value in (tables.get("typed_dihedrals") or {}).items()} if torsions else {}
    dihedral_keys = {key: n for n, key in enumerate(sorted(dihedrals))}
    harmonic_size = len(bond_keys) + len(angle_keys) + len(spring_keys)
    torsion_base = harmonic_size + (MORSE_COLUMNS * len(bond_keys) if anharmonic else 0)
    size = torsion_base + len(dihedral_keys)
    # each trajectory's graph (its bonds at the median, as the statistics' tables) and its sampled frames with
    # the prior's torsion forces taken off the reference forces, once for every solve: [(graph, [(x, target)])]
    samples = []
    for traj in with_forces:
        graph = trajectory_graph(traj)
        env = graph.environments
        if graph.bonds.shape[1] == 0:
            continue  # no covalent bond to fit (atoms of a molecule apart): nothing here constrains a constant
        if not all(tuple(sorted((int(env[a]), int(env[b])))) in bond_keys for a, b in graph.bonds.T.tolist()):
            continue  # a molecule whose bonds the environment tables do not cover (too few frames)
        pick = np.unique(np.linspace(0, traj.num_frames - 1, min(frames, traj.num_frames)).astype(int))
        types = prior.atom_types(torch.as_tensor(np.asarray(traj.numbers, dtype=np.int64)), graph)
        chunks = []
        for chunk in np.array_split(pick, max(1, len(pick) // 50)):  # bounded memory: (50, N, 3, P) at a time
            x = torch.as_tensor(traj.positions[chunk])  # (T, N, 3) Å
            target = torch.as_tensor(traj.forces[chunk], dtype=torch.float64)
            if not dihedral_keys:  # the torsions stay Boltzmann-inverted: their forces are not the fit's
                target = target - torch.stack([prior.torsion_force(xt, types, graph) for xt in x])  # (T, N, 3) eV/Å
            chunks.append((x, target))
        samples.append((graph, chunks))

    def solve(rest_bonds: dict) -> torch.Tensor | None:
        """The least-squares parameters (size,) with the bonds' rest lengths of ``rest_bonds``; None when
        no trajectory covers its bond types."""
        normal, rhs = 0.0, 0.0
        for graph, chunks in samples:
            for x, target in chunks:
                a = _design(x, graph, graph.environments, rest_bonds, typed_angles, bond_keys, angle_keys, springs,
                            spring_keys, anharmonic, dihedrals, dihedral_keys).reshape(-1, size)
                normal, rhs = normal + a.T @ a, rhs + a.T @ target.reshape(-1)
        if isinstance(normal, float):
            return None
        scale = normal.diagonal().clamp_min(1e-30).sqrt()  # column scaling: bond and angle constants differ by orders
        return torch.linalg.lstsq(normal / scale[:, None] / scale[None, :], rhs / scale).solution / scale

    p = solve(typed_bonds)
    if p is None:
        return tables, "no trajectory with forces covers its bond types: Boltzmann constants kept"
    rest = dict(typed_bonds)
    if anharmonic:  # the stretched side begins at the Morse minimum, not at the mean length: fit again from there
        for key, n in bond_keys.items():
            k, r0 = typed_bonds[key][:2]
            if float(p[n]) > 0:
                rest[key] = (k, float(r0) + float(p[harmonic_size + MORSE_COLUMNS * n]) / float(p[n]))
        p = solve(rest)
    bonds, angles, kept = dict(typed_bonds), dict(typed_angles), []
    for table, keys, base in ((bonds, bond_keys, 0), (angles, angle_keys, len(bond_keys))):
        for key, n in keys.items():
            if float(p[base + n]) > 0:
                table[key] = (float(p[base + n]), table[key][1])
            else:
                kept.append(key)
    morse = 0
    if anharmonic:
        for key, n in bond_keys.items():
            if key in kept:
                continue
            k, r0 = bonds[key][0], rest[key][1]
            c, a = float(p[harmonic_size + MORSE_COLUMNS * n]), float(p[harmonic_size + MORSE_COLUMNS * n + 1])  # eV/Å, eV/Å³
            shift = c / k  # Å: -k dr + c + a dr² vanishes near dr = c / k, where the Morse minimum goes
            alpha = min(max(2.0 * a / (3.0 * k), 0.0), ALPHA_MAX)
            bonds[key] = (k - 2.0 * a * shift, float(r0) + shift, alpha)  # the curvature at the shifted minimum
            morse += alpha > 0
    base = len(bond_keys) + len(angle_keys)
    fitted_springs = {key: (max(float(p[base + n]), 0.0), springs[key][1]) for key, n in spring_keys.items()}
    # a torsion type whose fitted amplitude is not positive keeps its Boltzmann-inverted one (a free rotor's
    # wells are flat: its column is ~0 and its amplitude undetermined)
    fitted_torsions = {key: (float(p[torsion_base + n]), *dihedrals[key][1:]) for key, n in dihedral_keys.items()
                       if float(p[torsion_base + n]) > 0}
    ratio = float(np.median([bonds[key][0] / typed_bonds[key][0] for key in bond_keys if key not in kept
                             and typed_bonds[key][0] > 0] or [1.0]))
    if not 1 / UNIT_MISMATCH <= ratio <= UNIT_MISMATCH:
        summary = (f"the reference forces give bond constants {ratio:.3g}x the data's Boltzmann-inverted ones (median "
                   "over bond types): forces in other units than eV/Å, or frames another time apart than the stated one "
                   "(the inversion's temperature comes from their differences)? Boltzmann-inverted constants kept")
        warnings.warn(f"valence prior: {summary}", stacklevel=2)
        return tables, summary
    fitted = len(bond_keys) + len(angle_keys) - len(kept)
    held = sum(1 for k, _ in fitted_springs.values() if k > 0)
    out = {**tables, "typed_bonds": bonds, "typed_angles": angles, "typed_urey_bradley": {**springs, **fitted_springs}}
    if dihedral_keys:
        out["typed_dihedrals"] = {**dihedrals, **fitted_torsions}
    return (out, f"force-matched {fitted} bond and angle types"
            + (f", {len(fitted_torsions)} of {len(dihedral_keys)} torsion types" if dihedral_keys else "")
            + f" and {held} Urey-Bradley springs"
            + (f", {morse} bond types Morse" if anharmonic else "")
            + (f"; {len(kept)} kept Boltzmann-inverted (unphysical fit)" if kept else ""))
