"""Force matching of the valence prior: on frames whose forces come from a known valence force field
(bonds, angles, Urey-Bradley springs, torsions) it recovers that field's force constants and torsion
amplitudes exactly and keeps the data's rest values and well shapes; on the bundled GFN2-xTB data it
fits every type."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.valence.prior import BondPrior
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence.topology import with_covalent_bonds
from diffmd_fast.valence.fit import valence_statistics
from diffmd_fast.valence.force_matching import force_matched


def _prior(stats: dict, bonds: dict, angles: dict, springs: dict | None = None, frame_fs: float = 0.5,
           dihedrals: dict | None = None) -> BondPrior:
    prior = BondPrior(10)
    prior.set_tables(stats["k"], stats["r0"], frame_fs, stats["angles"], bonds, angles, dihedrals or {},
                     typed_urey_bradley=springs)
    return prior


def _forces_of(truth: BondPrior, traj) -> np.ndarray:
    z = torch.as_tensor(traj.numbers)
    graph = with_covalent_bonds(complete_graph(torch.zeros(len(z), dtype=torch.int64)), torch.as_tensor(traj.positions[0]), z)
    return np.stack([truth.force_reference(torch.as_tensor(x), z, graph).numpy() for x in traj.positions])


def test_force_matching_recovers_the_constants_of_a_synthetic_valence_system():
    traj = load_trajectory(bundled("ethanol")).slice(0, 600)
    stats = valence_statistics([traj], 10, torsions=False)
    rng = np.random.default_rng(0)
    true_bonds = {k: (kk * rng.uniform(0.5, 2.0), r0) for k, (kk, r0) in stats["typed_bonds"].items()}
    true_angles = {k: (kk * rng.uniform(0.5, 2.0), c0) for k, (kk, c0) in stats["typed_angles"].items()}
    true_springs = {k: (rng.uniform(0.5, 5.0), r13) for k, (_, r13) in stats["typed_urey_bradley"].items()}
    assert len(true_springs) == len(true_angles) == 7
    # a frame time short enough that the tables' Verlet matching leaves the constants as given (to 1e-8)
    truth = _prior(stats, true_bonds, true_angles, true_springs, frame_fs=1e-3)
    synthetic = replace(traj, forces=_forces_of(truth, traj))
    start = _prior(stats, stats["typed_bonds"], stats["typed_angles"])  # the Boltzmann fit: wrong constants
    fitted, summary = force_matched([synthetic], start, stats, frames=60)
    assert "force-matched 12 bond and angle types and 7 Urey-Bradley springs" in summary
    for key, (k, r0) in true_bonds.items():
        assert fitted["typed_bonds"][key] == pytest.approx((k, r0), rel=1e-6)
    for key, (k, c0) in true_angles.items():
        assert fitted["typed_angles"][key] == pytest.approx((k, c0), rel=1e-6, abs=1e-9)
    for key, (k, r13) in true_springs.items():
        assert fitted["typed_urey_bradley"][key] == pytest.approx((k, r13), rel=1e-6)


def test_force_matching_recovers_the_torsion_amplitudes_of_a_synthetic_valence_system():
    """Torsions whose amplitudes are 0.3-3x the Boltzmann-inverted k_B T / m (well shapes the data's):
    fitted jointly with the bonds and angles, each amplitude comes back exactly, the shapes unchanged;
    without ``torsions`` the table is the Boltzmann one."""
    traj = load_trajectory(bundled("ethanol")).slice(0, 600)
    stats = valence_statistics([traj], 10)
    rng = np.random.default_rng(2)
    true_dihedrals = {k: (a * rng.uniform(0.3, 3.0), *shape) for k, (a, *shape) in stats["typed_dihedrals"].items()}
    assert len(true_dihedrals) == 4 and all(kappa > 0.5 for _, kappa, _, _ in true_dihedrals.values())
    true_bonds = {k: (kk * rng.uniform(0.5, 2.0), r0) for k, (kk, r0) in stats["typed_bonds"].items()}
    truth = _prior(stats, true_bonds, stats["typed_angles"], frame_fs=1e-3, dihedrals=true_dihedrals)
    synthetic = replace(traj, forces=_forces_of(truth, traj))
    start = BondPrior(10)
    start.set_tables(frame_fs=0.5, **stats)
    fitted, summary = force_matched([synthetic], start, stats, frames=60, torsions=True)
    assert "4 of 4 torsion types" in summary
    for key, value in true_dihedrals.items():
        assert fitted["typed_dihedrals"][min(key, key[::-1])] == pytest.approx(value, rel=1e-6)
    for key, (k, r0) in true_bonds.items():
        assert fitted["typed_bonds"][key] == pytest.approx((k, r0), rel=1e-6)
    plain, summary = force_matched([synthetic], start, stats, frames=60)
    assert plain["typed_dihedrals"] is stats["typed_dihedrals"] and "torsion" not in summary


def test_force_matching_on_reference_forces_gives_physical_constants():
    traj = load_trajectory(bundled("ethanol")).slice(0, 2000)
    stats = valence_statistics([traj], 10)
    prior = BondPrior(10)
    prior.set_tables(frame_fs=0.5, **stats)
    fitted, summary = force_matched([traj], prior, stats, frames=100)
    bonds, angles, springs = fitted["typed_bonds"], fitted["typed_angles"], fitted["typed_urey_bradley"]
    assert summary.startswith("force-matched")
    for key, (k, r0) in bonds.items():
        assert k > 0 and r0 == stats["typed_bonds"][key][1]  # the rest lengths stay the data's mean lengths
    assert all(k > 0 and c0 == stats["typed_angles"][key][1] for key, (k, c0) in angles.items())
    # the springs rest at the data's mean 1-3 distances, and GFN2-xTB's H-C-H pairs hold apart
    assert all(r13 == stats["typed_urey_bradley"][key][1] and k >= 0 for key, (k, r13) in springs.items())
    assert sum(k > 0 for k, _ in springs.values()) >= 5
    assert any(bonds[key][0] != pytest.approx(stats["typed_bonds"][key][0], rel=0.05) for key in bonds)  # refitted
    no_forces = replace(traj, forces=None)
    same, summary = force_matched([no_forces], prior, stats)
    assert same is stats and "kept" in summary


def test_forces_in_other_units_keep_the_boltzmann_constants_with_a_warning():
    traj = load_trajectory(bundled("ethanol")).slice(0, 2000)
    stats = valence_statistics([traj], 10)
    prior = BondPrior(10)
    prior.set_tables(frame_fs=0.5, **stats)
    kcal = replace(traj, forces=traj.forces * 23.06)  # eV/Å read as if kcal/mol/Å
    with pytest.warns(UserWarning, match="forces in other units than eV/Å"):
        fitted, summary = force_matched([kcal], prior, stats, frames=100)
    assert fitted is stats and "kept" in summary


def test_force_matching_recovers_the_morse_bonds_of_a_synthetic_anharmonic_system():
    """Forces of Morse bonds (valence/anharmonic.py: steepness α per bond type, here 1.5-2.5 1/Å) on top of
    harmonic angles: the anharmonic fit, a dr² term and a shift per bond type, reads back each bond's α
    within 15 %, its curvature within 5 % and its Morse minimum within 0.003 Å, although the data's
    mean lengths (where the fit starts) sit 0.002-0.006 Å beyond it; the harmonic fit alone cannot."""
    traj = load_trajectory(bundled("ethanol")).slice(0, 600)
    stats = valence_statistics([traj], 10, torsions=False)
    rng = np.random.default_rng(1)
    true_bonds = {k: (kk, r0 - 0.004, rng.uniform(1.5, 2.5)) for k, (kk, r0) in stats["typed_bonds"].items()}
    truth = _prior(stats, true_bonds, stats["typed_angles"], frame_fs=1e-3)
    assert truth.anharmonic
    z = torch.as_tensor(traj.numbers)
    graph = with_covalent_bonds(complete_graph(torch.zeros(len(z), dtype=torch.int64)), torch.as_tensor(traj.positions[0]), z)
    forces = np.stack([truth.force_reference(torch.as_tensor(x), z, graph).numpy() for x in traj.positions])
    synthetic = replace(traj, forces=forces)
    start = _prior(stats, stats["typed_bonds"], stats["typed_angles"])
    fitted, summary = force_matched([synthetic], start, stats, frames=200, anharmonic=True)
    assert "5 bond types Morse" in summary
    for key, (k, r0, alpha) in true_bonds.items():
        fk, fr0, falpha = fitted["typed_bonds"][key]
        assert fk == pytest.approx(k, rel=0.05) and fr0 == pytest.approx(r0, abs=0.003)
        assert falpha == pytest.approx(alpha, rel=0.15)
    harmonic, _ = force_matched([synthetic], start, stats, frames=200)
    assert all(len(v) == 2 for v in harmonic["typed_bonds"].values())  # (k, r0): no anharmonicity read
