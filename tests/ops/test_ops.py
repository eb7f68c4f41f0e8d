"""The fused op against the reference: values, gradients, opcheck, symmetry and bad input."""
from __future__ import annotations

import pytest
import torch

import diffmd_fast as dm
from diffmd_fast.testing import random_orthogonal
from op_problems import call, make_problem

pytestmark = pytest.mark.skipif(not dm.ops.HAS_EXTENSION, reason="compiled extension not built")

FUSED, REF = dm.ops.egl_attention, dm.reference.egl_attention
CASES = {
    "odd-sizes": dict(sizes=[7, 4, 9]),
    "isolated-atoms": dict(sizes=[1, 5, 1, 3]),
    "beyond-cutoff": dict(sizes=[6, 5], scale=1.5),
    "basis-1x1": dict(sizes=[5, 4], num_radial=1, num_spherical=1),
    "basis-max": dict(sizes=[5, 4], num_radial=6, num_spherical=4, H=3, D=4),
    "paper-basis": dict(sizes=[8], num_radial=2, num_spherical=2, H=8, D=16, cutoff=1.6, scale=0.8),
}


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference_float64(case, device):
    p = make_problem(**CASES[case], device=device)
    for a, b in zip(call(FUSED, p), call(REF, p)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_beyond_cutoff_case_really_has_pairs_beyond_cutoff():
    p = make_problem(sizes=[6, 5], scale=1.5)
    x, i = p["tensors"]["x"], dm.Graph(p["row_ptr"], p["col"]).receivers()
    d = (x[i] - x[p["col"]]).norm(dim=-1)
    assert (d > 2.5).any() and (d < 2.5).any()


def test_empty_graph(device):
    p = make_problem(sizes=[], device=device)
    msg, vec = call(FUSED, p)
    assert msg.shape == (0, 2, 3) and vec.shape == (0, 2, 3)


def test_isolated_atoms_get_zeros(device):
    p = make_problem(sizes=[1, 4, 1], device=device)
    msg, vec = call(FUSED, p)
    for i in (0, 5):
        assert torch.all(msg[i] == 0) and torch.all(vec[i] == 0)


def test_float32_within_policy(device):
    """float32 fused vs float64 truth is within 2x the float32 reference's own error (+ 1e-5 floor),
    the FlashAttention way of stating a tolerance relative to PyTorch's own rounding."""
    p64 = make_problem(sizes=[9, 6, 7], H=4, D=8, device=device)
    p32 = make_problem(sizes=[9, 6, 7], H=4, D=8, device=device, dtype=torch.float32)
    truth = call(REF, p64)
    for fused, ref32, t in zip(call(FUSED, p32), call(REF, p32), truth):
        ref_err = (ref32.double() - t).abs().max().item()
        fused_err = (fused.double() - t).abs().max().item()
        assert fused_err <= 2 * ref_err + 1e-5, (fused_err, ref_err)


def _grads(fn, p, seed=1):
    ins = {n: t.clone().requires_grad_() for n, t in p["tensors"].items()}
    out = call(fn, p, **ins)
    g = torch.Generator().manual_seed(seed)
    cot = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o) for o in out]
    return dict(zip(ins, torch.autograd.grad(out, list(ins.values()), cot)))


@pytest.mark.parametrize("case", ["odd-sizes", "isolated-atoms", "beyond-cutoff", "basis-max"])
def test_backward_matches_reference(case, device):
    p = make_problem(**CASES[case], device=device)
    gf, gr = _grads(FUSED, p), _grads(REF, p)
    for name in gf:
        torch.testing.assert_close(gf[name], gr[name], atol=1e-9, rtol=1e-9, msg=f"grad of {name}")


@pytest.mark.parametrize("wrt", ["x", "v", "q", "k", "m", "w1", "w2"])
def test_gradcheck_every_input(wrt, device):
    p = make_problem(sizes=[4, 3, 1], H=2, D=2, device=device, seed=3)
    t = p["tensors"][wrt].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: call(FUSED, p, **{wrt: a}), (t,), atol=1e-6, rtol=1e-5)


def test_gradcheck_all_inputs_jointly():
    p = make_problem(sizes=[3, 2], H=2, D=2, seed=5, num_spherical=4)
    ins = [t.clone().requires_grad_() for t in p["tensors"].values()]
    assert torch.autograd.gradcheck(lambda *a: call(FUSED, p, **dict(zip(p["tensors"], a))), ins)


@pytest.mark.parametrize("degenerate", ["zero-velocity", "velocity-along-bond", "coincident-atoms"])
def test_degenerate_geometry_has_finite_gradients(degenerate, device):
    p = make_problem(sizes=[4], device=device, seed=2)
    x, v = p["tensors"]["x"].clone(), p["tensors"]["v"].clone()
    if degenerate == "zero-velocity":
        v[0] = 0.0
        v[1] = 0.0
    elif degenerate == "velocity-along-bond":
        v[0] = 0.7 * (x[0] - x[1])
        v[1] = -0.3 * (x[0] - x[1])
    else:
        x[1] = x[0] + torch.tensor([1e-6, 0.0, 0.0], dtype=x.dtype, device=device)
    p["tensors"].update(x=x, v=v)
    gf, gr = _grads(FUSED, p), _grads(REF, p)
    for name in gf:
        assert torch.isfinite(gf[name]).all(), name
        torch.testing.assert_close(gf[name], gr[name], atol=1e-7, rtol=1e-7, msg=f"grad of {name}")


def test_opcheck_forward_and_backward(device):
    p = make_problem(sizes=[4, 3], device=device)
    t = p["tensors"]
    basis = (p["basis"]["cutoff"], p["basis"]["num_radial"], p["basis"]["num_spherical"])
    args = (t["x"], t["v"], t["q"], t["k"], t["m"], t["w1"], t["w2"], p["row_ptr"], p["col"], *basis)
    torch.library.opcheck(torch.ops.diffmd_fast.egl_attention.default, args)
    msg, vec, lse = torch.ops.diffmd_fast.egl_attention(*args)
    bargs = (torch.randn_like(msg), torch.randn_like(vec), *args[:9], msg, vec, lse, *basis)
    torch.library.opcheck(torch.ops.diffmd_fast.egl_attention_backward.default, bargs)


@pytest.mark.parametrize("reflect", [False, True])
def test_e3_invariance_of_msg_and_equivariance_of_vec(reflect, device):
    p = make_problem(sizes=[6, 5], device=device, seed=4)
    qm = random_orthogonal(reflect).to(device)
    shift = torch.tensor([1.5, -2.0, 0.3], dtype=torch.float64, device=device)
    t = p["tensors"]
    msg, vec = call(FUSED, p)
    msg_t, vec_t = call(FUSED, p, x=t["x"] @ qm.T + shift, v=t["v"] @ qm.T)
    torch.testing.assert_close(msg_t, msg, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(vec_t, vec @ qm.T, atol=1e-10, rtol=1e-10)


def test_permutation_equivariance(device):
    p = make_problem(sizes=[7], device=device, seed=6)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0)).to(device)
    msg, vec = call(FUSED, p)
    permuted = {n: (t[perm] if n in "xvqkm" else t) for n, t in p["tensors"].items()}
    msg_p, vec_p = call(FUSED, p, **permuted)
    torch.testing.assert_close(msg_p, msg[perm], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(vec_p, vec[perm], atol=1e-10, rtol=1e-10)


BAD = {
    "x-wrong-shape": (dict(x=lambda t: t["x"][:, :2].contiguous()), "x must be"),
    "q-2d": (dict(q=lambda t: t["q"][:, 0]), "q must be"),
    "w1-wrong-K": (dict(w1=lambda t: t["w1"][:-1]), "w1 must be"),
    "int-dtype": (dict(x=lambda t: t["x"].long(), v=lambda t: t["v"].long()), "float32 or float64"),
    "mixed-dtype": (dict(q=lambda t: t["q"].float()), "dtype"),
    "non-contiguous": (dict(m=lambda t: t["m"].transpose(0, 1).contiguous().transpose(0, 1)), "contiguous"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_tensor_gives_clear_error(case):
    p = make_problem(sizes=[4, 3])
    changes, pattern = BAD[case]
    over = {n: f(p["tensors"]) for n, f in changes.items()}
    with pytest.raises(RuntimeError, match=pattern):
        call(FUSED, p, **over)


@pytest.mark.parametrize("case", ["not-monotone", "col-out-of-range", "col-negative", "bad-last", "int32"])
def test_invalid_csr_gives_clear_error(case):
    p = make_problem(sizes=[4, 3])
    row_ptr, col = p["row_ptr"].clone(), p["col"].clone()
    if case == "not-monotone":
        row_ptr[2] = row_ptr[3] + 1
    elif case == "col-out-of-range":
        col[3] = 7
    elif case == "col-negative":
        col[0] = -1
    elif case == "bad-last":
        row_ptr[-1] -= 1
    else:
        row_ptr, col = row_ptr.int(), col.int()
    p.update(row_ptr=row_ptr, col=col)
    with pytest.raises(RuntimeError, match="row_ptr|col"):
        call(FUSED, p)


@pytest.mark.parametrize("basis", [dict(num_radial=0), dict(num_spherical=0), dict(num_spherical=5),
                                   dict(num_radial=7), dict(cutoff=0.0), dict(cutoff=float("nan"))])
def test_bad_basis_settings(basis):
    p = make_problem(sizes=[3])
    p["basis"].update(basis)
    with pytest.raises((RuntimeError, ValueError), match="num_radial|num_spherical|cutoff"):
        call(FUSED, p)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU for a second device")
def test_mixed_devices_give_clear_error():
    p = make_problem(sizes=[3])
    with pytest.raises(RuntimeError, match="must be on"):
        call(FUSED, p, q=p["tensors"]["q"].cuda())
