"""The EGL layer: E(3) symmetry, permutation, backend agreement and torch.compile."""
from __future__ import annotations

import pytest
import torch

import diffmd_fast as dm
from diffmd_fast.testing import assert_equivariant

needs_ext = pytest.mark.skipif(not dm.ops.HAS_EXTENSION, reason="compiled extension not built")


def _layer(backend, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(hidden=16, heads=4, ffn=32, cutoff=2.0, dropout=0.0, num_layers=2, backend=backend)
    cfg.update(kw)
    return dm.EGL(**cfg).double().eval()


def _inputs(sizes=(5, 4, 1), seed=0, hidden=16):
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    N = len(batch)
    x = torch.randn(N, 3, generator=g, dtype=torch.float64)
    v = torch.randn(N, 3, generator=g, dtype=torch.float64) * 0.1
    h = torch.randn(N, hidden, generator=g, dtype=torch.float64)
    return x, v, h, dm.graph.complete_graph(batch)


@pytest.mark.parametrize("backend", ["reference", pytest.param("fused", marks=needs_ext)])
def test_egl_is_e3_equivariant(backend):
    layer = _layer(backend)
    x, v, h, g = _inputs()
    for reflect in (False, True):
        assert_equivariant(lambda x_, v_: layer(x_, v_, h, g), x, v, kinds=("position", "vector", "scalar"),
                           reflect=reflect, atol=1e-10)


@needs_ext
def test_egl_permutation_equivariant():
    layer = _layer("fused")
    x, v, h, g = _inputs(sizes=(6,))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    out = layer(x, v, h, g)
    out_p = layer(x[perm], v[perm], h[perm], g)
    for a, b in zip(out_p, out):
        torch.testing.assert_close(a, b[perm], atol=1e-10, rtol=1e-10)


@needs_ext
def test_backends_agree_in_values_and_parameter_gradients():
    fused, ref = _layer("fused"), _layer("reference")
    ref.load_state_dict(fused.state_dict())
    x, v, h, g = _inputs()
    outs = [m(x, v, h, g) for m in (fused, ref)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    grads = []
    for m, o in zip((fused, ref), outs):
        loss = sum((t**2).sum() for t in o)
        grads.append(torch.autograd.grad(loss, list(m.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="backend"):
        dm.EGL(backend="cuda-magic")


@needs_ext
def test_torch_compile_fullgraph_matches_eager():
    layer = _layer("fused").float()
    x, v, h, g = _inputs()
    x, v, h = x.float(), v.float(), h.float()
    eager = layer(x, v, h, g)
    compiled = torch.compile(layer, fullgraph=True)  # inductor
    out = compiled(x, v, h, g)
    for a, b in zip(out, eager):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    loss = sum((t**2).sum() for t in out)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
