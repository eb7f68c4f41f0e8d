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
