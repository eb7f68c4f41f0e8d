"""The torsion angle φ of dihedrals i-j-k-l, its gradients, and the slope of the valence prior's torsion
wells (valence/prior.py's module docstring): shared by the prior's force (BondPrior.torsion_force) and
the force-matching design (valence/force_matching.py), for one frame or a stack of frames."""
from __future__ import annotations

import torch


def torsion_gradients(x: torch.Tensor, dih: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(φ (..., D) rad, (∂φ/∂x_i, ∂φ/∂x_j, ∂φ/∂x_k, ∂φ/∂x_l) each (..., D, 3) rad/Å) of the dihedrals
    ``dih`` (4, D) int64 of positions x (..., N, 3) Å (one frame or a stack of them). φ as IUPAC (the
    angle between the i-j-k and j-k-l planes, positive clockwise looking down j->k), the gradients in
    closed form (Blondel & Karplus 1996, J. Comput. Chem. 17, 1132), finite through any geometry but a
    collinear i-j-k or j-k-l (where φ is undefined and they are clamped, as the reference's lengths)."""
    i, j, k, l = dih  # (D,) each
    b1, b2, b3 = x[..., j, :] - x[..., i, :], x[..., k, :] - x[..., j, :], x[..., l, :] - x[..., k, :]  # (..., D, 3) Å
    n1, n2 = torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b3)  # plane normals
    l2 = b2.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # (..., D, 1) |b2|
    phi = torch.atan2((l2 * b1 * n2).sum(-1), (n1 * n2).sum(-1))  # (..., D) rad
    gi = -l2 * n1 / (n1 * n1).sum(-1, keepdim=True).clamp_min(1e-12)  # dφ/dx_i
    gl = l2 * n2 / (n2 * n2).sum(-1, keepdim=True).clamp_min(1e-12)  # dφ/dx_l
    p = (b1 * b2).sum(-1, keepdim=True) / (l2 * l2)
    q = (b3 * b2).sum(-1, keepdim=True) / (l2 * l2)
    gj = (-p - 1.0) * gi + q * gl  # dφ/dx_j, dφ/dx_k (the four sum to zero)
    gk = p * gi - (q + 1.0) * gl
    return phi, (gi, gj, gk, gl)


def torsion_slope(phi: torch.Tensor, torsion: torch.Tensor) -> torch.Tensor:
    """(...,) eV/rad: dU_t/dφ of the torsion wells (module docstring) at φ (...,) rad, ``torsion``
    (..., 4) (k_B T / m eV, κ, n, φ0 rad) broadcast against it:
    (k_B T / m) κ n [w+ sin n(φ - φ0) + w- sin n(φ + φ0)], w± the two wells' Boltzmann weights."""
    kt, kappa, n, phi0 = torsion.unbind(-1)
    wells = torch.stack([phi - phi0, phi + phi0], -1)  # (..., 2) rad from each well
    w = torch.softmax(kappa.unsqueeze(-1) * torch.cos(n.unsqueeze(-1) * wells), -1)
    return kt * kappa * n * (torch.sin(n.unsqueeze(-1) * wells) * w).sum(-1)
