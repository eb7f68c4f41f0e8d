// Cell-list helpers shared by the CPU and CUDA radius-graph builders.
//
// Each molecule gets its own grid anchored at its own lower corner, so molecules that overlap in
// space (a batch of copies) never share cells. Cells are at least r wide, so all neighbours of an
// atom lie in the 27 cells around its own; the width grows past r only when a molecule is so large
// relative to r that a dimension would exceed kMaxCellsPerDim cells (keys then stay below 2^60).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DMD_HD __host__ __device__ __forceinline__
#else
#define DMD_HD inline
#endif

namespace diffmd {

constexpr int64_t kMaxCellsPerDim = int64_t(1) << 20;

struct CellGrid {
  double lo[3];   // lower corner, Å
  double width;   // cell width >= r, Å
  int64_t dims[3];
};

DMD_HD int64_t cell_coord(double x, const CellGrid& g, int c) {
  int64_t t = static_cast<int64_t>(floor((x - g.lo[c]) / g.width));
  return t < 0 ? 0 : (t >= g.dims[c] ? g.dims[c] - 1 : t);
}

DMD_HD int64_t cell_key(int64_t cx, int64_t cy, int64_t cz, const CellGrid& g) {
  return (cz * g.dims[1] + cy) * g.dims[0] + cx;
}

}  // namespace diffmd
