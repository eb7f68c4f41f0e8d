// CUDA kernels of the fused EGL attention op (FlashAttention-style; DESIGN.md §2).
//
// Mapping: one thread block per receiver i, nw <= 8 warps, warp w owns heads h = w, w + nw, ...
// The receiver's edges are walked in chunks of C = 32 nw. Each thread first computes the pair basis
// (sbf1, sbf2: K each, egl_math.h's pair_basis) of one edge of the chunk into shared memory, so the
// basis is computed once per edge instead of once per (edge, head); the head work then reads it.
//   Forward: per head, lanes stride over the chunk's edges and keep a per-lane online-softmax state
//   (max, sum, acc[D], accv[3]) in registers; a xor-butterfly warp merge combines the 32 states and
//   lane 0 writes msg, vec and the per-(i, h) log-sum-exp. Head groups are the outer loop, so each
//   warp holds one state at a time (the basis is recomputed only when H > nw).
//   Backward (recomputes the pair terms from x, v, q, k, m, w and the saved lse):
//     A. lanes over edges, per head: logit, alpha = exp(a - lse), da = alpha (dalpha - delta) / sqrt(D);
//        the basis cotangents g1 = da Kt.w1, g2 = da Q.w2 and the direct r-gradient alpha gvec are summed
//        over heads per edge in shared memory (atomics across warps only).
//     B. lanes over channels d, per edge of the chunk: coalesced atomics for gk_j, gm_j; gq_i and the
//        w1/w2 gradients accumulate without atomics (the warp owns (i, h); lane d owns column d of
//        its shared gw tile), flushed to global memory with one atomic per entry per warp.
//     C. one thread per edge: the basis VJP (dual numbers, 9 tangents) runs ONCE per edge with the
//        head-summed (g1, g2) — it is linear in them — instead of once per (edge, head): it is the most
//        expensive piece (~10x the basis), so this is the main saving over a warp-per-(i, h) mapping.
//        Receiver grads stay in registers; sender grads (gx_j, gv_j) are atomics.
// Memory: only node-, weight- and chunk-sized buffers; nothing of size E x K or E x H x D exists.
// Float atomics make the backward's last bits run-to-run nondeterministic (the forward is deterministic).
// The per-lane register arrays are templated on DM, the head dim rounded up to 8, 16, 32, 64 or 128;
// D > 128 is rejected with a clear error (use the reference backend, or more heads).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>
#include <type_traits>

#include "egl_host.h"

namespace diffmd {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxWarps = 8;
constexpr int kMaxHeadDim = 128;
constexpr unsigned kFull = 0xffffffffu;

// Pair basis and its VJP are kept out of line: one copy per dtype instead of one per DM instantiation
// (compile time, instruction cache), and the dual-number VJP does not inflate the head loops' registers.
template <typename T>
__device__ __noinline__ void edge_basis(const BasisConsts& bc, const T r[3], const T* vi, const T* vj, T* sbf1,
                                        T* sbf2) {
  pair_basis(r, vi, vj, bc, sbf1, sbf2);
}

template <typename T>
__device__ __noinline__ void edge_basis_vjp(const BasisConsts& bc, const T r[3], const T* vi, const T* vj,
                                            const T* g1, const T* g2, T gr[3], T gvi[3], T gvj[3]) {
  pair_basis_vjp(r, vi, vj, bc, g1, g2, gr, gvi, gvj);
}

// The edge's query and key for head h, as edge_query_key in egl_math.h (same summation order), with the
// loops unrolled over DM so that Q and Kt live in registers. Returns the logit <Q, Kt> / sqrt(D).
template <typename T, int DM>
__device__ __forceinline__ T edge_logit(const EglParams<T>& p, int64_t i, int64_t j, int64_t h, const T* s1,
                                        const T* s2, T (&Q)[DM], T (&Kt)[DM]) {
  const int64_t HD = p.H * p.D, D = p.D;
  const T* qi = p.q + i * HD + h * D;
  const T* kj = p.k + j * HD + h * D;
#pragma unroll
  for (int d = 0; d < DM; ++d) {
    Q[d] = d < D ? qi[d] : T(0);
    Kt[d] = d < D ? kj[d] : T(0);
  }
  for (int kk = 0; kk < p.basis.K; ++kk) {
    const T b1 = s1[kk], b2 = s2[kk];
    const T* w1r = p.w1 + kk * HD + h * D;
    const T* w2r = p.w2 + kk * HD + h * D;
#pragma unroll
    for (int d = 0; d < DM; ++d) {
      if (d < D) {
        Q[d] += b1 * w1r[d];
        Kt[d] += b2 * w2r[d];
      }
    }
  }
  T a = T(0);
#pragma unroll
  for (int d = 0; d < DM; ++d) a += Q[d] * Kt[d];  // padded entries are 0
  return a * p.scale;
}

template <typename T>
__device__ __forceinline__ void load_r(const EglParams<T>& p, int64_t i, int64_t j, T r[3]) {
  for (int c = 0; c < 3; ++c) r[c] = p.x[i * 3 + c] - p.x[j * 3 + c];
}

// Chunk step shared by both kernels: thread t computes the basis of edge c0 + t into sbf[t] (2K values).
template <typename T>
__device__ __forceinline__ void chunk_basis(const EglParams<T>& p, int64_t i, int64_t c0, int n, T* sbf) {
  const int t = threadIdx.x, K = p.basis.K;
  if (t >= n) return;
  const int64_t j = p.col[c0 + t];
  T r[3];
  load_r(p, i, j, r);
  edge_basis<T>(p.basis, r, p.v + i * 3, p.v + j * 3, sbf + t * 2 * K, sbf + t * 2 * K + K);
}

// ------------------------------------------------------------------------------------------------
// Forward. Dynamic shared memory: sbf (C, 2K).
template <typename T, int DM>
__global__ void __launch_bounds__(kWarp * kMaxWarps)
    egl_forward_kernel(const __grid_constant__ EglParams<T> p) {
  extern __shared__ unsigned char smem_raw[];
  T* sbf = reinterpret_cast<T*>(smem_raw);
  const int nw = blockDim.x / kWarp, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, C = blockDim.x;
  const int K = p.basis.K;
  const int64_t i = blockIdx.x, H = p.H, D = p.D;
  const int64_t e0 = p.row_ptr[i], e1 = p.row_ptr[i + 1];
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (int64_t h0 = 0; h0 < H; h0 += nw) {
    const int64_t h = h0 + warp;
    const bool active = h < H;  // warp-uniform
    T mx = neg_inf, sum = T(0), acc[DM], accv[3] = {T(0), T(0), T(0)};
#pragma unroll
    for (int d = 0; d < DM; ++d) acc[d] = T(0);
    for (int64_t c0 = e0; c0 < e1; c0 += C) {
      const int n = static_cast<int>(min(static_cast<int64_t>(C), e1 - c0));
      __syncthreads();  // the previous chunk's basis has been read by every warp
      chunk_basis(p, i, c0, n, sbf);
      __syncthreads();
      if (!active) continue;
      for (int t = lane; t < n; t += kWarp) {
        const int64_t j = p.col[c0 + t];
        T r[3], Q[DM], Kt[DM];
        load_r(p, i, j, r);
        const T a = edge_logit<T, DM>(p, i, j, h, sbf + t * 2 * K, sbf + t * 2 * K + K, Q, Kt);
        if (a > mx) {  // online softmax: rescale what was summed under the old maximum
          const T corr = exp(mx - a);
          sum *= corr;
#pragma unroll
          for (int d = 0; d < DM; ++d) acc[d] *= corr;
          for (int c = 0; c < 3; ++c) accv[c] *= corr;
          mx = a;
        }
        const T w = exp(a - mx);
        sum += w;
        const T* mj = p.m + (j * H + h) * D;
#pragma unroll
        for (int d = 0; d < DM; ++d)
          if (d < D) acc[d] += w * mj[d];
        for (int c = 0; c < 3; ++c) accv[c] += w * r[c];
      }
    }
    if (!active) continue;
    // Merge the 32 lane states. A lane without edges has mx = -inf and contributes with weight 0.
    for (int off = kWarp / 2; off > 0; off /= 2) {
      const T mo = __shfl_xor_sync(kFull, mx, off), so = __shfl_xor_sync(kFull, sum, off);
      const T mn = mo > mx ? mo : mx;
      const T ca = mx == neg_inf ? T(0) : exp(mx - mn), cb = mo == neg_inf ? T(0) : exp(mo - mn);
      sum = sum * ca + so * cb;
#pragma unroll
      for (int d = 0; d < DM; ++d) acc[d] = acc[d] * ca + __shfl_xor_sync(kFull, acc[d], off) * cb;
      for (int c = 0; c < 3; ++c) accv[c] = accv[c] * ca + __shfl_xor_sync(kFull, accv[c], off) * cb;
      mx = mn;
    }
    if (lane == 0) {  // lane 0 only: lanes may differ in the last bit (FMA contraction order)
      const bool any = sum > T(0);  // atoms without neighbours get zeros
      const T inv = any ? T(1) / sum : T(0);
#pragma unroll
      for (int d = 0; d < DM; ++d)
        if (d < D) p.msg[(i * H + h) * D + d] = acc[d] * inv;
      for (int c = 0; c < 3; ++c) p.vec[(i * H + h) * 3 + c] = accv[c] * inv;
      p.lse[i * H + h] = any ? mx + log(sum) : T(0);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Backward. Dynamic shared memory, in this order:
//   sbf (C, 2K) basis | g (C, 2K) head-summed basis cotangents | grd (C, 3) head-summed alpha gvec |
//   ad (nw, C, 2) per-warp (alpha, da) of the current head | gw (nw, 2, K, D) per-warp w1/w2 grads (optional).
struct BackwardLayout {
  int nw = 1;
  bool smem_gw = true;
  size_t bytes = 0;
};

template <typename T>
size_t backward_bytes(int nw, int64_t K, int64_t D, bool smem_gw) {
  const int64_t C = static_cast<int64_t>(kWarp) * nw;
  const int64_t n = C * 4 * K + C * 3 + nw * C * 2 + (smem_gw ? nw * 2 * K * D : 0);
  return static_cast<size_t>(n) * sizeof(T);
}

template <typename T>
__device__ __forceinline__ void flush_gw(const EglParams<T>& p, int64_t h, T* gw_s, int lane) {
  const int64_t K = p.basis.K, H = p.H, D = p.D;
  for (int64_t s = lane; s < 2 * K * D; s += kWarp) {
    const int64_t which = s / (K * D), kk = (s / D) % K, d = s % D;
    T* dst = (which == 0 ? p.gw1 : p.gw2) + (kk * H + h) * D + d;
    atomicAdd(dst, gw_s[s]);
    gw_s[s] = T(0);
  }
  __syncwarp();
}

template <typename T, int DM>
__global__ void __launch_bounds__(kWarp * kMaxWarps)
    egl_backward_kernel(const __grid_constant__ EglParams<T> p, bool smem_gw) {
  extern __shared__ unsigned char smem_raw[];
  const int nw = blockDim.x / kWarp, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, C = blockDim.x;
  const int K = p.basis.K;
  const int64_t i = blockIdx.x, H = p.H, D = p.D;
  T* sbf = reinterpret_cast<T*>(smem_raw);
  T* g = sbf + C * 2 * K;
  T* grd = g + C * 2 * K;
  T* ad = grd + C * 3 + warp * C * 2;
  T* gw_s = grd + C * 3 + nw * C * 2 + warp * 2 * K * D;  // valid only if smem_gw
  const int64_t e0 = p.row_ptr[i], e1 = p.row_ptr[i + 1];
  const int64_t groups = (H + nw - 1) / nw;
  if (smem_gw)
    for (int64_t s = lane; s < 2 * K * D; s += kWarp) gw_s[s] = T(0);
  T gxi[3] = {T(0), T(0), T(0)}, gvi[3] = {T(0), T(0), T(0)};  // this thread's share of receiver grads
  for (int64_t c0 = e0; c0 < e1; c0 += C) {
    const int n = static_cast<int>(min(static_cast<int64_t>(C), e1 - c0));
    __syncthreads();  // phase C of the previous chunk is done with sbf, g, grd
    chunk_basis(p, i, c0, n, sbf);
    for (int s = threadIdx.x; s < C * (2 * K + 3); s += C) g[s] = T(0);  // zeroes g and grd
    __syncthreads();
    for (int64_t hg = 0; hg < groups; ++hg) {
      const int64_t h = hg * nw + warp;
      if (h >= H) continue;  // warp-uniform
      const int64_t ih = i * H + h;
      const T* gmsg = p.grad_msg + ih * D;
      const T* gvec = p.grad_vec + ih * 3;
      const T lse = p.out_lse[ih], delta = p.delta[ih];
      // A. lanes over edges.
      for (int t = lane; t < n; t += kWarp) {
        const int64_t j = p.col[c0 + t];
        const T* s1 = sbf + t * 2 * K;
        T r[3], Q[DM], Kt[DM];
        load_r(p, i, j, r);
        const T a = edge_logit<T, DM>(p, i, j, h, s1, s1 + K, Q, Kt);
        const T alpha = exp(a - lse);
        const T* mj = p.m + (j * H + h) * D;
        T dalpha = gvec[0] * r[0] + gvec[1] * r[1] + gvec[2] * r[2];
#pragma unroll
        for (int d = 0; d < DM; ++d)
          if (d < D) dalpha += gmsg[d] * mj[d];
        const T da = alpha * (dalpha - delta) * p.scale;  // d loss / d <Q, Kt>
        for (int c = 0; c < 3; ++c) atomicAdd(grd + t * 3 + c, alpha * gvec[c]);
        for (int kk = 0; kk < K; ++kk) {
          const T* w1r = p.w1 + (kk * H + h) * D;
          const T* w2r = p.w2 + (kk * H + h) * D;
          T u1 = T(0), u2 = T(0);
#pragma unroll
          for (int d = 0; d < DM; ++d)
            if (d < D) {
              u1 += Kt[d] * w1r[d];
              u2 += Q[d] * w2r[d];
            }
          atomicAdd(g + t * 2 * K + kk, da * u1);
          atomicAdd(g + t * 2 * K + K + kk, da * u2);
        }
        ad[t * 2] = alpha;
        ad[t * 2 + 1] = da;
      }
      __syncwarp();
      // B. lanes over channels, edges in sequence.
      for (int64_t d = lane; d < D; d += kWarp) {
        const T qd = p.q[ih * D + d], gmd = gmsg[d];
        T gq = T(0);
        for (int t = 0; t < n; ++t) {
          const int64_t j = p.col[c0 + t];
          const T* s1 = sbf + t * 2 * K;
          const T alpha = ad[t * 2], da = ad[t * 2 + 1];
          T Qd = qd, Ktd = p.k[(j * H + h) * D + d];
          for (int kk = 0; kk < K; ++kk) {
            Qd += s1[kk] * p.w1[(kk * H + h) * D + d];
            Ktd += s1[K + kk] * p.w2[(kk * H + h) * D + d];
          }
          gq += da * Ktd;
          atomicAdd(p.gk + (j * H + h) * D + d, da * Qd);
          atomicAdd(p.gm + (j * H + h) * D + d, alpha * gmd);
          for (int kk = 0; kk < K; ++kk) {
            const T c1 = s1[kk] * da * Ktd, c2 = s1[K + kk] * da * Qd;
            if (smem_gw) {
              gw_s[kk * D + d] += c1;
              gw_s[(K + kk) * D + d] += c2;
            } else {
              atomicAdd(p.gw1 + (kk * H + h) * D + d, c1);
              atomicAdd(p.gw2 + (kk * H + h) * D + d, c2);
            }
          }
        }
        p.gq[ih * D + d] += gq;  // (i, h) belongs to this warp alone: no atomic needed
      }
      __syncwarp();  // ad and gw_s are reused by this warp's next head
      if (smem_gw && groups > 1) flush_gw(p, h, gw_s, lane);  // the tile holds one head at a time
    }
    __syncthreads();
    // C. one thread per edge: the basis VJP once, with cotangents summed over heads.
    if (threadIdx.x < n) {
      const int t = threadIdx.x;
      const int64_t j = p.col[c0 + t];
      T r[3], gr[3], gvj[3] = {T(0), T(0), T(0)};
      load_r(p, i, j, r);
      for (int c = 0; c < 3; ++c) gr[c] = grd[t * 3 + c];
      edge_basis_vjp<T>(p.basis, r, p.v + i * 3, p.v + j * 3, g + t * 2 * K, g + t * 2 * K + K, gr, gvi, gvj);
      for (int c = 0; c < 3; ++c) {
        gxi[c] += gr[c];
        atomicAdd(p.gx + j * 3 + c, -gr[c]);  // r = x_i - x_j
        atomicAdd(p.gv + j * 3 + c, gvj[c]);
      }
    }
  }
  if (smem_gw && groups == 1 && warp < H) flush_gw(p, warp, gw_s, lane);
  // Receiver grads: warp sums, then one atomic per warp (x_i also collects sender terms of other blocks).
  for (int c = 0; c < 3; ++c) {
    for (int off = kWarp / 2; off > 0; off /= 2) {
      gxi[c] += __shfl_xor_sync(kFull, gxi[c], off);
      gvi[c] += __shfl_xor_sync(kFull, gvi[c], off);
    }
  }
  if (lane == 0 && e1 > e0)
    for (int c = 0; c < 3; ++c) {
      atomicAdd(p.gx + i * 3 + c, gxi[c]);
      atomicAdd(p.gv + i * 3 + c, gvi[c]);
    }
}

// ------------------------------------------------------------------------------------------------
// Host side.
template <typename F>
void dispatch_head_dim(int64_t D, F&& f) {
  TORCH_CHECK(D <= kMaxHeadDim, "egl_attention (CUDA): head dim D=", D, " > ", kMaxHeadDim,
              " is not supported; use more heads or backend='reference'");
  if (D <= 8) {
    f(std::integral_constant<int, 8>{});
  } else if (D <= 16) {
    f(std::integral_constant<int, 16>{});
  } else if (D <= 32) {
    f(std::integral_constant<int, 32>{});
  } else if (D <= 64) {
    f(std::integral_constant<int, 64>{});
  } else {
    f(std::integral_constant<int, 128>{});
  }
}

size_t smem_optin_limit() {
  int dev = 0, bytes = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return static_cast<size_t>(bytes);
}

// Lets a kernel use more than the default 48 KB of dynamic shared memory when it must.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// Warps per block: up to one per head (<= 8), fewer when the chunk buffers would not fit in 48 KB.
template <typename T>
int forward_warps(int64_t H, int64_t K) {
  int nw = static_cast<int>(std::min<int64_t>(H, kMaxWarps));
  while (nw > 1 && static_cast<size_t>(kWarp) * nw * 2 * K * sizeof(T) > 48 * 1024) --nw;
  return nw;  // K <= 60: one warp needs at most 30 KB
}

template <typename T>
BackwardLayout backward_layout(int64_t H, int64_t K, int64_t D) {
  const size_t limit = std::max<size_t>(48 * 1024, smem_optin_limit());
  for (bool smem_gw : {true, false}) {
    for (int nw = static_cast<int>(std::min<int64_t>(H, kMaxWarps)); nw >= 1; --nw) {
      const size_t bytes = backward_bytes<T>(nw, K, D, smem_gw);
      if (bytes <= 48 * 1024 || (nw == 1 && bytes <= limit)) return {nw, smem_gw, bytes};
    }
  }
  TORCH_CHECK(false, "egl_attention_backward (CUDA): K=", K, ", D=", D, " needs more shared memory than the ",
              limit, " bytes this GPU allows");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> egl_attention_cuda(const at::Tensor& x, const at::Tensor& v,
                                                                  const at::Tensor& q, const at::Tensor& k,
                                                                  const at::Tensor& m, const at::Tensor& w1,
                                                                  const at::Tensor& w2, const at::Tensor& row_ptr,
                                                                  const at::Tensor& col, double cutoff,
                                                                  int64_t num_radial, int64_t num_spherical) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = check_egl_inputs(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2);
  at::Tensor msg = at::empty({N, H, D}, q.options());
  at::Tensor vec = at::empty({N, H, 3}, q.options());
  at::Tensor lse = at::empty({N, H}, q.options());
  if (N == 0) return {msg, vec, lse};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "egl_attention_cuda", [&] {
    auto p = make_forward_params<scalar_t>(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
    p.msg = msg.data_ptr<scalar_t>();
    p.vec = vec.data_ptr<scalar_t>();
    p.lse = lse.data_ptr<scalar_t>();
    const int nw = forward_warps<scalar_t>(H, K);
    const size_t bytes = static_cast<size_t>(kWarp) * nw * 2 * K * sizeof(scalar_t);
    dispatch_head_dim(D, [&](auto dm) {
      egl_forward_kernel<scalar_t, decltype(dm)::value><<<N, kWarp * nw, bytes, stream>>>(p);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {msg, vec, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
egl_attention_backward_cuda(const at::Tensor& grad_msg, const at::Tensor& grad_vec, const at::Tensor& x,
                            const at::Tensor& v, const at::Tensor& q, const at::Tensor& k, const at::Tensor& m,
                            const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& row_ptr,
                            const at::Tensor& col, const at::Tensor& msg, const at::Tensor& vec,
                            const at::Tensor& lse, double cutoff, int64_t num_radial, int64_t num_spherical) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = check_egl_inputs(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
  check_egl_backward_inputs(grad_msg, grad_vec, msg, vec, lse, q);
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2);
  // Zeros: every kernel output is accumulated (atomics, or += by the owning warp).
  at::Tensor gx = at::zeros_like(x), gv = at::zeros_like(v), gq = at::zeros_like(q), gk = at::zeros_like(k),
             gm = at::zeros_like(m), gw1 = at::zeros_like(w1), gw2 = at::zeros_like(w2);
  if (N == 0) return {gx, gv, gq, gk, gm, gw1, gw2};
  // delta_ih = <grad_msg_ih, msg_ih> + <grad_vec_ih, vec_ih>: the softmax backward's row term.
  const at::Tensor delta = ((grad_msg * msg).sum(-1) + (grad_vec * vec).sum(-1)).contiguous();  // (N, H)
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "egl_attention_backward_cuda", [&] {
    auto p = make_forward_params<scalar_t>(x, v, q, k, m, w1, w2, row_ptr, col, cutoff, num_radial, num_spherical);
    set_backward_tensors(p, grad_msg, grad_vec, msg, vec, lse, delta, gx, gv, gq, gk, gm);
    p.gw1 = gw1.data_ptr<scalar_t>();
    p.gw2 = gw2.data_ptr<scalar_t>();
    const BackwardLayout lay = backward_layout<scalar_t>(H, K, D);
    dispatch_head_dim(D, [&](auto dm) {
      auto kernel = egl_backward_kernel<scalar_t, decltype(dm)::value>;
      allow_smem(kernel, lay.bytes);
      kernel<<<N, kWarp * lay.nw, lay.bytes, stream>>>(p, lay.smem_gw);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {gx, gv, gq, gk, gm, gw1, gw2};
}

}  // namespace

TORCH_LIBRARY_IMPL(diffmd_fast, CUDA, m) {
  m.impl("egl_attention", &egl_attention_cuda);
  m.impl("egl_attention_backward", &egl_attention_backward_cuda);
}

}  // namespace diffmd
