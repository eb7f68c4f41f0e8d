"""Helpers to check E(3) symmetry, shipped with the library so users can test their own networks.

``assert_equivariant(fn, x, v, ...)`` applies a random orthogonal matrix (rotation, or rotation
times inversion) and a translation to the positions and velocities, and checks that vector outputs
transform as vectors and scalar outputs do not change.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def random_orthogonal(reflect: bool = False, *, dtype=torch.float64, generator=None) -> torch.Tensor:
    """A Haar-random 3x3 rotation, times -I when ``reflect`` (det = -1)."""
    a = torch.randn(3, 3, dtype=torch.float64, generator=generator)
    qm, r = torch.linalg.qr(a)
    qm = qm * torch.sign(torch.diagonal(r))[None, :]
    if torch.det(qm) < 0:
        qm[:, 0] = -qm[:, 0]
    if reflect:
        qm = -qm
    return qm.to(dtype)


def assert_equivariant(fn: Callable[..., Sequence[torch.Tensor]], x: torch.Tensor, v: torch.Tensor, *args,
                       kinds: Sequence[str], reflect: bool = True, atol: float = 1e-9, rtol: float = 1e-7,
                       **kwargs) -> None:
    """Check fn(Qx + t, Qv, *args) == transform(fn(x, v, *args)).

    ``kinds`` names how each output transforms: "position" (Q y + t), "vector" (Q y, any leading
    dims, last dim 3) or "scalar" (unchanged).
    """
    qm = random_orthogonal(reflect, dtype=x.dtype).to(x.device)
    t = torch.randn(3, dtype=x.dtype, device=x.device) * 3.0
    out = fn(x, v, *args, **kwargs)
    out_t = fn(x @ qm.T + t, v @ qm.T, *args, **kwargs)
    if len(out) != len(kinds):
        raise ValueError(f"fn returned {len(out)} outputs but kinds has {len(kinds)}")
    for idx, (y, yt, kind) in enumerate(zip(out, out_t, kinds)):
        if kind == "position":
            expected = y @ qm.T + t
        elif kind == "vector":
            expected = y @ qm.T
        elif kind == "scalar":
            expected = y
        else:
            raise ValueError(f"unknown kind {kind!r}")
        if not torch.allclose(yt, expected, atol=atol, rtol=rtol):
            err = (yt - expected).abs().max().item()
            raise AssertionError(f"output {idx} ({kind}) is not equivariant: max error {err:.3e}")
