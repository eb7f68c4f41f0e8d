// Cell-list helpers shared by the CPU and CUDA radius-graph builders.
//
// Each molecule gets its own grid anchored at its own lower corner, so molecules that overlap in
// space (a batch of copies) never share cells. Cells are at least r wide, so all neighbours of an
// atom lie in the 27 cells around its own; the width grows past r only when a molecule is so large
// relative to r that a dimension would exceed kMaxCellsPerDim cells (keys then stay below 2^60).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/hd.h"

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

// Calls visit(key) for each cell of the 3x3x3 block around (cx, cy, cz) that lies inside the grid:
// the cells that can hold neighbours within r of an atom in cell (cx, cy, cz).
template <typename Visit>
DMD_HD void for_each_neighbour_cell(int64_t cx, int64_t cy, int64_t cz, const CellGrid& g, Visit&& visit) {
  for (int64_t dz = -1; dz <= 1; ++dz)
    for (int64_t dy = -1; dy <= 1; ++dy)
      for (int64_t dx = -1; dx <= 1; ++dx) {
        const int64_t nx = cx + dx, ny = cy + dy, nz = cz + dz;
        if (nx < 0 || ny < 0 || nz < 0 || nx >= g.dims[0] || ny >= g.dims[1] || nz >= g.dims[2]) continue;
        visit(cell_key(nx, ny, nz, g));
      }
}

}  // namespace diffmd
