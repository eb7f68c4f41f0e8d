// Per-pair math of the fused EGL attention op, shared by the CPU and CUDA kernels.
//
// Everything here is __host__ __device__ and header-only, so the CPU tests (fused == reference in
// float64, gradcheck) cover exactly the arithmetic the GPU runs. Nothing in this file allocates or
// validates: the host fills an EglParams once (egl_host.cpp) and the kernels only read it.
//
// Geometry of the pair i <- j (DESIGN.md §2), r = x_i - x_j (Å), unit(u) = u / sqrt(|u|^2 + eps^2):
//   b = unit(r), a_i = unit(v_i), a_j = unit(v_j)
//   cos φ1 = a_i·b, cos φ2 = -a_j·b                        (paper Eqs. 28-29)
//   p_i = a_i - (a_i·b) b, |p_i| = sin φ1                  (normal part of the velocity direction)
//   sin^m φ1 cos mθ = Re (c + i s)^m, c = p_i·unit(p_j)    (dihedral θ, Chebyshev recurrence)
// so no arccos/atan2 appears and values and gradients stay finite for zero velocities, velocities
// parallel to the bond, and coincident atoms. Only cos mθ terms are used: they are even under
// reflection, so the basis is E(3)-invariant.
//
// Basis index k = base(o) + m R + n, base(o) = R o (o+1) / 2, for degree o < L, order m <= o,
// root n < R (n fastest), the same order as python/diffmd_fast/basis.py.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/hd.h"

namespace diffmd {

constexpr int kMaxSpherical = 4;
constexpr int kMaxRadial = 6;
constexpr int kMaxK = kMaxRadial * kMaxSpherical * (kMaxSpherical + 1) / 2;
constexpr double kEps = 1e-3;         // unit-vector regularisation (Å, Å/frame); see basis.py
constexpr double kSeriesSwitch = 2.0;  // j_o(z): power series below, closed form above
constexpr int kSeriesTerms = 16;

// Constants of the spherical Fourier-Bessel basis for one (L, R, cutoff); plain data so that it
// can be passed by value to a CUDA kernel.
struct BasisConsts {
  int L = 0, R = 0, K = 0;
  double cutoff = 0.0;
  double roots[kMaxSpherical][kMaxRadial];        // z_on, n-th positive root of j_o
  double radial_norm[kMaxSpherical][kMaxRadial];  // sqrt(2 / (c^3 j_{o+1}(z_on)^2))   (Eq. 10)
  double poly[kMaxSpherical][kMaxSpherical][kMaxSpherical];  // [o][m][p]: x^p coefficient of N_om d^m P_o/dx^m
};

// ----------------------------------------------------------------------------------------------
// Forward-mode dual numbers: the backward gets the 9 partials of the basis with respect to
// (r, v_i, v_j) from the very code that computes its value, so the two cannot drift apart.
template <typename T, int NT>
struct Dual {
  T v;
  T d[NT];
  DMD_HD Dual() : v(T(0)) {
    for (int t = 0; t < NT; ++t) d[t] = T(0);
  }
  DMD_HD Dual(T value) : v(value) {  // NOLINT: implicit lift of constants
    for (int t = 0; t < NT; ++t) d[t] = T(0);
  }
};

template <typename T>
DMD_HD T val(T x) { return x; }
template <typename T, int NT>
DMD_HD T val(const Dual<T, NT>& x) { return x.v; }

template <typename T, int NT>
DMD_HD Dual<T, NT> operator+(const Dual<T, NT>& a, const Dual<T, NT>& b) {
  Dual<T, NT> o(a.v + b.v);
  for (int t = 0; t < NT; ++t) o.d[t] = a.d[t] + b.d[t];
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> operator-(const Dual<T, NT>& a, const Dual<T, NT>& b) {
  Dual<T, NT> o(a.v - b.v);
  for (int t = 0; t < NT; ++t) o.d[t] = a.d[t] - b.d[t];
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> operator-(const Dual<T, NT>& a) {
  Dual<T, NT> o(-a.v);
  for (int t = 0; t < NT; ++t) o.d[t] = -a.d[t];
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> operator*(const Dual<T, NT>& a, const Dual<T, NT>& b) {
  Dual<T, NT> o(a.v * b.v);
  for (int t = 0; t < NT; ++t) o.d[t] = a.d[t] * b.v + a.v * b.d[t];
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> operator*(T s, const Dual<T, NT>& a) {
  Dual<T, NT> o(s * a.v);
  for (int t = 0; t < NT; ++t) o.d[t] = s * a.d[t];
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> operator*(const Dual<T, NT>& a, T s) { return s * a; }
template <typename T, int NT>
DMD_HD Dual<T, NT> operator+(const Dual<T, NT>& a, T s) {
  Dual<T, NT> o = a;
  o.v += s;
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> operator+(T s, const Dual<T, NT>& a) { return a + s; }
template <typename T, int NT>
DMD_HD Dual<T, NT> operator-(T s, const Dual<T, NT>& a) { return (-a) + s; }
template <typename T, int NT>
DMD_HD Dual<T, NT> operator-(const Dual<T, NT>& a, T s) { return a + (-s); }
template <typename T, int NT>
DMD_HD Dual<T, NT> operator/(const Dual<T, NT>& a, const Dual<T, NT>& b) {
  const T inv = T(1) / b.v;
  Dual<T, NT> o(a.v * inv);
  for (int t = 0; t < NT; ++t) o.d[t] = (a.d[t] - o.v * b.d[t]) * inv;
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> operator/(T s, const Dual<T, NT>& b) { return Dual<T, NT>(s) / b; }

template <typename T>
DMD_HD T dsqrt(T x) {
  using std::sqrt;
  return sqrt(x);
}
template <typename T>
DMD_HD T dsin(T x) {
  using std::sin;
  return sin(x);
}
template <typename T>
DMD_HD T dcos(T x) {
  using std::cos;
  return cos(x);
}
template <typename T, int NT>
DMD_HD Dual<T, NT> dsqrt(const Dual<T, NT>& a) {
  Dual<T, NT> o(dsqrt(a.v));
  const T g = T(0.5) / o.v;
  for (int t = 0; t < NT; ++t) o.d[t] = g * a.d[t];
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> dsin(const Dual<T, NT>& a) {
  Dual<T, NT> o(dsin(a.v));
  const T g = dcos(a.v);
  for (int t = 0; t < NT; ++t) o.d[t] = g * a.d[t];
  return o;
}
template <typename T, int NT>
DMD_HD Dual<T, NT> dcos(const Dual<T, NT>& a) {
  Dual<T, NT> o(dcos(a.v));
  const T g = -dsin(a.v);
  for (int t = 0; t < NT; ++t) o.d[t] = g * a.d[t];
  return o;
}

// ----------------------------------------------------------------------------------------------
// Spherical Bessel function j_o(z), z >= 0: series below kSeriesSwitch (the closed form cancels
// catastrophically at small z), closed form plus upward recurrence above.
template <typename T, typename S>
DMD_HD S spherical_jn(int o, const S& z) {
  if (val(z) < T(kSeriesSwitch)) {
    T dfact = T(1);
    for (int t = 3; t <= 2 * o + 1; t += 2) dfact *= T(t);
    S term = S(T(1) / dfact);
    for (int t = 0; t < o; ++t) term = term * z;
    S sum = S(T(0));
    const S mz2 = T(-0.5) * (z * z);
    for (int kk = 0; kk < kSeriesTerms; ++kk) {
      sum = sum + term;
      // Terms fall factorially; stop once they no longer change the sum (values and partials
      // shrink at the same rate: each partial is at most (2k + o) / z times its value).
      if (fabs(val(term)) <= T(1e-17) * fabs(val(sum))) break;
      term = term * mz2 * (T(1) / T((kk + 1) * (2 * o + 2 * kk + 3)));
    }
    return sum;
  }
  const S s = dsin(z), c = dcos(z);
  S j_prev = s / z;
  if (o == 0) return j_prev;
  S j = s / (z * z) - c / z;
  for (int t = 1; t < o; ++t) {
    S j_next = T(2 * t + 1) * (j / z) - j_prev;
    j_prev = j;
    j = j_next;
  }
  return j;
}

template <typename S>
DMD_HD S dot3(const S a[3], const S b[3]) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// Calls emit(k, sbf1_k, sbf2_k) for every basis function of the pair, k = 0..K-1, and returns
// true; returns false (and emits nothing: the basis is zero) when the pair is beyond the cutoff.
// S is T for values or Dual<T, 9> for values and partials with respect to (r, v_i, v_j).
template <typename T, typename S, typename Emit>
DMD_HD bool for_each_pair_basis(const S r[3], const S vi[3], const S vj[3], const BasisConsts& bc, Emit&& emit) {
  const T eps2 = T(kEps * kEps);
  const S d = dsqrt(dot3(r, r) + eps2);  // regularised distance, Å
  if (val(d) >= T(bc.cutoff)) return false;
  const S inv_d = T(1) / d;
  S b[3], ai[3], aj[3], pi[3], pj[3];
  const S inv_vi = T(1) / dsqrt(dot3(vi, vi) + eps2);
  const S inv_vj = T(1) / dsqrt(dot3(vj, vj) + eps2);
  for (int c = 0; c < 3; ++c) {
    b[c] = r[c] * inv_d;
    ai[c] = vi[c] * inv_vi;
    aj[c] = vj[c] * inv_vj;
  }
  const S ab_i = dot3(ai, b), ab_j = dot3(aj, b);
  for (int c = 0; c < 3; ++c) {
    pi[c] = ai[c] - ab_i * b[c];
    pj[c] = aj[c] - ab_j * b[c];
  }
  const S rho_i2 = dot3(pi, pi), rho_j2 = dot3(pj, pj), pij = dot3(pi, pj);
  const S c1 = pij / dsqrt(rho_j2 + eps2);  // p_i · unit(p_j)
  const S c2 = pij / dsqrt(rho_i2 + eps2);  // p_j · unit(p_i)
  const S cos1 = ab_i, cos2 = -ab_j;
  S trig1[kMaxSpherical], trig2[kMaxSpherical];  // sin^m φ cos mθ
  trig1[0] = S(T(1));
  trig2[0] = S(T(1));
  if (bc.L > 1) {
    trig1[1] = c1;
    trig2[1] = c2;
  }
  for (int m = 2; m < bc.L; ++m) {
    trig1[m] = T(2) * (c1 * trig1[m - 1]) - rho_i2 * trig1[m - 2];
    trig2[m] = T(2) * (c2 * trig2[m - 1]) - rho_j2 * trig2[m - 2];
  }
  const S x = d * T(1.0 / bc.cutoff);
  const S x3 = x * x * x;
  const S env = T(1) - x3 * (T(10) - T(15) * x + T(6) * (x * x));  // 1 - 10x^3 + 15x^4 - 6x^5
  for (int o = 0; o < bc.L; ++o) {
    S ang1[kMaxSpherical], ang2[kMaxSpherical];
    for (int m = 0; m <= o; ++m) {
      S l1 = S(T(bc.poly[o][m][bc.L - 1])), l2 = l1;  // Horner in cos φ
      for (int p = bc.L - 2; p >= 0; --p) {
        l1 = l1 * cos1 + T(bc.poly[o][m][p]);
        l2 = l2 * cos2 + T(bc.poly[o][m][p]);
      }
      ang1[m] = l1 * trig1[m];
      ang2[m] = l2 * trig2[m];
    }
    const int base = bc.R * o * (o + 1) / 2;
    for (int n = 0; n < bc.R; ++n) {
      const S rad = T(bc.radial_norm[o][n]) * (spherical_jn<T>(o, T(bc.roots[o][n]) * x) * env);
      for (int m = 0; m <= o; ++m) emit(base + m * bc.R + n, rad * ang1[m], rad * ang2[m]);
    }
  }
  return true;
}

// Values of both bases of one pair into sbf1[K], sbf2[K] (zeros beyond the cutoff).
template <typename T>
DMD_HD bool pair_basis(const T r[3], const T vi[3], const T vj[3], const BasisConsts& bc, T* sbf1, T* sbf2) {
  for (int k = 0; k < bc.K; ++k) sbf1[k] = sbf2[k] = T(0);
  return for_each_pair_basis<T, T>(r, vi, vj, bc, [&](int k, T s1, T s2) {
    sbf1[k] = s1;
    sbf2[k] = s2;
  });
}

// Vector-Jacobian product of the basis: given g1 = dL/dsbf1 and g2 = dL/dsbf2 (K each), adds
// dL/dr, dL/dv_i, dL/dv_j. One forward-mode sweep with 9 tangents.
template <typename T>
DMD_HD void pair_basis_vjp(const T r[3], const T vi[3], const T vj[3], const BasisConsts& bc, const T* g1,
                           const T* g2, T gr[3], T gvi[3], T gvj[3]) {
  using D9 = Dual<T, 9>;
  D9 rd[3], vid[3], vjd[3];
  for (int c = 0; c < 3; ++c) {
    rd[c] = D9(r[c]);
    rd[c].d[c] = T(1);
    vid[c] = D9(vi[c]);
    vid[c].d[3 + c] = T(1);
    vjd[c] = D9(vj[c]);
    vjd[c].d[6 + c] = T(1);
  }
  D9 f(T(0));
  const bool inside = for_each_pair_basis<T, D9>(rd, vid, vjd, bc, [&](int k, const D9& s1, const D9& s2) {
    f = f + g1[k] * s1 + g2[k] * s2;
  });
  if (!inside) return;
  for (int c = 0; c < 3; ++c) {
    gr[c] += f.d[c];
    gvi[c] += f.d[3 + c];
    gvj[c] += f.d[6 + c];
  }
}

// ----------------------------------------------------------------------------------------------
// Everything a kernel reads: filled and validated once on the host.
template <typename T>
struct EglParams {
  int64_t N = 0, E = 0, H = 0, D = 0;
  T scale = T(1);  // 1 / sqrt(D)
  BasisConsts basis;
  const T *x = nullptr, *v = nullptr;                   // (N,3)
  const T *q = nullptr, *k = nullptr, *m = nullptr;     // (N,H,D)
  const T *w1 = nullptr, *w2 = nullptr;                 // (K,H,D)
  const int64_t *row_ptr = nullptr, *col = nullptr;     // (N+1,), (E,)
  T *msg = nullptr, *vec = nullptr, *lse = nullptr;     // (N,H,D), (N,H,3), (N,H)
  // backward only
  const T *grad_msg = nullptr, *grad_vec = nullptr;     // (N,H,D), (N,H,3)
  const T *out_msg = nullptr, *out_vec = nullptr, *out_lse = nullptr;
  const T* delta = nullptr;                             // (N,H) <grad_msg, msg> + <grad_vec, vec>
  T *gx = nullptr, *gv = nullptr, *gq = nullptr, *gk = nullptr, *gm = nullptr, *gw1 = nullptr, *gw2 = nullptr;
};

// The edge's query and key for head h: Q = q_ih + sbf1 @ w1[:, h], Kt = k_jh + sbf2 @ w2[:, h], each (D).
// Returns the logit <Q, Kt> / sqrt(D) (Eq. 14).
template <typename T>
DMD_HD T edge_query_key(const EglParams<T>& p, int64_t i, int64_t j, int64_t h, bool inside, const T* sbf1,
                        const T* sbf2, T* Q, T* Kt) {
  const int64_t HD = p.H * p.D;
  const T* qi = p.q + i * HD + h * p.D;
  const T* kj = p.k + j * HD + h * p.D;
  for (int64_t d = 0; d < p.D; ++d) {
    Q[d] = qi[d];
    Kt[d] = kj[d];
  }
  if (inside) {
    for (int kk = 0; kk < p.basis.K; ++kk) {
      const T s1 = sbf1[kk], s2 = sbf2[kk];
      const T* w1r = p.w1 + kk * HD + h * p.D;
      const T* w2r = p.w2 + kk * HD + h * p.D;
      for (int64_t d = 0; d < p.D; ++d) {
        Q[d] += s1 * w1r[d];
        Kt[d] += s2 * w2r[d];
      }
    }
  }
  T a = T(0);
  for (int64_t d = 0; d < p.D; ++d) a += Q[d] * Kt[d];
  return a * p.scale;
}

}  // namespace diffmd
