"""Anharmonic bonds: a Morse stretch in place of the harmonic one, as a correction added to the
harmonic bond force of the fused ``valence_force`` op (which stays harmonic).

Why: a covalent stretch softens as it lengthens and stiffens as it shortens. At 500 K a C-H bond
swings ±0.04 Å (RMS; ±0.2 Å at the extremes), and there the harmonic spring fitted to the data's
forces leaves a residual along the bond that is a parabola in the extension: the bond stretch residual
of the force-matched harmonic prior is 50-97 % explained by a dr² term (GFN2-xTB ethanol and aspirin,
C-H, O-H, C-C, C-O). That is the cubic term of the Morse potential (MM3 and the class II force fields
carry it for the same reason),
    U(r) = (k / 2α²) (1 - exp(-α (r - r0)))²  = ½ k dr² - ½ α k dr³ + ...,
    F(r) = (k / α) expm1(-α dr) exp(-α dr)    = -k dr + (3/2) α k dr² + ...   (along the bond),
with the bond's own harmonic k and r0 and one steepness α (1/Å) per bond type, fitted with k by
force matching (valence.force_matching: the dr² coefficient a = (3/2) α k of the stretched side). α = 0
is the harmonic bond exactly. The Morse well is bounded (depth D = k / 2α²: 2-3 eV for the fitted X-H
bonds), so unlike a cubic term alone it never pulls a stretched bond apart below that energy.

Only the stretched side (r > r0) is Morse; compressed, the bond stays the harmonic spring. A Morse
wall stiffens as it is compressed (4x at 0.2 Å for α = 2.3 1/Å), and a C-H or O-H stretch that is
stable under the prior's Verlet step at 2 fs frames with its harmonic constant (ω Δt ≈ 1.1-1.3, Verlet-
matched) passes ω Δt = 2 there: with Morse on both sides, 1 of 8 bundled ethanol starts kept every
bond for 20 ps (0 of 8 for the prior alone). Softening on the stretched side only lowers ω Δt. The
potential stays smooth (U, U' and U'' continuous at r0).
"""
from __future__ import annotations

import torch

ALPHA_MAX = 3.0  # 1/Å: steeper than any covalent bond's Morse α (H2 1.9, C-H 1.8, O-H 2.2); a fit beyond it is noise


def _stretch(x: torch.Tensor, bonds: torch.Tensor, types: torch.Tensor, k: torch.Tensor, r0: torch.Tensor,
             alpha: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(d (M, 3) Å, r (M,) Å, dr (M,) Å, k (M,), α (M,)) of the directed ``bonds`` (2, M)."""
    recv, send = bonds
    d = (x[recv] - x[send]).to(torch.float64)
    r = d.norm(dim=-1).clamp_min(1e-6)
    tr, ts = types[recv], types[send]
    return d, r, r - r0[tr, ts], k[tr, ts], alpha[tr, ts]


def morse_correction_force(x: torch.Tensor, bonds: torch.Tensor, types: torch.Tensor, k: torch.Tensor,
                           r0: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(N, 3) float64 eV/Å: the Morse bond force minus the harmonic one (stretched bonds; module docstring) over the
    directed ``bonds`` (2, M) receiver, sender (each bond both ways: each direction's force on its
    receiver), x (N, 3) Å, ``types`` (N,) the prior's atom types, tables k (eV/Å²), r0 (Å), α (1/Å)
    (T, T). Exactly zero where α = 0."""
    force = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    if bonds.shape[1] == 0:
        return force
    d, r, dr, kk, a = _stretch(x, bonds, types, k, r0, alpha)
    morse = (a > 0) & (dr > 0)  # the stretched side (module docstring)
    safe = torch.where(a > 0, a, torch.ones_like(a))
    e = torch.exp(-safe * dr)
    along = torch.where(morse, kk / safe * torch.expm1(-safe * dr) * e + kk * dr, torch.zeros_like(dr))  # (M,) eV/Å
    return force.index_add_(0, bonds[0], (along / r).unsqueeze(-1) * d)


def morse_correction_energy(x: torch.Tensor, bonds: torch.Tensor, types: torch.Tensor, k: torch.Tensor,
                            r0: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """() float64 eV: Σ over bonds of the Morse energy minus the harmonic one (each bond counted once of
    its two directions); morse_correction_force is its -∇."""
    if bonds.shape[1] == 0:
        return torch.zeros((), dtype=torch.float64, device=x.device)
    _, _, dr, kk, a = _stretch(x, bonds, types, k, r0, alpha)
    morse = (a > 0) & (dr > 0)
    safe = torch.where(a > 0, a, torch.ones_like(a))
    u = torch.where(morse, kk / (2 * safe * safe) * torch.expm1(-safe * dr) ** 2 - 0.5 * kk * dr * dr, torch.zeros_like(dr))
    return 0.5 * u.sum()
