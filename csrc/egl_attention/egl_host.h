// Host side of the EGL attention op: input validation and the params struct, done once per call
// and shared by the CPU and CUDA implementations (FlashAttention style: the kernels never check).
#pragma once

#include <ATen/ATen.h>

#include "egl_math.h"

namespace diffmd {

// Basis constants for (num_radial, num_spherical, cutoff); cached per (L, R), computed in double.
BasisConsts make_basis_consts(int64_t num_radial, int64_t num_spherical, double cutoff);

// Checks shapes, dtypes, devices, contiguity, CSR validity and basis settings with TORCH_CHECK
// messages that name the argument. Returns K.
int64_t check_egl_inputs(const at::Tensor& x, const at::Tensor& v, const at::Tensor& q, const at::Tensor& k,
                         const at::Tensor& m, const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& row_ptr,
                         const at::Tensor& col, double cutoff, int64_t num_radial, int64_t num_spherical);

// Same-shape/dtype/device checks for the extra tensors of the backward.
void check_egl_backward_inputs(const at::Tensor& grad_msg, const at::Tensor& grad_vec, const at::Tensor& msg,
                               const at::Tensor& vec, const at::Tensor& lse, const at::Tensor& q);

template <typename T>
EglParams<T> make_forward_params(const at::Tensor& x, const at::Tensor& v, const at::Tensor& q, const at::Tensor& k,
                                 const at::Tensor& m, const at::Tensor& w1, const at::Tensor& w2,
                                 const at::Tensor& row_ptr, const at::Tensor& col, double cutoff, int64_t num_radial,
                                 int64_t num_spherical) {
  EglParams<T> p;
  p.N = q.size(0);
  p.H = q.size(1);
  p.D = q.size(2);
  p.E = col.numel();
  p.scale = T(1.0 / std::sqrt(static_cast<double>(p.D)));
  p.basis = make_basis_consts(num_radial, num_spherical, cutoff);
  p.x = x.data_ptr<T>();
  p.v = v.data_ptr<T>();
  p.q = q.data_ptr<T>();
  p.k = k.data_ptr<T>();
  p.m = m.data_ptr<T>();
  p.w1 = w1.data_ptr<T>();
  p.w2 = w2.data_ptr<T>();
  p.row_ptr = row_ptr.data_ptr<int64_t>();
  p.col = col.data_ptr<int64_t>();
  return p;
}

// The backward's extra inputs (upstream grads, saved outputs, delta) and its node-gradient outputs.
template <typename T>
void set_backward_tensors(EglParams<T>& p, const at::Tensor& grad_msg, const at::Tensor& grad_vec,
                          const at::Tensor& msg, const at::Tensor& vec, const at::Tensor& lse, const at::Tensor& delta,
                          at::Tensor& gx, at::Tensor& gv, at::Tensor& gq, at::Tensor& gk, at::Tensor& gm) {
  p.grad_msg = grad_msg.data_ptr<T>();
  p.grad_vec = grad_vec.data_ptr<T>();
  p.out_msg = msg.data_ptr<T>();
  p.out_vec = vec.data_ptr<T>();
  p.out_lse = lse.data_ptr<T>();
  p.delta = delta.data_ptr<T>();
  p.gx = gx.data_ptr<T>();
  p.gv = gv.data_ptr<T>();
  p.gq = gq.data_ptr<T>();
  p.gk = gk.data_ptr<T>();
  p.gm = gm.data_ptr<T>();
}

}  // namespace diffmd
