"""EGT score network: E(3) equivariance, translation invariance, permutation equivariance, backends."""
import pytest
import torch

import diffmd_fast
from diffmd_fast.config import ModelConfig
from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.nn.score_net import ScoreNet

from model_helpers import TINY, make_net, orthogonal, random_batch, transform


def _inputs(b: FrameBatch, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x_noisy = b.x_next + 0.05 * torch.randn(b.x.shape, generator=gen, dtype=b.x.dtype)
    std = 0.02 + 0.2 * torch.rand(b.x.shape[0], 1, generator=gen, dtype=b.x.dtype)
    return x_noisy, std


@pytest.mark.parametrize("reflect", [False, True])
def test_score_is_e3_equivariant_and_translation_invariant(reflect):
    net = make_net()
    b = random_batch()
    x_noisy, std = _inputs(b)
    score = net(b, x_noisy, std)
    q, t = orthogonal(3, reflect), torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64)
    score_g = net(transform(b, q, t), x_noisy @ q.T + t, std)
    assert torch.isfinite(score).all()
    assert score.abs().max() > 1e-3  # not trivially zero
    assert torch.allclose(score_g, score @ q.T, atol=1e-9, rtol=1e-7)


def test_score_is_permutation_equivariant():
    net = make_net()
    b = random_batch(sizes=(6,))
    x_noisy, std = _inputs(b)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(5))
    pb = FrameBatch(z=b.z[perm], x_prev2=b.x_prev2[perm], x_prev=b.x_prev[perm], x=b.x[perm],
                    x_next=b.x_next[perm], batch=b.batch, num_graphs=1)
    assert torch.allclose(net(pb, x_noisy[perm], std[perm]), net(b, x_noisy, std)[perm], atol=1e-10)


def test_molecules_in_a_batch_do_not_interact():
    net = make_net()
    b = random_batch(sizes=(5, 4))
    x_noisy, std = _inputs(b)
    both = net(b, x_noisy, std)
    first = FrameBatch(z=b.z[:5], x_prev2=b.x_prev2[:5], x_prev=b.x_prev[:5], x=b.x[:5], x_next=b.x_next[:5],
                       batch=b.batch[:5], num_graphs=1)
    assert torch.allclose(net(first, x_noisy[:5], std[:5]), both[:5], atol=1e-10)


def test_anchor_gate_pulls_towards_extrapolation():
    """With the gate saturated open and the EGL displacement removed, the score is -(x̃ - anchor)/σ²."""
    net = make_net()
    b = random_batch()
    x_noisy, std = _inputs(b)
    with torch.no_grad():
        net.gate.weight.zero_()
        net.gate.bias.fill_(40.0)
        for layer in net.layers:  # switch the EGL moves off: v' = 0 · v + 0 · vec
            layer.head_mix.zero_()
            layer.f_v[-1].weight.zero_()
            layer.f_v[-1].bias.zero_()
    expect = -(x_noisy - (2 * b.x - b.x_prev)) / std**2
    assert torch.allclose(net(b, x_noisy, std), expect, rtol=1e-9)


@pytest.mark.skipif(not diffmd_fast.HAS_EXTENSION, reason="compiled extension not built")
def test_fused_and_reference_backends_agree():
    ref = make_net(ModelConfig(**{**TINY.__dict__, "backend": "reference"}))
    fused = ScoreNet(TINY).double()
    fused.load_state_dict(ref.state_dict())
    b = random_batch()
    x_noisy, std = _inputs(b)
    x_ref = x_noisy.clone().requires_grad_(True)
    x_fus = x_noisy.clone().requires_grad_(True)
    s_ref, s_fus = ref(b, x_ref, std), fused(b, x_fus, std)
    assert torch.allclose(s_fus, s_ref, atol=1e-8, rtol=1e-6)
    s_ref.square().sum().backward()
    s_fus.square().sum().backward()
    assert torch.allclose(x_fus.grad, x_ref.grad, atol=1e-7, rtol=1e-5)


def test_bad_inputs_raise():
    net = make_net()
    b = random_batch()
    x_noisy, std = _inputs(b)
    with pytest.raises(ValueError, match="std"):
        net(b, x_noisy, std.squeeze(-1))
    big_z = FrameBatch(z=b.z + 50, x_prev2=b.x_prev2, x_prev=b.x_prev, x=b.x, x_next=b.x_next, batch=b.batch,
                       num_graphs=b.num_graphs)
    with pytest.raises(ValueError, match="atomic numbers"):
        net(big_z, x_noisy, std)
    net(b, x_noisy, std)  # a z tensor is checked once (a rollout's windows share it) ...
    b.z[0] = -1  # ... and again after an in-place change
    with pytest.raises(ValueError, match="atomic numbers"):
        net(b, x_noisy, std)


def test_paper_form_without_anchor_is_equivariant():
    net = make_net(ModelConfig(**{**TINY.__dict__, "anchor": False}))
    assert net.gate is None and float(net.delta_scale.detach()) == 1.0
    b = random_batch()
    x_noisy, std = _inputs(b)
    q, t = orthogonal(7, True), torch.tensor([-1.0, 0.2, 4.0], dtype=torch.float64)
    assert torch.allclose(net(transform(b, q, t), x_noisy @ q.T + t, std), net(b, x_noisy, std) @ q.T, atol=1e-9)


def test_edm_preconditioned_form_is_equivariant_and_starts_at_the_gaussian_posterior():
    cfg = ModelConfig(**{**TINY.__dict__, "sigma_data": 0.01})
    b = random_batch()
    x_noisy, std = _inputs(b)
    torch.manual_seed(0)
    fresh = ScoreNet(cfg).double()  # κ = 0: exact score of N(x(t) + v(t), σ_d²) blurred by the noise
    anchor = 2 * b.x - b.x_prev
    assert torch.allclose(fresh(b, x_noisy, std), -(x_noisy - anchor) / (std**2 + 0.01**2), atol=1e-12)
    net = make_net(cfg)
    assert net.gate is None
    q, t = orthogonal(5, True), torch.tensor([2.0, 1.0, -3.0], dtype=torch.float64)
    score = net(b, x_noisy, std)
    assert not torch.allclose(score, fresh(b, x_noisy, std))  # the EGL stack contributes
    assert torch.allclose(net(transform(b, q, t), x_noisy @ q.T + t, std), score @ q.T, atol=1e-9)
    with pytest.raises(ValueError, match="anchor"):
        ScoreNet(ModelConfig(**{**TINY.__dict__, "sigma_data": 0.01, "anchor": False}))


@pytest.mark.parametrize("reflect", [False, True])
def test_a_phase_space_model_and_its_carried_velocity_are_e3_equivariant(reflect):
    """A phase-space model (model.prior_substeps) reads the window's velocity v(t) Å/fs: its score and
    the velocity it carries to the next frame turn with the molecule, and the config needs the prior."""
    from dataclasses import replace

    from diffmd_fast.data import bundled, load_trajectory, start_batch
    from diffmd_fast.nn.score_net import carried_velocity
    from diffmd_fast.valence.fit import valence_statistics
    from diffmd_fast.valence.topology import topology_graph

    traj = load_trajectory(bundled("ethanol"))
    net = make_net(ModelConfig(**{**TINY.__dict__, "sigma_data": 0.01, "bond_prior": True, "prior_substeps": 2}))
    net.bond_prior.set_tables(frame_fs=1.0, **valence_statistics([traj], 10))
    b = start_batch([traj, traj], [100, 700], stride=4, dtype=torch.float64)
    graph = topology_graph(b.x, b.z, b.batch)
    gen = torch.Generator().manual_seed(2)
    x_noisy = net.anchor(b, graph) + 0.01 * torch.randn(b.x.shape, generator=gen, dtype=torch.float64)
    std = torch.full((b.x.shape[0], 1), 0.01, dtype=torch.float64)
    q, t = orthogonal(7, reflect), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    turned = replace(transform(b, q, t), v=b.v @ q.T)
    score = net(b, x_noisy, std, graph)
    torch.testing.assert_close(net(turned, x_noisy @ q.T + t, std, graph), score @ q.T, rtol=0, atol=1e-8)
    v_next = carried_velocity(net, b, graph, x_noisy)
    torch.testing.assert_close(carried_velocity(net, turned, graph, x_noisy @ q.T + t), v_next @ q.T, rtol=0, atol=1e-10)
    assert not torch.allclose(net(replace(b, v=1.1 * b.v), x_noisy, std, graph), score)  # it reads v
    with pytest.raises(ValueError, match="prior_substeps"):
        ModelConfig(prior_substeps=2)
