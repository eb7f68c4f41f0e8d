"""The harmonic bonded-terms prior of the anchor (nn/bond_prior.py): its force is -∇U of the harmonic
bonds and angles of a fixed topology and nothing else, prior-only MD conserves energy and keeps the
data's pair-distance distribution, its tables come from the data, and they travel with checkpoints."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import units
from ase.data import atomic_masses, covalent_radii

from diffmd_fast.config import Config, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.nn.bond_prior import BondPrior
from diffmd_fast.evaluation.longrun import HR_BINS, HR_R_MAX, hr_errors, hr_histogram
from diffmd_fast.training.conditioning import angle_statistics, bond_statistics
from diffmd_fast.nn.score_net import ScoreNet
from diffmd_fast.ops.graph import complete_graph, with_covalent_bonds
from diffmd_fast.training.checkpoint import load_run
from diffmd_fast.training.loop import train
from model_helpers import TINY


def _prior(k=30.0, r0=1.0, frame_fs=1.0) -> BondPrior:
    prior = BondPrior(10)
    prior.k.fill_(k)
    prior.r0.fill_(r0)
    prior.frame_fs.fill_(frame_fs)
    return prior


def _energy_force(x: torch.Tensor, pairs, k: float, r0: float) -> torch.Tensor:
    xr = x.clone().requires_grad_()
    energy = sum(0.5 * k * ((xr[i] - xr[j]).norm() - r0) ** 2 for i, j in pairs)
    return torch.autograd.grad(-energy, xr)[0]


def test_step_is_the_harmonic_force_of_the_covalent_bonds_only():
    # O-H-O bent: both O-H bonded (< 1.2 x the covalent radii), the O...O pair at ~1.4 x is not, and a far atom
    x = torch.tensor([[0.0, 0.0, 0.0], [0.98, 0.05, 0.0], [1.48, 0.9, -0.03], [9.0, 9.0, 9.0]],
                     dtype=torch.float64)
    z = torch.tensor([8, 1, 8, 6])
    rho = lambda i, j: float((x[i] - x[j]).norm()) / (covalent_radii[z[i]] + covalent_radii[z[j]])
    assert rho(0, 1) < 1.2 and rho(1, 2) < 1.2 and 1.2 < rho(0, 2) < 1.6
    step = _prior(k=30.0, r0=0.97)(x, z, complete_graph(torch.zeros(4, dtype=torch.int64)))
    mass = torch.as_tensor(atomic_masses[z.numpy()], dtype=torch.float64).unsqueeze(-1)
    expected = units.fs**2 * _energy_force(x, [(0, 1), (1, 2)], 30.0, 0.97) / mass
    torch.testing.assert_close(step, expected, rtol=1e-12, atol=1e-15)
    assert torch.equal(step[3], torch.zeros(3, dtype=torch.float64))  # far away: no bond, no force


def test_angle_force_is_minus_the_gradient_of_the_cosine_harmonic_energy():
    # H2O-like plus a C on the O (two angles at O), random geometry, and an angle through 180 degrees
    torch.manual_seed(0)
    z = torch.tensor([8, 1, 1, 6])
    x = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.3, 0.92, 0.0], [-0.5, -0.6, 1.2]], dtype=torch.float64)
    x = x + 0.05 * torch.randn_like(x)
    graph = with_covalent_bonds(complete_graph(torch.zeros(4, dtype=torch.int64)), x, z)
    assert sorted(map(tuple, graph.angles.T.tolist())) == [(1, 0, 2), (1, 0, 3), (2, 0, 3)]
    angles = {(1, 8, 1): (5.0, -0.3), (1, 8, 6): (7.0, -0.2)}
    prior = BondPrior(10)
    prior.set_tables(torch.zeros(11, 11, dtype=torch.float64), torch.zeros(11, 11, dtype=torch.float64), 1.0, angles)
    xr = x.clone().requires_grad_()
    energy = 0.0
    for i, j, k in graph.angles.T.tolist():
        u, w = xr[i] - xr[j], xr[k] - xr[j]
        kk, c0 = angles[(min(int(z[i]), int(z[k])), int(z[j]), max(int(z[i]), int(z[k])))]
        energy = energy + 0.5 * kk * ((u @ w) / (u.norm() * w.norm()) - c0) ** 2
    (expected,) = torch.autograd.grad(-energy, xr)
    torch.testing.assert_close(prior.force(x, z, graph), expected, rtol=1e-12, atol=1e-14)
    straight = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.96, 0.0, 0.0], [0.0, 0.0, 9.0]], dtype=torch.float64)
    assert torch.isfinite(prior.force(straight, z, graph)).all()


def test_a_fixed_topology_pulls_back_however_far_and_ignores_newcomers():
    z = torch.tensor([6, 6, 6])
    rho = 2 * covalent_radii[6]
    start = torch.tensor([[0.0, 0.0, 0.0], [rho, 0.0, 0.0], [0.0, 5.0, 0.0]], dtype=torch.float64)
    graph = with_covalent_bonds(complete_graph(torch.zeros(3, dtype=torch.int64)), start, z)
    assert sorted(map(tuple, graph.bonds.T.tolist())) == [(0, 1), (1, 0)]
    prior = _prior(k=25.0, r0=rho)
    for stretch, sign in [(3.0, -1.0), (1.2, -1.0), (0.9, 1.0)]:  # stretched: pulled together; compressed: apart
        x = start.clone()
        x[1, 0] = stretch * rho
        x[2] = torch.tensor([stretch * rho, 1.0 * rho, 0.0])  # atom 2 comes within bonding range of atom 1
        step = prior(x, z, graph)
        assert float(step[1, 0]) * sign > 0 and torch.allclose(step[0], -step[1])
        assert torch.equal(step[2], torch.zeros(3, dtype=torch.float64))  # not in the topology: no force
    at_rest = start.clone()
    assert float(prior(at_rest, z, graph).abs().max()) < 1e-15


def test_prior_only_verlet_keeps_the_data_temperature_and_pair_distances():
    # The anchor alone (no network) is Verlet MD of a harmonic valence model: it must conserve energy. A
    # prior that re-perceived bonds by distance on every frame captured 1-3 neighbours and heated
    # ethanol from ~560 K to thousands of K within 30 frames.
    traj = load_trajectory(bundled("ethanol"))
    k, r0 = bond_statistics([traj], 10)
    stride = 2
    prior = BondPrior(10)
    prior.set_tables(k, r0, stride * traj.dt_fs, angle_statistics([traj]))
    starts = [0, 200, 400, 600]
    z = torch.as_tensor(traj.numbers).repeat(len(starts))
    batch = torch.arange(len(starts)).repeat_interleave(len(traj.numbers))
    frames = [torch.as_tensor(np.concatenate([traj.positions[t + d] for t in starts])) for d in (0, stride)]
    graph = with_covalent_bonds(complete_graph(batch), frames[1], z)
    mass = torch.as_tensor(atomic_masses[z.numpy()], dtype=torch.float64)
    temps, frames_out = [], []
    x_prev, x = frames
    for _ in range(400):
        x_prev, x = x, 2.0 * x - x_prev + prior(x, z, graph)
        v = (x - x_prev) / (stride * traj.dt_fs) / units.fs  # ASE velocity units
        temps.append(float((mass * (v**2).sum(-1)).sum()) / (3 * len(z) * units.kB))
        frames_out.append(x.reshape(len(starts), -1, 3).numpy())
    first, last = np.mean(temps[:100]), np.mean(temps[-100:])
    assert abs(last / first - 1.0) < 0.1, (first, last)
    # bonds and angles fix most pair distances of a small molecule: h(r) close to the data's
    edges = np.linspace(0.0, HR_R_MAX, HR_BINS + 1)
    h = hr_histogram(np.concatenate(frames_out))[0]
    assert hr_errors(h, hr_histogram(traj.positions)[0], edges)[1] < 0.03


def test_tables_are_checked_and_the_prior_needs_the_anchor():
    k, r0 = bond_statistics([load_trajectory(bundled("ethanol"))], 10)
    prior = BondPrior(10)
    prior.set_tables(k, r0, 1.0)
    assert torch.equal(prior.k, k) and torch.equal(prior.r0, r0) and float(prior.frame_fs) == 1.0
    with pytest.raises(ValueError, match="frame time"):
        prior.set_tables(k, r0, 0.0)
    with pytest.raises(ValueError, match="bond tables"):
        prior.set_tables(k[:5, :5], r0, 1.0)
    prior.set_tables(k, r0, 2.0)  # 2 fs frames: C-H (period ~10 fs) still stable under Verlet
    with pytest.raises(ValueError, match=r"stiffest bond \(C-H, period 10\.\d fs\).*shorter than 3\.\d+ fs"):
        prior.set_tables(k, r0, 4.0)
    with pytest.raises(ValueError, match="anchor"):
        ScoreNet(replace(TINY, anchor=False, bond_prior=True))


def test_training_fits_the_prior_and_checkpoints_carry_it(tmp_path):
    torch.set_num_threads(1)
    traj = load_trajectory(bundled("ethanol")).slice(0, 44)
    cfg = Config(model=replace(TINY, sigma_data=0.004, bond_prior=True),
                 train=TrainConfig(batch_size=8, epochs=1, val_every=100, val_rollout_frames=0, stride=2))
    result = train(cfg, traj, None, tmp_path / "run")
    prior = result.model.bond_prior
    assert float(prior.k[1, 6]) > 0 and float(prior.frame_fs) == 2 * traj.dt_fs
    assert float(prior.angle_k[prior.slot[1], prior.slot[6], prior.slot[1]]) > 0  # H-C-H
    loaded = load_run(tmp_path / "run")
    for name in ("k", "r0", "slot", "angle_k", "angle_c0"):
        assert torch.equal(getattr(loaded.model.bond_prior, name), getattr(prior, name))


def test_checkpoints_from_before_the_angle_tables_still_load():
    old = _prior().state_dict()
    old["radii"] = torch.zeros(11, dtype=torch.float64)  # the covalent-radii buffer it used to carry
    for name in ("slot", "angle_k", "angle_c0"):
        del old[name]
    prior = BondPrior(10)
    prior.load_state_dict(old)
    assert float(prior.k[1, 6]) == 30.0 and int(prior.slot.max()) == -1 and float(prior.angle_k.abs().sum()) == 0.0
