"""Random op inputs shared by the op tests (a module, not conftest, so subfolder conftests cannot shadow it)."""
from __future__ import annotations

import torch

import diffmd_fast as dm


def make_problem(sizes, *, H=2, D=3, num_radial=2, num_spherical=3, cutoff=2.5, dtype=torch.float64,
                 device="cpu", seed=0, scale=1.0):
    """Random op inputs for molecules of the given sizes (complete graphs), as a dict of kwargs."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.int64))
    graph = dm.graph.complete_graph(batch)
    N = int(sum(sizes))
    K = dm.sbf_dim(num_radial, num_spherical)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)

    tensors = dict(x=rnd(N, 3) * scale, v=rnd(N, 3), q=rnd(N, H, D), k=rnd(N, H, D), m=rnd(N, H, D),
                   w1=rnd(K, H, D), w2=rnd(K, H, D))
    return dict(tensors=tensors, row_ptr=graph.row_ptr.to(device), col=graph.col.to(device), batch=batch,
                basis=dict(cutoff=cutoff, num_radial=num_radial, num_spherical=num_spherical))


def call(fn, p, **override):
    t = {**p["tensors"], **override}
    return fn(t["x"], t["v"], t["q"], t["k"], t["m"], t["w1"], t["w2"], p["row_ptr"], p["col"], **p["basis"])
