"""Response targets for noisy conditioning frames (training/conditioning.py): the harmonic bond
constants from equipartition, and the target against an exact Verlet step of the prior's force field."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from ase import units

from diffmd_fast.config import Config, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.data.elements import masses_of
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence.topology import with_covalent_bonds
from diffmd_fast.valence.prior import BondPrior
from diffmd_fast.training.conditioning import response_target
from diffmd_fast.valence.fit import bond_statistics
from diffmd_fast.training.loop import train
from model_helpers import TINY


def test_bond_constants_of_ethanol_are_covalent_and_symmetric():
    k, r0 = bond_statistics([load_trajectory(bundled("ethanol"))], 10)
    assert torch.equal(k, k.T) and torch.equal(r0, r0.T)
    assert 1.05 < float(r0[1, 6]) < 1.13 and 0.93 < float(r0[1, 8]) < 1.0 and 1.48 < float(r0[6, 6]) < 1.56
    for a, b in [(1, 6), (1, 8), (6, 6), (6, 8)]:  # C-H, O-H, C-C, C-O: tens of eV/Å²
        assert 10.0 < float(k[a, b]) < 80.0, (a, b, float(k[a, b]))
    assert float(k[1, 1]) == 0.0 and float(k[8, 8]) == 0.0  # no such bonds in ethanol


def _prior() -> BondPrior:
    """Harmonic O-H (0.96 Å, 40 eV/Å²) and C-C (1.1 Å, 25 eV/Å²) bonds and an H-O-H angle, 1 fs frames."""
    k, r0 = torch.zeros(11, 11, dtype=torch.float64), torch.zeros(11, 11, dtype=torch.float64)
    for (a, b), kk, rr in [((1, 8), 40.0, 0.96), ((6, 6), 25.0, 1.1)]:
        k[a, b] = k[b, a] = kk
        r0[a, b] = r0[b, a] = rr
    prior = BondPrior(10)
    prior.set_tables(k, r0, 1.0, {(1, 8, 1): (6.0, -0.25)})
    return prior


def _molecules():
    """A bent triatomic and a diatomic near their rest geometry, float64, one batch."""
    x = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],
                      [5.0, 5.0, 5.0], [5.0, 5.0, 6.1]], dtype=torch.float64)
    return x, torch.tensor([8, 1, 1, 6, 6]), torch.tensor([0, 0, 0, 1, 1])


def _verlet_next(prior, x, x_prev, z, graph):
    """x(t+1) = 2 x(t) - x(t-1) + Δt² F/m under the prior's force field, by autograd of its energy."""
    xr = x.clone().requires_grad_()
    with torch.enable_grad():
        force = prior.force_reference(xr, z, graph)
    return 2 * x - x_prev + units.fs**2 * force.detach() / masses_of(z).unsqueeze(-1)


def test_target_is_the_verlet_step_of_the_perturbed_frames_under_the_prior():
    prior = _prior()
    x, z, batch = _molecules()
    graph = with_covalent_bonds(complete_graph(batch), x, z)
    assert graph.angles.shape[1] == 1  # H-O-H
    gen = torch.Generator().manual_seed(0)
    x_prev = x - 0.01 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    # data that are Verlet MD of the prior itself: the response target is then the exact future
    clean = FrameBatch(z=z, x_prev2=x_prev, x_prev=x_prev, x=x, x_next=_verlet_next(prior, x, x_prev, z, graph),
                       batch=batch, num_graphs=2)
    d_t, d_prev = (0.02 * torch.randn(x.shape, generator=gen, dtype=torch.float64) for _ in range(2))
    noisy = replace(clean, x=x + d_t, x_prev=x_prev + d_prev)
    got = response_target(clean, noisy, graph, prior).x_next
    want = _verlet_next(prior, x + d_t, x_prev + d_prev, z, graph)
    assert float((got - clean.x_next).abs().max()) > 0.01
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # the topology perceived on the clean frame when the graph carries none gives the same target
    torch.testing.assert_close(response_target(clean, noisy, complete_graph(batch), prior).x_next, got)


def test_a_phase_space_target_is_the_prior_step_of_the_perturbed_state_with_its_velocity():
    # phase space: the window's velocity moves with its frames (Δv = (Δx(t) - Δx(t-1)) / Δt) and the
    # target is the prior's k-substep step from the perturbed state, exact for data that are that MD
    from diffmd_fast.valence.verlet import phase_step

    prior, substeps = _prior(), 3  # 1 fs substeps, 3 fs frames
    x, z, batch = _molecules()
    graph = with_covalent_bonds(complete_graph(batch), x, z)
    gen = torch.Generator().manual_seed(1)
    v = 0.01 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    x_prev = x - 3.0 * v
    clean = FrameBatch(z=z, x_prev2=x_prev, x_prev=x_prev, x=x, x_next=phase_step(prior, x, v, z, graph, substeps)[0],
                       batch=batch, num_graphs=2, v=v)
    d_t, d_prev = (0.02 * torch.randn(x.shape, generator=gen, dtype=torch.float64) for _ in range(2))
    noisy = replace(clean, x=x + d_t, x_prev=x_prev + d_prev)
    got = response_target(clean, noisy, graph, prior, substeps)
    v_noisy = v + (d_t - d_prev) / 3.0
    torch.testing.assert_close(got.v, v_noisy, rtol=0, atol=1e-15)
    torch.testing.assert_close(got.x_next, phase_step(prior, x + d_t, v_noisy, z, graph, substeps)[0], rtol=1e-10,
                               atol=1e-12)
    assert float((got.x_next - clean.x_next).abs().max()) > 0.01


def test_no_noise_no_shift_and_a_translation_moves_the_target_rigidly():
    prior = _prior()
    x, z, batch = _molecules()
    clean = FrameBatch(z=z, x_prev2=x, x_prev=x - 0.01, x=x, x_next=x + 0.01, batch=batch, num_graphs=2)
    graph = complete_graph(batch)
    assert torch.equal(response_target(clean, clean, graph, prior).x_next, clean.x_next)
    t = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    moved = replace(clean, x=clean.x + t, x_prev=clean.x_prev + t, x_prev2=clean.x_prev2 + t)
    torch.testing.assert_close(response_target(clean, moved, graph, prior).x_next, clean.x_next + t)


def test_training_with_response_targets_runs_and_differs(tmp_path):
    torch.set_num_threads(1)
    traj = load_trajectory(bundled("ethanol")).slice(0, 44)
    cfg = Config(model=TINY, train=TrainConfig(batch_size=8, epochs=1, val_every=100, val_rollout_frames=0,
                                               dtype="float64", input_noise=0.002, input_noise_shared=0.02))
    plain = train(cfg, traj, None, tmp_path / "plain")
    resp = train(cfg.with_overrides(["train.input_noise_response=true"]), traj, None, tmp_path / "resp")
    assert math.isfinite(resp.history[-1]["train_loss"])
    assert resp.history[-1]["train_loss"] != plain.history[-1]["train_loss"]
