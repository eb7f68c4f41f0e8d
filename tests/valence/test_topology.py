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
