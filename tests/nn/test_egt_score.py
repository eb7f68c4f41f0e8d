"""The whole-network op diffmd_fast::egt_score (csrc/egt_score) against the ScoreNet modules.

The op is the modules' arithmetic in C++, so in float64 the two agree to rounding for every output
form (plain, gated anchor, EDM), several molecules, with and without padding atoms far away; it
must refuse what it cannot do (autograd) with a clear error, and ScoreNet must route to it only
when autograd is off."""
from dataclasses import replace

import pytest
import torch

from diffmd_fast.nn.score_net import ScoreNet
from diffmd_fast.ops import fused
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence.topology import with_covalent_bonds
from model_helpers import TINY, make_net, orthogonal, perturb_, random_batch, transform

pytestmark = pytest.mark.skipif(not fused.HAS_EXTENSION, reason="compiled extension not built")

FORMS = {"plain": dict(anchor=False), "gated": dict(anchor=True), "edm": dict(anchor=True, sigma_data=0.003),
         "edm+bond_prior": dict(anchor=True, sigma_data=0.003, bond_prior=True)}


def _net(form: str, **cfg) -> ScoreNet:
    net = perturb_(make_net(replace(TINY, **FORMS[form], **cfg)))
    if net.bond_prior is not None:  # tables as a fit would leave them: every pair bonded near 1.3 Å
        with torch.no_grad():
            net.bond_prior.k.fill_(30.0)
            net.bond_prior.r0.fill_(1.3)
            net.bond_prior.frame_fs.fill_(1.0)
    return net


def _inputs(batch, seed=1):
    gen = torch.Generator().manual_seed(seed)
    n = batch.x.shape[0]
    std = torch.exp(torch.empty(n, 1, dtype=torch.float64).uniform_(-7.0, -1.0, generator=gen))  # 1e-3 .. 0.37 Å
    x_noisy = 2 * batch.x - batch.x_prev + std * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x_noisy, std


def _modules(net: ScoreNet, batch, x_noisy, std):
    with torch.enable_grad():  # autograd on: the op-by-op path
        assert not net.uses_fused_network(x_noisy)
        return net(batch, x_noisy, std).detach()


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("layers,heads,sizes", [(1, 1, (3,)), (2, 2, (5, 4)), (3, 4, (9, 1, 7))])
def test_matches_modules_float64(form, layers, heads, sizes):
    net = _net(form, num_layers=layers, heads=heads)
    net.eval()
    batch = random_batch(sizes, seed=layers)
    x_noisy, std = _inputs(batch)
    with torch.no_grad():
        assert net.uses_fused_network(x_noisy)
        got = net(batch, x_noisy, std)
    want = _modules(net, batch, x_noisy, std)
    assert got.dtype == torch.float64 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * want.abs().max().item())


def test_float32_close_to_float64():
    net = _net("edm+bond_prior")
    net.eval()
    batch = random_batch((6, 5))
    x_noisy, std = _inputs(batch)
    with torch.no_grad():
        want = net(batch, x_noisy, std)
        b32 = replace(batch, x_prev2=batch.x_prev2.float(), x_prev=batch.x_prev.float(), x=batch.x.float(),
                      x_next=batch.x_next.float())
        got = net.float()(b32, x_noisy.float(), std.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=2e-3, atol=2e-3 * want.abs().max().item())


@pytest.mark.parametrize("form", ["gated", "edm+bond_prior"])
@pytest.mark.parametrize("reflect", [False, True])
def test_equivariant(reflect, form):
    net = _net(form)
    net.eval()
    batch = random_batch((5, 4), seed=3)
    x_noisy, std = _inputs(batch)
    q, t = orthogonal(4, reflect), torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        score = net(batch, x_noisy, std)
        moved = net(transform(batch, q, t), x_noisy @ q.T + t, std)
    torch.testing.assert_close(moved, score @ q.T, rtol=1e-9, atol=1e-9 * score.abs().max().item())


@pytest.mark.parametrize("reflect", [False, True])
def test_equivariant_with_torsions_in_the_prior(reflect):
    # torsion wells at ±φ0 (not 0 or π: the case a single well would break under a reflection) on
    # every dihedral of a chain-like molecule whose bonds the prior perceives
    net = _net("edm+bond_prior")
    net.eval()
    batch = random_batch((7, 6), seed=5)
    steps = 1.1 * torch.nn.functional.normalize(torch.randn(13, 3, generator=torch.Generator().manual_seed(5),
                                                            dtype=torch.float64), dim=-1)
    x = torch.cat([steps[:7].cumsum(0), steps[7:].cumsum(0) + 10.0])  # two chains of C-C-like steps
    batch = replace(batch, z=torch.full_like(batch.z, 6), x=x, x_prev=x - 0.01, x_prev2=x - 0.02)
    graph = with_covalent_bonds(complete_graph(batch.batch), batch.x, batch.z)
    env = graph.environments.tolist()
    torsions = {tuple(env[a] for a in q): (0.04, 6.0, 1, 1.1) for q in graph.dihedrals.T.tolist()}
    assert graph.dihedrals.shape[1] >= 4
    net.bond_prior.set_tables(net.bond_prior.k[:TINY.max_z + 1, :TINY.max_z + 1].clone(),
                              net.bond_prior.r0[:TINY.max_z + 1, :TINY.max_z + 1].clone(), 1.0, typed_dihedrals=torsions)
    x_noisy, std = _inputs(batch)
    q, t = orthogonal(6, reflect), torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        assert float(net.bond_prior.torsion_force(batch.x, net.bond_prior.atom_types(batch.z, graph), graph).abs().max()) > 0.01
        score = net(batch, x_noisy, std)
        moved = net(transform(batch, q, t), x_noisy @ q.T + t, std)
    torch.testing.assert_close(moved, score @ q.T, rtol=1e-9, atol=1e-9 * score.abs().max().item())


def test_routing_follows_autograd_and_dropout():
    net = make_net(replace(TINY, dropout=0.1))
    x = torch.zeros(2, 3, dtype=torch.float64)
    with torch.no_grad():
        assert not net.train().uses_fused_network(x)  # dropout active in training mode
        assert net.eval().uses_fused_network(x)
        assert not net.eval().uses_fused_network(x.half())
    assert not net.eval().uses_fused_network(x)  # autograd on: modules


def test_refuses_autograd_and_bad_shapes():
    net = make_net()
    batch = random_batch((4,))
    x_noisy, std = _inputs(batch)
    graph = complete_graph(batch.batch)
    c = net.cfg

    def call(params, x=batch.x, s=std):  # params: the cached detached aliases
        return torch.ops.diffmd_fast.egt_score(batch.z, batch.x_prev, x, x_noisy, 2 * x - batch.x_prev, s,
                                               graph.row_ptr, graph.col,
                                               params, c.cutoff, c.num_radial, c.num_spherical, c.heads, c.anchor,
                                               c.sigma_data, c.num_layers)

    with pytest.raises(RuntimeError, match="inference-only"):
        call(net.fused_params(), x=batch.x.clone().requires_grad_())  # grad mode on
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="parameter tensors"):
            call(net.fused_params()[:-1])
        with pytest.raises(RuntimeError, match="std must be"):
            call(net.fused_params(), s=std[:2])
        with pytest.raises(RuntimeError, match="dtype"):
            call(net.fused_params(), x=batch.x.float())


def test_cached_parameters_follow_updates_and_conversions():
    """The op reads cached detached aliases: in-place optimiser steps, load_state_dict and dtype
    conversions must all show through."""
    net = _net("gated")
    net.eval()
    batch = random_batch((5, 4), seed=7)
    x_noisy, std = _inputs(batch)
    with torch.no_grad():
        net(batch, x_noisy, std)  # builds the cache
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with torch.enable_grad():
        net(batch, x_noisy, std).square().sum().backward()
    opt.step()
    other = perturb_(make_net(replace(TINY, **FORMS["gated"])))
    for step in ("optimiser", "load_state_dict", "float_and_back"):
        if step == "load_state_dict":
            net.load_state_dict(other.state_dict())
        if step == "float_and_back":
            net.float().double()
        with torch.no_grad():
            got = net(batch, x_noisy, std)
        torch.testing.assert_close(got, _modules(net, batch, x_noisy, std), rtol=1e-10, atol=1e-9)


def test_opcheck():
    net = make_net(replace(TINY, **FORMS["edm"]))
    batch = random_batch((4, 3))
    x_noisy, std = _inputs(batch)
    graph = complete_graph(batch.batch)
    c = net.cfg
    params = [p.detach() for p in net.fused_params()]
    args = (batch.z, batch.x_prev, batch.x, x_noisy, 2 * batch.x - batch.x_prev, std, graph.row_ptr, graph.col, params, c.cutoff,
            c.num_radial, c.num_spherical, c.heads, c.anchor, c.sigma_data, c.num_layers)
    torch.library.opcheck(torch.ops.diffmd_fast.egt_score.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


def test_each_layer_hands_the_op_exactly_the_tensors_the_cpp_side_reads():
    """The op checks the length of its parameter list (head + kPerLayer per layer, egt_score.cpp); the
    lengths it expects for 1 and 2 layers, read from its error message, give kPerLayer, which must be
    EGL.fused_params' length, and the head must be what ScoreNet puts before the layers."""
    import re

    expected = {}
    for layers in (1, 2):
        net = _net("edm", num_layers=layers)
        batch = random_batch()
        x_noisy, std = _inputs(batch)
        graph = complete_graph(batch.batch)
        c = net.cfg
        with torch.no_grad(), pytest.raises(RuntimeError, match="parameter tensors") as err:
            fused.egt_score(batch.z, batch.x_prev, batch.x, x_noisy, net.anchor(batch, graph), std, graph.row_ptr,
                            graph.col, net.fused_params()[:-1], cutoff=c.cutoff, num_radial=c.num_radial,
                            num_spherical=c.num_spherical, heads=c.heads, anchor=c.anchor, sigma_data=c.sigma_data,
                            num_layers=layers)
        expected[layers] = int(re.search(r"expected (\d+) parameter tensors", str(err.value)).group(1))
        assert expected[layers] == len(net.fused_params())
    per_layer = expected[2] - expected[1]
    assert per_layer == len(net.layers[0].fused_params()) == 23
