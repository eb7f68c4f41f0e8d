// CPU radius graph: per-molecule cell lists, O(N log N) for bounded density (the sort), never
// O(N^2) over the batch. Output is CSR over receivers with senders sorted per receiver.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "cell_list.h"
#include "radius_graph_host.h"

namespace diffmd {
namespace {

template <typename T>
void build(const T* x, int64_t begin, int64_t end, double r, std::vector<int64_t>& counts,
           std::vector<std::vector<int64_t>>& rows) {
  const int64_t n = end - begin;
  if (n == 0) return;
  CellGrid g{};
  double hi[3];
  for (int c = 0; c < 3; ++c) {
    g.lo[c] = hi[c] = static_cast<double>(x[begin * 3 + c]);
  }
  for (int64_t a = begin; a < end; ++a)
    for (int c = 0; c < 3; ++c) {
      g.lo[c] = std::min(g.lo[c], static_cast<double>(x[a * 3 + c]));
      hi[c] = std::max(hi[c], static_cast<double>(x[a * 3 + c]));
    }
  double extent = 0.0;
  for (int c = 0; c < 3; ++c) extent = std::max(extent, hi[c] - g.lo[c]);
  g.width = std::max(r, extent / static_cast<double>(kMaxCellsPerDim - 1));
  for (int c = 0; c < 3; ++c) g.dims[c] = static_cast<int64_t>(std::floor((hi[c] - g.lo[c]) / g.width)) + 1;
  std::vector<int64_t> key(n), order(n);
  for (int64_t a = 0; a < n; ++a) {
    const T* xa = x + (begin + a) * 3;
    key[a] = cell_key(cell_coord(xa[0], g, 0), cell_coord(xa[1], g, 1), cell_coord(xa[2], g, 2), g);
  }
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  std::vector<int64_t> sorted_key(n);
  for (int64_t s = 0; s < n; ++s) sorted_key[s] = key[order[s]];
  const double r2 = r * r;
  at::parallel_for(0, n, 64, [&](int64_t b0, int64_t b1) {
    for (int64_t a = b0; a < b1; ++a) {
      const T* xa = x + (begin + a) * 3;
      const int64_t cx = cell_coord(xa[0], g, 0), cy = cell_coord(xa[1], g, 1), cz = cell_coord(xa[2], g, 2);
      std::vector<int64_t>& out = rows[begin + a];
      for_each_neighbour_cell(cx, cy, cz, g, [&](int64_t kk) {
        auto range = std::equal_range(sorted_key.begin(), sorted_key.end(), kk);
        for (auto it = range.first; it != range.second; ++it) {
          const int64_t b = order[it - sorted_key.begin()];
          if (b == a) continue;
          const T* xb = x + (begin + b) * 3;
          double d2 = 0.0;
          for (int c = 0; c < 3; ++c) {
            const double t = static_cast<double>(xa[c]) - static_cast<double>(xb[c]);
            d2 += t * t;
          }
          if (d2 < r2) out.push_back(begin + b);
        }
      });
      std::sort(out.begin(), out.end());
      counts[begin + a] = static_cast<int64_t>(out.size());
    }
  });
}

std::tuple<at::Tensor, at::Tensor> radius_graph_cpu(const at::Tensor& x, const at::Tensor& batch, double r) {
  check_radius_graph_inputs(x, batch, r);
  const int64_t N = x.size(0);
  const int64_t* b = batch.data_ptr<int64_t>();
  std::vector<int64_t> counts(N, 0);
  std::vector<std::vector<int64_t>> rows(N);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "radius_graph_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    int64_t start = 0;
    for (int64_t i = 1; i <= N; ++i)
      if (i == N || b[i] != b[start]) {
        build(xp, start, i, r, counts, rows);
        start = i;
      }
  });
  at::Tensor row_ptr = at::zeros({N + 1}, batch.options());
  int64_t* rp = row_ptr.data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i) rp[i + 1] = rp[i] + counts[i];
  at::Tensor col = at::empty({rp[N]}, batch.options());
  int64_t* cp = col.data_ptr<int64_t>();
  at::parallel_for(0, N, 256, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i) std::copy(rows[i].begin(), rows[i].end(), cp + rp[i]);
  });
  return {row_ptr, col};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(diffmd_fast, m) {
  m.def("radius_graph(Tensor x, Tensor batch, float r) -> (Tensor row_ptr, Tensor col)");
}

TORCH_LIBRARY_IMPL(diffmd_fast, CPU, m) { m.impl("radius_graph", &radius_graph_cpu); }

}  // namespace diffmd
