"""Property-based tests: over random shapes, sizes, geometry, dtypes and CSR layouts, the fused op
either matches the reference or raises a clear error, and never returns NaN where the reference is
finite. About 1,200 cases in all (see max_examples)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import diffmd_fast as dm

pytestmark = pytest.mark.skipif(not dm.ops.HAS_EXTENSION, reason="compiled extension not built")
def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def csr_graphs(draw, n):
    """A CSR graph over n nodes: complete per molecule, radius-like, or arbitrary (self loops,
    repeated senders, empty rows all allowed)."""
    layout = draw(st.sampled_from(["complete", "arbitrary", "empty"]))
    if layout == "complete" and n:
        sizes, left = [], n
        while left:
            s = draw(st.integers(1, left))
            sizes.append(s)
            left -= s
        g = dm.graph.complete_graph(torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)))
        return g.row_ptr, g.col
    if layout == "arbitrary" and n:
        degrees = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
        cols = draw(st.lists(st.integers(0, n - 1), min_size=sum(degrees), max_size=sum(degrees)))
        row_ptr = torch.zeros(n + 1, dtype=torch.int64)
        row_ptr[1:] = torch.cumsum(torch.tensor(degrees, dtype=torch.int64), 0)
        return row_ptr, torch.tensor(cols, dtype=torch.int64)
    return torch.zeros(n + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)


@st.composite
def problems(draw):
    n = draw(st.integers(0, 10))
    H, D = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    R, L = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    cutoff = draw(st.sampled_from([1e-3, 0.5, 1.6, 3.0, 1e3]))
    scale = draw(st.sampled_from([1e-3, 0.3, 1.0, 3.0, 1e4]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) * scale
    if n >= 2 and draw(st.booleans()):  # duplicate positions
        x[1] = x[0]
    v = torch.randn(n, 3, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.0, 1e-4, 0.05, 1.0]))
    K = R * L * (L + 1) // 2
    t = dict(x=x, v=v, q=torch.randn(n, H, D, generator=g, dtype=torch.float64),
             k=torch.randn(n, H, D, generator=g, dtype=torch.float64),
             m=torch.randn(n, H, D, generator=g, dtype=torch.float64),
             w1=torch.randn(K, H, D, generator=g, dtype=torch.float64),
             w2=torch.randn(K, H, D, generator=g, dtype=torch.float64))
    row_ptr, col = draw(csr_graphs(n))
    return t, row_ptr, col, dict(cutoff=cutoff, num_radial=R, num_spherical=L)


def _run(fn, t, row_ptr, col, basis):
    return fn(t["x"], t["v"], t["q"], t["k"], t["m"], t["w1"], t["w2"], row_ptr, col, **basis)


@fuzz(500)
@given(problems())
def test_fused_matches_reference_float64(problem):
    t, row_ptr, col, basis = problem
    ref = _run(dm.reference.egl_attention, t, row_ptr, col, basis)
    ins = {k: v.clone().requires_grad_() for k, v in t.items()}
    out = _run(dm.ops.egl_attention, ins, row_ptr, col, basis)
    for a, b in zip(out, ref):
        assert torch.isfinite(a).all() or not torch.isfinite(b).all()
        mag = max(1.0, b.abs().max().item() if b.numel() else 1.0)
        torch.testing.assert_close(a.detach(), b, atol=1e-9 * mag, rtol=1e-8)
    if col.numel():
        grads = torch.autograd.grad(sum(o.sum() for o in out), list(ins.values()))
        assert all(torch.isfinite(gr).all() for gr in grads)


@fuzz(300)
@given(problems())
def test_float32_close_to_float64_truth(problem):
    t, row_ptr, col, basis = problem
    truth = _run(dm.reference.egl_attention, t, row_ptr, col, basis)
    t32 = {k: v.float() for k, v in t.items()}
    out = _run(dm.ops.egl_attention, t32, row_ptr, col, basis)
    for a, b in zip(out, truth):
        assert torch.isfinite(a).all()
        mag = max(1.0, b.abs().max().item() if b.numel() else 1.0)
        # float32 rounding of positions up to 1e4 Å and of the basis near the cutoff
        torch.testing.assert_close(a.double(), b, atol=2e-3 * mag, rtol=1e-3)


CORRUPTIONS = ["row_ptr-start", "row_ptr-end", "row_ptr-decrease", "col-high", "col-negative", "x-shape", "w-shape",
               "dtype-mix", "int-positions", "non-contiguous", "radial-zero", "spherical-big", "cutoff-negative",
               "row_ptr-int32", "q-1d"]


@fuzz(300)
@given(problems(), st.sampled_from(CORRUPTIONS))
def test_corrupted_input_raises_a_clear_error(problem, corruption):
    t, row_ptr, col, basis = problem
    t, row_ptr, col, basis = dict(t), row_ptr.clone(), col.clone(), dict(basis)
    n = t["x"].shape[0]
    if corruption == "row_ptr-start":
        row_ptr = row_ptr + 1
    elif corruption == "row_ptr-end":
        row_ptr[-1] += 1
    elif corruption == "row_ptr-decrease":
        row_ptr[min(1, n)] = row_ptr[-1] + 1  # a drop after it, or a bad row_ptr[0] when n = 0
    elif corruption == "col-high":
        col = torch.cat([col, torch.tensor([n])])
        row_ptr[-1] += 1
    elif corruption == "col-negative":
        col = torch.cat([col, torch.tensor([-1])])
        row_ptr[-1] += 1
    elif corruption == "x-shape":
        t["x"] = torch.zeros(n + 1, 3, dtype=torch.float64)
    elif corruption == "w-shape":
        t["w1"] = t["w1"][:, :, :-1] if t["w1"].shape[2] > 1 else torch.zeros(1, 1, 7, dtype=torch.float64)
    elif corruption == "dtype-mix":
        t["k"] = t["k"].float()
    elif corruption == "int-positions":
        t = {k: v.to(torch.int32) for k, v in t.items()}
    elif corruption == "non-contiguous":
        assume(n > 0)  # an empty tensor is always contiguous
        t["v"] = torch.zeros(n, 6, dtype=torch.float64)[:, ::2]
    elif corruption == "radial-zero":
        basis["num_radial"] = 0
    elif corruption == "spherical-big":
        basis["num_spherical"] = 9
    elif corruption == "cutoff-negative":
        basis["cutoff"] = -1.0
    elif corruption == "row_ptr-int32":
        row_ptr = row_ptr.int()
    elif corruption == "q-1d":
        t["q"] = t["q"].reshape(-1)
    with pytest.raises((RuntimeError, ValueError), match=r"egl_attention|num_radial|num_spherical|sbf"):
        _run(dm.ops.egl_attention, t, row_ptr, col, basis)


@fuzz(150)
@given(st.integers(0, 60), st.sampled_from([1e-3, 0.4, 1.5, 1e3]), st.sampled_from([1e-2, 1.0, 1e4]),
       st.integers(1, 4), st.booleans(), st.integers(0, 2**31 - 1))
def test_radius_graph_matches_brute_force(n, r, scale, mols, dup, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=torch.float64) * scale
    if dup and n >= 2:
        x[n // 2] = x[0]
    batch = torch.sort(torch.randint(0, mols, (n,), generator=g)).values
    got = dm.graph.radius_graph(x, batch, r)
    ref = dm.graph._radius_graph_torch(x, batch, r)
    assert torch.equal(got.row_ptr, ref.row_ptr) and torch.equal(got.col, ref.col)
    assert math.isclose(got.num_edges, ref.num_edges)
