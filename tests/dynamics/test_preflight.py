"""Start-structure checks: what a checkpoint records of its molecules, unseen valence types refused
(or covered by fallback terms that are never a zero force constant), other molecule counts and
fused atoms refused, periodic structures made whole and condensed phases refused."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.data.build import whole_structure
from diffmd_fast.data.trajectory import TrajectoryError
from diffmd_fast.dynamics.preflight import check_elements, check_start, fragment_counts, training_topology
from diffmd_fast.valence.topology import topology_graph
from diffmd_fast.valence.prior import BondPrior
from diffmd_fast.valence.topology import type_label
from diffmd_fast.valence.fit import valence_statistics
from diffmd_fast.valence.force_matching import force_matched
from model_helpers import water_box

ETHANOL_ENVS = {"C(H,H,H,C)", "C(H,H,C,O)", "O(H,C)", "H(C)", "H(O)"}


@pytest.fixture(scope="module")
def ethanol():
    return load_trajectory(bundled("ethanol")).slice(0, 400)


@pytest.fixture(scope="module")
def ethanol_run(ethanol):
    """A stand-in for a TrainedRun: the record training writes and a prior fitted to ethanol."""
    prior = BondPrior(max_z=10)
    prior.set_tables(frame_fs=0.5, **valence_statistics([ethanol], 10))
    return SimpleNamespace(data=training_topology([ethanol]), model=SimpleNamespace(bond_prior=prior))


def _check(run, x, z, **kwargs):
    """check_start's warnings."""
    return check_start(run, x, z, **kwargs)[1]


def _fresh(run, ethanol, force_matching: bool = False):
    """The run with a prior of its own (check_start's fallbacks change the prior in place); with
    ``force_matching`` refitted to the reference forces, Urey-Bradley springs included (the shipped fit)."""
    prior = BondPrior(max_z=10)
    tables = valence_statistics([ethanol], 10)
    prior.set_tables(frame_fs=0.5, **tables)
    if force_matching:
        tables, _ = force_matched([ethanol], prior, tables, frames=50)
        prior.set_tables(frame_fs=0.5, **tables)
        assert float(prior.ub_k.max()) > 0
    return SimpleNamespace(data=run.data, model=SimpleNamespace(bond_prior=prior))


def test_training_records_the_molecules_types_and_count(ethanol):
    rec = training_topology([ethanol])
    assert rec["fragments"] == [1]
    types = rec["valence_types"]
    assert {type_label(e) for e in types["environments"]} == ETHANOL_ENVS
    assert len(types["bonds"]) == 5 and len(types["angles"]) == 7 and len(types["torsions"]) == 4
    assert "O(H,C)-C(H,H,C,O)" in {type_label(b) for b in types["bonds"]}


def test_the_prior_reads_back_the_torsion_types_it_fitted(ethanol_run):
    prior = ethanol_run.model.bond_prior
    recorded = {tuple(t) for t in ethanol_run.data["valence_types"]["torsions"]}
    assert set(prior.torsion_types()) == recorded


def test_the_training_molecule_passes(ethanol_run, ethanol):
    assert _check(ethanol_run, ethanol.positions[100], ethanol.numbers) == []


@pytest.mark.parametrize("name, unseen", [("CH3OH", "C(H,H,H,O)"), ("CH3OCH3", "O(C,C)"), ("C2H6CHOH", "C(H,C,C,O)")])
def test_unseen_types_are_refused_in_one_line_naming_them(ethanol_run, name, unseen):
    mol = molecule(name)
    with pytest.raises(ValueError, match="not trained on") as err:
        _check(ethanol_run, mol.positions, mol.numbers, what=name)
    msg = str(err.value)
    assert unseen in msg and "--allow-unseen" in msg and "\n" not in msg


def _zero_terms(prior, x, z):
    """(bonds, angles) of the structure with a zero force constant in the prior's tables."""
    graph = topology_graph(x, z)
    t = prior.atom_types(torch.as_tensor(z), graph)
    r, s = graph.bonds
    i, j, k = graph.angles
    si, sj, sk = prior.slot[t[i]], prior.slot[t[j]], prior.slot[t[k]]
    known = (si >= 0) & (sj >= 0) & (sk >= 0)
    return int((prior.k[t[r], t[s]] <= 0).sum()), int((~known | (prior.angle_k[si, sj, sk] <= 0)).sum()), graph


@pytest.mark.parametrize("force_matching", [False, True])
@pytest.mark.parametrize("name", ["CH3OCH3", "C2H6CHOH", "CH3CH2OCH3", "CH3COOH"])
def test_allow_unseen_gives_every_bond_and_angle_a_force_constant(ethanol_run, ethanol, name, force_matching):
    run = _fresh(ethanol_run, ethanol, force_matching)
    mol = molecule(name)
    z = mol.numbers
    notes = _check(run, mol.positions, z, allow_unseen=True, what=name)
    assert notes and "not trained on" in notes[0]
    bonds, angles, graph = _zero_terms(run.model.bond_prior, mol.positions, z)
    assert bonds == 0 and angles == 0
    force = run.model.bond_prior.force_reference(torch.as_tensor(mol.positions), torch.as_tensor(z), graph)
    assert force.abs().max() < 1.0  # eV/Å: the start geometry sits near the generic terms' minimum


def test_generic_angle_rests_at_the_structure_own_angle(ethanol_run, ethanol):
    """C-O-C has no data in ethanol (no element triple either): its generic term's cos θ0 is dimethyl ether's own."""
    run = _fresh(ethanol_run, ethanol)
    mol = molecule("CH3OCH3")
    before = _zero_terms(run.model.bond_prior, mol.positions, mol.numbers)[1]
    assert before > 0  # the pooled fallbacks alone leave C-O-C at K = 0
    notes = _check(run, mol.positions, mol.numbers, allow_unseen=True)
    assert any("angle C-O-C" in n or "O(C,C)" in n for n in notes)
    c, o = [i for i, s in enumerate(mol.symbols) if s == "C"], mol.symbols.index("O")
    u, w = mol.positions[c[0]] - mol.positions[o], mol.positions[c[1]] - mol.positions[o]
    prior = run.model.bond_prior
    graph = topology_graph(mol.positions, mol.numbers)
    t = prior.atom_types(torch.as_tensor(mol.numbers), graph)
    s = prior.slot
    c0 = prior.angle_c0[s[t[c[0]]], s[t[o]], s[t[c[1]]]]
    assert float(c0) == pytest.approx(float(u @ w / np.linalg.norm(u) / np.linalg.norm(w)), abs=1e-9)


def test_another_molecule_count_is_refused_unless_allowed(ethanol_run, ethanol):
    one = Atoms(numbers=ethanol.numbers, positions=ethanol.positions[0])
    two = one.copy()
    two.translate([8.0, 0, 0])
    dimer = one + two
    assert fragment_counts(topology_graph(dimer.positions, dimer.numbers)) == [2]
    with pytest.raises(ValueError, match="2 separate molecules"):
        _check(ethanol_run, dimer.positions, dimer.numbers)
    notes = _check(_fresh(ethanol_run, ethanol), dimer.positions, dimer.numbers, allow_unseen=True, what="dimer.xyz")
    assert any(n.startswith("dimer.xyz: holds 2 separate molecules") for n in notes)  # named once
    pulled = one.copy()
    pulled.positions[8] += 4.0 * (pulled.positions[8] - pulled.positions[2])  # the hydroxyl H off its O
    with pytest.raises(ValueError, match=r"the smallest: atoms 8 \(H\)"):
        _check(ethanol_run, pulled.positions, pulled.numbers)


def test_fused_atoms_are_no_start(ethanol_run, ethanol):
    x = ethanol.positions[0].copy()
    x[4] = x[0] + 0.05  # an H on top of a carbon
    with pytest.raises(ValueError, match="fused atoms"):
        _check(ethanol_run, x, ethanol.numbers, allow_unseen=True)


def test_a_wrapped_molecule_is_made_whole():
    mol = molecule("CH3CH2OH")
    box = mol.copy()
    box.cell, box.pbc = [12.0] * 3, True
    box.positions += [11.5, 0.2, 11.8]  # across two faces
    box.wrap()
    assert np.linalg.norm(box.positions[0] - box.positions[1]) > 3.0  # the file splits the C-C bond
    whole = whole_structure(box, "box.extxyz")
    assert not whole.pbc.any()
    shift = whole.positions - mol.positions
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-9)


def test_a_start_structure_with_nan_or_in_another_unit_is_refused_in_one_line():
    """A lone start structure (diffmd generate --data one.xyz) is checked as the trajectory readers check
    frames: a NaN position or positions in Bohr are named, not reported as fragments or a solver failure."""
    mol = molecule("CH3CH2OH")
    bad = mol.copy()
    bad.positions[3] = np.nan
    with pytest.raises(TrajectoryError, match="one.xyz: non-finite positions .* atom 3"):
        whole_structure(bad, "one.xyz")
    bohr = mol.copy()
    bohr.positions /= 0.529177
    with pytest.raises(TrajectoryError, match="one.xyz: .* are they in Bohr"):
        whole_structure(bohr, "one.xyz")
    assert whole_structure(mol, "one.xyz") is mol


def test_a_condensed_phase_or_periodic_network_is_refused():
    with pytest.raises(TrajectoryError, match="condensed phase"):
        whole_structure(water_box(6.2), "waterbox.extxyz")
    chain = Atoms("C2H4", positions=[[0, 0, 0], [1.27, 0.0, 0.8], [0, 0.9, -0.6], [0, -0.9, -0.6],
                                     [1.27, 0.9, 1.4], [1.27, -0.9, 1.4]], cell=[2.54, 12, 12], pbc=[True, False, False])
    with pytest.raises(TrajectoryError, match="periodic images"):  # polyethylene: C bonded to its own image
        whole_structure(chain, "chain.extxyz")


def test_training_data_with_a_reaction_is_reported(ethanol):
    """The hydroxyl H moved onto the methyl carbon halfway through: the record warns of a reaction."""
    from dataclasses import replace

    x = ethanol.positions.copy()
    x[200:, 8] = x[200:, 0] + np.array([0.0, 0.0, 1.09])
    moved = replace(ethanol, positions=x)
    with pytest.warns(UserWarning, match="bonds change during the trajectory"):
        training_topology([moved])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        training_topology([ethanol])
        stretched = ethanol.positions.copy()  # one hot frame: the O-H stretched past the cutoff is no reaction
        stretched[300, 8] = stretched[300, 2] + 1.45 * (stretched[300, 8] - stretched[300, 2]) / np.linalg.norm(
            stretched[300, 8] - stretched[300, 2])
        training_topology([replace(ethanol, positions=stretched)])


def test_elements_outside_the_training_data_are_refused():
    check_elements([1, 6, 8], [1, 6, 8])
    check_elements([9], None)  # old checkpoints record nothing: no check
    with pytest.raises(ValueError, match="contains N,F, which the checkpoint was not trained on"):
        check_elements([1, 9, 7], [1, 6, 8])


def test_every_start_of_a_batch_is_checked_and_the_fused_one_named(ethanol_run, ethanol):
    """Several starts are checked together, each inside its own molecule (the starts overlap in
    space); the message counts atoms inside the molecule that fails."""
    x = np.concatenate([ethanol.positions[100], ethanol.positions[200]])  # two starts, both centred near 0
    z = np.concatenate([ethanol.numbers, ethanol.numbers])
    batch = np.repeat([0, 1], len(ethanol.numbers))
    graph, notes = check_start(ethanol_run, x, z, batch=batch)
    assert notes == [] and graph.num_nodes == len(z) and fragment_counts(graph, batch) == [1, 1]
    x[len(ethanol.numbers) + 5] = x[len(ethanol.numbers) + 4] + 0.1  # start 1: atom 5 onto atom 4
    with pytest.raises(ValueError, match="molecule 1: atoms 4 .* and 5 .* fused atoms"):
        check_start(ethanol_run, x, z, batch=batch)


def test_a_rollout_perceives_its_topology_once(tiny_run, ethanol60, monkeypatch):
    """The start's topology (its trajectory's bonds) is built once: the start checks, the prior, the
    stepper and its guard all hold that one graph."""
    import diffmd_fast.valence.topology as topology
    from diffmd_fast.training.run import load_run

    calls = []
    build = topology.with_bonds
    monkeypatch.setattr(topology, "with_bonds", lambda *a: calls.append(1) or build(*a))
    run = load_run(tiny_run)
    start = run.start_from_frames(load_trajectory(ethanol60), [20, 30])
    stepper = run.stepper(start)
    assert len(calls) == 1 and stepper.graph is start.graph
    bonds = start.graph.bonds[:, start.graph.bonds[0] < start.graph.bonds[1]].T
    assert torch.equal(stepper.guard.bonds, bonds)
    stepper.run(2)
    assert len(calls) == 1
