"""The valence force field's topology (valence/topology.py): bond angles, proper dihedrals and
atom environments against brute force and against the force-field atom types."""
from __future__ import annotations

import pytest
import torch

from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence import topology


@pytest.mark.parametrize("seed", range(3))
def test_bond_angles_are_every_pair_of_bonds_sharing_an_atom(seed):
    # random undirected bonds (both directions, shuffled), degrees up to ~6, against brute force
    gen = torch.Generator().manual_seed(seed)
    n = 30
    pairs = {tuple(sorted(map(int, torch.randint(0, n, (2,), generator=gen)))) for _ in range(60)}
    pairs = [(i, j) for i, j in pairs if i != j]
    directed = torch.tensor(pairs + [(j, i) for i, j in pairs]).T  # (2, M) receiver, sender
    directed = directed[:, torch.randperm(directed.shape[1], generator=gen)]
    want = sorted((min(a, b), c, max(a, b)) for c in range(n)
                  for a in range(n) for b in range(a + 1, n) if {(c, a), (c, b)} <= set(map(tuple, directed.T.tolist())))
    got = topology.bond_angles(directed)
    assert got.shape[0] == 3 and sorted(map(tuple, got.T.tolist())) == want
    assert topology.bond_angles(directed[:, :0]).shape == (3, 0)


def test_atom_environments_of_aspirin_are_the_force_field_atom_types():
    from diffmd_fast.data import bundled, load_trajectory

    traj = load_trajectory(bundled("aspirin"))
    x, z = torch.as_tensor(traj.positions[0]), torch.as_tensor(traj.numbers)
    g = topology.with_covalent_bonds(complete_graph(torch.zeros(len(z), dtype=torch.int64)), x, z)
    labels = sorted(topology.environment_label(e) for e in g.environments.tolist())
    # C9H8O4: 4 ring C-H, 1 ring C bonded to the carboxyl C, 1 to the ester O, 2 carbonyl carbons,
    # 1 methyl; 2 carbonyl O, the acid's O-H and the ester's C-O-C
    assert topology.environment_label(8 + 1 * topology.ENV_BASE + 6 * topology.ENV_BASE**2) == "O(H,C)"
    assert topology.environment_label(1) == "H"
    assert labels == sorted(["C(H,C,C)"] * 4 + ["C(C,C,C)", "C(C,C,O)"] + ["C(C,O,O)"] * 2 + ["C(H,H,H,C)"]
                            + ["H(C)"] * 7 + ["H(O)"] + ["O(C)"] * 2 + ["O(H,C)", "O(C,C)"])


@pytest.mark.parametrize("seed", range(3))
def test_atom_environments_depend_on_the_bonded_neighbours_only(seed):
    # random molecules: the code is each atom's element and the sorted elements of its neighbours,
    # whatever the atom order and the bond order; more than 7 neighbours keep the first seven
    gen = torch.Generator().manual_seed(seed)
    n = 25
    z = torch.tensor([1, 6, 7, 8, 16])[torch.randint(0, 5, (n,), generator=gen)]
    pairs = {tuple(sorted(map(int, torch.randint(0, n, (2,), generator=gen)))) for _ in range(60)}
    pairs = [(i, j) for i, j in pairs if i != j]
    directed = torch.tensor(pairs + [(j, i) for i, j in pairs]).T
    env = topology.atom_environments(directed, z)
    for a in range(n):
        nbr = sorted(int(z[j]) for i, j in directed.T.tolist() if i == a)[: topology.ENV_NEIGHBOURS]
        assert int(env[a]) == int(z[a]) + sum(zz * topology.ENV_BASE ** (k + 1) for k, zz in enumerate(nbr))
    perm = torch.randperm(n, generator=gen)  # new index of old atom p: inverse
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    shuffled = inv[directed][:, torch.randperm(directed.shape[1], generator=gen)]
    assert torch.equal(topology.atom_environments(shuffled, z[perm]), env[perm])
    assert torch.equal(topology.atom_environments(directed[:, :0], z), z)


@pytest.mark.parametrize("seed", range(3))
def test_bond_dihedrals_are_every_path_of_three_bonds(seed):
    # random undirected bonds (both directions, shuffled), against brute force over all 4-atom paths
    gen = torch.Generator().manual_seed(seed)
    n = 20
    pairs = {tuple(sorted(map(int, torch.randint(0, n, (2,), generator=gen)))) for _ in range(35)}
    pairs = {(i, j) for i, j in pairs if i != j}
    bonded = pairs | {(j, i) for i, j in pairs}
    directed = torch.tensor(sorted(bonded)).T[:, torch.randperm(len(bonded), generator=gen)]
    want = sorted((i, j, k, l) for j, k in bonded if j < k for i in range(n) for l in range(n)
                  if (i, j) in bonded and (k, l) in bonded and len({i, j, k, l}) == 4)
    got = topology.bond_dihedrals(directed, n)
    assert got.shape[0] == 4 and sorted(map(tuple, got.T.tolist())) == want and len(want) > 10
    assert topology.bond_dihedrals(directed[:, :0], n).shape == (4, 0)


def _stretched_ethanol():
    """(bundled ethanol's first 400 frames, frame index, bond (i, j)) with that C-H bond stretched to 1.40 Å
    (past the 1.28 Å cutoff) in that one frame, as a hot C-H stretch reaches in about one frame in a thousand."""
    import numpy as np

    from diffmd_fast.data import load_data
    from diffmd_fast.data.elements import covalent_pairs

    traj = load_data("ethanol").slice(0, 400)
    i, j = next((a, b) for a, b in covalent_pairs(traj.positions, traj.numbers).tolist()
                if {int(traj.numbers[a]), int(traj.numbers[b])} == {6, 1})
    h, c = (j, i) if traj.numbers[j] == 1 else (i, j)
    x = traj.positions.copy()
    u = x[200, h] - x[200, c]
    x[200, h] = x[200, c] + 1.40 * u / np.linalg.norm(u)
    from dataclasses import replace
    return replace(traj, positions=x, forces=None, energies=None, velocities=None), 200, (min(i, j), max(i, j))


def test_a_bond_stretched_in_one_frame_is_still_a_bond_of_the_molecule():
    """A molecule's bonds are its trajectory's at the median, not one frame's: perceived on the stretched
    frame alone the C-H bond is gone (and with it its spring, while an excluded-volume wall pushes the
    pair apart); the trajectory, its windows and a rollout started there keep it."""
    from diffmd_fast.data import start_batch
    from diffmd_fast.data.elements import covalent_pairs

    traj, t, bond = _stretched_ethanol()
    whole = {tuple(p) for p in covalent_pairs(traj.positions, traj.numbers).tolist()}
    alone = {tuple(p) for p in covalent_pairs(traj.positions[t], traj.numbers).tolist()}
    assert bond in whole and bond not in alone and alone | {bond} == whole
    start = start_batch(traj, t, stride=2)
    on_frame = topology.with_covalent_bonds(complete_graph(start.batch), start.x, start.z)
    kept = topology.window_graph(start)
    pairs = lambda g: {tuple(sorted(p)) for p in g.bonds.T.tolist()}
    assert bond in pairs(kept) and bond not in pairs(on_frame) and len(pairs(kept)) == len(whole)
    graph = topology.topology_graph(start.x.double(), start.z, start.batch, bonds=start.bonds)  # a rollout's
    assert pairs(graph) == pairs(kept)


def test_with_bonds_given_the_perceived_bonds_is_the_perceived_topology():
    """with_bonds (the data's bonds, in any order) and with_covalent_bonds (perceived) build the same graph
    when the bonds agree: angles, dihedrals, environments and non-bonded pairs, in the same order."""
    from diffmd_fast.data import load_data

    traj = load_data("aspirin")
    x, z = torch.as_tensor(traj.positions[0]), torch.as_tensor(traj.numbers)
    graph = complete_graph(torch.zeros(len(z), dtype=torch.int64))
    perceived = topology.with_covalent_bonds(graph, x, z)
    shuffled = perceived.bonds[:, torch.randperm(perceived.bonds.shape[1], generator=torch.Generator().manual_seed(0))]
    given = topology.with_bonds(graph, shuffled, z)
    for name in ("bonds", "angles", "dihedrals", "environments", "nonbonded"):
        assert torch.equal(getattr(given, name), getattr(perceived, name)), name
