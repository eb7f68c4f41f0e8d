// diffmd_fast::valence_force: the forces (eV/Å, float64) of harmonic bonds, cosine-harmonic angles with
// their Urey-Bradley springs, and mirror-symmetric torsions over a fixed topology, each term's
// constants looked up by its atoms' types (BondPrior.atom_types), one pass over the terms (a rollout's
// bond prior at batch 1 is ~50 terms: as ~40 tensor ops it cost more than the whole score network).
// Indices are checked as they are read, so a bad topology is an error, never an out-of-bounds access.
// Inference only, like egt_score.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "valence_force/valence_host.h"
#include "valence_force/valence_math.h"

namespace diffmd {
namespace {

template <typename T>
void valence_force_cpu_impl(const T* x, const ValenceParams& p, double* f) {
  auto pos = [&](int64_t a, double out[3]) {
    for (int c = 0; c < 3; ++c) out[c] = static_cast<double>(x[a * 3 + c]);
  };
  auto atom = [&](int64_t a) {
    TORCH_CHECK(a >= 0 && a < p.N, "valence_force: atom index ", a, " out of range for ", p.N, " atoms");
    return a;
  };
  auto type_of = [&](int64_t a) {
    const int64_t e = p.types[atom(a)];
    TORCH_CHECK(e >= 0 && e < p.Z1, "valence_force: atom type ", e, " beyond the tables' ", p.Z1 - 1);
    return e;
  };
  double xi[3], xj[3], xk[3], fi[3], fk[3];
  for (int64_t m = 0; m < p.M; ++m) {
    const int64_t i = p.bonds[m], j = p.bonds[p.M + m];
    const int64_t ti = type_of(i), tj = type_of(j);
    pos(i, xi);
    pos(j, xj);
    harmonic_bond_force(xi, xj, p.bond_k[ti * p.Z1 + tj], p.bond_r0[ti * p.Z1 + tj], fi);
    for (int c = 0; c < 3; ++c) f[i * 3 + c] += fi[c];
  }
  for (int64_t a = 0; a < p.A; ++a) {
    const int64_t i = p.angles[a], j = p.angles[p.A + a], k = p.angles[2 * p.A + a];
    const int64_t si = p.slot[type_of(i)], sj = p.slot[type_of(j)], sk = p.slot[type_of(k)];
    if (si < 0 || sj < 0 || sk < 0) continue;  // a type without angle data: no angle term
    TORCH_CHECK(si < p.S && sj < p.S && sk < p.S, "valence_force: angle slot beyond the table's ", p.S);
    const int64_t t = (si * p.S + sj) * p.S + sk;
    pos(i, xi);
    pos(j, xj);
    pos(k, xk);
    urey_bradley_angle_force(xi, xj, xk, p.angle_k[t], p.angle_c0[t], p.ub_k[t], p.ub_r0[t], fi, fk);
    for (int c = 0; c < 3; ++c) {
      f[i * 3 + c] += fi[c];
      f[k * 3 + c] += fk[c];
      f[j * 3 + c] -= fi[c] + fk[c];
    }
  }
  double xl[3], fj[3], fl[3];
  for (int64_t d = 0; d < p.D; ++d) {
    const int64_t* q = p.dihedrals;
    const int64_t i = atom(q[d]), j = atom(q[p.D + d]), k = atom(q[2 * p.D + d]), l = atom(q[3 * p.D + d]);
    const double* t = p.torsion + 4 * d;
    if (t[0] == 0.0) continue;  // a quadruple without data: no term
    pos(i, xi);
    pos(j, xj);
    pos(k, xk);
    pos(l, xl);
    mirror_torsion_force(xi, xj, xk, xl, t[0], t[1], t[2], t[3], fi, fj, fk, fl);
    for (int c = 0; c < 3; ++c) {
      f[i * 3 + c] += fi[c];
      f[j * 3 + c] += fj[c];
      f[k * 3 + c] += fk[c];
      f[l * 3 + c] += fl[c];
    }
  }
}

at::Tensor valence_force_cpu(const at::Tensor& x, const at::Tensor& types, const at::Tensor& bonds, const at::Tensor& angles,
                             const at::Tensor& bond_k, const at::Tensor& bond_r0, const at::Tensor& slot,
                             const at::Tensor& angle_k, const at::Tensor& angle_c0, const at::Tensor& ub_k,
                             const at::Tensor& ub_r0, const at::Tensor& dihedrals, const at::Tensor& torsion) {
  const ValenceCall call =
      prepare_valence_call(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, ub_k, ub_r0, dihedrals,
                           torsion);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "valence_force_cpu",
                             [&] { valence_force_cpu_impl(x.data_ptr<scalar_t>(), call.p, call.force.data_ptr<double>()); });
  return call.force;
}

// Inference only: the forces are an input of the anchor, never differentiated.
at::Tensor valence_force_autograd(const at::Tensor& x, const at::Tensor& types, const at::Tensor& bonds,
                                  const at::Tensor& angles, const at::Tensor& bond_k, const at::Tensor& bond_r0,
                                  const at::Tensor& slot, const at::Tensor& angle_k, const at::Tensor& angle_c0,
                                  const at::Tensor& ub_k, const at::Tensor& ub_r0, const at::Tensor& dihedrals,
                                  const at::Tensor& torsion) {
  const bool needs_grad = x.requires_grad() || bond_k.requires_grad() || bond_r0.requires_grad() ||
                          angle_k.requires_grad() || angle_c0.requires_grad() || ub_k.requires_grad() ||
                          ub_r0.requires_grad() || torsion.requires_grad();
  TORCH_CHECK(!needs_grad || !at::GradMode::is_enabled(),
              "valence_force has no backward; run it under torch.no_grad() or use BondPrior.force_reference");
  at::AutoDispatchBelowADInplaceOrView below;
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("diffmd_fast::valence_force", "").typed<decltype(valence_force_cpu)>();
  return op.call(x, types, bonds, angles, bond_k, bond_r0, slot, angle_k, angle_c0, ub_k, ub_r0, dihedrals, torsion);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(diffmd_fast, m) {
  m.def("valence_force(Tensor x, Tensor types, Tensor bonds, Tensor angles, Tensor bond_k, Tensor bond_r0, Tensor slot, "
        "Tensor angle_k, Tensor angle_c0, Tensor ub_k, Tensor ub_r0, Tensor dihedrals, Tensor torsion) -> Tensor");
}

TORCH_LIBRARY_IMPL(diffmd_fast, CPU, m) { m.impl("valence_force", &valence_force_cpu); }
TORCH_LIBRARY_IMPL(diffmd_fast, Autograd, m) { m.impl("valence_force", &valence_force_autograd); }

}  // namespace diffmd
