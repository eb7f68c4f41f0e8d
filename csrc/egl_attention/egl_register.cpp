// Schemas of the EGL attention ops. Kernels register per dispatch key in egl_cpu.cpp and
// egl_cuda.cu; fake (meta) kernels and the autograd formula live in python/diffmd_fast/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(diffmd_fast, m) {
  m.def(
      "egl_attention(Tensor x, Tensor v, Tensor q, Tensor k, Tensor m, Tensor w1, Tensor w2, Tensor row_ptr, "
      "Tensor col, float cutoff, int num_radial, int num_spherical) -> (Tensor msg, Tensor vec, Tensor lse)");
  m.def(
      "egl_attention_backward(Tensor grad_msg, Tensor grad_vec, Tensor x, Tensor v, Tensor q, Tensor k, Tensor m, "
      "Tensor w1, Tensor w2, Tensor row_ptr, Tensor col, Tensor msg, Tensor vec, Tensor lse, float cutoff, "
      "int num_radial, int num_spherical) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
