"""The valence prior's phase-space step (valence/verlet.py): k velocity-Verlet substeps per frame
conserve the prior's energy at frames a one-step Verlet prior cannot take, one substep is the
position-Verlet anchor of the window, the step is E(3)-equivariant, and a phase-space model's rollout
of the prior alone is exactly that integrator with its velocity carried from frame to frame."""
import numpy as np
import pytest
import torch
from ase import units
from ase.data import atomic_masses

from diffmd_fast.config import ModelConfig
from diffmd_fast.data import bundled, load_trajectory
from diffmd_fast.data.windows import start_batch
from diffmd_fast.diffusion.samplers import HeunSampler
from diffmd_fast.diffusion.sde import ConditionalVESDE
from diffmd_fast.dynamics.stepper import Stepper
from diffmd_fast.nn.score_net import AnchorScore, ScoreNet, carried_velocity
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence.fit import valence_statistics
from diffmd_fast.valence.prior import BondPrior
from diffmd_fast.valence.topology import topology_graph, with_covalent_bonds
from diffmd_fast.valence.verlet import next_velocity, phase_step
from model_helpers import orthogonal


def _ethanol_prior(step_fs: float):
    traj = load_trajectory(bundled("ethanol"))
    prior = BondPrior(10)
    prior.set_tables(frame_fs=step_fs, **valence_statistics([traj], 10))
    return traj, prior


def _energy(prior, x, v, z, graph) -> float:
    mass = torch.as_tensor(atomic_masses[z.numpy()], dtype=torch.float64).unsqueeze(-1)
    kinetic = 0.5 * float((mass * v * v).sum()) / units.fs**2  # eV
    return kinetic + float(prior.energy(x, z, graph))


def test_substeps_conserve_the_prior_energy_at_frames_one_verlet_step_cannot_take():
    # 4 fs frames: one Verlet step per frame is unstable for a C-H stretch (ω Δt > 2, set_tables refuses
    # it); four 1 fs substeps conserve the energy: no drift over 2 ps, and a fluctuation of the size
    # velocity Verlet's shadow Hamiltonian gives at ω h ≈ 0.6 for the C-H stretches (~5 % of the kinetic energy)
    traj, prior = _ethanol_prior(1.0)
    with pytest.raises(ValueError, match="unstable"), pytest.warns(UserWarning, match="unstable"):
        BondPrior(10).set_tables(frame_fs=4.0, **valence_statistics([traj], 10))
    z = torch.as_tensor(traj.numbers)
    x = torch.as_tensor(traj.positions[100])
    v = torch.as_tensor(traj.velocity_estimates()[100])
    graph = topology_graph(x, z, torch.zeros(len(z), dtype=torch.int64))
    energies = [_energy(prior, x, v, z, graph)]
    for _ in range(500):  # 2 ps
        x, v = phase_step(prior, x, v, z, graph, substeps=4)
        energies.append(_energy(prior, x, v, z, graph))
    energies = np.array(energies)
    kinetic_scale = 1.5 * len(z) * units.kB * 500.0  # eV, the kinetic energy at ~500 K
    assert np.ptp(energies) < 0.1 * kinetic_scale, np.ptp(energies)
    assert abs(energies[-100:].mean() - energies[:100].mean()) < 0.01 * kinetic_scale


def test_one_substep_is_the_position_verlet_anchor_of_the_window():
    # velocity Verlet and position Verlet are one integrator: with v(t) = (x(t) - x(t-1)) / Δt + (Δt / 2) a(t)
    # one substep lands where 2 x(t) - x(t-1) + Δt² a(t) does
    traj, prior = _ethanol_prior(2.0)
    z = torch.as_tensor(traj.numbers)
    x_prev, x = (torch.as_tensor(traj.positions[t]) for t in (96, 100))
    graph = topology_graph(x, z, torch.zeros(len(z), dtype=torch.int64))
    step = prior(x, z, graph)  # Δt² a(t), Å
    v = (x - x_prev) / 2.0 + 0.5 * step / 2.0
    x_new, _ = phase_step(prior, x, v, z, graph, substeps=1)
    torch.testing.assert_close(x_new, 2 * x - x_prev + step, rtol=0, atol=1e-12)


@pytest.mark.parametrize("reflect", [False, True])
def test_the_phase_space_step_is_e3_equivariant(reflect):
    traj, prior = _ethanol_prior(1.0)
    z = torch.as_tensor(traj.numbers)
    x, v = torch.as_tensor(traj.positions[50]), torch.as_tensor(traj.velocity_estimates()[50])
    graph = topology_graph(x, z, torch.zeros(len(z), dtype=torch.int64))
    q, shift = orthogonal(3, reflect), torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    x1, v1 = phase_step(prior, x, v, z, graph, substeps=3)
    x2, v2 = phase_step(prior, x @ q.T + shift, v @ q.T, z, graph, substeps=3)
    torch.testing.assert_close(x2, x1 @ q.T + shift, rtol=0, atol=1e-10)
    torch.testing.assert_close(v2, v1 @ q.T, rtol=0, atol=1e-12)


def test_a_frame_moved_off_the_prior_step_kicks_the_velocity_by_the_move_over_the_frame():
    v_prior = torch.tensor([[0.01, 0.0, -0.02]], dtype=torch.float64)
    x_prior = torch.zeros(1, 3, dtype=torch.float64)
    x_new = torch.tensor([[0.004, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(next_velocity(x_new, x_prior, v_prior, 4.0), v_prior + torch.tensor([[0.001, 0.0, 0.0]],
                                                                                                    dtype=torch.float64))


def _phase_space_net(traj, substeps: int, frame_fs: float) -> ScoreNet:
    cfg = ModelConfig(num_layers=1, heads=2, hidden=8, ffn=8, dropout=0.0, max_z=10, num_fourier=2, bond_prior=True,
                      sigma_data=0.02, prior_substeps=substeps)
    net = ScoreNet(cfg).double()
    net.bond_prior.set_tables(frame_fs=frame_fs / substeps, **valence_statistics([traj], 10))
    return net


def test_a_phase_space_prior_alone_rollout_is_substepped_velocity_verlet_with_its_velocity_carried():
    traj = load_trajectory(bundled("ethanol"))
    net = _phase_space_net(traj, substeps=4, frame_fs=4.0)
    start = start_batch([traj, traj], [200, 900], stride=8, dtype=torch.float64)
    assert start.v is not None and start.v.shape == start.x.shape
    stepper = Stepper(AnchorScore(net), ConditionalVESDE(), HeunSampler(steps=1), start)
    x, v = start.x.clone(), start.v.clone()
    for _ in range(20):
        stepper.step()
        x, v = phase_step(net.bond_prior, x, v, start.z, stepper.graph, 4)
    # one Heun step to σ = 0 on the anchor's exact score lands on the anchor
    torch.testing.assert_close(stepper.frame.x, x, rtol=0, atol=1e-9)
    torch.testing.assert_close(stepper.frame.v, v, rtol=0, atol=1e-9)


def test_a_phase_space_model_refuses_a_window_without_velocities_in_one_line():
    traj = load_trajectory(bundled("ethanol"))
    net = _phase_space_net(traj, substeps=2, frame_fs=2.0)
    bare = start_batch(traj, 200, stride=4, dtype=torch.float64, velocities=False)
    graph = with_covalent_bonds(complete_graph(bare.batch), bare.x, bare.z)
    with pytest.raises(ValueError, match="needs each atom's velocity"):
        net.anchor(bare, graph)
    with_v = start_batch(traj, 200, stride=4, dtype=torch.float64)
    assert carried_velocity(AnchorScore(net), with_v, graph, with_v.x).shape == with_v.x.shape
    position_net = ScoreNet(ModelConfig(num_layers=1, heads=2, hidden=8, ffn=8, max_z=10, num_fourier=2,
                                        bond_prior=True)).double()
    assert carried_velocity(position_net, with_v, graph, with_v.x) is None
