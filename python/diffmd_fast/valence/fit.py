"""The valence force field fitted to data: Boltzmann inversion of every covalent coordinate.

Each trajectory's topology is its covalent bonds at the median over its frames (covalent radii x 1.2,
data.elements.covalent_pairs, as everywhere);
over all its frames every bond length, bond angle and proper dihedral is measured. A harmonic
coordinate's constant is k = k_B T / var (equipartition, T the trajectory's mean kinetic
temperature) and its rest value the mean; terms of one type (element pair or triple, or pair,
triple or quadruple of atom environments, topology.atom_environments) are pooled. A torsion's
periodic potential is the likelihood-best of the n-fold forms (_torsion_fit). The tables are what
prior.BondPrior.set_tables takes (valence_statistics); force_matching.py refits bonds and angles
to the reference forces.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import torch
from ase import units
from scipy.special import i0e

from ..data.elements import directed_bonds
from ..evaluation.longrun import degrees_of_freedom, implied_velocities, is_linear, kinetic_temperature, masses
from ..evaluation.metrics import bond_lengths, bonds_from_reference
from .topology import ENV_BASE, ENV_NEIGHBOURS, atom_environments, bond_angles, bond_dihedrals

MAX_ROTATION_FACTOR = 24 / 21  # (3N - 3)/(3N - 6) of ethanol, N = 9: the largest the fit temperature keeps (_fit_temperature)


@dataclass(frozen=True)
class _Valence:
    """One trajectory's valence terms over all its frames (its median topology, data.elements.covalent_pairs)."""
    z: np.ndarray  # (n,) atomic numbers
    env: np.ndarray  # (n,) atom environment codes (topology.atom_environments)
    kT: float  # eV, k_B × the trajectory's mean kinetic temperature
    bonds: np.ndarray  # (B, 2) atom pairs
    lengths: np.ndarray  # (T, B) Å
    angles: np.ndarray  # (A, 3) end, centre, end
    cos: np.ndarray  # (T, A) cos θ
    ends: np.ndarray  # (T, A) Å, the distance between each angle's ends (its Urey-Bradley spring)
    dihedrals: np.ndarray  # (D, 4) i, j, k, l
    phi: np.ndarray  # (T, D) rad, IUPAC dihedral angle
    contacts: dict  # {(z_a, z_b) with z_a <= z_b: closest approach (Å) of two such atoms > 2 bonds apart}



def _fit_temperature(traj) -> float:
    """K: the temperature of the Boltzmann inversion, the mean kinetic temperature of the trajectory's
    implied velocities with the centre of mass removed over 3N − 6 degrees of freedom (rigid rotation
    counted), i.e. the thermal temperature times (3N − 3)/(3N − 6). The internal temperature
    (evaluation.longrun.temperature_series) gives constants that much softer; at 2 fs frames those put
    ethanol's C-H stretch where the prior's Verlet step no longer conserves its energy (5.6 % drift in
    1.5 ps against 0.04 %), so the fit keeps this definition for molecules of 9 atoms and more. Below
    that the rotation's share of the counted energy grows (half of it for 3 atoms, two thirds for 2, where
    the factor reaches 2 and 3 and makes a bond several times too stiff), so the factor is held at
    ethanol's, MAX_ROTATION_FACTOR."""
    x = np.asarray(traj.positions, dtype=np.float64)
    n = x.shape[1]
    m = masses(traj.numbers, n)
    linear = is_linear(x, m)
    counted = kinetic_temperature(implied_velocities(x, traj.dt_fs), m, linear).mean()  # K
    factor = (3 * n - 3) / degrees_of_freedom(n, linear)
    return float(counted if factor <= MAX_ROTATION_FACTOR else counted * MAX_ROTATION_FACTOR / factor)


def _valence_terms(trajs: Sequence) -> list[_Valence]:
    """The bonds (covalent radii × 1.2 at the median over the frames, as everywhere) and bond angles of each
    trajectory of 3 or more frames that has bonds, measured on all its frames."""
    out = []
    for traj in trajs:
        z = np.asarray(traj.numbers)
        pairs = bonds_from_reference(traj.positions, z) if traj.num_frames >= 3 else []
        if not len(pairs):
            continue
        directed = directed_bonds(pairs)  # (2, 2B)
        env = atom_environments(directed, torch.as_tensor(z)).numpy()
        i, j, k = bond_angles(directed).numpy()  # (A,) each
        u = traj.positions[:, i] - traj.positions[:, j]  # (T, A, 3) Å
        w = traj.positions[:, k] - traj.positions[:, j]
        cos = (u * w).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1))  # (T, A)
        ends = np.linalg.norm(u - w, axis=-1)  # (T, A) Å
        kT = units.kB * _fit_temperature(traj)  # eV
        dih = bond_dihedrals(directed, len(z)).numpy()  # (4, D)
        b1, b2, b3 = (traj.positions[:, dih[a + 1]] - traj.positions[:, dih[a]] for a in range(3))  # (T, D, 3) Å
        n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
        phi = np.arctan2(np.linalg.norm(b2, axis=-1) * (b1 * n2).sum(-1), (n1 * n2).sum(-1))  # (T, D)
        out.append(_Valence(z, env, kT, pairs, bond_lengths(traj.positions, pairs), np.stack([i, j, k], 1), cos,
                            ends, dih.T, phi, _closest_contacts(traj.positions, z, pairs, np.stack([i, k], 1))))
    return out


def _closest_contacts(x: np.ndarray, z: np.ndarray, bonds: np.ndarray, ends: np.ndarray) -> dict:
    """{(z_a, z_b): closest distance (Å) over all frames x (T, n, 3) of two atoms of those elements that
    are neither bonded (``bonds`` (B, 2)) nor the ends of an angle (``ends`` (A, 2))}."""
    n = len(z)
    i, j = np.triu_indices(n, 1)
    near = {tuple(sorted(p)) for p in np.concatenate([bonds, ends]).tolist()}
    far = np.array([(a, b) not in near for a, b in zip(i.tolist(), j.tolist())], dtype=bool)
    i, j = i[far], j[far]
    if not len(i):
        return {}
    closest = np.full(len(i), np.inf)
    for lo in range(0, x.shape[0], 1000):  # (1000, P) distances at a time
        closest = np.minimum(closest, np.linalg.norm(x[lo:lo + 1000, i] - x[lo:lo + 1000, j], axis=-1).min(0))
    out: dict = {}
    for a, b, d in zip(z[i].tolist(), z[j].tolist(), closest.tolist()):
        key = (min(a, b), max(a, b))
        out[key] = min(out.get(key, np.inf), d)
    return out


def _pool(samples) -> dict[tuple[int, ...], tuple[float, float]]:
    """{key: (k_B T / var, mean)} from (key, k_B T, var, mean) samples: equipartition of a classical
    harmonic term, the terms of one key pooled (mean of their variances, temperatures and means)."""
    sums: dict[tuple[int, ...], np.ndarray] = {}
    for key, kT, var, mean in samples:
        sums[key] = sums.get(key, np.zeros(4)) + (kT, var, mean, 1.0)
    return {key: (kt / var, mean / n) for key, (kt, var, mean, n) in sums.items() if var > 0}


def _bond_samples(terms: list[_Valence], label):
    for v in terms:
        lab = label(v)
        for (i, j), mean, var in zip(v.bonds, v.lengths.mean(axis=0), v.lengths.var(axis=0)):
            yield tuple(sorted((int(lab[i]), int(lab[j])))), v.kT, var, mean


def _angle_samples(terms: list[_Valence], label, measure=lambda v: v.cos):
    """Samples of each angle's ``measure`` (T, A): its cos θ, or the distance between its ends."""
    for v in terms:
        lab, values = label(v), measure(v)
        for (i, j, k), mean, var in zip(v.angles, values.mean(axis=0), values.var(axis=0)):
            a, b = sorted((int(lab[i]), int(lab[k])))
            yield (a, int(lab[j]), b), v.kT, var, mean


def _urey_bradley_rest(terms: list[_Valence]) -> dict[tuple[int, int, int], tuple[float, float]]:
    """{(env_end, env_centre, env_end'): (0.0, r^UB Å)}: each environment triple's mean distance between its
    angles' ends, where its Urey-Bradley spring rests; the constants come from force matching only
    (force_matching.force_matched), 0 (no term) until then."""
    return {key: (0.0, rest) for key, (_, rest) in _pool(_angle_samples(terms, lambda v: v.env, lambda v: v.ends)).items()}


def _von_mises_kappa(r: float) -> float:
    """Concentration κ of the von Mises distribution whose mean resultant length is r (maximum
    likelihood, the approximation of Best & Fisher 1981; Fisher 1993, "Statistical analysis of
    circular data", Eq. 4.40)."""
    if r < 0.53:
        return 2 * r + r**3 + 5 * r**5 / 6
    if r < 0.85:
        return -0.4 + 1.39 * r + 0.43 / (1 - r)
    return 1 / max(r**3 - 4 * r**2 + 3 * r, 1e-12)


MULTIPLICITIES = (1, 2, 3)  # torsion periodicities tried: one minimum, planar cis/trans, a rotor's three


def _torsion_fit(phi: np.ndarray) -> tuple[float, int, float, float]:
    """(κ, n, φ0, mean log-likelihood): the mirror-symmetric torsion distribution
    p(φ) ∝ exp(κ cos n(φ - φ0)) + exp(κ cos n(φ + φ0)) that best fits the dihedral angles ``phi`` (rad),
    by likelihood over n in MULTIPLICITIES and two shapes: one well at nφ0 = 0 or π (a planar or
    staggered torsion, spread both ways: κ from the mean of cos n(φ - φ0)), or a pair of wells at
    ±φ0 (a skewed torsion and its mirror image: φ0 and κ from n|φ|). Fitting the pair to data centred
    on 0 puts two wells a standard deviation either side of it, a barrier where the data peak, so
    both shapes are scored and the better kept."""
    best = None
    for n in MULTIPLICITIES:
        single = np.exp(1j * n * phi).mean().real  # mean cos nφ: > 0 about 0, < 0 about π/n
        folded = np.exp(1j * n * np.abs(phi)).mean()
        candidates = [(0.0 if single >= 0 else np.pi / n, abs(single)), (float(np.angle(folded)) / n, abs(folded))]
        for phi0, r in candidates:
            kappa = _von_mises_kappa(float(r))
            wells = np.logaddexp(kappa * np.cos(n * (phi - phi0)), kappa * np.cos(n * (phi + phi0))) - np.log(2.0)
            loglik = float(wells.mean()) - np.log(2 * np.pi) - (np.log(i0e(kappa)) + kappa)  # log I0 via i0e
            if best is None or loglik > best[3] + 1e-9:
                best = (kappa, n, phi0, loglik)
    return best


def _torsions(terms: list[_Valence]) -> dict[tuple[int, int, int, int], tuple[float, float, int, float]]:
    """{(env_i, env_j, env_k, env_l): (k_B T / m eV, κ, n, φ0 rad)}: the torsion potential of BondPrior (a
    mirror-symmetric pair of von Mises wells of nφ at ±φ0) fitted to each environment quadruple's
    dihedral angles over all frames and instances (read either way: the smaller tuple) by
    _torsion_fit, T the trajectories' mean kinetic temperature shared among the dihedrals about the
    same bond (_torsions_about)."""
    angles: dict[tuple[int, ...], list[np.ndarray]] = {}
    kts: dict[tuple[int, ...], list[float]] = {}  # each instance's k_B T (every instance has all frames)
    for v in terms:
        for q, phi in zip(v.dihedrals, v.phi.T):
            forward = tuple(int(v.env[a]) for a in q)
            key = min(forward, forward[::-1])
            angles.setdefault(key, []).append(phi)
            kts.setdefault(key, []).append(v.kT)
    out = {}
    for key, phis in angles.items():
        kappa, n, phi0, _ = _torsion_fit(np.concatenate(phis))
        kt = float(np.average(kts[key], weights=[len(phi) for phi in phis]))  # per frame, as the fit
        out[key] = (kt / _torsions_about(key), kappa, n, phi0)
    return out


def _torsions_about(key: tuple[int, ...]) -> int:
    """How many dihedrals share the central bond j-k of the quadruple ``key``: (degree j - 1)(degree k - 1),
    the degrees read from the environment codes (topology.atom_environments). Every one of them
    measures the same rotation about j-k, so each fitted distribution is that rotation's, and summed
    over all of them the rotation's free energy would count that many times (ethane's 9 H-C-C-H
    terms, each fitted to the 3-fold rotor: 9 x its barrier). Each term takes its share: k_B T / m
    in the energy (DREIDING divides a torsion barrier the same way, Mayo et al. 1990)."""
    degree = lambda env: sum(1 for k in range(1, ENV_NEIGHBOURS + 1) if (env // ENV_BASE**k) % ENV_BASE)  # noqa: E731
    return max((degree(key[1]) - 1) * (degree(key[2]) - 1), 1)


def valence_statistics(trajs: Sequence, max_z: int, torsions: bool = True) -> dict:
    """Every table BondPrior.set_tables takes, from one pass over the data: {"k", "r0"}
    (bond_statistics), "angles" (angle_statistics), "typed_bonds", "typed_angles", "typed_dihedrals"
    (environment_statistics), "typed_urey_bradley" (_urey_bradley_rest: rest lengths, constants 0),
    "contacts" (the closest approach per element pair of atoms more than two bonds apart, where the
    prior's excluded-volume walls go)."""
    terms = _valence_terms(trajs)
    k, r0 = _element_bonds(terms, max_z)
    typed_bonds, typed_angles, typed_dihedrals = _environment_tables(terms, torsions)
    contacts: dict = {}
    for v in terms:
        for key, d in v.contacts.items():
            contacts[key] = min(contacts.get(key, np.inf), d)
    return dict(k=k, r0=r0, angles=_pool(_angle_samples(terms, lambda v: v.z)), typed_bonds=typed_bonds,
                typed_angles=typed_angles, typed_dihedrals=typed_dihedrals, contacts=contacts,
                typed_urey_bradley=_urey_bradley_rest(terms))


def _element_bonds(terms: list[_Valence], max_z: int) -> tuple[torch.Tensor, torch.Tensor]:
    k, r0 = (torch.zeros(max_z + 1, max_z + 1, dtype=torch.float64) for _ in range(2))
    for (a, b), (kk, rr) in _pool(_bond_samples(terms, lambda v: v.z)).items():
        k[a, b] = k[b, a] = kk
        r0[a, b] = r0[b, a] = rr
    return k, r0


def _environment_tables(terms: list[_Valence], torsions: bool) -> tuple[dict, dict, dict]:
    return (_pool(_bond_samples(terms, lambda v: v.env)), _pool(_angle_samples(terms, lambda v: v.env)),
            _torsions(terms) if torsions else {})


def bond_statistics(trajs: Sequence, max_z: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, r0), each (max_z + 1, max_z + 1) float64 and symmetric, per element pair: the harmonic force
    constant k = k_B T / var(r) (eV/Å², equipartition of a classical harmonic bond) and the mean
    length r0 (Å) of every covalent bond of that pair (perceived at each trajectory's median:
    covalent radii x 1.2), over all frames, T each trajectory's mean kinetic temperature; bonds of a
    pair pooled (mean of their variances and mean lengths). Pairs never bonded in the data: 0."""
    return _element_bonds(_valence_terms(trajs), max_z)


def angle_statistics(trajs: Sequence) -> dict[tuple[int, int, int], tuple[float, float]]:
    """{(z_end, z_centre, z_end'): (K eV, cos θ0)}, z_end <= z_end': the harmonic constant of the cosine
    of every bond angle (K = k_B T / var(cos θ), equipartition) and its mean, per element triple, over
    all frames, the angles those of the covalent bonds perceived at each trajectory's median
    (as bond_statistics), T each trajectory's mean kinetic temperature; angles of a triple pooled."""
    return _pool(_angle_samples(_valence_terms(trajs), lambda v: v.z))


def environment_statistics(trajs: Sequence, torsions: bool = True) -> tuple[dict, dict, dict]:
    """(bonds {(env, env'): (k eV/Å², r0 Å)}, angles {(env_end, env_centre, env_end'): (K eV, cos θ0)},
    torsions {(env_i, env_j, env_k, env_l): (k_B T / m eV, κ, n, φ0 rad)}; {} when ``torsions`` is off):
    bond_statistics and angle_statistics per pair and triple of atom environments
    (topology.atom_environments) instead of elements, and the torsions (_torsions); the tables
    BondPrior.set_tables prefers."""
    return _environment_tables(_valence_terms(trajs), torsions)
