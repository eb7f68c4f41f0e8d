// Host-side checks of the radius graph op, shared by the CPU and CUDA builders.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

namespace diffmd {

// Shapes, dtypes, devices, contiguity and r; then (one device pass each) sorted batch and finite x.
inline void check_radius_graph_inputs(const at::Tensor& x, const at::Tensor& batch, double r) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "radius_graph: x must be (N, 3), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "radius_graph: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(batch.dim() == 1 && batch.numel() == x.size(0) && batch.scalar_type() == at::kLong,
              "radius_graph: batch must be (N,) int64 with N = ", x.size(0));
  TORCH_CHECK(batch.device() == x.device(), "radius_graph: batch must be on ", x.device(), " like x, got ",
              batch.device());
  TORCH_CHECK(x.is_contiguous() && batch.is_contiguous(), "radius_graph: x and batch must be contiguous");
  TORCH_CHECK(std::isfinite(r) && r > 0.0, "radius_graph: r must be positive and finite, got ", r);
  if (x.size(0) == 0) return;
  TORCH_CHECK((batch.diff() >= 0).all().item<bool>(),
              "radius_graph: batch must be sorted (molecules are contiguous blocks)");
  TORCH_CHECK(at::isfinite(x).all().item<bool>(), "radius_graph: positions contain NaN or inf");
}

}  // namespace diffmd
