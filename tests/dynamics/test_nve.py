"""The whole rollout step of the prior alone (AnchorScore: the model without its network) with no
thermostat is velocity-Verlet MD of the valence force field (force-matched, Urey-Bradley springs
included): its energy is conserved. A sampler
whose last step stopped short of σ = 0 would keep a fraction of x(t) in every frame, a friction
that cools the molecule (400 K to a few K within about a picosecond at 2 fs frames)."""
from importlib.resources import files

import numpy as np
import pytest
import torch
from ase import units
from ase.data import atomic_masses

from diffmd_fast.config import Config
from diffmd_fast.data import bundled, load_trajectory, start_batch
from diffmd_fast.diffusion.samplers import make_sampler
from diffmd_fast.diffusion.sde import make_sde
from diffmd_fast.dynamics.stepper import Stepper
from diffmd_fast.nn.score_net import AnchorScore, ScoreNet
from diffmd_fast.valence.fit import valence_statistics
from diffmd_fast.valence.force_matching import force_matched

STRIDE, FRAMES = 4, 750  # 2 fs frames of the 0.5 fs data, 1.5 ps


@pytest.fixture(scope="module")
def prior_only():
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "long.toml", ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=16",
                                    "model.max_z=10", "model.sigma_data=0.05"])
    traj = load_trajectory(bundled("ethanol"))
    net = ScoreNet(cfg.model).double()
    data = traj.slice(0, 4000)
    tables = valence_statistics([data], 10)
    net.bond_prior.set_tables(frame_fs=STRIDE * traj.dt_fs, **tables)
    tables, _ = force_matched([data], net.bond_prior, tables, frames=100)  # the shipped fit, with Urey-Bradley springs
    net.bond_prior.set_tables(frame_fs=STRIDE * traj.dt_fs, **tables)
    assert float(net.bond_prior.ub_k.max()) > 0
    return cfg, traj, net


def test_prior_only_rollout_without_thermostat_conserves_energy(prior_only):
    cfg, traj, net = prior_only
    start = start_batch([traj] * 4, [1000, 2000, 3000, 4000], stride=STRIDE, dtype=torch.float64)
    stepper = Stepper(AnchorScore(net), make_sde(cfg.sde), make_sampler(cfg.sampler), start)
    frames = [start.x_prev.clone(), start.x.clone()]
    stepper.attach(lambda s: frames.append(s.positions.clone()))
    stepper.run(FRAMES)
    assert all(r is None for r in stepper.stopped)
    x = torch.stack(frames)  # (T, N, 3) Å
    dt = STRIDE * traj.dt_fs
    v = (x[2:] - x[:-2]) / (2 * dt)  # (T-2, N, 3) Å/fs at the middle frames, central differences
    mass = torch.as_tensor(atomic_masses[start.z.numpy()], dtype=torch.float64)
    kinetic = 0.5 * (mass[:, None] * v**2).sum((1, 2)) / units.fs**2  # (T-2,) eV: amu Å²/fs² -> eV
    potential = torch.stack([net.bond_prior.energy(xt, start.z, stepper.graph) for xt in x[1:-1]])
    energy = (kinetic + potential).numpy()
    ke = float(kinetic.mean())
    temperature = 2 * kinetic.numpy() / (3 * len(mass) * units.kB)
    assert temperature[:50].mean() > 300  # the data's ~500 K, not a frozen start
    assert np.std(energy) < 0.03 * ke, (np.std(energy), ke)  # Verlet's O(Δt²) fluctuation only
    assert abs(energy[-100:].mean() - energy[:100].mean()) < 0.02 * ke  # no drift: no friction, no heating
    assert abs(temperature[-100:].mean() / temperature[:100].mean() - 1) < 0.15


def test_energy_is_the_potential_of_the_force(prior_only):
    _, traj, net = prior_only
    start = start_batch([traj], [1500], stride=STRIDE, dtype=torch.float64)
    from diffmd_fast.ops.graph import complete_graph
    from diffmd_fast.valence.topology import with_covalent_bonds

    graph = with_covalent_bonds(complete_graph(start.batch), start.x, start.z)
    x = (start.x + 0.03 * torch.randn(start.x.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=torch.float64)).requires_grad_()
    grad = torch.autograd.grad(net.bond_prior.energy(x, start.z, graph), x)[0]
    torch.testing.assert_close(-grad, net.bond_prior.force_reference(x.detach(), start.z, graph), rtol=1e-9, atol=1e-10)
