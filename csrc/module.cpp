// The Python extension module diffmd_fast._C. Importing it loads this library, whose static
// initialisers register the torch ops; the few functions below exist for tests and `diffmd info`.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "egl_attention/egl_host.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, mod) {
  mod.doc() = "diffmd_fast compiled ops (diffmd_fast::egl_attention, diffmd_fast::radius_graph)";
  mod.def(
      "basis_constants",
      [](int64_t num_radial, int64_t num_spherical, double cutoff) {
        TORCH_CHECK(num_radial >= 1 && num_radial <= diffmd::kMaxRadial && num_spherical >= 1 &&
                        num_spherical <= diffmd::kMaxSpherical,
                    "basis_constants: sizes out of range");
        const diffmd::BasisConsts bc = diffmd::make_basis_consts(num_radial, num_spherical, cutoff);
        const int L = bc.L, R = bc.R;
        py::array_t<double> roots({L, R}), norm({L, R}), poly({L, L, L});
        for (int o = 0; o < L; ++o) {
          for (int n = 0; n < R; ++n) {
            roots.mutable_at(o, n) = bc.roots[o][n];
            norm.mutable_at(o, n) = bc.radial_norm[o][n];
          }
          for (int m = 0; m < L; ++m)
            for (int p = 0; p < L; ++p) poly.mutable_at(o, m, p) = bc.poly[o][m][p];
        }
        return py::make_tuple(roots, norm, poly);
      },
      "(roots (L,R), radial_norm (L,R) incl. cutoff^-1.5, angular_poly (L,L,L)) as computed by the kernels");
#ifdef DIFFMD_WITH_CUDA
  mod.attr("cuda_built") = true;
#else
  mod.attr("cuda_built") = false;
#endif
}
