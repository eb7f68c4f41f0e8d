"""SCFNN specifics: the guess of x(t+1) is fed back through the same weights, a fixed number of times."""
from __future__ import annotations

import pytest
import torch

from diffmd_fast.baselines.common import make_edges
from diffmd_fast.baselines.scfnn import SCFNN
from model_helpers import perturb_


def _randomised(iterations: int) -> SCFNN:
    torch.manual_seed(0)
    return perturb_(SCFNN(hidden=8, num_layers=2, iterations=iterations).double())


def test_output_is_the_shared_pass_applied_k_times(two_molecules):
    model = _randomised(3)
    with torch.no_grad():
        out3 = model(two_molecules)
        model.iterations = 1
        out1 = model(two_molecules)
        edges, h0 = make_edges(two_molecules), model.embed(two_molecules)
        guess = two_molecules.x + two_molecules.velocity
        for _ in range(3):
            guess = model.refine(two_molecules, edges, h0, guess)
    torch.testing.assert_close(out3, guess, atol=1e-12, rtol=0)
    assert (out3 - out1).abs().max() > 1e-4  # the fed-back guess changes the prediction


def test_untrained_model_is_constant_velocity_for_any_iterations(two_molecules):
    torch.manual_seed(0)
    model = SCFNN(hidden=8, num_layers=2, iterations=3).double()
    with torch.no_grad():
        for layer in model.layers:
            layer.phi_x[-1].weight.zero_()
        out = model(two_molecules)
    torch.testing.assert_close(out, two_molecules.x + two_molecules.velocity)


def test_iterations_must_be_positive():
    with pytest.raises(ValueError, match="iterations"):
        SCFNN(hidden=8, num_layers=1, iterations=0)
