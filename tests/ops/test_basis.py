"""The basis: Bessel roots and normalisations (scipy vs the kernels' C++), and its functions."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

import diffmd_fast as dm
from diffmd_fast.ops import basis, reference


@pytest.mark.parametrize("order", range(4))
def test_spherical_jn_matches_scipy(order):
    z = torch.linspace(0.0, 25.0, 2001, dtype=torch.float64)
    np.testing.assert_allclose(reference.spherical_jn(order, z).numpy(), special.spherical_jn(order, z.numpy()),
                               atol=1e-13)


def test_roots_are_roots_and_increasing():
    c = basis.basis_constants(6, 4)
    assert np.all(np.diff(c.roots, axis=1) > 0)
    for o in range(4):
        assert np.abs(special.spherical_jn(o, c.roots[o])).max() < 1e-12
    assert c.roots[0, 0] == pytest.approx(math.pi)


@pytest.mark.skipif(not dm.HAS_EXTENSION, reason="compiled extension not built")
@pytest.mark.parametrize("radial,spherical,cutoff", [(2, 2, 1.6), (6, 4, 5.0), (1, 1, 1.0)])
def test_kernel_constants_match_scipy(radial, spherical, cutoff):
    roots, norm, poly = dm._C.basis_constants(radial, spherical, cutoff)
    c = basis.basis_constants(radial, spherical)
    np.testing.assert_allclose(roots, c.roots, rtol=1e-13)
    np.testing.assert_allclose(norm, c.radial_norm * cutoff**-1.5, rtol=1e-12)
    np.testing.assert_allclose(poly, c.angular_poly, atol=1e-14)


def test_sbf_dim_and_errors():
    assert dm.sbf_dim(2, 2) == 6 and dm.sbf_dim(1, 1) == 1 and dm.sbf_dim(6, 4) == 60
    with pytest.raises(ValueError, match="num_radial"):
        dm.sbf_dim(0, 2)
    with pytest.raises(ValueError, match="num_spherical"):
        dm.sbf_dim(2, 5)


def test_radial_part_is_orthonormal_on_the_ball():
    """Eq. 10's normalisation makes ∫_0^c (N j_o(z_on r/c))^2 r^2 dr = 1 (the envelope off)."""
    c = basis.basis_constants(3, 3)
    cutoff = 1.7
    r = np.linspace(0, cutoff, 20001)
    for o in range(3):
        for n in range(3):
            f = c.radial_norm[o, n] * cutoff**-1.5 * special.spherical_jn(o, c.roots[o, n] * r / cutoff)
            assert np.trapezoid(f * f * r * r, r) == pytest.approx(1.0, rel=1e-6)


def test_angular_part_is_a_real_spherical_harmonic():
    """With unit velocities the angular factor equals scipy's Y_o^m(θ, φ) real part (times √2)."""
    rng = np.random.default_rng(0)
    c = basis.basis_constants(1, 4)
    for _ in range(5):
        phi, theta = rng.uniform(0.1, 3.0), rng.uniform(-3.0, 3.0)
        for o in range(4):
            for m in range(o + 1):
                poly = np.polynomial.polynomial.polyval(np.cos(phi), c.angular_poly[o, m])
                ours = poly * np.sin(phi) ** m * np.cos(m * theta)
                y = special.sph_harm_y(o, m, phi, theta)
                expected = (np.sqrt(2) if m else 1.0) * y.real * (-1) ** m  # scipy uses Condon-Shortley
                assert ours == pytest.approx(expected, abs=1e-12)


def test_basis_vanishes_smoothly_at_cutoff():
    r = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64) * torch.tensor([[0.999], [1.0], [1.2]], dtype=torch.float64)
    v = torch.randn(3, 3, dtype=torch.float64)
    s1, s2 = reference.pair_basis(r, v, v.flip(0), cutoff=1.0, num_radial=2, num_spherical=2)
    assert s1[0].abs().max() < 1e-6 and torch.all(s1[1:] == 0) and torch.all(s2[1:] == 0)
