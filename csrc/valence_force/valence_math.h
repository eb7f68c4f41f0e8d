// Harmonic valence terms (bonds, cosine-harmonic angles) in double precision: the math shared by the
// CPU and CUDA kernels of diffmd_fast::valence_force and the Python reference (nn/bond_prior.py).
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

}  // namespace diffmd
