// Host-side checks of diffmd_fast::valence_force, shared by the CPU and CUDA kernels, and the one
// params struct both read.
#pragma once

#include <ATen/ATen.h>

namespace diffmd {

struct ValenceParams {
  int64_t N, M, A, D, Z1, S;  // atoms, directed bonds, angles, dihedrals, atom types (table size), angle slots
  const int64_t* types;      // (N,) each atom's atom type (BondPrior.atom_types)
  const int64_t* bonds;      // (2, M) receiver, sender
  const int64_t* angles;     // (3, A) end i, centre j, end k
  const double* bond_k;      // (Z1, Z1) eV/Å² per type pair
  const double* bond_r0;     // (Z1, Z1) Å
  const int64_t* slot;       // (Z1,) angle-table slot of each type, -1: none
  const double* angle_k;     // (S, S, S) eV
  const double* angle_c0;    // (S, S, S) cos θ0
  const double* ub_k;        // (S, S, S) eV/Å²: the Urey-Bradley spring between an angle's ends (0: none)
  const double* ub_r0;       // (S, S, S) Å: its rest length
  const int64_t* dihedrals;  // (4, D) i, j, k, l
  const double* torsion;     // (D, 4) per dihedral: k_B T / m eV, κ, n, φ0 rad (BondPrior.torsion_terms)
};

inline ValenceParams check_valence_inputs(const at::Tensor& x, const at::Tensor& types, const at::Tensor& bonds,
                                          const at::Tensor& angles, const at::Tensor& bond_k, const at::Tensor& bond_r0,
                                          const at::Tensor& slot, const at::Tensor& angle_k, const at::Tensor& angle_c0,
                                          const at::Tensor& ub_k, const at::Tensor& ub_r0, const at::Tensor& dihedrals,
                                          const at::Tensor& torsion) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "valence_force: x must be (N, 3), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "valence_force: x must be float32 or float64, got ", x.scalar_type());
  const int64_t N = x.size(0);
  TORCH_CHECK(types.dim() == 1 && types.size(0) == N && types.scalar_type() == at::kLong,
              "valence_force: types must be (N,) int64, N = ", N);
  TORCH_CHECK(bonds.dim() == 2 && bonds.size(0) == 2 && bonds.scalar_type() == at::kLong,
              "valence_force: bonds must be (2, M) int64, got ", bonds.sizes());
  TORCH_CHECK(angles.dim() == 2 && angles.size(0) == 3 && angles.scalar_type() == at::kLong,
              "valence_force: angles must be (3, A) int64, got ", angles.sizes());
  const int64_t Z1 = bond_k.size(0);
  TORCH_CHECK(bond_k.dim() == 2 && bond_k.size(1) == Z1 && bond_r0.sizes() == bond_k.sizes() &&
                  bond_k.scalar_type() == at::kDouble && bond_r0.scalar_type() == at::kDouble,
              "valence_force: bond_k and bond_r0 must be (T, T) float64 (the ops convert float32 tables)");
  TORCH_CHECK(slot.dim() == 1 && slot.size(0) == Z1 && slot.scalar_type() == at::kLong,
              "valence_force: slot must be (T,) int64 with T = ", Z1);
  const int64_t S = angle_k.size(0);
  TORCH_CHECK(angle_k.dim() == 3 && angle_k.size(1) == S && angle_k.size(2) == S && angle_c0.sizes() == angle_k.sizes() &&
                  angle_k.scalar_type() == at::kDouble && angle_c0.scalar_type() == at::kDouble,
              "valence_force: angle_k and angle_c0 must be (S, S, S) float64");
  TORCH_CHECK(ub_k.sizes() == angle_k.sizes() && ub_r0.sizes() == angle_k.sizes() && ub_k.scalar_type() == at::kDouble &&
                  ub_r0.scalar_type() == at::kDouble,
              "valence_force: ub_k and ub_r0 must be (S, S, S) float64 like angle_k");
  TORCH_CHECK(dihedrals.dim() == 2 && dihedrals.size(0) == 4 && dihedrals.scalar_type() == at::kLong,
              "valence_force: dihedrals must be (4, D) int64, got ", dihedrals.sizes());
  TORCH_CHECK(torsion.dim() == 2 && torsion.size(0) == dihedrals.size(1) && torsion.size(1) == 4 &&
                  torsion.scalar_type() == at::kDouble,
              "valence_force: torsion must be (D, 4) float64 with D = ", dihedrals.size(1), ", got ", torsion.sizes());
  for (const at::Tensor* t : {&types, &bonds, &angles, &bond_k, &bond_r0, &slot, &angle_k, &angle_c0, &ub_k, &ub_r0, &dihedrals,
                          &torsion}) {
    TORCH_CHECK(t->device() == x.device(), "valence_force: every input must be on ", x.device());
    TORCH_CHECK(t->is_contiguous(), "valence_force: inputs must be contiguous");
  }
  TORCH_CHECK(x.is_contiguous(), "valence_force: inputs must be contiguous");
  return {N, bonds.size(1), angles.size(1), dihedrals.size(1), Z1, S, types.data_ptr<int64_t>(),
          bonds.data_ptr<int64_t>(), angles.data_ptr<int64_t>(), bond_k.data_ptr<double>(), bond_r0.data_ptr<double>(),
          slot.data_ptr<int64_t>(), angle_k.data_ptr<double>(), angle_c0.data_ptr<double>(), ub_k.data_ptr<double>(),
          ub_r0.data_ptr<double>(), dihedrals.data_ptr<int64_t>(), torsion.data_ptr<double>()};
}

// One call's inputs, checked, and its zeroed (N, 3) float64 output (eV/Å), shared by both backends. A
// model cast to float32 casts its tables too: they are read in double (the conversion is a no-op when
// they are), and the converted tensors live here as long as the params that point into them.
struct ValenceCall {
  at::Tensor bond_k, bond_r0, angle_k, angle_c0, ub_k, ub_r0, torsion;
  ValenceParams p;
  at::Tensor force;
};

inline ValenceCall prepare_valence_call(const at::Tensor& x, const at::Tensor& types, const at::Tensor& bonds,
                                        const at::Tensor& angles, const at::Tensor& bond_k, const at::Tensor& bond_r0,
                                        const at::Tensor& slot, const at::Tensor& angle_k, const at::Tensor& angle_c0,
                                        const at::Tensor& ub_k, const at::Tensor& ub_r0, const at::Tensor& dihedrals,
                                        const at::Tensor& torsion) {
  ValenceCall call{bond_k.to(at::kDouble), bond_r0.to(at::kDouble), angle_k.to(at::kDouble), angle_c0.to(at::kDouble),
                   ub_k.to(at::kDouble), ub_r0.to(at::kDouble), torsion.to(at::kDouble), {}, {}};
  call.p = check_valence_inputs(x, types, bonds, angles, call.bond_k, call.bond_r0, slot, call.angle_k, call.angle_c0,
                                call.ub_k, call.ub_r0, dihedrals, call.torsion);
  call.force = at::zeros({call.p.N, 3}, x.options().dtype(at::kDouble));
  return call;
}

}  // namespace diffmd
