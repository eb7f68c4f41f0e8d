"""Constants of the spherical Fourier-Bessel basis (paper Eqs. 10-11), computed once with scipy.

Basis index k runs over (degree o, order m, root n) with n fastest:
    for o in range(num_spherical): for m in range(o + 1): for n in range(num_radial)
so K = num_radial * num_spherical * (num_spherical + 1) / 2.

Only the cos(m θ) harmonics (m >= 0) are used: they are even under reflection, so the basis is
invariant under all of E(3), not only under rotations (DESIGN.md §2). The compiled kernels compute
the same constants in C++; a test checks that both agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import legendre as npleg
from scipy import optimize, special

MAX_SPHERICAL = 4  # degrees 0..3; the paper uses 2
MAX_RADIAL = 6  # roots per degree; the paper uses 2
EPS = 1e-3  # regularisation of unit vectors u / sqrt(|u|^2 + EPS^2), Å or Å/frame: small against bond
# lengths (~1 Å) and thermal displacements per frame (~1e-2 Å), large enough that the gradient
# through a zero velocity (~1/EPS) does not blow up training.


def check_basis_sizes(num_radial: int, num_spherical: int) -> None:
    if not 1 <= int(num_radial) <= MAX_RADIAL:
        raise ValueError(f"num_radial must be in [1, {MAX_RADIAL}], got {num_radial}")
    if not 1 <= int(num_spherical) <= MAX_SPHERICAL:
        raise ValueError(f"num_spherical must be in [1, {MAX_SPHERICAL}], got {num_spherical}")


def sbf_dim(num_radial: int, num_spherical: int) -> int:
    """Number K of basis functions for ``num_radial`` roots and ``num_spherical`` degrees."""
    check_basis_sizes(num_radial, num_spherical)
    return num_radial * num_spherical * (num_spherical + 1) // 2


@dataclass(frozen=True)
class BasisConstants:
    roots: np.ndarray  # (L, R) z_on: n-th positive root of j_o
    radial_norm: np.ndarray  # (L, R) sqrt(2 / j_{o+1}(z_on)^2); the c^{-3/2} factor is applied at run time
    angular_poly: np.ndarray  # (L, L, L) [o, m, p]: coefficient of x^p in N_om d^m P_o/dx^m (x)


@lru_cache(maxsize=None)
def basis_constants(num_radial: int, num_spherical: int) -> BasisConstants:
    check_basis_sizes(num_radial, num_spherical)
    L, R = num_spherical, num_radial
    roots = np.zeros((L, R))
    for o in range(L):
        f = lambda z, o=o: special.spherical_jn(o, z)  # noqa: E731
        grid = np.arange(0.5, 60.0, 0.05)
        vals = f(grid)
        found = []
        for a, b, fa, fb in zip(grid[:-1], grid[1:], vals[:-1], vals[1:]):
            if fa * fb < 0:
                found.append(optimize.brentq(f, a, b, xtol=1e-15, rtol=1e-15))
                if len(found) == R:
                    break
        roots[o] = found
    radial_norm = np.sqrt(2.0 / special.spherical_jn(np.arange(1, L + 1)[:, None], roots) ** 2)
    poly = np.zeros((L, L, L))
    for o in range(L):
        p_o = npleg.leg2poly(np.eye(L)[o])  # power-series coefficients of P_o
        for m in range(o + 1):
            norm = math.sqrt((2 * o + 1) / (4 * math.pi) * math.factorial(o - m) / math.factorial(o + m))
            if m > 0:
                norm *= math.sqrt(2.0)
            d = np.polynomial.polynomial.polyder(p_o, m) if m > 0 else p_o
            poly[o, m, : len(d)] = norm * d
    return BasisConstants(roots=roots, radial_norm=radial_norm, angular_poly=poly)
