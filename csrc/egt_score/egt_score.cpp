// diffmd_fast::egt_score: the whole EGT score network (python/diffmd_fast/nn/score_net.py and
// nn/egl.py) as one inference-only op, for rollouts.
//
// Why: at a rollout's batch 1 (one 9-21 atom molecule) a score evaluation is ~100 tiny tensor ops,
// and their Python dispatch costs ~40x their arithmetic (4 ms against ~0.1 ms for a 3-layer,
// 64-wide network). Here the same ATen calls run from C++, the EGL attention is reached below the
// autograd key (no Python autograd kernel in the way), and there is one host round trip per score
// evaluation. The arithmetic is the module's, op for op, so the two agree to rounding in float64
// (tests/nn/test_egt_score.py). It is device-generic ATen code plus the egl_attention op, so the same
// function serves CPU and CUDA. It has no backward: training uses the modules (ScoreNet routes to
// this op only with autograd off), and the Autograd kernel refuses inputs that require grad.
//
// params, in this order (ScoreNet.fused_params):
//   embed.weight (Z, C), noise_features.w (F,), scalar_mlp: W0 (C, 3+2F), b0, W2 (C, C), b2,
//   delta_scale (), then gate W (1, C), b (1,) only for the gated form (anchor and sigma_data <= 0),
//   then per layer kPerLayer tensors: f_q W b, f_k W b, f_m W b, w_sbf1 (K,H,D), w_sbf2, f_v W0 b0 W2 b2,
//   head_mix (H,), out W b, ffn W1 b1 W2 b2, norm1 w b, norm2 w b.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <cmath>

namespace diffmd {
namespace {

constexpr int64_t kHead = 7;  // tensors before the layers, without the gate
constexpr int64_t kPerLayer = 23;

using Egl = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                           double, int64_t, int64_t);

at::Tensor linear(const at::Tensor& h, const at::Tensor& w, const at::Tensor& b) { return at::addmm(b, h, w.t()); }

at::Tensor egt_score(const at::Tensor& z, const at::Tensor& x_prev, const at::Tensor& x, const at::Tensor& x_noisy,
                     const at::Tensor& x_anchor, const at::Tensor& std, const at::Tensor& row_ptr, const at::Tensor& col, at::TensorList params,
                     double cutoff, int64_t num_radial, int64_t num_spherical, int64_t heads, bool anchor,
                     double sigma_data, int64_t num_layers) {
  const bool edm = sigma_data > 0.0, gated = anchor && !edm;
  TORCH_CHECK(!edm || anchor, "egt_score: sigma_data > 0 (EDM preconditioning) needs anchor = true");
  TORCH_CHECK(num_layers >= 1 && heads >= 1, "egt_score: num_layers and heads must be >= 1");
  const int64_t head = kHead + (gated ? 2 : 0);
  TORCH_CHECK(static_cast<int64_t>(params.size()) == head + kPerLayer * num_layers, "egt_score: expected ",
              head + kPerLayer * num_layers, " parameter tensors for ", num_layers, " layers, got ", params.size());
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "egt_score: x must be (N, 3), got ", x.sizes());
  const int64_t N = x.size(0);
  TORCH_CHECK(x_prev.sizes() == x.sizes() && x_noisy.sizes() == x.sizes() && x_anchor.sizes() == x.sizes(),
              "egt_score: x_prev, x_noisy and x_anchor must be ", x.sizes(), " like x, got ", x_prev.sizes(), ", ",
              x_noisy.sizes(), " and ", x_anchor.sizes());
  TORCH_CHECK(std.dim() == 2 && std.size(0) == N && std.size(1) == 1, "egt_score: std must be (", N, ", 1), got ",
              std.sizes());
  TORCH_CHECK(z.dim() == 1 && z.size(0) == N && z.scalar_type() == at::kLong, "egt_score: z must be int64 (", N,
              ",), got ", z.scalar_type(), " ", z.sizes());
  for (const at::Tensor* t : {&x_prev, &x_noisy, &x_anchor, &std})
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->device() == x.device(),
                "egt_score: x_prev, x_noisy, x_anchor and std must share x's dtype and device");
  for (const at::Tensor& p : params)
    TORCH_CHECK(p.scalar_type() == x.scalar_type() && p.device() == x.device(), "egt_score: parameters must be ",
                x.scalar_type(), " on ", x.device(), " like x, got ", p.scalar_type(), " on ", p.device());

  static auto egl = c10::Dispatcher::singleton().findSchemaOrThrow("diffmd_fast::egl_attention", "").typed<Egl>();
  const at::Tensor v0 = x - x_prev;                          // (N, 3) Å/frame
  const at::Tensor offset = x_noisy - x_anchor;               // (N, 3) Å from the anchor (x(t) + v(t) [+ prior])
  const at::Tensor speed = at::linalg_vector_norm(v0, 2, {-1}, true);  // (N, 1)
  const at::Tensor arg = (2.0 * M_PI) * std.log() * params[1];          // (N, F)
  const at::Tensor scalars = at::cat({at::log(speed + 1e-4), at::log1p(speed / std),
                                      at::log1p(at::linalg_vector_norm(offset, 2, {-1}, true) / std), at::sin(arg),
                                      at::cos(arg)},
                                     -1);  // (N, 3 + 2F)
  at::Tensor h = at::embedding(params[0], z) +
                 linear(at::silu(linear(scalars, params[2], params[3])), params[4], params[5]);  // (N, C)
  const int64_t C = h.size(1), D = C / heads;
  TORCH_CHECK(D * heads == C, "egt_score: hidden ", C, " is not divisible by heads ", heads);

  const at::Tensor var = std * std;  // (N, 1) Å²
  const double sd2 = sigma_data * sigma_data;
  const at::Tensor x_in = edm ? x_noisy - var / (var + sd2) * offset : x_noisy;  // (N, 3) Å
  at::Tensor xl = x_in.contiguous(), v = v0.contiguous();
  for (int64_t l = 0; l < num_layers; ++l) {
    const at::Tensor* p = params.data() + head + kPerLayer * l;
    const at::Tensor q = linear(h, p[0], p[1]).view({N, heads, D});
    const at::Tensor k = linear(h, p[2], p[3]).view({N, heads, D});
    const at::Tensor m = linear(h, p[4], p[5]).view({N, heads, D});
    at::Tensor msg, vec;
    {
      // Below autograd: straight to the CPU/CUDA kernel (its Python autograd kernel is for training).
      at::AutoDispatchBelowADInplaceOrView below;
      std::tie(msg, vec, std::ignore) =
          egl.call(xl, v, q, k, m, p[6], p[7], row_ptr, col, cutoff, num_radial, num_spherical);
    }
    const at::Tensor fv = linear(at::relu(linear(h, p[8], p[9])), p[10], p[11]);  // (N, 1)
    v = at::addcmul(at::matmul(vec.transpose(1, 2), p[12]), fv, v);              // Eq. 15, (N, 3)
    xl = xl + v / static_cast<double>(num_layers);                                 // Eq. 16
    h = at::layer_norm(h + linear(msg.reshape({N, C}), p[13], p[14]), {C}, p[19], p[20]);  // Eq. 17
    h = at::layer_norm(h + linear(at::relu(linear(h, p[15], p[16])), p[17], p[18]), {C}, p[21], p[22]);
  }
  const at::Tensor& delta_scale = params[6];
  if (edm) {
    const at::Tensor denoised = x_in + delta_scale * (std / (var + sd2).sqrt()) * (xl - x_in);  // D(x̃), (N, 3) Å
    return (denoised - x_noisy) / var;
  }
  at::Tensor delta = delta_scale * (xl - x_noisy);  // (N, 3) predicted -z
  if (gated) delta = delta - at::sigmoid(linear(h, params[7], params[8])) * offset / std;
  return delta / std;
}

// Inference only: refuse a graph that autograd would silently drop, then run below autograd.
at::Tensor egt_score_autograd(const at::Tensor& z, const at::Tensor& x_prev, const at::Tensor& x,
                              const at::Tensor& x_noisy, const at::Tensor& x_anchor, const at::Tensor& std, const at::Tensor& row_ptr,
                              const at::Tensor& col, at::TensorList params, double cutoff, int64_t num_radial,
                              int64_t num_spherical, int64_t heads, bool anchor, double sigma_data, int64_t num_layers) {
  bool needs_grad = x_prev.requires_grad() || x.requires_grad() || x_noisy.requires_grad() || x_anchor.requires_grad() ||
                    std.requires_grad();
  for (const at::Tensor& p : params) needs_grad = needs_grad || p.requires_grad();
  TORCH_CHECK(!needs_grad || !at::GradMode::is_enabled(),
              "egt_score is inference-only (no backward); run it under torch.no_grad() or call the ScoreNet "
              "modules, which train through the differentiable egl_attention op");
  // Through the dispatcher, not a direct call: under torch.compile the keys below autograd (fake tensors,
  // functionalisation) must see the op itself, else they trace its body and the graph runs the network
  // op by op (23 addmm per call) instead of this kernel.
  at::AutoDispatchBelowADInplaceOrView below;
  static auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("diffmd_fast::egt_score", "").typed<decltype(egt_score)>();
  return op.call(z, x_prev, x, x_noisy, x_anchor, std, row_ptr, col, params, cutoff, num_radial, num_spherical, heads,
                 anchor, sigma_data, num_layers);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(diffmd_fast, m) {
  m.def(
      "egt_score(Tensor z, Tensor x_prev, Tensor x, Tensor x_noisy, Tensor x_anchor, Tensor std, Tensor row_ptr, "
      "Tensor col, "
      "Tensor[] params, float cutoff, int num_radial, int num_spherical, int heads, bool anchor, float sigma_data, "
      "int num_layers) -> Tensor");
}

TORCH_LIBRARY_IMPL(diffmd_fast, CompositeExplicitAutograd, m) { m.impl("egt_score", &egt_score); }
TORCH_LIBRARY_IMPL(diffmd_fast, Autograd, m) { m.impl("egt_score", &egt_score_autograd); }

}  // namespace diffmd
