"""diffmd_fast::valence_force (csrc/valence_force/): the bond prior's forces in one pass equal the
PyTorch reference (BondPrior.force_reference) in float64, for float32 and float64 positions and
float32 tables, with element and atom-environment tables (with Urey-Bradley springs), skip types
without angle data, refuse bad topologies, tables and gradients with one-line errors, pass opcheck,
and agree across devices."""
from __future__ import annotations

import pytest
import torch

from diffmd_fast.valence.prior import BondPrior
from diffmd_fast.ops import fused
from diffmd_fast.ops.graph import complete_graph
from diffmd_fast.valence.topology import atom_environments, with_covalent_bonds

pytestmark = pytest.mark.skipif(not fused.HAS_EXTENSION, reason="compiled extension not built")

ELEMENTS = (1, 6, 7, 8)


def _molecules(seed: int, sizes=(5, 9, 3)):
    """Random chain-and-branch molecules of H, C, N, O with bonds of ~1.0-1.5 Å, in one batch."""
    gen = torch.Generator().manual_seed(seed)
    xs, zs, batch = [], [], []
    for m, n in enumerate(sizes):
        x = torch.zeros(n, 3, dtype=torch.float64)
        for a in range(1, n):
            parent = int(torch.randint(0, a, (1,), generator=gen))
            step = torch.randn(3, generator=gen, dtype=torch.float64)
            x[a] = x[parent] + 1.1 * step / step.norm()
        xs.append(x + 20.0 * m)
        zs.append(torch.tensor(ELEMENTS)[torch.randint(0, 4, (n,), generator=gen)])
        batch.append(torch.full((n,), m))
    return torch.cat(xs), torch.cat(zs), torch.cat(batch)


def _prior(seed: int, angle_elements=ELEMENTS, graph=None, z=None) -> BondPrior:
    """Random element tables; with ``graph`` and ``z`` also environment tables for half of the bonds and
    angles of that topology (the other half falls back to its elements' values)."""
    gen = torch.Generator().manual_seed(seed)
    prior = BondPrior(10)
    k = 10.0 + 40.0 * torch.rand(11, 11, generator=gen, dtype=torch.float64)
    r0 = 0.9 + 0.6 * torch.rand(11, 11, generator=gen, dtype=torch.float64)
    draw = lambda: (float(2.0 + 8.0 * torch.rand(1, generator=gen)), float(-0.3 - 0.4 * torch.rand(1, generator=gen)))
    angles = {(a, c, b): draw() for a in angle_elements for c in angle_elements for b in angle_elements if a <= b}
    typed_bonds, typed_angles, typed_dihedrals, typed_ub = {}, {}, {}, {}
    if graph is not None:
        env = atom_environments(graph.bonds, z).tolist()
        for i, j in graph.bonds.T.tolist()[::2]:
            typed_bonds[(env[i], env[j])] = (float(20.0 + 20.0 * torch.rand(1, generator=gen)),
                                             float(1.0 + 0.4 * torch.rand(1, generator=gen)))
        for n, (i, j, kk) in enumerate(graph.angles.T.tolist()[::2]):
            typed_angles[(env[i], env[j], env[kk])] = draw()
            if n % 2:  # every other typed angle with a spring between its ends (the rest: none)
                typed_ub[(env[i], env[j], env[kk])] = (float(1.0 + 4.0 * torch.rand(1, generator=gen)),
                                                       float(1.8 + 0.6 * torch.rand(1, generator=gen)))
        for q in graph.dihedrals.T.tolist()[::2]:  # mirror pairs of wells, n = 1..3
            typed_dihedrals[tuple(env[a] for a in q)] = (0.05, float(1.0 + 9.0 * torch.rand(1, generator=gen)),
                                                         int(torch.randint(1, 4, (1,), generator=gen)),
                                                         float(3.0 * torch.rand(1, generator=gen)))
    prior.set_tables((k + k.T) / 2, (r0 + r0.T) / 2, 1.0, angles, typed_bonds, typed_angles, typed_dihedrals,
                     typed_urey_bradley=typed_ub)
    return prior


def _args(prior, x, z, graph):
    types = prior.atom_types(z, graph)
    return (x, types, graph.bonds, graph.angles, prior.k, prior.r0, prior.slot, prior.angle_k, prior.angle_c0,
            prior.ub_k, prior.ub_r0, *prior.torsion_terms(types, graph, x.shape[0]))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("typed", [False, True])
def test_op_equals_the_reference(seed, dtype, typed):
    x, z, batch = _molecules(seed)
    graph = with_covalent_bonds(complete_graph(batch), x, z)
    assert graph.angles.shape[1] > 0
    prior = _prior(seed, graph=graph, z=z) if typed else _prior(seed)
    assert (prior.environments.numel() > 0) == typed and (prior.torsions.shape[0] > 0) == typed
    assert bool((prior.ub_k > 0).any()) == typed
    x = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).to(dtype)
    got = torch.ops.diffmd_fast.valence_force(*_args(prior, x, z, graph))
    want = prior.force_reference(x.double(), z, graph)
    assert got.dtype == torch.float64 and float(want.abs().max()) > 1.0
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    total = got.sum(0)  # internal forces: no net force on the batch
    assert float(total.abs().max()) < 1e-9


def test_float32_tables_and_elements_without_angle_data():
    x, z, batch = _molecules(7)
    graph = with_covalent_bonds(complete_graph(batch), x, z)
    prior = _prior(7, angle_elements=(1, 6))  # N and O centres and ends: no angle terms
    want = prior.force_reference(x, z, graph)
    prior = prior.float()  # as a model cast to float32 casts its buffers
    got = torch.ops.diffmd_fast.valence_force(*_args(prior, x, z, graph))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)


def test_bad_topologies_and_gradients_are_one_line_errors():
    x, z, batch = _molecules(1)
    graph = with_covalent_bonds(complete_graph(batch), x, z)
    prior = _prior(1)
    bad = graph.bonds.clone()
    bad[1, 0] = x.shape[0]
    with pytest.raises(RuntimeError, match="atom index .* out of range"):
        torch.ops.diffmd_fast.valence_force(*_args(prior, x, z, graph._replace(bonds=bad)))
    with pytest.raises(RuntimeError, match="atom type 11 beyond"):
        torch.ops.diffmd_fast.valence_force(*_args(prior, x, torch.full_like(z, 11), graph))
    with pytest.raises(RuntimeError, match=r"bonds must be \(2, M\)"):
        torch.ops.diffmd_fast.valence_force(*_args(prior, x, z, graph._replace(bonds=graph.bonds.T.contiguous())))
    torsions = _prior(1, graph=graph, z=z)
    args = list(_args(torsions, x, z, graph))
    assert args[-2].shape[1] > 0
    args[-2] = args[-2].clone()
    args[-2][3, 0] = -1  # a dihedral's fourth atom
    with pytest.raises(RuntimeError, match="atom index -1 out of range"):
        torch.ops.diffmd_fast.valence_force(*args)
    args = list(_args(torsions, x, z, graph))
    with pytest.raises(RuntimeError, match=r"torsion must be \(D, 4\) float64"):
        torch.ops.diffmd_fast.valence_force(*args[:-1], args[-1][:-1])
    args[9] = args[9][:1]  # ub_k of another shape than angle_k
    with pytest.raises(RuntimeError, match=r"ub_k and ub_r0 must be \(S, S, S\) float64 like angle_k"):
        torch.ops.diffmd_fast.valence_force(*args)
    with pytest.raises(RuntimeError, match="no backward"):
        torch.ops.diffmd_fast.valence_force(*_args(prior, x.clone().requires_grad_(), z, graph))
    with torch.no_grad():  # gradients off: fine
        torch.ops.diffmd_fast.valence_force(*_args(prior, x.clone().requires_grad_(), z, graph))


def test_opcheck():
    x, z, batch = _molecules(2)
    graph = with_covalent_bonds(complete_graph(batch), x, z)
    torch.library.opcheck(torch.ops.diffmd_fast.valence_force.default, _args(_prior(2, graph=graph, z=z), x, z, graph),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_equals_cpu():
    x, z, batch = _molecules(3, sizes=(40, 25, 60))
    graph = with_covalent_bonds(complete_graph(batch), x, z)
    prior = _prior(3, graph=graph, z=z)
    args = _args(prior, x, z, graph)
    want = torch.ops.diffmd_fast.valence_force(*args)
    got = torch.ops.diffmd_fast.valence_force(*(a.cuda() for a in args))
    torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)
