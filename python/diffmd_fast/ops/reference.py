"""Pure-PyTorch reference of the fused EGL attention op: same signature, materialises everything.

It is the ground truth of the tests and the baseline of the benchmarks, so it is written to read
like the paper (Eqs. 10-14, 15, 17) rather than to be fast. Memory is O(E K + E H D).

Geometry of the pair i <- j (DESIGN.md §2), with r = x_i - x_j and unit vectors regularised as
u / sqrt(|u|^2 + eps^2) so that zero velocities, velocities parallel to a bond and coincident atoms
give finite values and gradients:
    b   = unit(r)                          bond direction
    a_i = unit(v_i), a_j = unit(v_j)       velocity directions
    cos φ1 = a_i·b,  cos φ2 = a_j·(-b)     the two velocity angles (Eqs. 28-29)
    p_i = a_i - (a_i·b) b                  component of a_i normal to the bond, |p_i| = sin φ1
    sin^m φ1 cos(m θ) = Re[(c + i s)^m],   c = p_i·unit(p_j), c^2 + s^2 = |p_i|^2
the last being the dihedral θ between the half planes (v_i, r) and (v_j, r) without any arccos.
"""
from __future__ import annotations

import math

import torch

from .autocast import float32_under_autocast
from .basis import EPS, basis_constants, sbf_dim


def _unit(u: torch.Tensor) -> torch.Tensor:
    return u / torch.sqrt((u * u).sum(-1, keepdim=True) + EPS**2)


def spherical_jn(order: int, z: torch.Tensor) -> torch.Tensor:
    """Spherical Bessel function j_order(z) for z >= 0: power series below z = 2, closed form above."""
    small = z < 2.0
    zs = torch.where(small, z, torch.zeros_like(z))
    series = torch.zeros_like(z)
    term = zs**order / math.prod(range(1, 2 * order + 2, 2))  # z^o / (2o+1)!!
    for kk in range(16):
        series = series + term
        term = term * (-0.5 * zs * zs) / ((kk + 1) * (2 * order + 2 * kk + 3))
    zl = torch.where(small, torch.full_like(z, 2.0), z)
    j_prev, j = torch.sin(zl) / zl, torch.sin(zl) / zl**2 - torch.cos(zl) / zl
    if order == 0:
        j = j_prev
    for o in range(1, order):
        j_prev, j = j, (2 * o + 1) / zl * j - j_prev
    return torch.where(small, series, j)


def envelope(x: torch.Tensor) -> torch.Tensor:
    """Smooth cutoff u(x) = 1 - 10x^3 + 15x^4 - 6x^5 on [0, 1), zero beyond; C^2 at x = 1."""
    inside = x < 1.0
    xc = torch.where(inside, x, torch.zeros_like(x))
    return torch.where(inside, 1 - 10 * xc**3 + 15 * xc**4 - 6 * xc**5, torch.zeros_like(x))


@torch.compiler.assume_constant_result
def _tables(num_radial: int, num_spherical: int) -> tuple:
    """The basis constants as nested tuples of floats: torch.compile takes them as constants
    instead of tracing into scipy's root finding."""
    c = basis_constants(num_radial, num_spherical)
    return (tuple(map(tuple, c.roots.tolist())), tuple(map(tuple, c.radial_norm.tolist())),
            tuple(tuple(map(tuple, plane)) for plane in c.angular_poly.tolist()))


def _chebyshev_like(c: torch.Tensor, rho2: torch.Tensor, m_max: int) -> list[torch.Tensor]:
    """[Re (c + i s)^m for m = 0..m_max] with s^2 = rho2 - c^2: sin^m φ cos mθ."""
    out = [torch.ones_like(c), c]
    for _ in range(1, m_max):
        out.append(2 * c * out[-1] - rho2 * out[-2])
    return out[: m_max + 1]


def pair_basis(r: torch.Tensor, v_i: torch.Tensor, v_j: torch.Tensor, *, cutoff: float,
               num_radial: int, num_spherical: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two spherical Fourier-Bessel bases of Eqs. 10-11 for each edge.

    r (E,3) = x_i - x_j in Å; v_i, v_j (E,3). Returns sbf1, sbf2 of shape (E, K).
    """
    roots_all, norm_all, poly_all = _tables(num_radial, num_spherical)
    L = num_spherical
    d = torch.sqrt((r * r).sum(-1) + EPS**2)  # (E,) Å
    b = r / d[:, None]
    a_i, a_j = _unit(v_i), _unit(v_j)
    cos1 = (a_i * b).sum(-1)  # cos φ1
    cos2 = -(a_j * b).sum(-1)  # cos φ2: angle between v_j and -r
    p_i = a_i - (a_i * b).sum(-1, keepdim=True) * b  # (E,3) normal parts, |p| = sin φ
    p_j = a_j - (a_j * b).sum(-1, keepdim=True) * b
    trig1 = _chebyshev_like((p_i * _unit(p_j)).sum(-1), (p_i * p_i).sum(-1), L - 1)  # sin^m φ1 cos mθ
    trig2 = _chebyshev_like((p_j * _unit(p_i)).sum(-1), (p_j * p_j).sum(-1), L - 1)
    env = envelope(d / cutoff)
    sbf1, sbf2 = [], []
    for o in range(L):
        roots = torch.tensor(roots_all[o], dtype=r.dtype, device=r.device)  # (R,)
        norm = torch.tensor(norm_all[o], dtype=r.dtype, device=r.device) * cutoff**-1.5
        radial = norm * spherical_jn(o, roots * d[:, None] / cutoff) * env[:, None]  # (E, R), Eq. 10
        for m in range(o + 1):
            coef = poly_all[o][m]
            leg1 = sum(float(coef[p]) * cos1**p for p in range(L))  # N_om d^m P_o/dx^m (cos φ1)
            leg2 = sum(float(coef[p]) * cos2**p for p in range(L))
            sbf1.append(radial * (leg1 * trig1[m])[:, None])  # Y_om(φ1, θ)
            sbf2.append(radial * (leg2 * trig2[m])[:, None])
    return torch.cat(sbf1, dim=1), torch.cat(sbf2, dim=1)


@float32_under_autocast
def egl_attention(x, v, q, k, m, w1, w2, row_ptr, col, *, cutoff: float, num_radial: int,
                  num_spherical: int) -> tuple[torch.Tensor, torch.Tensor]:
    """msg (N,H,D) = Σ_j α_ijh m_jh and vec (N,H,3) = Σ_j α_ijh (x_i - x_j), α = softmax_j a_ijh.

    Under torch.autocast: computed in float32, returned in the autocast dtype (ops/autocast.py)."""
    N, H, D = q.shape
    K = sbf_dim(num_radial, num_spherical)
    if w1.shape != (K, H, D) or w2.shape != (K, H, D):
        raise ValueError(f"w1, w2 must be (K={K}, H={H}, D={D}), got {tuple(w1.shape)}, {tuple(w2.shape)}")
    i = torch.repeat_interleave(torch.arange(N, device=x.device), row_ptr[1:] - row_ptr[:-1])  # (E,)
    j = col
    r = x[i] - x[j]  # (E,3) Å
    sbf1, sbf2 = pair_basis(r, v[i], v[j], cutoff=cutoff, num_radial=num_radial, num_spherical=num_spherical)
    query = q[i] + torch.einsum("ek,khd->ehd", sbf1, w1)  # (E,H,D), Eq. 12
    key = k[j] + torch.einsum("ek,khd->ehd", sbf2, w2)  # (E,H,D), Eq. 13
    logits = (query * key).sum(-1) / math.sqrt(D)  # (E,H), Eq. 14
    # softmax over the senders j of each receiver i
    lmax = torch.full((N, H), -torch.inf, dtype=x.dtype, device=x.device)
    lmax = lmax.scatter_reduce(0, i[:, None].expand(-1, H), logits, "amax").detach()
    p = torch.exp(logits - lmax[i])
    denom = torch.zeros(N, H, dtype=x.dtype, device=x.device).index_add(0, i, p)
    alpha = p / denom[i]  # (E,H)
    msg = torch.zeros(N, H, D, dtype=x.dtype, device=x.device).index_add(0, i, alpha[..., None] * m[j])
    vec = torch.zeros(N, H, 3, dtype=x.dtype, device=x.device).index_add(0, i, alpha[..., None] * r[:, None, :])
    return msg, vec
