"""GMN specifics: sticks are a matching of heavy-atom bonds and stay rigid."""
from __future__ import annotations

import torch

from diffmd_fast.baselines.common import make_edges
from diffmd_fast.baselines.gmn import GMN, rotate, select_sticks
from model_helpers import perturb_


def test_sticks_are_disjoint_heavy_atom_bonds(two_molecules):
    edges = make_edges(two_molecules)
    sticks = select_sticks(two_molecules.z, edges.recv, edges.send, edges.bonded)
    # ethanol (C0 C1 O2 H...): C0-C1 is taken first, so C1-O2 may not be; one stick per molecule
    assert sticks.tolist() == [[0, 1], [9, 10]]
    assert len(set(sticks.flatten().tolist())) == sticks.numel()


def test_stick_lengths_are_preserved(two_molecules):
    torch.manual_seed(0)
    model = perturb_(GMN(hidden=8, num_layers=2).double())
    with torch.no_grad():
        out = model(two_molecules)
    for i, j in [(0, 1), (9, 10)]:
        before = (two_molecules.x[i] - two_molecules.x[j]).norm()
        torch.testing.assert_close((out[i] - out[j]).norm(), before, atol=1e-12, rtol=0)
        assert (out[i] - two_molecules.x[i]).norm() > 1e-5  # the stick did move


def test_rotate_matches_a_quarter_turn_and_is_identity_at_zero():
    r = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 0.0, torch.pi / 2]], dtype=torch.float64)
    torch.testing.assert_close(rotate(r, w), torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(rotate(r, torch.zeros_like(w)), r)
