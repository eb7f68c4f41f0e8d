"""Morse bonds (valence/anharmonic.py): the correction to the harmonic bond force is minus the gradient of
its energy, vanishes for α = 0, and the prior's fused-op path (the harmonic op plus the correction) is its
PyTorch reference in float64, and -∇ of its energy; the whole prior force stays E(3) equivariant."""
import math

import numpy as np
import pytest
import torch

from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.ops import fused
from diffmd_fast.valence.anharmonic import morse_correction_energy, morse_correction_force
from diffmd_fast.valence.fit import valence_statistics
from diffmd_fast.valence.prior import BondPrior
from diffmd_fast.valence.topology import topology_graph


def _morse_prior(alpha: float = 2.0):
    traj = load_trajectory(bundled("ethanol")).slice(0, 400)
    stats = valence_statistics([traj], 10, torsions=True)
    stats["typed_bonds"] = {k: (kk, r0, alpha) for k, (kk, r0) in stats["typed_bonds"].items()}
    prior = BondPrior(10)
    prior.set_tables(frame_fs=0.5, **stats)
    z = torch.as_tensor(traj.numbers)
    return prior, traj, z, topology_graph(traj.positions[0], z)


def test_the_correction_is_minus_the_gradient_of_its_energy_and_zero_when_harmonic():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(6, 3)) * 1.2, dtype=torch.float64, requires_grad=True)
    bonds = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    types = torch.tensor([0, 1, 2, 0, 1, 2])
    k = torch.as_tensor(rng.uniform(10, 40, size=(3, 3)), dtype=torch.float64)
    k = k + k.T
    r0 = torch.full((3, 3), 1.1, dtype=torch.float64)
    alpha = torch.full((3, 3), 2.0, dtype=torch.float64)
    energy = morse_correction_energy(x, bonds, types, k, r0, alpha)
    (grad,) = torch.autograd.grad(energy, x)
    force = morse_correction_force(x.detach(), bonds, types, k, r0, alpha)
    torch.testing.assert_close(force, -grad, rtol=1e-10, atol=1e-12)
    assert float(force.abs().max()) > 0.1
    harmonic = morse_correction_force(x.detach(), bonds, types, k, r0, torch.zeros_like(alpha))
    assert torch.equal(harmonic, torch.zeros_like(harmonic))


def test_the_morse_bond_softens_on_stretch_and_stays_harmonic_compressed():
    """Along one bond: the Morse force equals the harmonic one to first order, is weaker stretched,
    harmonic compressed (a Morse wall would outrun the Verlet step), and its well is bounded by D = k / 2α²."""
    k, alpha = 30.0, 2.0
    x = lambda dr: torch.tensor([[0.0, 0.0, 0.0], [1.1 + dr, 0.0, 0.0]], dtype=torch.float64)
    bonds, types = torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 0])
    tab = lambda v: torch.full((1, 1), v, dtype=torch.float64)
    along = lambda dr: float(morse_correction_force(x(dr), bonds, types, tab(k), tab(1.1), tab(alpha))[1, 0]) - k * dr
    assert along(1e-4) == pytest.approx(-k * 1e-4, rel=1e-3)
    assert -k * 0.2 < along(0.2) < 0 and along(-0.2) == pytest.approx(k * 0.2, rel=1e-12)
    u = lambda dr: float(morse_correction_energy(x(dr), bonds, types, tab(k), tab(1.1), tab(alpha))) + 0.5 * k * dr * dr
    assert u(10.0) == pytest.approx(k / (2 * alpha * alpha), rel=1e-6)


@pytest.mark.skipif(not fused.HAS_EXTENSION, reason="needs the compiled extension")
def test_the_prior_with_morse_bonds_is_its_reference_and_minus_its_energy_gradient():
    prior, traj, z, graph = _morse_prior()
    assert prior.anharmonic and float(prior.alpha.max()) == 2.0
    x = torch.as_tensor(traj.positions[123])
    with torch.no_grad():
        op = prior.force(x, z, graph)
    reference = prior.force_reference(x, z, graph)
    torch.testing.assert_close(op, reference, rtol=1e-10, atol=1e-10)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.energy(xg, z, graph), xg)
    torch.testing.assert_close(reference, -grad, rtol=1e-8, atol=1e-8)
    harmonic, *_ = _morse_prior(alpha=0.0)
    assert not harmonic.anharmonic
    assert not torch.allclose(harmonic.force_reference(x, z, graph), reference)


def test_the_prior_with_morse_bonds_is_equivariant():
    prior, traj, z, graph = _morse_prior()
    x = torch.as_tensor(traj.positions[200])
    q, _ = torch.linalg.qr(torch.as_tensor(np.random.default_rng(3).normal(size=(3, 3))))
    shift = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    with torch.no_grad():
        f = prior.force(x, z, graph)
        moved = prior.force(x @ q.T + shift, z, graph)
    torch.testing.assert_close(moved, f @ q.T, rtol=1e-9, atol=1e-9)
    assert math.isfinite(float(prior.energy(x, z, graph)))


def test_a_checkpoint_from_before_morse_bonds_loads_harmonic():
    prior, *_ = _morse_prior()
    state = {k: v for k, v in prior.state_dict().items() if k != "alpha"}
    fresh = BondPrior(10)
    fresh.load_state_dict(state)
    assert not fresh.anharmonic and float(fresh.alpha.abs().sum()) == 0.0
    again = BondPrior(10)
    again.load_state_dict(prior.state_dict())
    assert again.anharmonic and torch.equal(again.alpha, prior.alpha)
