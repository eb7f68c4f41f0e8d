"""Graph builders: complete graphs and the cell-list radius graph against brute force."""
from __future__ import annotations

import pytest
import torch

import diffmd_fast as dm
from diffmd_fast.ops import graph


def _pairs(g: graph.Graph) -> set[tuple[int, int]]:
    return set(zip(g.receivers().tolist(), g.col.tolist()))


def test_complete_graph_has_all_ordered_pairs_within_molecules():
    batch = torch.tensor([0, 0, 0, 1, 2, 2])
    g = graph.complete_graph(batch)
    expected = {(i, j) for i in range(6) for j in range(6) if i != j and batch[i] == batch[j]}
    assert _pairs(g) == expected and g.num_edges == len(expected)
    assert g.row_ptr.tolist() == [0, 2, 4, 6, 6, 7, 8]


def test_complete_graph_empty_and_errors():
    g = graph.complete_graph(torch.zeros(0, dtype=torch.int64))
    assert g.row_ptr.tolist() == [0] and g.num_edges == 0
    with pytest.raises(ValueError, match="sorted"):
        graph.complete_graph(torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="int64"):
        graph.complete_graph(torch.tensor([0.0, 1.0]))


def _brute(x, batch, r):
    d = torch.cdist(x.double(), x.double())
    mask = (d < r) & (batch[:, None] == batch[None, :]) & ~torch.eye(len(x), dtype=torch.bool)
    return {(int(i), int(j)) for i, j in mask.nonzero().tolist()}


@pytest.mark.parametrize("n,box,r", [(1, 1.0, 1.0), (50, 3.0, 1.0), (400, 6.0, 1.3), (300, 20.0, 0.5)])
def test_radius_graph_matches_brute_force(n, box, r):
    g0 = torch.Generator().manual_seed(n)
    x = torch.rand(n, 3, generator=g0, dtype=torch.float64) * box
    batch = torch.sort(torch.randint(0, 3, (n,), generator=g0)).values
    g = graph.radius_graph(x, batch, r)
    assert _pairs(g) == _brute(x, batch, r)
    for i in range(n):  # senders sorted within each row
        row = g.col[g.row_ptr[i]:g.row_ptr[i + 1]]
        assert torch.all(row[1:] > row[:-1])


def test_radius_graph_overlapping_molecules_do_not_mix():
    x = torch.rand(10, 3, dtype=torch.float64)
    x = torch.cat([x, x])  # two copies on top of each other
    batch = torch.tensor([0] * 10 + [1] * 10)
    g = graph.radius_graph(x, batch, 0.7)
    assert all(batch[i] == batch[j] for i, j in _pairs(g))


def test_radius_graph_huge_extent_and_duplicates():
    x = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [1e7, 0, 0], [1e7 + 0.1, 0, 0]], dtype=torch.float64)
    g = graph.radius_graph(x, torch.zeros(4, dtype=torch.int64), 0.5)
    assert _pairs(g) == {(0, 1), (1, 0), (2, 3), (3, 2)}


@pytest.mark.skipif(not dm.HAS_EXTENSION, reason="compiled extension not built")
def test_radius_graph_fallback_agrees_with_compiled():
    x = torch.rand(200, 3, dtype=torch.float32) * 5
    batch = torch.zeros(200, dtype=torch.int64)
    assert _pairs(graph.radius_graph(x, batch, 1.0)) == _pairs(graph._radius_graph_torch(x, batch, 1.0))


@pytest.mark.parametrize("bad,match", [(dict(r=0.0), "positive"), (dict(r=float("inf")), "positive"),
                                       (dict(nan=True), "NaN"), (dict(shape=True), r"\(N, 3\)")])
def test_radius_graph_bad_input(bad, match):
    x = torch.rand(5, 3)
    if bad.get("nan"):
        x[2, 1] = float("nan")
    if bad.get("shape"):
        x = x[:, :2]
    with pytest.raises(ValueError, match=match):
        graph.radius_graph(x, torch.zeros(5, dtype=torch.int64), bad.get("r", 1.0))


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
    got = graph.bond_angles(directed)
    assert got.shape[0] == 3 and sorted(map(tuple, got.T.tolist())) == want
    assert graph.bond_angles(directed[:, :0]).shape == (3, 0)


def test_atom_environments_of_aspirin_are_the_force_field_atom_types():
    from diffmd_fast.data import bundled, load_trajectory

    traj = load_trajectory(bundled("aspirin"))
    x, z = torch.as_tensor(traj.positions[0]), torch.as_tensor(traj.numbers)
    g = graph.with_covalent_bonds(graph.complete_graph(torch.zeros(len(z), dtype=torch.int64)), x, z)
    labels = sorted(graph.environment_label(e) for e in g.environments.tolist())
    # C9H8O4: 4 ring C-H, 1 ring C bonded to the carboxyl C, 1 to the ester O, 2 carbonyl carbons,
    # 1 methyl; 2 carbonyl O, the acid's O-H and the ester's C-O-C
    assert graph.environment_label(8 + 1 * graph.ENV_BASE + 6 * graph.ENV_BASE**2) == "O(H,C)"
    assert graph.environment_label(1) == "H"
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
    env = graph.atom_environments(directed, z)
    for a in range(n):
        nbr = sorted(int(z[j]) for i, j in directed.T.tolist() if i == a)[: graph.ENV_NEIGHBOURS]
        assert int(env[a]) == int(z[a]) + sum(zz * graph.ENV_BASE ** (k + 1) for k, zz in enumerate(nbr))
    perm = torch.randperm(n, generator=gen)  # new index of old atom p: inverse
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    shuffled = inv[directed][:, torch.randperm(directed.shape[1], generator=gen)]
    assert torch.equal(graph.atom_environments(shuffled, z[perm]), env[perm])
    assert torch.equal(graph.atom_environments(directed[:, :0], z), z)


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
    got = graph.bond_dihedrals(directed, n)
    assert got.shape[0] == 4 and sorted(map(tuple, got.T.tolist())) == want and len(want) > 10
    assert graph.bond_dihedrals(directed[:, :0], n).shape == (4, 0)
