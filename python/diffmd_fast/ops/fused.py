"""Thin Python face of the compiled ``diffmd_fast`` ops.

The C++ library defines (schemas in csrc/egl_attention/egl_register.cpp and csrc/egt_score/):
    egl_attention(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical)
        -> (msg (N,H,D), vec (N,H,3), lse (N,H))
    egl_attention_backward(grad_msg, grad_vec, x, v, q, k, m, w1, w2, row_ptr, col, msg, vec, lse,
                           cutoff, num_radial, num_spherical) -> (gx, gv, gq, gk, gm, gw1, gw2)
    egt_score(z, x_prev, x, x_noisy, x_anchor, std, row_ptr, col, params, cutoff, num_radial, num_spherical, heads,
              anchor, sigma_data, num_layers) -> score (N,3)
    valence_force(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, dihedrals, torsion) -> force (N,3) float64
Here they get fake (meta) implementations for torch.compile and an autograd formula that calls the
backward op (FlashAttention-style: the forward saves outputs and the log-sum-exp; the backward
recomputes the pair terms). Without the compiled extension, the reference runs instead.
``egt_score`` is the whole score network in one inference-only call (nn.ScoreNet routes to it when
autograd is off; see csrc/egt_score/egt_score.cpp for why). ``valence_force`` is the bond prior's
force field in one inference-only pass (nn.bond_prior.BondPrior routes to it; csrc/valence_force/).
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

COMPILED = _C is not None and hasattr(torch.ops.diffmd_fast, "egl_attention")
SCORE_NET_COMPILED = _C is not None and hasattr(torch.ops.diffmd_fast, "egt_score")
VALENCE_COMPILED = _C is not None and hasattr(torch.ops.diffmd_fast, "valence_force")


def egl_attention(x, v, q, k, m, w1, w2, row_ptr, col, *, cutoff: float, num_radial: int,
                  num_spherical: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused EGL attention. Shapes: x, v (N,3); q, k, m (N,H,D); w1, w2 (K,H,D);
    row_ptr (N+1,) int64; col (E,) int64. Returns msg (N,H,D) and vec (N,H,3).

    Inputs must share float32 or float64; under torch.autocast (CPU or CUDA) the op computes in
    float32 and returns the autocast dtype (ops/autocast.py)."""
    if not COMPILED:
        return reference.egl_attention(x, v, q, k, m, w1, w2, row_ptr, col, cutoff=cutoff,
                                       num_radial=num_radial, num_spherical=num_spherical)
    msg, vec, _ = torch.ops.diffmd_fast.egl_attention(
        x, v, q, k, m, w1, w2, row_ptr, col, float(cutoff), int(num_radial), int(num_spherical))
    return msg, vec


if COMPILED:

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
    def _valence_force_fake(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, dihedrals, torsion):
        return x.new_empty(x.shape, dtype=torch.float64)

    _LIB = torch.library.Library("diffmd_fast", "IMPL")  # kept alive: the registrations live as long as it
    register_float32_autocast("diffmd_fast::egl_attention", _LIB)
