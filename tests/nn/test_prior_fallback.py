"""PriorFallback: the network's frame inside the data's bond range, the valence prior's outside it,
equivariant, and the same in a compiled rollout frame."""
import dataclasses
from importlib.resources import files

import pytest
import torch

from diffmd_fast.data import bundled, load_trajectory, start_batch
from diffmd_fast.nn.score_net import AnchorScore, PriorFallback
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence import valence_statistics, with_covalent_bonds
from model_helpers import TINY, make_net, orthogonal, perturb_, transform

T = 500.0  # K


@pytest.fixture(scope="module")
def setup():
    traj = load_trajectory(bundled("ethanol"))
    net = perturb_(make_net(dataclasses.replace(TINY, bond_prior=True, sigma_data=0.05)))
    net.bond_prior.set_tables(frame_fs=2.0, **valence_statistics([traj.slice(0, 2000)], 10))
    batch = start_batch([traj] * 2, [500, 1500], stride=4, dtype=torch.float64)
    graph = with_covalent_bonds(complete_graph(batch.batch), batch.x, batch.z)
    return net, batch, graph


def _scores(model, batch, graph, seed=0):
    gen = torch.Generator().manual_seed(seed)
    std = torch.full((batch.x.shape[0], 1), 0.05, dtype=torch.float64)
    x_noisy = batch.x + 0.05 * torch.randn(batch.x.shape, generator=gen, dtype=torch.float64)
    return model(batch, x_noisy, std, graph), x_noisy, std


def test_inside_the_data_range_it_is_the_network(setup):
    net, batch, graph = setup
    wrapped = PriorFallback(net, T, 4.0)
    assert torch.equal(wrapped.trust(batch.x, batch.z, graph), torch.ones(batch.x.shape[0], 1, dtype=torch.float64))
    torch.testing.assert_close(_scores(wrapped, batch, graph)[0], _scores(net, batch, graph)[0])


def test_a_stretched_bond_hands_its_atoms_to_the_prior(setup):
    net, batch, graph = setup
    stretched = batch.x.clone()
    stretched[2] = stretched[1] + 1.6 * (stretched[2] - stretched[1])  # ethanol's C-O of molecule 0 to ~2.3 Å
    moved = type(batch)(z=batch.z, x_prev2=batch.x_prev2, x_prev=batch.x_prev, x=stretched, x_next=batch.x_next,
                        batch=batch.batch, num_graphs=batch.num_graphs)
    wrapped = PriorFallback(net, T, 4.0)
    w = wrapped.trust(moved.x, moved.z, graph).squeeze(-1)
    assert w[1] == 0 and w[2] == 0  # both ends of the stretched bond
    assert (w[batch.batch == 1] == 1).all()  # the other molecule untouched
    out, x_noisy, std = _scores(wrapped, moved, graph)
    prior = AnchorScore(net)(moved, x_noisy, std, graph)
    net_score = net(moved, x_noisy, std, graph)
    torch.testing.assert_close(out[[1, 2]], prior[[1, 2]])
    torch.testing.assert_close(out[batch.batch == 1], net_score[batch.batch == 1])


def test_a_bond_passing_its_rest_length_fast_is_handed_over_by_its_energy(setup):
    """With ``energy``, the excursion is the oscillation amplitude: thermal data keep the network, and a
    C-O bond at its rest length whose previous frame was 0.3 Å longer (a stretch swinging through its
    well with several times the thermal energy) hands its atoms to the prior, which the stretch rule
    alone does not."""
    net, batch, graph = setup
    by_energy, by_stretch = PriorFallback(net, T, 4.0, energy=True), PriorFallback(net, T, 4.0)
    ones = torch.ones(batch.x.shape[0], 1, dtype=torch.float64)
    assert torch.equal(by_energy.trust(batch.x, batch.z, graph, batch.x_prev), ones)
    x, x_prev = batch.x.clone(), batch.x.clone()
    prior = net.bond_prior
    t = prior.atom_types(batch.z, graph)
    r0 = prior.r0[t[1], t[2]]  # ethanol's C-O, molecule 0
    unit = (x[2] - x[1]) / (x[2] - x[1]).norm()
    x[2] = x[1] + r0 * unit
    x_prev[2] = x[1] + (r0 + 0.3) * unit
    assert torch.equal(by_stretch.trust(x, batch.z, graph, x_prev), by_stretch.trust(x, batch.z, graph))
    w = by_energy.trust(x, batch.z, graph, x_prev).squeeze(-1)
    assert w[1] == 0 and w[2] == 0
    assert (w[batch.batch == 1] == 1).all()
    # without the previous frame the amplitude is unknown: the stretch rule
    assert torch.equal(by_energy.trust(x, batch.z, graph), by_stretch.trust(x, batch.z, graph))


def test_the_fallback_is_e3_equivariant(setup):
    net, batch, graph = setup
    for energy in (False, True):
        wrapped = PriorFallback(net, T, 1.0, energy=energy)  # a tight range: some atoms partly on the prior
        assert (wrapped.trust(batch.x, batch.z, graph, batch.x_prev) < 1).any()
        out, x_noisy, std = _scores(wrapped, batch, graph)
        for reflect in (False, True):
            q, t = orthogonal(3, reflect), torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
            moved = transform(batch, q, t)
            out_q = wrapped(moved, x_noisy @ q.T + t, std, graph)
            torch.testing.assert_close(out_q, out @ q.T, rtol=1e-8, atol=1e-8)


def test_a_net_without_a_prior_is_refused():
    from diffmd_fast.config import ModelConfig
    from diffmd_fast.nn.score_net import ScoreNet

    with pytest.raises(ValueError, match="valence prior"):
        PriorFallback(ScoreNet(ModelConfig(num_layers=1, heads=2, hidden=8, ffn=16, max_z=10, bond_prior=False)), T, 4.0)


def test_the_whole_rollout_step_with_the_fallback_is_e3_equivariant(setup):
    """The deterministic part of the shipped step (one-step sampler, network over the valence prior
    with the fallback, momentum projection) rolled out from a rotated, reflected, shifted start gives
    the transformed frames; the step's noise (fluctuation, thermostat) is isotropic per atom."""
    from diffmd_fast.config import Config
    from diffmd_fast.diffusion.samplers import make_sampler
    from diffmd_fast.diffusion.sde import make_sde
    from diffmd_fast.dynamics.guards import GuardConfig
    from diffmd_fast.dynamics.physics import MomentumProjection
    from diffmd_fast.dynamics.rollout import rollout

    net, batch, graph = setup
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "long.toml")
    with torch.no_grad():
        net.delta_scale.fill_(0.02)  # an untrained network at full scale flings atoms
    wrapped = PriorFallback(net, T, 1.0)  # tight: some atoms partly on the prior
    q, t = orthogonal(5, True), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    runs = [rollout(wrapped, make_sde(cfg.sde), make_sampler(cfg.sampler), b, frames=5, guard=GuardConfig.finite_only(),
                    corrections=[MomentumProjection()]) for b in (batch, transform(batch, q, t))]
    assert (runs[0].positions[-1] - batch.x).abs().max() > 1e-3  # it moved
    torch.testing.assert_close(runs[1].positions, runs[0].positions @ q.T + t, rtol=0, atol=1e-9)
