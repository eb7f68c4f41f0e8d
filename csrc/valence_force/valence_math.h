// Valence terms (harmonic bonds, cosine-harmonic angles, mirror-symmetric torsions) in double
// precision: the math shared by the CPU and CUDA kernels of diffmd_fast::valence_force and the Python
// reference (valence/prior.py).
#pragma once

#include <cmath>

#include "common/hd.h"

namespace diffmd {

constexpr double kMinLength = 1e-6;  // Å: clamps a zero distance (coincident atoms) as the reference does

// Force on receiver i of the harmonic bond U = ½ k (r - r0)² to sender j: -k (r - r0) (x_i - x_j) / r.
DMD_HD void harmonic_bond_force(const double xi[3], const double xj[3], double k, double r0, double fi[3]) {
  double r[3], d2 = 0.0;
  for (int c = 0; c < 3; ++c) {
    r[c] = xi[c] - xj[c];
    d2 += r[c] * r[c];
  }
  const double d = fmax(sqrt(d2), kMinLength);
  const double s = -k * (d - r0) / d;  // eV/Å²
  for (int c = 0; c < 3; ++c) fi[c] = s * r[c];
}

// Forces on the ends i, k of the angle i-j-k, U = ½ K (cos θ - c0)² (GROMOS 96); the centre j gets
// -(fi + fk). With u = x_i - x_j, w = x_k - x_j: dcos/dx_i = (ŵ - cos û) / |u|, dcos/dx_k likewise.
DMD_HD void cosine_angle_force(const double xi[3], const double xj[3], const double xk[3], double K, double c0,
                               double fi[3], double fk[3]) {
  double u[3], w[3], lu2 = 0.0, lw2 = 0.0;
  for (int c = 0; c < 3; ++c) {
    u[c] = xi[c] - xj[c];
    w[c] = xk[c] - xj[c];
    lu2 += u[c] * u[c];
    lw2 += w[c] * w[c];
  }
  const double lu = fmax(sqrt(lu2), kMinLength), lw = fmax(sqrt(lw2), kMinLength);
  double cos_t = 0.0;
  for (int c = 0; c < 3; ++c) {
    u[c] /= lu;
    w[c] /= lw;
    cos_t += u[c] * w[c];
  }
  const double coef = -K * (cos_t - c0);  // eV: -dU/dcos
  for (int c = 0; c < 3; ++c) {
    fi[c] = coef * (w[c] - cos_t * u[c]) / lu;
    fk[c] = coef * (u[c] - cos_t * w[c]) / lw;
  }
}

// Forces on the ends i, k of the angle i-j-k with its Urey-Bradley spring, U = ½ K (cos θ - c0)² +
// ½ k_ub (|x_i - x_k| - r_ub)² (the 1-3 term of CHARMM's angles: the bend-stretch coupling that puts
// H-C-H scissoring where the molecule has it); the centre j gets -(fi + fk). k_ub = 0: the angle alone.
DMD_HD void urey_bradley_angle_force(const double xi[3], const double xj[3], const double xk[3], double K, double c0,
                                     double k_ub, double r_ub, double fi[3], double fk[3]) {
  cosine_angle_force(xi, xj, xk, K, c0, fi, fk);
  if (k_ub == 0.0) return;
  double s[3];
  harmonic_bond_force(xi, xk, k_ub, r_ub, s);
  for (int c = 0; c < 3; ++c) {
    fi[c] += s[c];
    fk[c] -= s[c];
  }
}

// Forces on i, j, k, l of the mirror-symmetric torsion of valence/prior.py,
// U(φ) = -kt log ½[exp(κ cos n(φ - φ0)) + exp(κ cos n(φ + φ0))], φ the IUPAC dihedral angle of i-j-k-l
// (b1 = x_j - x_i, b2 = x_k - x_j, b3 = x_l - x_k; φ = atan2(|b2| b1·(b2×b3), (b1×b2)·(b2×b3))), in
// the closed form of Blondel & Karplus 1996 (J. Comput. Chem. 17, 1132): the four sum to zero.
DMD_HD void mirror_torsion_force(const double xi[3], const double xj[3], const double xk[3], const double xl[3],
                                 double kt, double kappa, double n, double phi0, double fi[3], double fj[3],
                                 double fk[3], double fl[3]) {
  double b1[3], b2[3], b3[3], n1[3], n2[3];
  for (int c = 0; c < 3; ++c) {
    b1[c] = xj[c] - xi[c];
    b2[c] = xk[c] - xj[c];
    b3[c] = xl[c] - xk[c];
  }
  for (int c = 0; c < 3; ++c) {
    const int a = (c + 1) % 3, b = (c + 2) % 3;
    n1[c] = b1[a] * b2[b] - b1[b] * b2[a];
    n2[c] = b2[a] * b3[b] - b2[b] * b3[a];
  }
  double l2sq = 0.0, n1sq = 0.0, n2sq = 0.0, b1n2 = 0.0, n1n2 = 0.0, b1b2 = 0.0, b3b2 = 0.0;
  for (int c = 0; c < 3; ++c) {
    l2sq += b2[c] * b2[c];
    n1sq += n1[c] * n1[c];
    n2sq += n2[c] * n2[c];
    b1n2 += b1[c] * n2[c];
    n1n2 += n1[c] * n2[c];
    b1b2 += b1[c] * b2[c];
    b3b2 += b3[c] * b2[c];
  }
  const double l2 = fmax(sqrt(l2sq), kMinLength);
  const double phi = atan2(l2 * b1n2, n1n2);
  // the two wells' Boltzmann weights, softmax of κ cos n(φ ∓ φ0), computed about their maximum
  const double ep = kappa * cos(n * (phi - phi0)), em = kappa * cos(n * (phi + phi0));
  const double top = fmax(ep, em), wp = exp(ep - top), wm = exp(em - top);
  const double du = kt * kappa * n * (wp * sin(n * (phi - phi0)) + wm * sin(n * (phi + phi0))) / (wp + wm);  // eV
  const double ci = l2 / fmax(n1sq, kMinLength * kMinLength), cl = l2 / fmax(n2sq, kMinLength * kMinLength);
  const double p = b1b2 / (l2 * l2), q = b3b2 / (l2 * l2);
  for (int c = 0; c < 3; ++c) {
    const double gi = -ci * n1[c], gl = cl * n2[c];  // dφ/dx_i, dφ/dx_l
    fi[c] = -du * gi;
    fl[c] = -du * gl;
    fj[c] = -du * ((-p - 1.0) * gi + q * gl);
    fk[c] = -du * (p * gi - (q + 1.0) * gl);
  }
}

}  // namespace diffmd
