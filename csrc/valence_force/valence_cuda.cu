// CUDA diffmd_fast::valence_force: one thread per bond, one per angle and one per dihedral, forces
// accumulated with double-precision atomics (sm_60+); the same math (valence_math.h) as the CPU kernel.
// Indices are checked on the device (CUDA_KERNEL_ASSERT, as ATen's index kernels do), not with a host sync.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include "valence_force/valence_host.h"
#include "valence_force/valence_math.h"

namespace diffmd {
namespace {

constexpr int kThreads = 128;

template <typename T>
__device__ __forceinline__ void load(const T* x, int64_t a, double out[3]) {
  for (int c = 0; c < 3; ++c) out[c] = static_cast<double>(x[a * 3 + c]);
}

__device__ __forceinline__ int64_t atom(const ValenceParams& p, int64_t a) {
  CUDA_KERNEL_ASSERT(a >= 0 && a < p.N && "valence_force: atom index out of range");
  return a;
}

__device__ __forceinline__ int64_t type_of(const ValenceParams& p, int64_t a) {
  const int64_t e = p.types[atom(p, a)];
  CUDA_KERNEL_ASSERT(e >= 0 && e < p.Z1 && "valence_force: atom type beyond the tables");
  return e;
}

template <typename T>
__global__ void bond_kernel(const T* __restrict__ x, ValenceParams p, double* __restrict__ f) {
  const int64_t m = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (m >= p.M) return;
  const int64_t i = p.bonds[m], j = p.bonds[p.M + m];
  const int64_t ti = type_of(p, i), tj = type_of(p, j);
  double xi[3], xj[3], fi[3];
  load(x, i, xi);
  load(x, j, xj);
  harmonic_bond_force(xi, xj, p.bond_k[ti * p.Z1 + tj], p.bond_r0[ti * p.Z1 + tj], fi);
  for (int c = 0; c < 3; ++c) atomicAdd(f + i * 3 + c, fi[c]);
}

template <typename T>
__global__ void angle_kernel(const T* __restrict__ x, ValenceParams p, double* __restrict__ f) {
  const int64_t a = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (a >= p.A) return;
  const int64_t i = p.angles[a], j = p.angles[p.A + a], k = p.angles[2 * p.A + a];
  const int64_t si = p.slot[type_of(p, i)], sj = p.slot[type_of(p, j)], sk = p.slot[type_of(p, k)];
  if (si < 0 || sj < 0 || sk < 0) return;
  CUDA_KERNEL_ASSERT(si < p.S && sj < p.S && sk < p.S && "valence_force: angle slot beyond the table");
  const int64_t t = (si * p.S + sj) * p.S + sk;
  double xi[3], xj[3], xk[3], fi[3], fk[3];
  load(x, i, xi);
  load(x, j, xj);
  load(x, k, xk);
  urey_bradley_angle_force(xi, xj, xk, p.angle_k[t], p.angle_c0[t], p.ub_k[t], p.ub_r0[t], fi, fk);
  for (int c = 0; c < 3; ++c) {
    atomicAdd(f + i * 3 + c, fi[c]);
    atomicAdd(f + k * 3 + c, fk[c]);
    atomicAdd(f + j * 3 + c, -(fi[c] + fk[c]));
  }
}

template <typename T>
__global__ void torsion_kernel(const T* __restrict__ x, ValenceParams p, double* __restrict__ f) {
  const int64_t d = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (d >= p.D) return;
  const int64_t* q = p.dihedrals;
  const int64_t i = atom(p, q[d]), j = atom(p, q[p.D + d]), k = atom(p, q[2 * p.D + d]), l = atom(p, q[3 * p.D + d]);
  const double* t = p.torsion + 4 * d;
  if (t[0] == 0.0) return;
  double xi[3], xj[3], xk[3], xl[3], fi[3], fj[3], fk[3], fl[3];
  load(x, i, xi);
  load(x, j, xj);
  load(x, k, xk);
  load(x, l, xl);
  mirror_torsion_force(xi, xj, xk, xl, t[0], t[1], t[2], t[3], fi, fj, fk, fl);
  for (int c = 0; c < 3; ++c) {
    atomicAdd(f + i * 3 + c, fi[c]);
    atomicAdd(f + j * 3 + c, fj[c]);
    atomicAdd(f + k * 3 + c, fk[c]);
    atomicAdd(f + l * 3 + c, fl[c]);
  }
}

at::Tensor valence_force_cuda(const at::Tensor& x, const at::Tensor& types, const at::Tensor& bonds, const at::Tensor& angles,
                              const at::Tensor& bond_k, const at::Tensor& bond_r0, const at::Tensor& slot,
                              const at::Tensor& angle_k, const at::Tensor& angle_c0, const at::Tensor& ub_k,
                              const at::Tensor& ub_r0, const at::Tensor& dihedrals, const at::Tensor& torsion) {
  const c10::cuda::CUDAGuard guard(x.device());
  const ValenceCall call =
      prepare_valence_call(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, ub_k, ub_r0, dihedrals,
                           torsion);
  const ValenceParams& p = call.p;
  double* f = call.force.data_ptr<double>();  // (N, 3) eV/Å
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "valence_force_cuda", [&] {
    if (p.M > 0) {
      bond_kernel<<<(p.M + kThreads - 1) / kThreads, kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), p, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (p.A > 0) {
      angle_kernel<<<(p.A + kThreads - 1) / kThreads, kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), p, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (p.D > 0) {
      torsion_kernel<<<(p.D + kThreads - 1) / kThreads, kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), p, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return call.force;
}

}  // namespace

TORCH_LIBRARY_IMPL(diffmd_fast, CUDA, m) { m.impl("valence_force", &valence_force_cuda); }

}  // namespace diffmd
