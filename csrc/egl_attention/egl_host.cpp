#include "egl_host.h"

#include <map>
#include <mutex>
#include <utility>

namespace diffmd {
namespace {

// First R positive roots of j_o by scanning for sign changes and bisecting (double precision).
void bessel_roots(int o, int R, double* out) {
  const double step = 0.05;
  double a = 0.5, fa = spherical_jn<double>(o, a);
  int found = 0;
  while (found < R) {
    const double b = a + step, fb = spherical_jn<double>(o, b);
    if (fa * fb < 0.0) {
      double lo = a, hi = b, flo = fa;
      for (int it = 0; it < 200 && hi - lo > 1e-15; ++it) {
        const double mid = 0.5 * (lo + hi), fm = spherical_jn<double>(o, mid);
        if (flo * fm <= 0.0) {
          hi = mid;
        } else {
          lo = mid;
          flo = fm;
        }
      }
      out[found++] = 0.5 * (lo + hi);
    }
    a = b;
    fa = fb;
  }
}

double factorial(int n) {
  double f = 1.0;
  for (int t = 2; t <= n; ++t) f *= t;
  return f;
}

// Constants that do not depend on the cutoff (radial_norm holds sqrt(2) / |j_{o+1}(z_on)|).
BasisConsts unit_cutoff_consts(int L, int R) {
  BasisConsts bc{};
  bc.L = L;
  bc.R = R;
  bc.K = R * L * (L + 1) / 2;
  for (int o = 0; o < L; ++o) {
    bessel_roots(o, R, bc.roots[o]);
    for (int n = 0; n < R; ++n) bc.radial_norm[o][n] = std::sqrt(2.0) / std::fabs(spherical_jn<double>(o + 1, bc.roots[o][n]));
  }
  // Legendre P_o power-series coefficients by Bonnet's recurrence, then m-fold derivatives.
  double leg[kMaxSpherical][kMaxSpherical] = {};
  leg[0][0] = 1.0;
  if (L > 1) leg[1][1] = 1.0;
  for (int n = 1; n + 1 < L; ++n)
    for (int p = 0; p < L; ++p)
      leg[n + 1][p] = ((2 * n + 1) * (p > 0 ? leg[n][p - 1] : 0.0) - n * leg[n - 1][p]) / (n + 1);
  for (int o = 0; o < L; ++o) {
    for (int m = 0; m <= o; ++m) {
      double norm = std::sqrt((2 * o + 1) / (4 * M_PI) * factorial(o - m) / factorial(o + m));
      if (m > 0) norm *= std::sqrt(2.0);
      double c[kMaxSpherical] = {};
      for (int p = 0; p < L; ++p) c[p] = leg[o][p];
      for (int t = 0; t < m; ++t)
        for (int p = 0; p < L; ++p) c[p] = (p + 1 < L) ? (p + 1) * c[p + 1] : 0.0;
      for (int p = 0; p < L; ++p) bc.poly[o][m][p] = norm * c[p];
    }
  }
  return bc;
}

}  // namespace

BasisConsts make_basis_consts(int64_t num_radial, int64_t num_spherical, double cutoff) {
  static std::mutex mutex;
  static std::map<std::pair<int, int>, BasisConsts> cache;
  BasisConsts bc;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_pair(static_cast<int>(num_spherical), static_cast<int>(num_radial));
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, unit_cutoff_consts(key.first, key.second)).first;
    bc = it->second;
  }
  bc.cutoff = cutoff;
  const double c32 = std::pow(cutoff, -1.5);
  for (int o = 0; o < bc.L; ++o)
    for (int n = 0; n < bc.R; ++n) bc.radial_norm[o][n] *= c32;
  return bc;
}

static void check_float_tensor(const at::Tensor& t, const char* name, const at::Tensor& like) {
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "egl_attention: ", name, " must have dtype ",
              like.scalar_type(), " like x, got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), "egl_attention: ", name, " must be on ", like.device(), " like x, got ",
              t.device());
  TORCH_CHECK(t.is_contiguous(), "egl_attention: ", name, " must be contiguous (call .contiguous())");
}

int64_t check_egl_inputs(const at::Tensor& x, const at::Tensor& v, const at::Tensor& q, const at::Tensor& k,
                         const at::Tensor& m, const at::Tensor& w1, const at::Tensor& w2, const at::Tensor& row_ptr,
                         const at::Tensor& col, double cutoff, int64_t num_radial, int64_t num_spherical) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "egl_attention: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(num_radial >= 1 && num_radial <= kMaxRadial, "egl_attention: num_radial must be in [1, ", kMaxRadial,
              "], got ", num_radial);
  TORCH_CHECK(num_spherical >= 1 && num_spherical <= kMaxSpherical, "egl_attention: num_spherical must be in [1, ",
              kMaxSpherical, "], got ", num_spherical);
  TORCH_CHECK(std::isfinite(cutoff) && cutoff > 0.0, "egl_attention: cutoff must be positive and finite, got ", cutoff);
  TORCH_CHECK(q.dim() == 3, "egl_attention: q must be (N, H, D), got ", q.sizes());
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t K = num_radial * num_spherical * (num_spherical + 1) / 2;
  TORCH_CHECK(H >= 1 && D >= 1, "egl_attention: q must have H >= 1 heads and D >= 1 channels, got ", q.sizes());
  TORCH_CHECK(x.dim() == 2 && x.size(0) == N && x.size(1) == 3, "egl_attention: x must be (N=", N, ", 3), got ", x.sizes());
  TORCH_CHECK(v.sizes() == x.sizes(), "egl_attention: v must be (N=", N, ", 3) like x, got ", v.sizes());
  TORCH_CHECK(k.sizes() == q.sizes(), "egl_attention: k must be ", q.sizes(), " like q, got ", k.sizes());
  TORCH_CHECK(m.sizes() == q.sizes(), "egl_attention: m must be ", q.sizes(), " like q, got ", m.sizes());
  const std::vector<int64_t> wshape{K, H, D};
  TORCH_CHECK(w1.sizes() == at::IntArrayRef(wshape), "egl_attention: w1 must be (K=", K, ", H=", H, ", D=", D,
              ") for num_radial=", num_radial, ", num_spherical=", num_spherical, ", got ", w1.sizes());
  TORCH_CHECK(w2.sizes() == at::IntArrayRef(wshape), "egl_attention: w2 must be (K=", K, ", H=", H, ", D=", D,
              "), got ", w2.sizes());
  check_float_tensor(x, "x", x);
  check_float_tensor(v, "v", x);
  check_float_tensor(q, "q", x);
  check_float_tensor(k, "k", x);
  check_float_tensor(m, "m", x);
  check_float_tensor(w1, "w1", x);
  check_float_tensor(w2, "w2", x);
  TORCH_CHECK(row_ptr.scalar_type() == at::kLong && col.scalar_type() == at::kLong,
              "egl_attention: row_ptr and col must be int64, got ", row_ptr.scalar_type(), " and ", col.scalar_type());
  TORCH_CHECK(row_ptr.device() == x.device() && col.device() == x.device(),
              "egl_attention: row_ptr and col must be on ", x.device());
  TORCH_CHECK(row_ptr.dim() == 1 && row_ptr.numel() == N + 1, "egl_attention: row_ptr must be (N+1=", N + 1,
              ",), got ", row_ptr.sizes());
  TORCH_CHECK(col.dim() == 1, "egl_attention: col must be 1-D, got ", col.sizes());
  TORCH_CHECK(row_ptr.is_contiguous() && col.is_contiguous(), "egl_attention: row_ptr and col must be contiguous");
  // CSR validity. On CUDA this reads three scalars back to the host; the price of never crashing.
  const int64_t E = col.numel();
  const at::Tensor rp = row_ptr.device().is_cpu() ? row_ptr : row_ptr.cpu();
  const int64_t* rpp = rp.data_ptr<int64_t>();
  TORCH_CHECK(rpp[0] == 0, "egl_attention: row_ptr[0] must be 0, got ", rpp[0]);
  TORCH_CHECK(rpp[N] == E, "egl_attention: row_ptr[N] must equal len(col)=", E, ", got ", rpp[N]);
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(rpp[i + 1] >= rpp[i], "egl_attention: row_ptr must be non-decreasing, but row_ptr[", i + 1,
                "]=", rpp[i + 1], " < row_ptr[", i, "]=", rpp[i]);
  if (E > 0) {
    const int64_t lo = col.min().item<int64_t>(), hi = col.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < N, "egl_attention: col must hold node indices in [0, ", N, "), got values in [", lo,
                ", ", hi, "]");
  }
  return K;
}

void check_egl_backward_inputs(const at::Tensor& grad_msg, const at::Tensor& grad_vec, const at::Tensor& msg,
                               const at::Tensor& vec, const at::Tensor& lse, const at::Tensor& q) {
  const int64_t N = q.size(0), H = q.size(1);
  TORCH_CHECK(grad_msg.sizes() == q.sizes() && msg.sizes() == q.sizes(), "egl_attention_backward: grad_msg and msg must be ",
              q.sizes());
  const std::vector<int64_t> vshape{N, H, 3}, lshape{N, H};
  TORCH_CHECK(grad_vec.sizes() == at::IntArrayRef(vshape) && vec.sizes() == at::IntArrayRef(vshape),
              "egl_attention_backward: grad_vec and vec must be (N, H, 3)");
  TORCH_CHECK(lse.sizes() == at::IntArrayRef(lshape), "egl_attention_backward: lse must be (N, H)");
  check_float_tensor(grad_msg, "grad_msg", q);
  check_float_tensor(grad_vec, "grad_vec", q);
  check_float_tensor(msg, "msg", q);
  check_float_tensor(vec, "vec", q);
  check_float_tensor(lse, "lse", q);
}

}  // namespace diffmd
