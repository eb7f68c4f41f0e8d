// CUDA radius graph: per-molecule cell lists (cell_list.h), the same grids and the same double-precision
// distance test as the CPU builder, so both return identical graphs.
//
// Steps (all on the current stream; ATen ops for the bulk work, two small kernels for the search):
//   1. molecule segments of the sorted batch (unique_consecutive) and each molecule's bounding box;
//   2. each atom's cell key in its molecule's grid; atoms sorted by (molecule, key) with two stable sorts;
//   3. count pass: per atom, the 27 neighbour cells are found by binary search in the molecule's slice of
//      sorted keys and the atoms within r counted; row_ptr = exclusive cumsum of the counts;
//   4. fill pass: the same walk writes the senders; one sort of the E keys row * N + col then orders the
//      senders per receiver (cell order is not index order). Memory: O(N + E) int64, never O(N^2).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cmath>

#include "cell_list.h"
#include "radius_graph_host.h"

namespace diffmd {
namespace {

constexpr int kThreads = 256;

struct Grids {
  const double* lo;      // (G, 3) Å
  const double* width;   // (G,) Å
  const int64_t* dims;   // (G, 3)
  const int64_t* seg;    // (N,) molecule index of each atom
  const int64_t* start;  // (G,) first sorted position of each molecule
  const int64_t* count;  // (G,) atoms per molecule
};

__device__ __forceinline__ CellGrid grid_of(const Grids& gs, int64_t g) {
  CellGrid grid;
  for (int c = 0; c < 3; ++c) {
    grid.lo[c] = gs.lo[g * 3 + c];
    grid.dims[c] = gs.dims[g * 3 + c];
  }
  grid.width = gs.width[g];
  return grid;
}

template <typename T>
__global__ void cell_keys_kernel(const T* __restrict__ x, Grids gs, int64_t n, int64_t* __restrict__ key) {
  const int64_t a = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (a >= n) return;
  const CellGrid g = grid_of(gs, gs.seg[a]);
  key[a] = cell_key(cell_coord(static_cast<double>(x[a * 3]), g, 0), cell_coord(static_cast<double>(x[a * 3 + 1]), g, 1),
                    cell_coord(static_cast<double>(x[a * 3 + 2]), g, 2), g);
}

// First position in [lo, hi) whose key is >= k (or > k when upper).
__device__ __forceinline__ int64_t bound(const int64_t* keys, int64_t lo, int64_t hi, int64_t k, bool upper) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < k || (upper && keys[mid] == k)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Count pass (out == nullptr: writes counts[a]) or fill pass (writes senders from out + row_ptr[a]).
// The squared distance uses explicit round-to-nearest ops so nvcc cannot contract it into FMAs: the test
// d2 < r2 then rounds exactly as on the CPU.
template <typename T>
__global__ void neighbours_kernel(const T* __restrict__ x, Grids gs, const int64_t* __restrict__ sorted_key,
                                  const int64_t* __restrict__ order, int64_t n, double r2,
                                  int64_t* __restrict__ counts, const int64_t* __restrict__ row_ptr,
                                  int64_t* __restrict__ out) {
  const int64_t a = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (a >= n) return;
  const int64_t seg = gs.seg[a];
  const CellGrid g = grid_of(gs, seg);
  const int64_t s0 = gs.start[seg], s1 = s0 + gs.count[seg];
  const double xa[3] = {static_cast<double>(x[a * 3]), static_cast<double>(x[a * 3 + 1]),
                        static_cast<double>(x[a * 3 + 2])};
  const int64_t cx = cell_coord(xa[0], g, 0), cy = cell_coord(xa[1], g, 1), cz = cell_coord(xa[2], g, 2);
  int64_t found = 0;
  int64_t* dst = out ? out + row_ptr[a] : nullptr;
  for_each_neighbour_cell(cx, cy, cz, g, [&](int64_t kk) {
    const int64_t first = bound(sorted_key, s0, s1, kk, false), last = bound(sorted_key, first, s1, kk, true);
    for (int64_t s = first; s < last; ++s) {
      const int64_t b = order[s];
      if (b == a) continue;
      double d2 = 0.0;
      for (int c = 0; c < 3; ++c) {
        const double t = __dsub_rn(xa[c], static_cast<double>(x[b * 3 + c]));
        d2 = __dadd_rn(d2, __dmul_rn(t, t));
      }
      if (d2 < r2) {
        if (dst) dst[found] = b;
        ++found;
      }
    }
  });
  if (!out) counts[a] = found;
}

int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

std::tuple<at::Tensor, at::Tensor> radius_graph_cuda(const at::Tensor& x, const at::Tensor& batch, double r) {
  check_radius_graph_inputs(x, batch, r);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t N = x.size(0);
  const auto i64 = batch.options();
  if (N == 0) return {at::zeros({1}, i64), at::empty({0}, i64)};

  // 1. Molecules and their grids, in double like the CPU builder.
  const auto segments = at::unique_consecutive(batch, /*return_inverse=*/true, /*return_counts=*/true);
  const at::Tensor seg = std::get<1>(segments), count = std::get<2>(segments);  // (N,), (G,)
  const int64_t G = count.numel();
  const at::Tensor start = count.cumsum(0) - count;
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor idx = seg.unsqueeze(1).expand({N, 3});
  const at::Tensor lo = at::empty({G, 3}, xd.options()).scatter_reduce_(0, idx, xd, "amin", false);
  const at::Tensor hi = at::empty({G, 3}, xd.options()).scatter_reduce_(0, idx, xd, "amax", false);
  const at::Tensor extent = (hi - lo).amax(1);
  const at::Tensor width = at::clamp_min(extent / static_cast<double>(kMaxCellsPerDim - 1), r).contiguous();
  const at::Tensor dims = (at::floor((hi - lo) / width.unsqueeze(1)) + 1).to(at::kLong).contiguous();
  const Grids gs{lo.data_ptr<double>(), width.data_ptr<double>(), dims.data_ptr<int64_t>(),
                 seg.data_ptr<int64_t>(), start.data_ptr<int64_t>(), count.data_ptr<int64_t>()};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  at::Tensor row_ptr = at::zeros({N + 1}, i64);
  at::Tensor col;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "radius_graph_cuda", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    // 2. Cell keys; sort by (molecule, key): stable by key, then stable by molecule.
    at::Tensor key = at::empty({N}, i64);
    cell_keys_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(xp, gs, N, key.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor by_key = std::get<1>(key.sort(std::optional<bool>(true), 0, false));
    const at::Tensor by_seg = std::get<1>(seg.index_select(0, by_key).sort(std::optional<bool>(true), 0, false));
    const at::Tensor order = by_key.index_select(0, by_seg).contiguous();
    const at::Tensor sorted_key = key.index_select(0, order).contiguous();
    // 3. Count.
    at::Tensor counts = at::empty({N}, i64);
    neighbours_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        xp, gs, sorted_key.data_ptr<int64_t>(), order.data_ptr<int64_t>(), N, r * r, counts.data_ptr<int64_t>(),
        nullptr, nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    row_ptr.slice(0, 1).copy_(counts.cumsum(0));
    const int64_t E = row_ptr[N].item<int64_t>();
    col = at::empty({E}, i64);
    if (E == 0) return;
    // 4. Fill, then order the senders of each receiver.
    neighbours_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(
        xp, gs, sorted_key.data_ptr<int64_t>(), order.data_ptr<int64_t>(), N, r * r, nullptr,
        row_ptr.data_ptr<int64_t>(), col.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor row = at::repeat_interleave(at::arange(N, i64), counts, /*dim=*/0, /*output_size=*/E);
    const at::Tensor pair = std::get<0>((row * N + col).sort(std::optional<bool>(false), 0, false));
    col = pair - row * N;
  });
  return {row_ptr, col};
}

}  // namespace

TORCH_LIBRARY_IMPL(diffmd_fast, CUDA, m) { m.impl("radius_graph", &radius_graph_cuda); }

}  // namespace diffmd
