"""Force matching of the valence prior: on frames whose forces come from a known valence force field
it recovers that field's force constants exactly and keeps the data's rest values; on the bundled
GFN2-xTB data it fits every type."""
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


def _prior(stats: dict, bonds: dict, angles: dict) -> BondPrior:
    prior = BondPrior(10)
    prior.set_tables(stats["k"], stats["r0"], 0.5, stats["angles"], bonds, angles, {})
    return prior


def test_force_matching_recovers_the_constants_of_a_synthetic_valence_system():
    traj = load_trajectory(bundled("ethanol")).slice(0, 600)
    stats = valence_statistics([traj], 10, torsions=False)
    rng = np.random.default_rng(0)
    true_bonds = {k: (kk * rng.uniform(0.5, 2.0), r0) for k, (kk, r0) in stats["typed_bonds"].items()}
    true_angles = {k: (kk * rng.uniform(0.5, 2.0), c0) for k, (kk, c0) in stats["typed_angles"].items()}
    truth = _prior(stats, true_bonds, true_angles)
    z = torch.as_tensor(traj.numbers)
    graph = with_covalent_bonds(complete_graph(torch.zeros(len(z), dtype=torch.int64)), torch.as_tensor(traj.positions[0]), z)
    forces = np.stack([truth.force_reference(torch.as_tensor(x), z, graph).numpy() for x in traj.positions])
    synthetic = replace(traj, forces=forces)
    start = _prior(stats, stats["typed_bonds"], stats["typed_angles"])  # the Boltzmann fit: wrong constants
    bonds, angles, summary = force_matched([synthetic], start, stats["typed_bonds"], stats["typed_angles"], frames=60)
    assert "force-matched 12 bond and angle types" in summary
    for key, (k, r0) in true_bonds.items():
        assert bonds[key] == pytest.approx((k, r0), rel=1e-6)
    for key, (k, c0) in true_angles.items():
        assert angles[key] == pytest.approx((k, c0), rel=1e-6, abs=1e-9)


def test_force_matching_on_reference_forces_gives_physical_constants():
    traj = load_trajectory(bundled("ethanol")).slice(0, 2000)
    stats = valence_statistics([traj], 10)
    prior = BondPrior(10)
    prior.set_tables(frame_fs=0.5, **stats)
    bonds, angles, summary = force_matched([traj], prior, stats["typed_bonds"], stats["typed_angles"], frames=100)
    assert summary.startswith("force-matched")
    for key, (k, r0) in bonds.items():
        assert k > 0 and r0 == stats["typed_bonds"][key][1]  # the rest lengths stay the data's mean lengths
    assert all(k > 0 and c0 == stats["typed_angles"][key][1] for key, (k, c0) in angles.items())
    assert any(bonds[key][0] != pytest.approx(stats["typed_bonds"][key][0], rel=0.05) for key in bonds)  # refitted
    no_forces = replace(traj, forces=None)
    same = force_matched([no_forces], prior, stats["typed_bonds"], stats["typed_angles"])
    assert same[0] == stats["typed_bonds"] and "kept" in same[2]


def test_forces_in_other_units_keep_the_boltzmann_constants_with_a_warning():
    traj = load_trajectory(bundled("ethanol")).slice(0, 2000)
    stats = valence_statistics([traj], 10)
    prior = BondPrior(10)
    prior.set_tables(frame_fs=0.5, **stats)
    kcal = replace(traj, forces=traj.forces * 23.06)  # eV/Å read as if kcal/mol/Å
    with pytest.warns(UserWarning, match="forces in other units than eV/Å"):
        bonds, angles, summary = force_matched([kcal], prior, stats["typed_bonds"], stats["typed_angles"], frames=100)
    assert bonds == stats["typed_bonds"] and angles == stats["typed_angles"] and "kept" in summary
