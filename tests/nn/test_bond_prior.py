"""The harmonic bond prior of the anchor (nn/bond_prior.py): its force is the harmonic bond force where
the switch is on and nothing beyond, its tables come from the data, and they travel with checkpoints."""
from dataclasses import replace

import pytest
import torch
from ase import units
from ase.data import atomic_masses, covalent_radii

from diffmd_fast.config import Config, TrainConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.nn.bond_prior import BondPrior
from diffmd_fast.training.conditioning import bond_statistics
from diffmd_fast.nn.score_net import ScoreNet
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.training.checkpoint import load_run
from diffmd_fast.training.loop import train
from model_helpers import TINY


def _prior(k=30.0, r0=1.0, frame_fs=1.0) -> BondPrior:
    prior = BondPrior(10)
    prior.k.fill_(k)
    prior.r0.fill_(r0)
    prior.frame_fs.fill_(frame_fs)
    return prior


def test_step_is_the_harmonic_bond_force_where_the_switch_is_on():
    # O-H-H-like triatomic, every pair inside 1.4 x the sum of covalent radii, plus a far atom
    x = torch.tensor([[0.0, 0.0, 0.0], [1.02, 0.05, 0.0], [0.1, 0.98, -0.03], [9.0, 9.0, 9.0]],
                     dtype=torch.float64)
    z = torch.tensor([8, 1, 8, 6])
    prior = _prior(k=30.0, r0=0.97)
    step = prior(x, z, complete_graph(torch.zeros(4, dtype=torch.int64)))
    xr = x.clone().requires_grad_()
    energy = 0.0
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        ratio = float((x[i] - x[j]).norm()) / (covalent_radii[z[i]] + covalent_radii[z[j]])
        assert ratio < 1.4
        energy = energy + 0.5 * 30.0 * ((xr[i] - xr[j]).norm() - 0.97) ** 2
    (force,) = torch.autograd.grad(-energy, xr)
    mass = torch.as_tensor(atomic_masses[z.numpy()], dtype=torch.float64).unsqueeze(-1)
    torch.testing.assert_close(step, units.fs**2 * force / mass, rtol=1e-12, atol=1e-15)
    assert torch.equal(step[3], torch.zeros(3, dtype=torch.float64))  # far away: no bond, no force


def test_restoring_and_switched_off_beyond_its_range():
    z = torch.tensor([6, 6])
    graph = complete_graph(torch.zeros(2, dtype=torch.int64))
    rho = 2 * covalent_radii[6]
    prior = _prior(k=25.0, r0=rho)
    for stretch, sign in [(1.2, -1.0), (0.9, 1.0)]:  # stretched: pulled together; compressed: pushed apart
        x = torch.tensor([[0.0, 0.0, 0.0], [stretch * rho, 0.0, 0.0]], dtype=torch.float64)
        step = prior(x, z, graph)
        assert float(step[1, 0]) * sign > 0 and torch.allclose(step[0], -step[1])
    far = torch.tensor([[0.0, 0.0, 0.0], [1.61 * rho, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(prior(far, z, graph), torch.zeros(2, 3, dtype=torch.float64))
    at_rest = torch.tensor([[0.0, 0.0, 0.0], [rho, 0.0, 0.0]], dtype=torch.float64)
    assert float(prior(at_rest, z, graph).abs().max()) < 1e-15


def test_tables_are_checked_and_the_prior_needs_the_anchor():
    k, r0 = bond_statistics([load_trajectory(bundled("ethanol"))], 10)
    prior = BondPrior(10)
    prior.set_tables(k, r0, 1.0)
    assert torch.equal(prior.k, k) and torch.equal(prior.r0, r0) and float(prior.frame_fs) == 1.0
    with pytest.raises(ValueError, match="frame time"):
        prior.set_tables(k, r0, 0.0)
    with pytest.raises(ValueError, match="bond tables"):
        prior.set_tables(k[:5, :5], r0, 1.0)
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
    loaded = load_run(tmp_path / "run")
    assert torch.equal(loaded.model.bond_prior.k, prior.k) and torch.equal(loaded.model.bond_prior.r0, prior.r0)
