"""The EGL op and layer under torch.autocast: float32 inside, autocast dtype out."""
import pytest
import torch

import diffmd_fast as dm
from diffmd_fast.ops import reference
from diffmd_fast.ops.basis import sbf_dim

N, H, D = 6, 2, 4


def _inputs():
    torch.manual_seed(0)
    g = dm.graph.complete_graph(torch.zeros(N, dtype=torch.int64))
    K = sbf_dim(2, 2)
    x, v = torch.randn(N, 3), 0.01 * torch.randn(N, 3)
    feats = [torch.randn(N, H, D).bfloat16() for _ in range(3)]  # as a Linear under bf16 autocast returns them
    w = [torch.randn(K, H, D) for _ in range(2)]
    return g, [x, v, *feats, *w]


@pytest.mark.parametrize("op", [dm.ops.egl_attention, reference.egl_attention], ids=["fused", "reference"])
def test_op_under_cpu_autocast(op):
    g, args = _inputs()
    args = [a.requires_grad_() for a in args]
    kw = dict(cutoff=1.6, num_radial=2, num_spherical=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        msg, vec = op(*args, g.row_ptr, g.col, **kw)
    assert msg.dtype == vec.dtype == torch.bfloat16
    ref_msg, ref_vec = op(*[a.detach().float() for a in args], g.row_ptr, g.col, **kw)
    # float32 policy: the only error is the bf16 rounding of the outputs (8 bits of mantissa)
    torch.testing.assert_close(msg.float(), ref_msg, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(vec.float(), ref_vec, rtol=1e-2, atol=1e-2)
    (msg.float().sum() + vec.float().sum()).backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in args)
    assert args[2].grad.dtype == torch.bfloat16  # gradients come back in the inputs' dtype


@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_egl_layer_under_cpu_autocast(backend):
    g, (x, v, *_) = _inputs()
    layer = dm.EGL(hidden=16, heads=2, ffn=32, dropout=0.0, backend=backend)
    h = torch.randn(N, 16)
    want = layer(x, v, h, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x, v, h, g)
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.float(), b, rtol=0.05, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_op_under_cuda_autocast():
    g, args = _inputs()
    with torch.autocast("cuda", dtype=torch.float16):
        msg, vec = dm.ops.egl_attention(*[a.cuda() for a in args], g.row_ptr.cuda(), g.col.cuda(), cutoff=1.6,
                                        num_radial=2, num_spherical=2)
    assert msg.dtype == vec.dtype == torch.float16 and torch.isfinite(msg).all()
