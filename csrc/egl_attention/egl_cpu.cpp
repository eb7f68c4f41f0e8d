// CPU kernels of the fused EGL attention op (at::parallel_for over receivers).
//
// Forward, per receiver, three sweeps over its senders with a per-thread deg x H logit buffer:
// (A) logits, (B) per-head max, exp and sum, (C) weighted sums of messages and bond vectors; one
// exp per (edge, head), no rescaling branch; keeps msg, vec and the log-sum-exp. Backward: gradients
// land on both ends of an edge, so to stay race-free without atomics or per-thread node-sized
// buffers it runs two passes: receivers (grads of q_i, x_i, v_i and of w1, w2 into small per-thread
// buffers) and senders through a CSC permutation (grads of k_j, m_j, x_j, v_j). Pass 1 recomputes
// the pair terms and hands pass 2 a per-edge record (E x (6 + 2H): the sender's geometric gradient,
// alpha, d loss / d logit), so basis VJP, logits and exps run once per edge and pass 2 is two axpys
// per edge. Nothing of size E x K or E x H x D is allocated; the CSC permutation is a counting sort.
//
// Speed: beyond the cutoff an edge is only H dots and H axpys of length D over contiguous (H, D)
// rows, so per-edge work is written over whole rows with D a compile-time constant for common head
// sizes (8, 16, 32) so the compiler unrolls and vectorises; D reductions use `omp simd` (summation
// order is the only change). Float exp is a branch-free polynomial (Cephes expf, <= 2 ulp) that
// vectorises; double keeps std::exp.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "egl_host.h"

namespace diffmd {
namespace {

constexpr int64_t kGrain = 8;

// The row kernels are compiled twice, for x86-64-v3 (AVX2 + FMA) and for the baseline ISA, and the
// loader picks one at run time (ifunc): the wheel runs on any x86-64 and uses AVX2 where it can.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(DIFFMD_NO_CPU_CLONES)
#define DMD_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DMD_CPU_CLONES
#endif

// a[t] = exp(a[t]), a[t] <= 88: 2^k e^f, k = round(a log2 e), |f| <= ln 2 / 2, Cephes' expf polynomial;
// ~1e-38 instead of a denormal below -87.3 (nothing next to the softmax's top term, 1); NaN stays NaN.
// Branch-free so it vectorises; GCC if-converts the clamps only without -ftrapping-math, hence the
// pragma for this one function (no FP exception flags are read anywhere).
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
DMD_CPU_CLONES void exp_inplace(float* __restrict a, int64_t n) {
#pragma omp simd
  for (int64_t t = 0; t < n; ++t) {
    const float x = a[t];
    const float xc = x < -87.3365478515625f ? -87.3365478515625f : (x > 88.0f ? 88.0f : x);
    const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
    const float k = (xc * 1.44269504088896341f + shifter) - shifter;
    const float f = (xc - k * 0.693359375f) + k * 2.12194440e-4f;  // ln 2 in two parts
    float y = 1.9875691500e-4f;
    y = y * f + 1.3981999507e-3f;
    y = y * f + 8.3334519073e-3f;
    y = y * f + 4.1665795894e-2f;
    y = y * f + 1.6666665459e-1f;
    y = y * f + 5.0000001201e-1f;
    y = y * (f * f) + f + 1.0f;
    const float two_k = __builtin_bit_cast(float, (static_cast<int32_t>(k) + 127) << 23);  // 2^k
    a[t] = x == x ? y * two_k : x;
  }
}
#pragma GCC pop_options
inline void exp_inplace(double* __restrict a, int64_t n) {
  for (int64_t t = 0; t < n; ++t) a[t] = std::exp(a[t]);
}

// out[h] = scale * <a_h, b_h> for the H heads of two (H, D) rows.
template <typename T, int DC>
inline void head_dots(const T* __restrict a, const T* __restrict b, int64_t H, int64_t Dr, T scale, T* __restrict out) {
  const int64_t D = DC > 0 ? DC : Dr;
  for (int64_t h = 0; h < H; ++h) {
    T s = T(0);
#pragma omp simd reduction(+ : s)
    for (int64_t d = 0; d < D; ++d) s += a[h * D + d] * b[h * D + d];
    out[h] = s * scale;
  }
}

// y_h += w[h] * x_h for the H heads of two (H, D) rows.
template <typename T, int DC>
inline void head_axpy(const T* __restrict w, const T* __restrict x, int64_t H, int64_t Dr, T* __restrict y) {
  const int64_t D = DC > 0 ? DC : Dr;
  for (int64_t h = 0; h < H; ++h) {
    const T wh = w[h];
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) y[h * D + d] += wh * x[h * D + d];
  }
}

// The edge's query and key rows for all heads (edge_query_key of egl_math.h, every head at once):
// Q = q_i + sbf1 @ w1, Kt = k_j + sbf2 @ w2, each (H, D).
template <typename T>
inline void edge_rows(const T* __restrict qi, const T* __restrict kj, const T* __restrict w1, const T* __restrict w2,
                      const T* sbf1, const T* sbf2, int K, int64_t HD, T* __restrict Q, T* __restrict Kt) {
  for (int64_t t = 0; t < HD; ++t) {
    Q[t] = qi[t];
    Kt[t] = kj[t];
  }
  for (int kk = 0; kk < K; ++kk) {
    const T s1 = sbf1[kk], s2 = sbf2[kk];
    const T* __restrict w1r = w1 + kk * HD;
    const T* __restrict w2r = w2 + kk * HD;
#pragma omp simd
    for (int64_t t = 0; t < HD; ++t) {
      Q[t] += s1 * w1r[t];
      Kt[t] += s2 * w2r[t];
    }
  }
}

template <typename T>
inline void edge_r(const T* x, int64_t i, int64_t j, T r[3]) {  // r = x_i - x_j, Å
  for (int c = 0; c < 3; ++c) r[c] = x[i * 3 + c] - x[j * 3 + c];
}

// pair_basis behind a squared-distance pre-test: most edges of a complete graph lie beyond the cutoff
// and skip the out-of-line call; the margin leaves every pair near the cutoff to pair_basis.
template <typename T>
inline bool pair_basis_if_inside(const T r[3], const T* vi, const T* vj, const BasisConsts& bc, T* sbf1, T* sbf2) {
  const double d2 = double(r[0]) * r[0] + double(r[1]) * r[1] + double(r[2]) * r[2] + kEps * kEps;
  if (d2 > bc.cutoff * bc.cutoff * (1.0 + 1e-4)) return false;
  return pair_basis(r, vi, vj, bc, sbf1, sbf2);
}

template <typename T, int DC>
DMD_CPU_CLONES void forward_rows(const EglParams<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H, D = DC > 0 ? DC : p.D, HD = H * D;
  const int K = p.basis.K;
  std::vector<T> logit, rbuf, acc(HD), Q(HD), Kt(HD), accv(H * 3), mx(H), sum(H);
  T sbf1[kMaxK], sbf2[kMaxK];
  for (int64_t i = begin; i < end; ++i) {
    const int64_t e0 = p.row_ptr[i], deg = p.row_ptr[i + 1] - e0;
    logit.resize(std::max<size_t>(logit.size(), deg * H));  // grows to the largest degree, then stays
    rbuf.resize(std::max<size_t>(rbuf.size(), deg * 3));
    // (A) logits (deg, H)
    for (int64_t t = 0; t < deg; ++t) {
      const int64_t j = p.col[e0 + t];
      T* r = rbuf.data() + t * 3;
      edge_r(p.x, i, j, r);
      const T *qe = p.q + i * HD, *ke = p.k + j * HD;
      if (pair_basis_if_inside(r, p.v + i * 3, p.v + j * 3, p.basis, sbf1, sbf2)) {
        edge_rows(qe, ke, p.w1, p.w2, sbf1, sbf2, K, HD, Q.data(), Kt.data());
        qe = Q.data();
        ke = Kt.data();
      }
      head_dots<T, DC>(qe, ke, H, D, p.scale, logit.data() + t * H);
    }
    // (B) softmax weights, unnormalised: exp(a - max_h)
    std::fill(mx.begin(), mx.end(), -std::numeric_limits<T>::infinity());
    for (int64_t t = 0; t < deg; ++t)
      for (int64_t h = 0; h < H; ++h) mx[h] = logit[t * H + h] > mx[h] ? logit[t * H + h] : mx[h];
    for (int64_t t = 0; t < deg; ++t)
      for (int64_t h = 0; h < H; ++h) logit[t * H + h] -= mx[h];
    exp_inplace(logit.data(), deg * H);
    // (C) weighted sums
    for (auto* buf : {&sum, &acc, &accv}) std::fill(buf->begin(), buf->end(), T(0));
    for (int64_t t = 0; t < deg; ++t) {
      const T* w = logit.data() + t * H;
      const T* r = rbuf.data() + t * 3;
      head_axpy<T, DC>(w, p.m + p.col[e0 + t] * HD, H, D, acc.data());
      for (int64_t h = 0; h < H; ++h) {
        sum[h] += w[h];
        for (int c = 0; c < 3; ++c) accv[h * 3 + c] += w[h] * r[c];
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      const bool any = sum[h] > T(0);  // atoms without neighbours get zeros
      const T inv = any ? T(1) / sum[h] : T(0);
      for (int64_t d = 0; d < D; ++d) p.msg[i * HD + h * D + d] = acc[h * D + d] * inv;
      for (int c = 0; c < 3; ++c) p.vec[(i * H + h) * 3 + c] = accv[h * 3 + c] * inv;
      p.lse[i * H + h] = any ? mx[h] + std::log(sum[h]) : T(0);
    }
  }
}

// Per-edge terms of backward pass 1 for all heads: alpha (H), da = d loss / d <Q, Kt> (H), and the
// query and key rows qe, ke (pointers into q, k, or into Q, Kt when the pair is inside the cutoff).
// Returns whether it is inside.
template <typename T, int DC>
inline bool edge_terms(const EglParams<T>& p, int64_t i, int64_t j, const T r[3], T* sbf1, T* sbf2, T* Q, T* Kt,
                       T* alpha, T* da, const T*& qe, const T*& ke) {
  const int64_t H = p.H, D = DC > 0 ? DC : p.D, HD = H * D;
  qe = p.q + i * HD;
  ke = p.k + j * HD;
  const bool inside = pair_basis_if_inside(r, p.v + i * 3, p.v + j * 3, p.basis, sbf1, sbf2);
  if (inside) {
    edge_rows(qe, ke, p.w1, p.w2, sbf1, sbf2, p.basis.K, HD, Q, Kt);
    qe = Q;
    ke = Kt;
  }
  head_dots<T, DC>(qe, ke, H, D, p.scale, alpha);
  for (int64_t h = 0; h < H; ++h) alpha[h] -= p.out_lse[i * H + h];
  exp_inplace(alpha, H);
  head_dots<T, DC>(p.grad_msg + i * HD, p.m + j * HD, H, D, T(1), da);
  const T* gvec = p.grad_vec + i * H * 3;
  for (int64_t h = 0; h < H; ++h) {
    const T dalpha = da[h] + gvec[h * 3] * r[0] + gvec[h * 3 + 1] * r[1] + gvec[h * 3 + 2] * r[2];
    da[h] = alpha[h] * (dalpha - p.delta[i * H + h]) * p.scale;
  }
  return inside;
}

template <typename T, int DC>
DMD_CPU_CLONES void receiver_rows(const EglParams<T>& p, T* gw_threads, T* edge_rec, int64_t begin, int64_t end) {
  const int64_t H = p.H, D = DC > 0 ? DC : p.D, HD = H * D;
  const int K = p.basis.K;
  T *gw1 = gw_threads, *gw2 = gw_threads + K * HD;  // this thread's (2, K, H, D) slice
  const int64_t rec = 6 + 2 * H;
  std::vector<T> Q(HD), Kt(HD), coef(H), proj(H);  // per-thread scratch, allocated once per chunk
  T sbf1[kMaxK], sbf2[kMaxK], g1[kMaxK], g2[kMaxK], r[3];
  const T *qe, *ke;
  for (int64_t i = begin; i < end; ++i) {
    T gxi[3] = {0, 0, 0}, gvi[3] = {0, 0, 0};
    T* gqi = p.gq + i * HD;
    const T* gvec = p.grad_vec + i * H * 3;
    for (int64_t e = p.row_ptr[i]; e < p.row_ptr[i + 1]; ++e) {
      const int64_t j = p.col[e];
      T* er = edge_rec + e * rec;  // (d loss/d r, d loss/d v_j, alpha (H), da (H)) for pass 2
      T *alpha = er + 6, *da = er + 6 + H;
      edge_r(p.x, i, j, r);
      const bool inside = edge_terms<T, DC>(p, i, j, r, sbf1, sbf2, Q.data(), Kt.data(), alpha, da, qe, ke);
      head_axpy<T, DC>(da, ke, H, D, gqi);
      T gr[3] = {0, 0, 0}, gvj[3] = {0, 0, 0};
      for (int64_t h = 0; h < H; ++h)
        for (int c = 0; c < 3; ++c) gr[c] += alpha[h] * gvec[h * 3 + c];  // direct: vec = Σ α r
      if (inside) {
        for (int kk = 0; kk < K; ++kk) {
          // basis grads g1 = Σ_h da_h <Kt_h, w1[kk, h]>, g2 = Σ_h da_h <Q_h, w2[kk, h]>
          head_dots<T, DC>(ke, p.w1 + kk * HD, H, D, T(1), proj.data());
          T s1 = T(0), s2 = T(0);
          for (int64_t h = 0; h < H; ++h) s1 += da[h] * proj[h];
          head_dots<T, DC>(qe, p.w2 + kk * HD, H, D, T(1), proj.data());
          for (int64_t h = 0; h < H; ++h) s2 += da[h] * proj[h];
          g1[kk] = s1;
          g2[kk] = s2;
          // weight grads: gw1[kk, h] += sbf1_kk da_h Kt_h, gw2[kk, h] += sbf2_kk da_h Q_h
          for (int64_t h = 0; h < H; ++h) coef[h] = sbf1[kk] * da[h];
          head_axpy<T, DC>(coef.data(), ke, H, D, gw1 + kk * HD);
          for (int64_t h = 0; h < H; ++h) coef[h] = sbf2[kk] * da[h];
          head_axpy<T, DC>(coef.data(), qe, H, D, gw2 + kk * HD);
        }
        pair_basis_vjp(r, p.v + i * 3, p.v + j * 3, p.basis, g1, g2, gr, gvi, gvj);
      }
      for (int c = 0; c < 3; ++c) {
        gxi[c] += gr[c];
        er[c] = gr[c];  // the sender gets -gr (r = x_i - x_j) and gvj in pass 2
        er[3 + c] = gvj[c];
      }
    }
    for (int c = 0; c < 3; ++c) {
      p.gx[i * 3 + c] += gxi[c];
      p.gv[i * 3 + c] += gvi[c];
    }
  }
}

template <typename T, int DC>
DMD_CPU_CLONES void sender_rows(const EglParams<T>& p, const int64_t* csc_ptr, const int64_t* csc_edge,
                                const int64_t* csc_row, const T* edge_rec, int64_t begin, int64_t end) {
  const int64_t H = p.H, D = DC > 0 ? DC : p.D, HD = H * D, rec = 6 + 2 * H;
  std::vector<T> Q(HD), Kt(HD);
  T sbf1[kMaxK], sbf2[kMaxK], r[3];
  for (int64_t j = begin; j < end; ++j) {
    T gxj[3] = {0, 0, 0}, gvj[3] = {0, 0, 0};
    T* gkj = p.gk + j * HD;
    T* gmj = p.gm + j * HD;
    for (int64_t s = csc_ptr[j]; s < csc_ptr[j + 1]; ++s) {
      const int64_t e = csc_edge[s], i = csc_row[s];
      const T* er = edge_rec + e * rec;
      const T* qe = p.q + i * HD;
      edge_r(p.x, i, j, r);
      if (pair_basis_if_inside(r, p.v + i * 3, p.v + j * 3, p.basis, sbf1, sbf2)) {  // Q has a basis part
        edge_rows(qe, p.k + j * HD, p.w1, p.w2, sbf1, sbf2, p.basis.K, HD, Q.data(), Kt.data());
        qe = Q.data();
      }
      head_axpy<T, DC>(er + 6 + H, qe, H, D, gkj);             // gk_j += da Q
      head_axpy<T, DC>(er + 6, p.grad_msg + i * HD, H, D, gmj);  // gm_j += alpha grad_msg_i
      for (int c = 0; c < 3; ++c) {
        gxj[c] -= er[c];
        gvj[c] += er[3 + c];
      }
    }
    for (int c = 0; c < 3; ++c) {
      p.gx[j * 3 + c] += gxj[c];
      p.gv[j * 3 + c] += gvj[c];
    }
  }
}

// Runs fn.template operator()<DC>() with DC = D for the common head sizes, else DC = 0 (runtime D).
template <typename Fn>
void dispatch_head_dim(int64_t D, Fn&& fn) {
  switch (D) {
    case 8: fn.template operator()<8>(); break;
    case 16: fn.template operator()<16>(); break;
    case 32: fn.template operator()<32>(); break;
    default: fn.template operator()<0>(); break;
  }
}

// Edges grouped by sender, stable (so deterministic): a counting sort, O(N + E).
void csc_permutation(const int64_t* row_ptr, const int64_t* col, int64_t N, int64_t* csc_ptr, int64_t* csc_edge,
                     int64_t* csc_row) {
  const int64_t E = row_ptr[N];
  std::fill(csc_ptr, csc_ptr + N + 1, int64_t(0));
  for (int64_t e = 0; e < E; ++e) ++csc_ptr[col[e] + 1];
  std::partial_sum(csc_ptr, csc_ptr + N + 1, csc_ptr);
  std::vector<int64_t> next(csc_ptr, csc_ptr + N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t e = row_ptr[i]; e < row_ptr[i + 1]; ++e) {
      const int64_t s = next[col[e]]++;
      csc_edge[s] = e;
      csc_row[s] = i;
    }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> egl_attention_cpu(const at::Tensor& x, const at::Tensor& v,
                                                                 const at::Tensor& q, const at::Tensor& k,
                                                                 const at::Tensor& m, const at::Tensor& w1,
                                                                 const at::Tensor& w2, const at::Tensor& row_ptr,
                                                                 const at::Tensor& col, double cutoff,
                                                                 int64_t num_radial, int64_t num_spherical) {
  check_egl_inputs(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2);
  at::Tensor msg = at::empty({N, H, D}, q.options());
  at::Tensor vec = at::empty({N, H, 3}, q.options());
  at::Tensor lse = at::empty({N, H}, q.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "egl_attention_cpu", [&] {
    auto p = make_forward_params<scalar_t>(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
    p.msg = msg.data_ptr<scalar_t>();
    p.vec = vec.data_ptr<scalar_t>();
    p.lse = lse.data_ptr<scalar_t>();
    dispatch_head_dim(D, [&]<int DC>() {
      at::parallel_for(0, N, kGrain, [&](int64_t b, int64_t e) { forward_rows<scalar_t, DC>(p, b, e); });
    });
  });
  return {msg, vec, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> egl_attention_backward_cpu(
    const at::Tensor& grad_msg, const at::Tensor& grad_vec, const at::Tensor& x, const at::Tensor& v,
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& m, const at::Tensor& w1, const at::Tensor& w2,
    const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& msg, const at::Tensor& vec,
    const at::Tensor& lse, double cutoff, int64_t num_radial, int64_t num_spherical) {
  const int64_t K = check_egl_inputs(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
  check_egl_backward_inputs(grad_msg, grad_vec, msg, vec, lse, q);
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2), E = col.numel();
  at::Tensor gx = at::zeros_like(x), gv = at::zeros_like(v), gq = at::zeros_like(q), gk = at::zeros_like(k),
             gm = at::zeros_like(m);
  // delta_ih = <grad_msg_ih, msg_ih> + <grad_vec_ih, vec_ih>: the softmax backward's row term.
  at::Tensor delta = ((grad_msg * msg).sum(-1) + (grad_vec * vec).sum(-1)).contiguous();  // (N, H)
  at::Tensor csc = at::empty({N + 1 + 2 * E}, row_ptr.options());  // csc_ptr (N+1), csc_edge (E), csc_row (E)
  int64_t* csc_ptr = csc.data_ptr<int64_t>();
  csc_permutation(row_ptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), N, csc_ptr, csc_ptr + N + 1,
                  csc_ptr + N + 1 + E);
  at::Tensor gw_threads = at::zeros({at::get_num_threads(), 2, K, H, D}, q.options());
  // Per edge, from pass 1 to pass 2: d loss/d r, d loss/d v_j, alpha (H) and d loss/d logit (H).
  at::Tensor edge_rec = at::empty({E, 6 + 2 * H}, q.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "egl_attention_backward_cpu", [&] {
    auto p = make_forward_params<scalar_t>(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
    set_backward_tensors(p, grad_msg, grad_vec, msg, vec, lse, delta, gx, gv, gq, gk, gm);
    scalar_t *geo = edge_rec.data_ptr<scalar_t>(), *gw = gw_threads.data_ptr<scalar_t>();
    dispatch_head_dim(D, [&]<int DC>() {
      at::parallel_for(0, N, kGrain, [&](int64_t b, int64_t e) {
        receiver_rows<scalar_t, DC>(p, gw + static_cast<int64_t>(at::get_thread_num()) * 2 * K * H * D, geo, b, e);
      });
      at::parallel_for(0, N, kGrain, [&](int64_t b, int64_t e) {
        sender_rows<scalar_t, DC>(p, csc_ptr, csc_ptr + N + 1, csc_ptr + N + 1 + E, geo, b, e);
      });
    });
  });
  // Reduce the per-thread weight gradients; two separate tensors (outputs must not alias).
  return {gx, gv, gq, gk, gm, gw_threads.select(1, 0).sum(0), gw_threads.select(1, 1).sum(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(diffmd_fast, CPU, m) {
  m.impl("egl_attention", &egl_attention_cpu);
  m.impl("egl_attention_backward", &egl_attention_backward_cpu);
}

}  // namespace diffmd
