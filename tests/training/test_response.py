"""Linear-response targets for noisy conditioning frames (training/conditioning.py): the harmonic bond
constants from equipartition, and the target shift against an exact Verlet step of a harmonic system."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from ase import units

from diffmd_fast.config import Config, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.dynamics.physics import masses_of
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.training.conditioning import bond_statistics, linear_response_target
from diffmd_fast.training.loop import train
from model_helpers import TINY


def test_bond_constants_of_ethanol_are_covalent_and_symmetric():
    k, r0 = bond_statistics([load_trajectory(bundled("ethanol"))], 10)
    assert torch.equal(k, k.T) and torch.equal(r0, r0.T)
    assert 1.05 < float(r0[1, 6]) < 1.13 and 0.93 < float(r0[1, 8]) < 1.0 and 1.48 < float(r0[6, 6]) < 1.56
    for a, b in [(1, 6), (1, 8), (6, 6), (6, 8)]:  # C-H, O-H, C-C, C-O: tens of eV/Å²
        assert 10.0 < float(k[a, b]) < 80.0, (a, b, float(k[a, b]))
    assert float(k[1, 1]) == 0.0 and float(k[8, 8]) == 0.0  # no such bonds in ethanol


def _harmonic_molecule():
    """A bent triatomic (O-H bonds of 0.96 Å) and a diatomic, float64, with a harmonic bond force."""
    x = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],
                      [5.0, 5.0, 5.0], [5.0, 5.0, 6.1]], dtype=torch.float64)
    z = torch.tensor([8, 1, 1, 6, 6])
    batch = torch.tensor([0, 0, 0, 1, 1])
    k = torch.zeros(11, 11, dtype=torch.float64)
    k[1, 8] = k[8, 1] = 40.0
    k[6, 6] = 25.0
    bonds = [(0, 1, 40.0), (0, 2, 40.0), (3, 4, 25.0)]
    return x, z, batch, k, bonds


def _verlet_next(x, x_prev, z, bonds, rest, dt):
    """x(t+1) = 2 x(t) - x(t-1) + dt² F/m for harmonic bonds with rest lengths ``rest``."""
    f = torch.zeros_like(x)
    for (i, j, kk), r0 in zip(bonds, rest):
        r = x[i] - x[j]
        d = r.norm()
        f[i] -= kk * (d - r0) * r / d
        f[j] += kk * (d - r0) * r / d
    return 2 * x - x_prev + dt**2 * units.fs**2 * f / masses_of(z).unsqueeze(-1)


def test_target_shift_is_the_first_order_verlet_response_of_harmonic_bonds():
    x, z, batch, k, bonds = _harmonic_molecule()
    gen = torch.Generator().manual_seed(0)
    # bonds at their rest length in x(t): there the bond Hessian is exactly k u uᵀ, the stretch term the
    # response keeps (a bond under tension adds k (1 - r0/r)(I - u uᵀ), which averages out in MD)
    rest = [float((x[i] - x[j]).norm()) for i, j, _ in bonds]
    x_prev = x - 0.01 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    dt = 1.0
    clean = FrameBatch(z=z, x_prev2=x_prev, x_prev=x_prev, x=x, x_next=_verlet_next(x, x_prev, z, bonds, rest, dt),
                       batch=batch, num_graphs=2)
    eps = 1e-5
    d_t, d_prev = (eps * torch.randn(x.shape, generator=gen, dtype=torch.float64) for _ in range(2))
    noisy = replace(clean, x=x + d_t, x_prev=x_prev + d_prev)
    got = linear_response_target(clean, noisy, complete_graph(batch), k, dt).x_next
    want = _verlet_next(x + d_t, x_prev + d_prev, z, bonds, rest, dt)
    # first order: the error is O(eps²) while the shift itself is O(eps)
    assert float((got - clean.x_next).abs().max()) > 0.5 * eps
    assert float((got - want).abs().max()) < 1e-3 * eps


def test_no_noise_no_shift_and_a_translation_moves_the_target_rigidly():
    x, z, batch, k, _ = _harmonic_molecule()
    clean = FrameBatch(z=z, x_prev2=x, x_prev=x - 0.01, x=x, x_next=x + 0.01, batch=batch, num_graphs=2)
    graph = complete_graph(batch)
    assert torch.equal(linear_response_target(clean, clean, graph, k, 1.0).x_next, clean.x_next)
    t = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    moved = replace(clean, x=clean.x + t, x_prev=clean.x_prev + t, x_prev2=clean.x_prev2 + t)
    torch.testing.assert_close(linear_response_target(clean, moved, graph, k, 1.0).x_next, clean.x_next + t)


def test_training_with_response_targets_runs_and_differs(tmp_path):
    torch.set_num_threads(1)
    traj = load_trajectory(bundled("ethanol")).slice(0, 44)
    cfg = Config(model=TINY, train=TrainConfig(batch_size=8, epochs=1, val_every=100, val_rollout_frames=0,
                                               dtype="float64", input_noise=0.002, input_noise_shared=0.02))
    plain = train(cfg, traj, None, tmp_path / "plain")
    resp = train(cfg.with_overrides(["train.input_noise_response=true"]), traj, None, tmp_path / "resp")
    assert math.isfinite(resp.history[-1]["train_loss"])
    assert resp.history[-1]["train_loss"] != plain.history[-1]["train_loss"]
