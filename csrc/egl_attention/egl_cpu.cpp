// CPU kernels of the fused EGL attention op (at::parallel_for over receivers).
//
// Forward: one pass over each receiver's senders with an online softmax per head; keeps msg, vec
// and the log-sum-exp. Backward: recomputes the pair terms. Gradients land on both ends of an
// edge, so to stay race-free without atomics or per-thread copies of node-sized buffers it runs
// two passes: over receivers (grads of q_i, x_i, v_i and of w1, w2 into small per-thread buffers)
// and over senders through a CSC permutation of the edges (grads of k_j, m_j, x_j, v_j).
// Nothing of size E x K or E x H x D is allocated: the CSC permutation is E int64, and pass 1
// hands pass 2 the sender's geometric gradient of each edge (E x 6), so the basis VJP runs once.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "egl_host.h"

namespace diffmd {
namespace {

constexpr int64_t kGrain = 8;

template <typename T>
void forward_kernel(const EglParams<T>& p) {
  at::parallel_for(0, p.N, kGrain, [&](int64_t begin, int64_t end) {
    const int64_t H = p.H, D = p.D;
    std::vector<T> Q(D), Kt(D), acc(H * D), accv(H * 3), mx(H), sum(H);
    T sbf1[kMaxK], sbf2[kMaxK], r[3];
    for (int64_t i = begin; i < end; ++i) {
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(accv.begin(), accv.end(), T(0));
      std::fill(mx.begin(), mx.end(), -std::numeric_limits<T>::infinity());
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t e = p.row_ptr[i]; e < p.row_ptr[i + 1]; ++e) {
        const int64_t j = p.col[e];
        for (int c = 0; c < 3; ++c) r[c] = p.x[i * 3 + c] - p.x[j * 3 + c];
        const bool inside = pair_basis(r, p.v + i * 3, p.v + j * 3, p.basis, sbf1, sbf2);
        for (int64_t h = 0; h < H; ++h) {
          const T a = edge_query_key(p, i, j, h, inside, sbf1, sbf2, Q.data(), Kt.data());
          if (a > mx[h]) {  // online softmax: rescale what was summed under the old maximum
            const T corr = std::exp(mx[h] - a);
            sum[h] *= corr;
            for (int64_t d = 0; d < D; ++d) acc[h * D + d] *= corr;
            for (int c = 0; c < 3; ++c) accv[h * 3 + c] *= corr;
            mx[h] = a;
          }
          const T w = std::exp(a - mx[h]);
          sum[h] += w;
          const T* mj = p.m + (j * H + h) * D;
          for (int64_t d = 0; d < D; ++d) acc[h * D + d] += w * mj[d];
          for (int c = 0; c < 3; ++c) accv[h * 3 + c] += w * r[c];
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        const bool any = sum[h] > T(0);  // atoms without neighbours get zeros
        const T inv = any ? T(1) / sum[h] : T(0);
        for (int64_t d = 0; d < D; ++d) p.msg[(i * H + h) * D + d] = acc[h * D + d] * inv;
        for (int c = 0; c < 3; ++c) p.vec[(i * H + h) * 3 + c] = accv[h * 3 + c] * inv;
        p.lse[i * H + h] = any ? mx[h] + std::log(sum[h]) : T(0);
      }
    }
  });
}

// Per-edge backward work shared by both passes: recomputes the basis, and per head the query,
// key, alpha and d loss / d logit, calling on_head(h, alpha, da, inside) with Q, Kt filled. When
// g1 is given it also accumulates the basis gradients g1, g2 (K) and the direct gradient of r
// through vec (pass 1 only).
template <typename T, typename OnHead>
bool edge_backward(const EglParams<T>& p, int64_t i, int64_t j, const T r[3], T* sbf1, T* sbf2, T* g1, T* g2,
                   T gr_direct[3], T* Q, T* Kt, OnHead&& on_head) {
  const int64_t H = p.H, D = p.D, K = p.basis.K;
  const bool inside = pair_basis(r, p.v + i * 3, p.v + j * 3, p.basis, sbf1, sbf2);
  if (g1 != nullptr) {
    for (int64_t kk = 0; kk < K; ++kk) g1[kk] = g2[kk] = T(0);
    for (int c = 0; c < 3; ++c) gr_direct[c] = T(0);
  }
  for (int64_t h = 0; h < H; ++h) {
    const T a = edge_query_key(p, i, j, h, inside, sbf1, sbf2, Q, Kt);
    const T alpha = std::exp(a - p.out_lse[i * H + h]);
    const T* gmsg = p.grad_msg + (i * H + h) * D;
    const T* gvec = p.grad_vec + (i * H + h) * 3;
    const T* mj = p.m + (j * H + h) * D;
    T dalpha = gvec[0] * r[0] + gvec[1] * r[1] + gvec[2] * r[2];
    for (int64_t d = 0; d < D; ++d) dalpha += gmsg[d] * mj[d];
    const T da = alpha * (dalpha - p.delta[i * H + h]) * p.scale;  // d loss / d <Q, Kt>
    if (g1 != nullptr) {
      for (int c = 0; c < 3; ++c) gr_direct[c] += alpha * gvec[c];
    }
    if (inside && g1 != nullptr) {
      for (int64_t kk = 0; kk < K; ++kk) {
        const T* w1r = p.w1 + (kk * H + h) * D;
        const T* w2r = p.w2 + (kk * H + h) * D;
        T s1 = T(0), s2 = T(0);
        for (int64_t d = 0; d < D; ++d) {
          s1 += Kt[d] * w1r[d];
          s2 += Q[d] * w2r[d];
        }
        g1[kk] += da * s1;
        g2[kk] += da * s2;
      }
    }
    on_head(h, alpha, da, inside);
  }
  return inside;
}

template <typename T>
void backward_kernel(const EglParams<T>& p, const int64_t* csc_ptr, const int64_t* csc_edge, const int64_t* edge_row,
                     T* gw_threads, T* edge_geo) {
  const int64_t H = p.H, D = p.D, K = p.basis.K, HD = H * D;
  // Pass 1: receivers.
  at::parallel_for(0, p.N, kGrain, [&](int64_t begin, int64_t end) {
    T* gw1 = gw_threads + static_cast<int64_t>(at::get_thread_num()) * 2 * K * HD;
    T* gw2 = gw1 + K * HD;
    std::vector<T> Q(D), Kt(D);
    T sbf1[kMaxK], sbf2[kMaxK], g1[kMaxK], g2[kMaxK], r[3], grd[3];
    for (int64_t i = begin; i < end; ++i) {
      T gxi[3] = {0, 0, 0}, gvi[3] = {0, 0, 0};
      for (int64_t e = p.row_ptr[i]; e < p.row_ptr[i + 1]; ++e) {
        const int64_t j = p.col[e];
        for (int c = 0; c < 3; ++c) r[c] = p.x[i * 3 + c] - p.x[j * 3 + c];
        const bool inside = edge_backward(p, i, j, r, sbf1, sbf2, g1, g2, grd, Q.data(), Kt.data(),
                                          [&](int64_t h, T, T da, bool in) {
                                            T* gqi = p.gq + (i * H + h) * D;
                                            for (int64_t d = 0; d < D; ++d) gqi[d] += da * Kt[d];
                                            if (!in) return;
                                            for (int64_t kk = 0; kk < K; ++kk) {
                                              T* a1 = gw1 + (kk * H + h) * D;
                                              T* a2 = gw2 + (kk * H + h) * D;
                                              const T c1 = sbf1[kk] * da, c2 = sbf2[kk] * da;
                                              for (int64_t d = 0; d < D; ++d) {
                                                a1[d] += c1 * Kt[d];
                                                a2[d] += c2 * Q[d];
                                              }
                                            }
                                          });
        T gr[3] = {grd[0], grd[1], grd[2]}, gvj[3] = {0, 0, 0};
        if (inside) pair_basis_vjp(r, p.v + i * 3, p.v + j * 3, p.basis, g1, g2, gr, gvi, gvj);
        for (int c = 0; c < 3; ++c) {
          gxi[c] += gr[c];
          edge_geo[e * 6 + c] = gr[c];  // the sender gets -gr (r = x_i - x_j) and gvj in pass 2
          edge_geo[e * 6 + 3 + c] = gvj[c];
        }
      }
      for (int c = 0; c < 3; ++c) {
        p.gx[i * 3 + c] += gxi[c];
        p.gv[i * 3 + c] += gvi[c];
      }
    }
  });
  // Pass 2: senders, through the CSC permutation of the edges.
  at::parallel_for(0, p.N, kGrain, [&](int64_t begin, int64_t end) {
    std::vector<T> Q(D), Kt(D);
    T sbf1[kMaxK], sbf2[kMaxK], r[3];
    for (int64_t j = begin; j < end; ++j) {
      T gxj[3] = {0, 0, 0}, gvj[3] = {0, 0, 0};
      for (int64_t s = csc_ptr[j]; s < csc_ptr[j + 1]; ++s) {
        const int64_t e = csc_edge[s], i = edge_row[e];
        for (int c = 0; c < 3; ++c) r[c] = p.x[i * 3 + c] - p.x[j * 3 + c];
        edge_backward(p, i, j, r, sbf1, sbf2, static_cast<T*>(nullptr), static_cast<T*>(nullptr),
                      static_cast<T*>(nullptr), Q.data(), Kt.data(), [&](int64_t h, T alpha, T da, bool) {
                        T* gkj = p.gk + (j * H + h) * D;
                        T* gmj = p.gm + (j * H + h) * D;
                        const T* gmsg = p.grad_msg + (i * H + h) * D;
                        for (int64_t d = 0; d < D; ++d) {
                          gkj[d] += da * Q[d];
                          gmj[d] += alpha * gmsg[d];
                        }
                      });
        for (int c = 0; c < 3; ++c) {
          gxj[c] -= edge_geo[e * 6 + c];
          gvj[c] += edge_geo[e * 6 + 3 + c];
        }
      }
      for (int c = 0; c < 3; ++c) {
        p.gx[j * 3 + c] += gxj[c];
        p.gv[j * 3 + c] += gvj[c];
      }
    }
  });
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
    forward_kernel(p);
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
  // CSC permutation: edges grouped by sender (stable, so deterministic).
  at::Tensor edge_row = at::repeat_interleave(at::arange(N, row_ptr.options()), row_ptr.diff());
  at::Tensor csc_edge = std::get<1>(col.sort(std::optional<bool>(true), /*dim=*/0, /*descending=*/false));
  at::Tensor csc_ptr = at::zeros({N + 1}, row_ptr.options());
  if (E > 0) csc_ptr.slice(0, 1).copy_(at::bincount(col, {}, N).cumsum(0));
  const int64_t threads = at::get_num_threads();
  at::Tensor gw_threads = at::zeros({threads, 2, K, H, D}, q.options());
  at::Tensor edge_geo = at::empty({E, 6}, q.options());  // per-edge (d loss/d r, d loss/d v_j)
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "egl_attention_backward_cpu", [&] {
    auto p = make_forward_params<scalar_t>(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
    p.grad_msg = grad_msg.data_ptr<scalar_t>();
    p.grad_vec = grad_vec.data_ptr<scalar_t>();
    p.out_msg = msg.data_ptr<scalar_t>();
    p.out_vec = vec.data_ptr<scalar_t>();
    p.out_lse = lse.data_ptr<scalar_t>();
    p.delta = delta.data_ptr<scalar_t>();
    p.gx = gx.data_ptr<scalar_t>();
    p.gv = gv.data_ptr<scalar_t>();
    p.gq = gq.data_ptr<scalar_t>();
    p.gk = gk.data_ptr<scalar_t>();
    p.gm = gm.data_ptr<scalar_t>();
    backward_kernel(p, csc_ptr.data_ptr<int64_t>(), csc_edge.data_ptr<int64_t>(), edge_row.data_ptr<int64_t>(),
                    gw_threads.data_ptr<scalar_t>(), edge_geo.data_ptr<scalar_t>());
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
