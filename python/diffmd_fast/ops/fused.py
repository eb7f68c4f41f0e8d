"""Thin Python face of the compiled ``diffmd_fast`` ops: one documented function per op, and one flag,
``HAS_EXTENSION``, for whether the compiled library (all four ops) is loaded.

The C++ library defines (schemas: csrc/egl_attention/egl_register.cpp, csrc/egt_score/egt_score.cpp,
csrc/valence_force/valence_cpu.cpp, csrc/radius_graph/):
    egl_attention(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical)
        -> (msg (N,H,D), vec (N,H,3), lse (N,H))
    egl_attention_backward(grad_msg, grad_vec, x, v, q, k, m, w1, w2, row_ptr, col, msg, vec, lse,
                           cutoff, num_radial, num_spherical) -> (gx, gv, gq, gk, gm, gw1, gw2)
    egt_score(z, x_prev, x, x_noisy, x_anchor, std, row_ptr, col, params, cutoff, num_radial, num_spherical, heads,
              anchor, sigma_data, num_layers) -> score (N,3)
    valence_force(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, ub_k, ub_r0, dihedrals, torsion) -> force (N,3) float64
    radius_graph(x, batch, r) -> (row_ptr (N+1,), col (E,))
Here they get fake (meta) implementations for torch.compile and an autograd formula that calls the
backward op (FlashAttention-style: the forward saves outputs and the log-sum-exp; the backward
recomputes the pair terms). Without the compiled extension, the reference runs instead.
``egt_score`` is the whole score network in one inference-only call (nn.ScoreNet routes to it when
autograd is off; see csrc/egt_score/egt_score.cpp for why). ``valence_force`` is the bond prior's
force field in one inference-only pass (valence.prior.BondPrior routes to it; csrc/valence_force/).
"""
from __future__ import annotations

import torch

from . import reference
from .autocast import register_float32_autocast
from .basis import sbf_dim

try:
    from .. import _C  # noqa: F401  (registers the ops)
except ImportError:
    _C = None

OPS = ("egl_attention", "egl_attention_backward", "egt_score", "valence_force", "radius_graph")
HAS_EXTENSION = _C is not None and all(hasattr(torch.ops.diffmd_fast, op) for op in OPS)


def _require(op: str) -> None:
    if not HAS_EXTENSION:
        raise RuntimeError(f"diffmd_fast::{op} needs the compiled extension (pip install --no-build-isolation .)")


def egl_attention(x, v, q, k, m, w1, w2, row_ptr, col, *, cutoff: float, num_radial: int,
                  num_spherical: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused EGL attention. Shapes: x, v (N,3); q, k, m (N,H,D); w1, w2 (K,H,D);
    row_ptr (N+1,) int64; col (E,) int64. Returns msg (N,H,D) and vec (N,H,3).

    Inputs must share float32 or float64; under torch.autocast (CPU or CUDA) the op computes in
    float32 and returns the autocast dtype (ops/autocast.py)."""
    if not HAS_EXTENSION:
        return reference.egl_attention(x, v, q, k, m, w1, w2, row_ptr, col, cutoff=cutoff,
                                       num_radial=num_radial, num_spherical=num_spherical)
    msg, vec, _ = torch.ops.diffmd_fast.egl_attention(
        x, v, q, k, m, w1, w2, row_ptr, col, float(cutoff), int(num_radial), int(num_spherical))
    return msg, vec


def egt_score(z, x_prev, x, x_noisy, x_anchor, std, row_ptr, col, params: list[torch.Tensor], *, cutoff: float,
              num_radial: int, num_spherical: int, heads: int, anchor: bool, sigma_data: float,
              num_layers: int) -> torch.Tensor:
    """The whole score network (nn.ScoreNet) in one inference-only call: score (N, 3) 1/Å at the noisy
    frame x_noisy (N, 3) Å with noise std (N, 1) Å, from atomic numbers z (N,), frames x_prev, x and
    the anchor x_anchor (N, 3) Å, the graph row_ptr (N+1,), col (E,), and ``params`` in the op's order
    (ScoreNet.fused_params: the network's head, then nn.EGL.fused_params of every layer). No autograd.
    Reference: the same ScoreNet run module by module (what it routes to without the extension).
    Raises RuntimeError without the extension, and (op) on a parameter list of the wrong length."""
    _require("egt_score")
    return torch.ops.diffmd_fast.egt_score(z, x_prev, x, x_noisy, x_anchor, std, row_ptr, col, params, float(cutoff),
                                           int(num_radial), int(num_spherical), int(heads), bool(anchor),
                                           float(sigma_data), int(num_layers))


def valence_force(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, ub_k, ub_r0, dihedrals,
                  torsion) -> torch.Tensor:
    """Forces (N, 3) float64 eV/Å of the valence force field at positions x (N, 3) Å: harmonic bonds
    ``bonds`` (2, M) with constants bond_k (eV/Å²) and bond_r0 (Å) (T, T) by atom type ``types`` (N,),
    cosine-harmonic angles ``angles`` (3, A) with angle_k (eV) and angle_c0 (S, S, S) over the type
    slots ``slot`` (T,), each with the Urey-Bradley spring between its ends ub_k (eV/Å²), ub_r0 (Å)
    (S, S, S; k 0: none), torsions ``dihedrals`` (4, D) with ``torsion`` (D, 4) (k_B T / m eV, κ, n,
    φ0 rad). No autograd. Reference: valence.prior.BondPrior.force_reference. Raises RuntimeError
    without the extension, and (op) on atom indices outside x or tables of the wrong shape."""
    _require("valence_force")
    return torch.ops.diffmd_fast.valence_force(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, ub_k,
                                               ub_r0, dihedrals, torsion)


def radius_graph(x: torch.Tensor, batch: torch.Tensor, r: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(row_ptr (N+1,), col (E,)) int64 of the pairs i != j of one molecule (``batch`` (N,) sorted) closer
    than ``r`` Å at positions x (N, 3) Å, by a cell list (O(N) at bounded density). Reference:
    ops.graph's blocked O(N²) search (what ops.graph.radius_graph runs without the extension).
    Raises RuntimeError without the extension."""
    _require("radius_graph")
    return torch.ops.diffmd_fast.radius_graph(x.detach().contiguous(), batch.contiguous(), float(r))


if HAS_EXTENSION:

    @torch.library.register_fake("diffmd_fast::egl_attention")
    def _egl_attention_fake(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical):
        torch._check(x.dim() == 2 and q.dim() == 3, lambda: "x must be (N,3) and q (N,H,D)")
        torch._check(w1.shape[0] == sbf_dim(num_radial, num_spherical), lambda: "w1 has the wrong K")
        N, H, D = q.shape
        return q.new_empty(N, H, D), q.new_empty(N, H, 3), q.new_empty(N, H)

    @torch.library.register_fake("diffmd_fast::egl_attention_backward")
    def _egl_attention_backward_fake(grad_msg, grad_vec, x, v, q, k, m, w1, w2, row_ptr, col, msg, vec,
                                     lse, cutoff, num_radial, num_spherical):
        return (torch.empty_like(x), torch.empty_like(v), torch.empty_like(q), torch.empty_like(k),
                torch.empty_like(m), torch.empty_like(w1), torch.empty_like(w2))

    def _setup_context(ctx, inputs, output):
        x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical = inputs
        msg, vec, lse = output
        ctx.save_for_backward(x, v, q, k, m, w1, w2, row_ptr, col, msg, vec, lse)
        ctx.basis = (cutoff, num_radial, num_spherical)
        ctx.mark_non_differentiable(lse)

    def _backward(ctx, grad_msg, grad_vec, _grad_lse):
        x, v, q, k, m, w1, w2, row_ptr, col, msg, vec, lse = ctx.saved_tensors
        grads = torch.ops.diffmd_fast.egl_attention_backward(
            grad_msg.contiguous(), grad_vec.contiguous(), x, v, q, k, m, w1, w2, row_ptr, col, msg, vec,
            lse, *ctx.basis)
        return (*grads, None, None, None, None, None)

    torch.library.register_autograd("diffmd_fast::egl_attention", _backward, setup_context=_setup_context)

    @torch.library.register_fake("diffmd_fast::egt_score")
    def _egt_score_fake(z, x_prev, x, x_noisy, x_anchor, std, row_ptr, col, params, cutoff, num_radial, num_spherical, heads,
                        anchor, sigma_data, num_layers):
        return torch.empty_like(x)

    @torch.library.register_fake("diffmd_fast::valence_force")
    def _valence_force_fake(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, ub_k, ub_r0, dihedrals,
                            torsion):
        return x.new_empty(x.shape, dtype=torch.float64)

    _LIB = torch.library.Library("diffmd_fast", "IMPL")  # kept alive: the registrations live as long as it
    register_float32_autocast("diffmd_fast::egl_attention", _LIB)
